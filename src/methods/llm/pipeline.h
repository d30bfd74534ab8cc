// Post-training quantization of a Llama model: a function-preserving transform (llm_transforms.h), then the
// weights by RTN (the config's observer, e.g. MSE clip search) or GPTQ, then static activation ranges.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "methods/llm/gptq.h"
#include "methods/llm/transforms.h"
#include "sim/sim_quant.h"

namespace catq {

struct LlmPtqOptions {
  LlmTransformOptions transform;
  std::string weights = "rtn";  // rtn | gptq
  GptqOptions gptq;
  int64_t batch = 8;            // windows per forward
};

// calib: token windows [N, T] disjoint from the evaluation text. Transforms `m` in place, binds `sq` to it,
// installs integer weights (GPTQ runs sequentially — q/k/v, o, gate/up, down of each block, then the head — each
// group's Hessian Σxxᵀ taken from the inputs the model produces with the earlier groups already quantized,
// activations in FP), calibrates static activation ranges and leaves `sq` in Quantize mode.
// Returns a report: transform, weights, per-layer GPTQ proxy errors (RTN vs GPTQ), seconds.
nlohmann::json quantize_llama(LlamaModel& m, SimQuant& sq, const at::Tensor& calib, const LlmPtqOptions& o);

}  // namespace catq

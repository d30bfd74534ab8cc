// The `catq eval` job for a language model, as data, and the function that runs it: perplexity under the protocol
// (docs/llm.md) of an FP checkpoint, of a quantized .catq file (against --reference or its own weights with FP
// activations), or of an FP checkpoint quantized on the fly (config + transform + RTN / GPTQ, calibrated on text
// disjoint from the scored text); with runtime "int", the integer runtime against the simulation it must
// reproduce (prefill windows and token-by-token decoding). The result is the JSON `catq eval --json` prints; the
// CLI prints its text form from the same JSON.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "eval/perplexity.h"

namespace catq {

struct LlmEvalJob {
  std::string model;               // llama2.c .bin, .gguf, HF folder / .safetensors, or a quantized-LLM .catq
  std::string tokenizer;           // llama2.c tokenizer; empty = GGUF's own or tok{V}.bin next to the model
  std::string text;                // UTF-8 text to score (required)
  PerplexityOptions ppl;           // protocol (defaults = the stories260K reference protocol)
  std::string runtime = "sim";     // sim | int
  std::string reference;           // FP model a .catq file is compared with (default: its own weights, FP activations)
  // Quantize an FP checkpoint first (empty quant = score FP only):
  std::string quant;               // quant config: JSON file or compact string
  std::string calib_text;          // calibration text (default: the --text file after the scored characters)
  int64_t calib_chars = 12000;
  std::string transform = "none";  // parse_llm_transform syntax
  std::string weights = "rtn";     // rtn | gptq
  bool act_order = false;
  double gptq_damp = 0.01;
};

// The "reference" of a quantized .catq file scored without --reference.
inline constexpr const char* kOwnWeightsReference = "(the file's weights, activations in FP)";

// Keys: model, format, model_summary, protocol, fp32 {ppl, mean_nll, scored_tokens, windows, seconds}, and with a
// quantized model: quantized {... , label}, kl_mean, kl_max, top1_agreement, quantization (what was done),
// reference; runtime "int": simulation, integer_runtime, ppl_rel_diff, decode, layer counts and the per-layer
// report. Error(Usage) for contradictory options, Error(Data) for too little text.
nlohmann::json run_llm_eval_job(const LlmEvalJob& job);

}  // namespace catq

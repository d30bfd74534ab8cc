// Block-by-block post-training quantization of a Llama (issue 15, deliverable 4): the calibration hidden states flow
// through the model one decoder block at a time, so each block is calibrated and quantized once, from the states the
// already-quantized blocks before it produce — no full-model forwards (the former GPTQ ran 4L+1 of them), and a model
// whose weights stay memory-mapped in their stored dtype needs only the current block converted to fp32.
//
// For block l, with X_q the states after the quantized blocks 0..l-1 and X_fp those of the FP model:
//   transform  (streamed pipelines, BlockwiseHooks) block l in fp32, transformed from statistics of X_fp
//   GPTQ       for each group {q,k,v}, {o}, {gate,up}, {down} in turn: one pass of block l over X_q with the groups
//              before it already quantized, stopped at the group's input, records H = Σ x xᵀ of that input (shared
//              by the group: one Hessian, one factor); gptq_quantize each linear, big ones in slices of rows
//              (the sequential order of GPTQ's reference and AutoGPTQ's true_sequential)
//   RTN        the config's observer per weight (rtn_quantize_weight), no pass
//   static     one pass of block l over X_fp observes every static input (activations calibrated against the FP
//   inputs     model, as the in-memory pipeline does)
//   then       X_q <- block_l(X_q) with the quantized weights; X_fp <- block_l(X_fp)
// The LM head follows the last block in the same way. Per-token activations, KV-cache and embedding quantization
// are dynamic: they need no calibration and are applied by whoever runs the result.
//
// Memory: the states ([N, T, D] fp32 each, one or two streams), one block's weights in fp32 (quantized ones as codes,
// dequantized per use), and GPTQ's per-layer working set (a slice of the weight in fp32, the [in, in] Hessian in fp32
// and its factor: at most three [in, in] fp32 matrices at once).
#pragma once
#include <functional>
#include <string>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "llm/llama.h"
#include "methods/llm/gptq.h"
#include "methods/llm/transforms.h"
#include "sim/sim_quant.h"

namespace catq {

struct BlockwiseOptions {
  std::string weights = "rtn";  // rtn | gptq
  GptqOptions gptq;
  bool calibrate_inputs = true;  // observe static input activations (false: the caller calibrates them itself)
  int64_t batch = 8;             // calibration windows per pass
  // Set: replaces the spec-driven RTN / GPTQ of every linear (weights and their specs are then ignored; the sink
  // gets no params). Quantizes the weight w of `layer` given its input's H = Σ x xᵀ (fp32 [in, in]) and H's GPTQ
  // factor — undefined / null unless custom_needs_hessian / custom_needs_factor — and returns the weight the later
  // passes see (its dequantized value). Used by the GGUF-format quantizer (methods/llm/gguf_quantize.h).
  std::function<at::Tensor(const LayerInfo& layer, const at::Tensor& w, const at::Tensor& h, const GptqFactor* f)>
      custom;
  bool custom_needs_hessian = false, custom_needs_factor = false;
};

// One quantizable layer's result, handed to the sink in layer_infos() order.
struct BlockwiseLayer {
  const LayerInfo* info = nullptr;
  const QuantParams* weight = nullptr;  // nullptr: the weight stays floating point
  at::Tensor codes;                     // integer codes (the weight's shape) when `weight` is set
  const QuantParams* input = nullptr;   // static input params, or nullptr (FP or per-token input)
  bool gptq = false;
  double proxy_rtn = 0, proxy_gptq = 0;  // GPTQ's objective for RTN and for GPTQ with the same params
};
using BlockwiseSink = std::function<void(const BlockwiseLayer&)>;

// What a layer-streamed pipeline adds around each block.
struct BlockwiseHooks {
  // Transforms block l (converted to fp32 first) before it is calibrated, from its statistics taken on the FP stream
  // (SmoothQuant, RMS balance, block CAT) or none (QuaRot; its ends were transformed when it was made).
  LlmBlockTransformer* transform = nullptr;
  std::function<void(int64_t block)> block_done;  // after block l's layers went to the sink
  bool release_blocks = false;                    // then drop block l's tensors (the model is not used afterwards)
};

// True when these options need calibration windows (GPTQ, static inputs to calibrate, a transform's statistics).
bool blockwise_needs_calibration(const SimQuant& sq, const BlockwiseOptions& o, const LlmTransformOptions* t = nullptr);

// `sq` bound to `m` (m.bind(&sq)): the resolved weight / input specs and the static inputs' observers (left holding
// their statistics). calib: token windows [N, T], required when blockwise_needs_calibration. The weights may be in
// any float dtype (memory-mapped bf16 views are read per pass, never modified in place). Calls `sink` once per
// layer, in order, as soon as its block is done. Returns a report: weights, seconds (weight quantization only),
// state bytes, per-layer GPTQ proxies and their totals.
nlohmann::json quantize_llama_blockwise(LlamaModel& m, SimQuant& sq, const at::Tensor& calib, const BlockwiseOptions& o,
                                        const BlockwiseSink& sink, const BlockwiseHooks& hooks = {});

}  // namespace catq

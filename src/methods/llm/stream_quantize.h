// Layer-streamed post-training quantization (issue 15, deliverable 4): for models larger than RAM. The model's weights
// stay in their stored dtype (memory-mapped bf16 / f16 views, io/llm_loader.h keep_stored_dtype); the calibration
// hidden states flow block by block (methods/llm/blockwise.h) and each layer, as soon as its block is done — RTN by
// the config's observer (e.g. the MSE clip search, quant/range_search) or GPTQ, with static input ranges — is
// appended to the output file (CatqLlmWriter, temp + rename), its mapped pages dropped: peak memory ≈ the
// calibration states + one block in fp32 (+ GPTQ's per-layer Hessian) + the mapping's resident pages. Weight-only
// RTN needs no calibration at all. The file equals what the in-memory pipeline writes for the same job
// (tests/test_llm_stream.cpp).
//
// Transforms go block by block too (methods/llm/transforms.h LlmBlockTransformer): each block is converted to fp32,
// transformed from its own statistics on the FP stream, then calibrated and quantized. Per-token activations,
// KV-cache and embedding quantization are dynamic and stream as they are.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "llm/llama.h"
#include "llm/tokenizer.h"
#include "methods/llm/blockwise.h"
#include "quant/quantizer.h"
#include "sim/quant_config.h"
#include "sim/sim_quant.h"

namespace catq {

// RTN of one weight in any float dtype: params by the spec's observer and integer codes in the narrowest dtype.
// A weight over 8 Mi values whose rows own their params (per output row, or groups along the input dimension, with
// every value of a row seen by the observer) goes a slice of rows at a time — exactly the whole-tensor result — so the
// resident extra is one fp32 slice plus the 1-byte codes. *peak_bytes: max of the fp32 bytes resident at once.
std::pair<QuantParams, at::Tensor> rtn_quantize_weight(const QuantSpec& spec, const at::Tensor& w, int64_t* peak_bytes);
// The smallest integer dtype holding codes in [qmin, qmax] (uint8, int8, else int32).
at::ScalarType code_dtype(const QuantParams& p);
// Rows are quantized independently when each row owns its params (one scale per output row, or groups along the
// input dimension) and the observer sees every value of a row (groups never exceed the observers' 4096-column sample
// floor; per-channel rows only when they are that short): then a big weight can go in slices of rows, and the result
// is exactly the whole-tensor one.
bool rows_independent(const QuantSpec& spec, const at::Tensor& w);

// Quantizes `m` block by block into the .catq file `out`, transformed on the way (`transform`, method "none" for
// none). `sq`: bound to m (its specs and observers); calib: token windows when blockwise_needs_calibration(sq, o,
// &transform). `m` is consumed: transformed, and each block's tensors dropped once written. Stores and returns
// `metadata` with the report merged in: quantization.{streamed, transform, gptq (per-layer proxies), seconds,
// weight_quantization (weights, seconds, weights_per_second, peak_layer_bytes, state_bytes, threads)} and
// weight_bytes.
nlohmann::json quantize_llama_streamed(LlamaModel& m, SimQuant& sq, const at::Tensor& calib, const BlockwiseOptions& o,
                                       const LlmTransformOptions& transform, const Tokenizer* tok, const std::string& out,
                                       nlohmann::json metadata);

}  // namespace catq

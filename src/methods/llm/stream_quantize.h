// Layer-streamed weight-only round-to-nearest quantization (issue 15, deliverable 4, first slice): for models larger
// than RAM. The model's weights stay in their stored dtype (memory-mapped bf16 / f16 views, io/llm_loader.h
// keep_stored_dtype); each linear in turn is converted to fp32, its params computed by the config's observer (e.g.
// the MSE clip search, quant/range_search), quantized to codes and appended to the output file (CatqLlmWriter), then
// dropped: peak memory ≈ the mapping's resident pages + one fp32 layer + the writer's buffers. The file equals what
// the in-memory pipeline writes for the same config (tests/test_llm_stream.cpp).
//
// Applies when the config quantizes weights only (no activation, KV-cache or embedding quantization), with no
// transform and RTN weights; GPTQ, transforms and static activation ranges need calibration hidden states flowing
// block by block (not yet streamed: they use the in-memory pipeline).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "llm/llama.h"
#include "llm/tokenizer.h"
#include "quant/quantizer.h"
#include "sim/quant_config.h"

namespace catq {

// True when `qc` with these options can be streamed (see above); `why` says why not otherwise.
bool can_stream_rtn(const LlamaModel& m, const QuantConfig& qc, const std::string& transform,
                    const std::string& weights, std::string* why = nullptr);

// RTN of one weight in any float dtype: params by the spec's observer and integer codes in the narrowest dtype.
// A weight over 8 Mi values whose rows own their params (per output row, or groups along the input dimension, with
// every value of a row seen by the observer) goes a slice of rows at a time — exactly the whole-tensor result — so the
// resident extra is one fp32 slice plus the 1-byte codes. *peak_bytes: max of the fp32 bytes resident at once.
std::pair<QuantParams, at::Tensor> rtn_quantize_weight(const QuantSpec& spec, const at::Tensor& w, int64_t* peak_bytes);

// Quantizes `m` layer by layer into the .catq file `out` (atomic: temp + rename). `metadata` is stored with the
// "quantization" report this returns merged in: weights, seconds, weights_per_second, peak layer bytes.
nlohmann::json quantize_llama_streamed_rtn(const LlamaModel& m, const QuantConfig& qc, const Tokenizer* tok,
                                           const std::string& out, nlohmann::json metadata);

}  // namespace catq

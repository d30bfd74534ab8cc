// One entry point for every Llama checkpoint format: picks the reader from the file's magic bytes
// (io/model_format.h) and finds the tokenizer.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "io/llm_load_options.h"
#include "llm/tokenizer.h"
#include "llm/llama.h"
#include "sim/sim_quant.h"

namespace catq {

struct LoadedLlama {
  LlamaModel model;
  std::optional<Tokenizer> tokenizer;
  std::string path;
  std::string format;          // "llama2c", "gguf", "safetensors"
  std::string tokenizer_path;  // where the tokenizer came from ("(embedded in GGUF)" for GGUF)
  std::string tokenizer_note;  // why there is no tokenizer, when there is none
  // A quantized .catq model: the quantization it carries (weights' codes, activation params); run the model
  // through it. Null for FP checkpoints.
  std::shared_ptr<SimQuant> quant;
  nlohmann::json metadata;  // a quantized .catq file's metadata (source model, calibration, ...); null otherwise
  // Loaded with keep_stored_dtype and at least one weight is a read-only view of a memory-mapped checkpoint
  // (is_mapped_tensor, core/mapped_file.h; the mapping lives as long as the tensors): weights may be bf16 / f16 and
  // must never be modified in place — clone (or .to(at::kFloat) a non-fp32 one) first.
  bool weights_mapped = false;
};

// True for the formats this loader reads (llama2.c, GGUF, safetensors/HF folder, a quantized-LLM .catq file).
// Throws Error(Io) if missing.
bool is_llm_model_file(const std::string& path);

// tokenizer_path: a llama2.c tokenizer file or a Hugging Face tokenizer.json (a *.json file, or a folder holding
// tokenizer.json; tokenizer_config.json next to it is read too); empty = the GGUF's own tokenizer, or the first of
// "tok{vocab}.bin", "tokenizer.bin", "tokenizer.json" next to the model (a Hugging Face folder: tokenizer.json
// first) if present (otherwise no tokenizer).
// An explicit tokenizer whose size differs from the model vocabulary is Error(Data).
// opt.keep_stored_dtype (io/llm_load_options.h) applies to GGUF and safetensors; llama2.c and .catq are fp32.
LoadedLlama load_llama(const std::string& model_path, const std::string& tokenizer_path = "",
                       const LlmLoadOptions& opt = {});

// The tokenizer or a clear Error(Usage) saying how to provide one.
const Tokenizer& require_tokenizer(const LoadedLlama& m);

}  // namespace catq

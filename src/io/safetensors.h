// safetensors files and Hugging Face Llama folders (config.json + model.safetensors, or shards listed in
// model.safetensors.index.json).
//
// safetensors layout: uint64 N (little-endian), N bytes of UTF-8 JSON
//   {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {...}},
// then the byte buffer; offsets are relative to the buffer, end exclusive; row-major, little-endian.
//
// Hugging Face stores wq/wk ("q_proj", "k_proj") with rows permuted for the rotate-half RoPE; the reader
// un-permutes them into the interleaved order LlamaModel uses and the writer permutes them back, so a
// round trip is exact and HF checkpoints give the same logits as transformers' LlamaForCausalLM.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "llm/llama.h"

namespace catq {

struct SafetensorsEntry {
  std::string dtype;  // "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // relative to the data buffer
};

struct SafetensorsFile {
  std::string path;
  std::vector<uint8_t> bytes;  // the whole file
  uint64_t data_offset = 0;    // 8 + N
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;
  // fp32 copy of a tensor (F32/F16/BF16/F64); Error(Unsupported) for other dtypes, Error(Format) if absent.
  at::Tensor tensor_f32(const std::string& name) const;
};

// Validates the header: size cap (100 MB), JSON, dtypes, shapes vs byte ranges, ranges inside the file.
SafetensorsFile read_safetensors(const std::string& path);

// `path` is a model folder (config.json + weights) or a .safetensors file next to its config.json.
// model_type llama / mistral / qwen2 / qwen3 (llm/llama_tensors.h), silu, RoPE scaling none / linear / llama3;
// anything else is Error(Unsupported) naming the field. The tokenizer (tokenizer.json) is found by io/llm_loader.
LlamaModel read_hf_llama(const std::string& path);

enum class SafetensorsDtype { F32, F16, BF16 };
// Writes one safetensors file (tensors in the given order, names as given).
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       SafetensorsDtype dtype, const std::map<std::string, std::string>& metadata = {});
// Writes a Hugging Face folder: config.json and model.safetensors (shards == 1) or
// model-0000k-of-0000n.safetensors + model.safetensors.index.json. Creates the folder if needed.
void write_hf_llama(const LlamaModel& model, const std::string& folder, SafetensorsDtype dtype = SafetensorsDtype::F32,
                    int shards = 1);

}  // namespace catq

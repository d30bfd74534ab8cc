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
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/mapped_file.h"
#include "io/llm_load_options.h"
#include "llm/llama.h"

namespace catq {

struct SafetensorsEntry {
  std::string dtype;  // "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // relative to the data buffer
};

struct SafetensorsFile {
  std::string path;
  std::shared_ptr<const MappedFile> file;  // the whole file, memory-mapped read-only (core/mapped_file.h)
  uint64_t data_offset = 0;                // 8 + N
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;

  // The entry of a tensor; Error(Format) if absent.
  const SafetensorsEntry& entry(const std::string& name) const;
  // A tensor in its stored dtype (F32/F16/BF16/F64), shape as stored: a zero-copy READ-ONLY view of the mapping
  // (is_mapped_tensor() true; it keeps the mapping alive; never write to it) when the data is aligned to the element
  // size, else an aligned private copy (safetensors only guarantees 8-byte alignment of the buffer, and a file may
  // place a tensor at any offset). Error(Unsupported) for other dtypes, Error(Format) if absent.
  at::Tensor tensor(const std::string& name) const;
  // fp32 copy of a tensor (F32/F16/BF16/F64), independent of the mapping; the tensor's pages are then released
  // from the process (MappedFile::release). Error(Unsupported) for other dtypes, Error(Format) if absent.
  at::Tensor tensor_f32(const std::string& name) const;
  // Releases the pages of a tensor's bytes from this process (views stay valid: they re-read from the file).
  void release(const std::string& name) const;
};

// Maps the file and validates the header: size cap (100 MB), JSON, dtypes, shapes vs byte ranges, ranges inside the
// file, no overlaps. Tensor bytes are not read until a tensor is requested.
SafetensorsFile read_safetensors(const std::string& path);

// `path` is a model folder (config.json + weights) or a .safetensors file next to its config.json.
// model_type llama / mistral / qwen2 / qwen3 (llm/llama_tensors.h), silu, RoPE scaling none / linear / llama3;
// anything else is Error(Unsupported) naming the field. The tokenizer (tokenizer.json) is found by io/llm_loader.
// opt.keep_stored_dtype: weights are read-only views of the mapped shards in their stored dtype, q/k (rows permuted
// from HF order) private copies in that dtype (io/llm_load_options.h).
LlamaModel read_hf_llama(const std::string& path, const LlmLoadOptions& opt = {});

enum class SafetensorsDtype { F32, F16, BF16 };
// Writes one safetensors file (tensors in the given order, names as given). Streams (write_safetensors_streamed):
// only one converted tensor is held at a time.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       SafetensorsDtype dtype, const std::map<std::string, std::string>& metadata = {});

// Streaming writer: the header is computed from the names and shapes first, then produce(i) is called for
// i = 0, 1, ... in order; its result (any floating dtype and device; exactly specs[i].shape, else Error(Internal))
// is converted to `dtype`, written and dropped, so no more than one tensor is ever held. Atomic: the file is written
// under a temporary name next to `path` and renamed at the end; on any error (also one thrown by produce) the
// temporary file is removed and the error propagates. Returns the file size in bytes. Output is byte-identical to
// write_safetensors' for the same tensors.
struct SafetensorsTensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
uint64_t write_safetensors_streamed(const std::string& path, const std::vector<SafetensorsTensorSpec>& specs,
                                    SafetensorsDtype dtype, const std::function<at::Tensor(size_t)>& produce,
                                    const std::map<std::string, std::string>& metadata = {});

// Writes a Hugging Face folder: config.json and model.safetensors (shards == 1) or
// model-0000k-of-0000n.safetensors + model.safetensors.index.json. Creates the folder if needed.
// config.json's bos_token_id / eos_token_id: the tokenizer's (negative = none, written as null); the defaults are
// Llama-2's, for models without a tokenizer of their own.
struct HfTokenIds {
  int32_t bos = 1, eos = 2;
};
void write_hf_llama(const LlamaModel& model, const std::string& folder, SafetensorsDtype dtype = SafetensorsDtype::F32,
                    int shards = 1, HfTokenIds ids = {});
// The tensors of a Hugging Face checkpoint of config c, in the order write_hf_llama writes them (HF names, shapes).
std::vector<SafetensorsTensorSpec> hf_llama_tensor_specs(const LlamaConfig& c);
// write_hf_llama without a model in memory: produce(i) returns tensor i of hf_llama_tensor_specs(c) as Hugging Face
// stores it (q/k rows in rotate-half order); each is written and dropped before the next is produced. Same files
// (config.json, shards split by tensor count, index) as write_hf_llama.
void write_hf_llama_streamed(const LlamaConfig& c, const std::string& folder, SafetensorsDtype dtype, int shards,
                             const std::function<at::Tensor(size_t)>& produce, HfTokenIds ids = {});

}  // namespace catq

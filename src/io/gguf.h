// GGUF (ggml's model container), versions 2 and 3, little-endian.
//
//   uint32 magic "GGUF", uint32 version, uint64 tensor_count, uint64 metadata_kv_count
//   metadata_kv[]: gguf_string key (uint64 len + bytes), uint32 value_type, value
//                  (array = uint32 elem_type + uint64 count + elements; arrays may nest)
//   tensor_info[]: gguf_string name, uint32 n_dims, uint64 ne[n_dims] (ne[0] innermost = REVERSED torch
//                  shape), uint32 ggml_type, uint64 offset (relative to the data section, aligned)
//   padding to `general.alignment` (default 32), then the data section.
//
// The generic parser reads any GGUF (metadata of every value type, tensor infos of every ggml type);
// tensor data is read from a read-only memory mapping of the file, only when a tensor is requested: as is (F32, F16,
// BF16, zero-copy) or dequantized to fp32 (every type with a decoder in quant/ggml_blocks); others are Error(Unsupported).
// read_gguf_llama() builds a LlamaModel (architecture "llama"; tensors are in llama.cpp's interleaved
// RoPE row order, which is this project's, so no permutation) plus the "llama" (SentencePiece) tokenizer.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "core/mapped_file.h"
#include "quant/ggml_blocks.h"
#include "quant/quantized_weight.h"
#include "io/llm_load_options.h"
#include "llm/tokenizer.h"
#include "llm/llama.h"

namespace catq {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7, String = 8, Array = 9, U64 = 10,
  I64 = 11, F64 = 12
};
const char* gguf_type_name(GgufType t);

struct GgufValue {
  GgufType type = GgufType::U8;
  uint64_t u = 0;              // unsigned integers and bool
  int64_t i = 0;               // signed integers
  double f = 0;                // F32 / F64
  std::string s;               // String
  GgufType elem_type = GgufType::U8;  // Array element type
  std::vector<GgufValue> arr;  // Array elements

  bool is_integer() const;
  bool is_number() const { return is_integer() || type == GgufType::F32 || type == GgufType::F64; }
  int64_t as_int() const;      // any integer type (caller checks is_integer())
  double as_double() const;    // any number
  std::string describe() const;  // short human-readable form for `catq info`
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml order: ne[0] contiguous
  uint32_t type = 0;
  uint64_t offset = 0;      // relative to the data section
  uint64_t nbytes = 0;
  std::vector<int64_t> shape() const { return {ne.rbegin(), ne.rend()}; }  // torch order
};

// True for the types stored as plain elements (F32, F16, BF16), false for block-quantized ones.
bool gguf_type_is_plain(uint32_t type);

struct GgufFile {
  std::string path;
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // absolute offset of the data section
  std::vector<std::pair<std::string, GgufValue>> kv;  // in file order
  std::vector<GgufTensorInfo> tensors;                // in file order
  std::shared_ptr<const MappedFile> file;             // the whole file, memory-mapped read-only (core/mapped_file.h)

  const GgufValue* find(const std::string& key) const;
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // The first byte of a tensor's data in the mapping.
  const uint8_t* tensor_data(const GgufTensorInfo& t) const { return file->data() + data_offset + t.offset; }
  // Dequantized fp32 tensor in torch order, independent of the mapping (the tensor's pages are then released from the
  // process); Error(Unsupported) for types catq cannot decode.
  at::Tensor tensor_f32(const GgufTensorInfo& t) const;
  // F32 / F16 / BF16: the tensor in its stored dtype, torch order, as a zero-copy READ-ONLY view of the mapping
  // (is_mapped_tensor() true; it keeps the mapping alive; never write to it), or an aligned private copy when the
  // data is not aligned to the element size (general.alignment 1). Block-quantized types: dequantized to fp32 now
  // (tensor_f32). Error(Unsupported) for types catq cannot decode.
  at::Tensor tensor(const GgufTensorInfo& t) const;

 private:
  friend GgufFile read_gguf(const std::string& path);
  std::map<std::string, size_t> kv_index_, tensor_index_;
};

// Parses and validates the whole file structure (every size, count and offset). Error(Io/Format/Unsupported).
GgufFile read_gguf(const std::string& path);

// What a file holds: tensors per ggml type name, and the bits per weight of all tensor data.
std::map<std::string, int64_t> gguf_tensors_by_type(const GgufFile& g);
double gguf_bits_per_weight(const GgufFile& g);

// The LlamaConfig a GGUF's metadata describes (general.architecture among llama_arch_table(), sizes, RoPE base and
// scaling incl. rope_freqs.weight, tied head), validated; Error(Format/Unsupported) naming g.path and the key.
LlamaConfig gguf_llama_config(const GgufFile& g);

struct GgufLlama {
  LlamaModel model;
  std::optional<Tokenizer> tokenizer;  // absent when the file has no (supported) tokenizer
  std::string tokenizer_note;          // why it is absent
};
// opt.keep_stored_dtype: F32/F16/BF16 weights are read-only views of the mapped file (Qwen2/Qwen3 q/k, whose rows are
// permuted, private copies in the stored dtype); block-quantized weights are dequantized to fp32 at load for now
// (io/llm_load_options.h).
GgufLlama read_gguf_llama(const std::string& path, const LlmLoadOptions& opt = {});

// The tokenizer embedded in g (tokenizer.ggml.*), checked against the model's vocabulary size; nullopt with `note`
// saying why when the file has none that catq supports. Error(Format) for malformed tokenizer metadata.
// tokenizer.ggml.model "llama": SentencePiece by scores (TokenizerKind::Llama2c; "▁" -> " "); "gpt2": byte-level
// BPE (tokens in byte-level form, merges "a b", tokenizer.ggml.pre "gpt-2" / "llama-bpe" / "qwen2" / "smollm",
// add_bos_token / add_eos_token; ignore_merges for llama-bpe, as llama.cpp does).
std::optional<Tokenizer> read_gguf_tokenizer(const GgufFile& g, int64_t vocab, std::string& note);

// Writing (fixtures for tests, export).
enum class GgufWeightType { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K };
// The ggml type id of each weight type, its name ("q4_k") and llama.cpp's general.file_type for a file of it.
struct GgufWeightTypeInfo {
  GgufWeightType type;
  const char* name;
  uint32_t ggml;
  uint32_t file_type;
};
const GgufWeightTypeInfo& gguf_weight_type_info(GgufWeightType t);
const std::vector<GgufWeightTypeInfo>& gguf_weight_types();
// A name of gguf_weight_types() (case-insensitive); Error(Usage) listing them otherwise.
GgufWeightType parse_gguf_weight_type(const std::string& s);
GgufWeightType gguf_weight_type_of_ggml(uint32_t ggml_type);  // Error(Unsupported) for types catq does not write
const char* to_string(GgufWeightType t);
// The type a 2-D weight with rows of `row` values is written in: t itself when its block divides the row, else
// llama.cpp's fallback (K-quants with rows not a multiple of 256: Q2_K / Q3_K → IQ4_NL, Q4_K → Q5_0, Q5_K → Q5_1,
// Q6_K → Q8_0), and F16 when no 32-value block fits either.
GgufWeightType gguf_row_type(GgufWeightType t, int64_t row);
struct GgufWriteOptions {
  GgufWeightType weights = GgufWeightType::F32;  // 2-D weights (gguf_row_type per tensor); norms are always F32
  uint32_t alignment = 32;                       // written as general.alignment when != 32
  std::string name = "catq";
  uint32_t file_type = 0;  // general.file_type; 0: that of `weights` (a per-tensor mix names its own, e.g. Q4_K_M = 15)
  // Weights encoded by the caller (optimized quantization, a quantized .catq's codes converted exactly), by GGUF
  // tensor name ("blk.0.attn_q.weight"): ggml-format QuantizedWeights with rows in catq's order, written as they are,
  // in their own type, instead of the round-to-nearest of `weights`.
  const std::map<std::string, QuantizedWeight>* encoded = nullptr;
  bool fp_unencoded = false;  // 2-D weights not in `encoded` are written F32 (`weights` then only names the file type)
};
void write_gguf_llama(const LlamaModel& model, const Tokenizer* tok, const std::string& path,
                      const GgufWriteOptions& opt = {});



// Low-level builder of GGUF bytes (used by the writer, and by tests to build unusual files).
class GgufBuilder {
 public:
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // ne in ggml order; data must be exactly the type's byte size for ne.
  void add_tensor(const std::string& name, const std::vector<int64_t>& ne, uint32_t type, std::string data);
  // A tensor whose data comes later, through a GgufStreamWriter (its size follows from ne and the type's blocks).
  void declare_tensor(const std::string& name, const std::vector<int64_t>& ne, uint32_t type);
  std::string build(uint32_t version = 3, uint32_t alignment = 32) const;
  // The same bytes written to `path` piece by piece (temp file + rename): no second copy of the data in memory.
  void write(const std::string& path, uint32_t version = 3, uint32_t alignment = 32) const;

 private:
  friend class GgufStreamWriter;
  std::string header(uint32_t version, uint32_t alignment) const;  // up to the aligned start of the data
  static size_t padding(size_t bytes, uint32_t alignment, bool last);  // zeros after a tensor's data
  void key(const std::string& k, GgufType t);
  std::string kv_;
  uint64_t n_kv_ = 0;
  struct T { std::string name; std::vector<int64_t> ne; uint32_t type; std::string data; uint64_t nbytes; bool declared; };
  std::vector<T> tensors_;
};

// Writes a GgufBuilder's file while the data of its declared tensors is still being produced: the header (every
// offset follows from the declared sizes) and the tensors added with data go out at once, each declared tensor's
// bytes go to their offset when write() supplies them, in any order, so memory holds one tensor rather than the
// model. finish() checks that every declared tensor arrived and renames the temp file over `path`; destroyed
// unfinished (an exception on the way), it removes the temp file and `path` is untouched. Misuse (an unknown or
// repeated name, a size that differs from the declaration, a missing tensor at finish()) is Error(Internal); disk
// failures are Error(Io).
class GgufStreamWriter {
 public:
  GgufStreamWriter(const std::string& path, const GgufBuilder& b, uint32_t version = 3, uint32_t alignment = 32);
  ~GgufStreamWriter();
  GgufStreamWriter(const GgufStreamWriter&) = delete;
  GgufStreamWriter& operator=(const GgufStreamWriter&) = delete;
  void write(const std::string& name, const void* data, size_t n);
  void write(const std::string& name, const std::string& data) { write(name, data.data(), data.size()); }
  bool written(const std::string& name) const;
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What write_gguf_llama writes, planned before any tensor data: the metadata and the tensor table (GgufBuilder with
// every tensor declared), and where each tensor's bytes come from. A caller that produces encoded weights one at a
// time (catq quantize --gguf) declares their types up front (encoded_types: GGUF name → ggml type) and streams each
// into a GgufStreamWriter as soon as it exists.
struct GgufLlamaTensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  uint32_t type = 0;        // ggml type written
  at::Tensor source;        // the model's tensor (rows in catq's order); unused when encoded
  int64_t rope_heads = 0;   // > 0: q/k rows go back to Hugging Face's order (this many heads) as they are written
  bool encoded = false;     // its bytes come from a ggml-format QuantizedWeight the caller supplies
};
struct GgufLlamaPlan {
  GgufBuilder builder;
  std::vector<GgufLlamaTensor> tensors;  // file order
  uint32_t alignment = 32;
  const GgufLlamaTensor& tensor(const std::string& name) const;  // Error(Internal) for a name not in the file
};
GgufLlamaPlan plan_gguf_llama(const LlamaModel& model, const Tokenizer* tok, const std::string& path,
                              const GgufWriteOptions& opt, const std::map<std::string, uint32_t>& encoded_types = {});
// Tensor t's bytes as the file stores them: `encoded` (required when t.encoded; its type and shape must match) or
// t.source converted to t.type; q/k rows permuted back to HF order where t.rope_heads > 0.
std::string gguf_llama_tensor_bytes(const GgufLlamaTensor& t, const QuantizedWeight* encoded = nullptr);

// Adds tok as tokenizer.ggml.* metadata (the inverse of read_gguf_tokenizer): llama2c and SentencePiece-style BPE
// tokenizers as "llama" (an SpmBpe's merge rank r as score -r), byte-level BPE as "gpt2". Error(Unsupported) for a
// byte-level tokenizer without a pre-tokenizer (llama.cpp has none to match it).
void add_gguf_tokenizer(GgufBuilder& b, const Tokenizer& tok);

}  // namespace catq

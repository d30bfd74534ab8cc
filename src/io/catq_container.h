// The .catq container (layout: catq_file.h, docs/catq_format.md), shared by the CNN (catq_cnn.cpp) and LLM
// (catq_llm.cpp) files: the tensor blob (raw tensors and bit-packed integer codes, 64-aligned), quantizer params
// as header JSON + blob tensors, writing the whole file, and THE read preamble (magic, version, header length,
// JSON header, blob bounds) that every reader goes through.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "quant/packed_codes.h"
#include "quant/quantized_weight.h"
#include "quant/quantizer.h"

namespace catq {

inline constexpr uint32_t kCatqVersion = 1;
inline constexpr const char* kCatqCnnFormat = "catq-quantized-model";  // header "format" of a quantized CNN
inline constexpr const char* kCatqLlmFormat = "catq-quantized-llm";    // ... of a quantized Llama model

// Integer codes are stored in the PACKED layout (quant/packed_codes.h).

// Collects tensors into the blob while the header is built; each call returns the tensor's header entry
// ({"dtype", "shape", "offset", "nbytes"}, offset relative to the blob start, 64-aligned). The blob lives in memory
// (data()) or, for bounded-memory writing, is appended to a spill file as tensors arrive (write_catq_container copies
// it after the header).
class CatqBlobWriter {
 public:
  CatqBlobWriter() = default;
  // Streams the blob into `spill_path` (created or truncated; Error(Io) naming it on failure). The file is closed by
  // close() / the destructor, never removed here.
  explicit CatqBlobWriter(const std::string& spill_path);
  ~CatqBlobWriter();
  CatqBlobWriter(const CatqBlobWriter&) = delete;
  CatqBlobWriter& operator=(const CatqBlobWriter&) = delete;

  // Raw tensor (floating types stored as F32).
  nlohmann::json add(const at::Tensor& t);
  // Integer codes q ∈ [lo, lo + 2^bits − 1] (any integer dtype), stored PACKED (above). Error(Internal) for a code
  // outside the range.
  nlohmann::json add_packed(const at::Tensor& q, int bits, int64_t lo);
  // A catq-format QuantizedWeight as a header "weight" object: its params (params_to_json) plus "codes", its PACKED
  // bytes stored as they are.
  nlohmann::json add_weight(const QuantizedWeight& w);
  // The in-memory blob (empty for a spilling writer).
  const std::vector<uint8_t>& data() const { return blob_; }
  size_t size() const { return size_; }  // bytes so far
  bool spills() const { return !spill_path_.empty(); }
  const std::string& spill_path() const { return spill_path_; }
  // Flushes and closes the spill file (Error(Io) when a write failed); a no-op in memory or when already closed.
  void close();

 private:
  size_t begin_entry();                   // pads to the alignment; returns the entry's offset
  void put(const void* p, size_t n);      // appends
  uint8_t* grow(size_t n);                // in memory: appends n bytes and returns them
  std::vector<uint8_t> blob_;
  size_t size_ = 0;
  std::string spill_path_;
  std::FILE* f_ = nullptr;
  bool failed_ = false;
};

// Reads tensors back from the blob, validating every entry against it (bounds, sizes, dtype; F32 finite).
class CatqBlobReader {
 public:
  CatqBlobReader(const uint8_t* blob, size_t size, std::string file) : blob_(blob), size_(size), file_(std::move(file)) {}
  // Error(Format) naming the file and `what` for a malformed entry. PACKED entries come back as int32 codes.
  at::Tensor get(const nlohmann::json& e, const std::string& what) const;
  // A "weight" object (CatqBlobWriter::add_weight) as a QuantizedWeight; its codes' bytes are taken as stored when
  // their width and offset are the canonical ones, else unpacked and packed again. Error(Format) naming the file and
  // `what` for malformed params or codes.
  QuantizedWeight get_weight(const nlohmann::json& weight, const std::string& what) const;

 private:
  const uint8_t* blob_;
  size_t size_;
  std::string file_;
};

// Quantizer params as a header object (scalars inline, tensors in the blob) and back (validated; `where` names the
// params in errors).
nlohmann::json params_to_json(const QuantParams& p, CatqBlobWriter& blob);
QuantParams params_from_json(const nlohmann::json& j, const CatqBlobReader& blob, const std::string& where,
                             const std::string& file);

// Writes magic, version, header length, `header` as JSON, padding and the blob, atomically (temp file + rename).
// A spilling blob is closed and copied after the header in bounded-memory chunks (the spill file is left in place).
void write_catq_container(const std::string& path, const nlohmann::json& header, CatqBlobWriter& blob);

// A .catq file read and validated up to its header.
struct CatqContainer {
  std::string path;
  std::vector<uint8_t> bytes;  // the whole file
  nlohmann::json header;       // the JSON header (an object)
  size_t blob_start = 0;       // start of the tensor area (64-aligned, inside the file)
  // The tensor area [blob_start, end of file); the reader points into `bytes` (valid while this container lives).
  CatqBlobReader blob() const { return {bytes.data() + blob_start, bytes.size() - blob_start, path}; }
};
// The one read preamble of every .catq reader. Error(Io) when unreadable; Error(Format) for a wrong magic, a
// truncated file or a header that is not a JSON object; Error(Unsupported) for another version.
CatqContainer read_catq_container(const std::string& path);

}  // namespace catq

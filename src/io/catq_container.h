// The .catq container (layout: catq_file.h, docs/catq_format.md), shared by the CNN (catq_cnn.cpp) and LLM
// (catq_llm.cpp) files: the tensor blob (raw tensors and bit-packed integer codes, 64-aligned), quantizer params
// as header JSON + blob tensors, writing the whole file, and THE read preamble (magic, version, header length,
// JSON header, blob bounds) that every reader goes through.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "quant/quantizer.h"

namespace catq {

inline constexpr uint32_t kCatqVersion = 1;
inline constexpr const char* kCatqCnnFormat = "catq-quantized-model";  // header "format" of a quantized CNN
inline constexpr const char* kCatqLlmFormat = "catq-quantized-llm";    // ... of a quantized Llama model

// Collects tensors into the blob while the header is built; each call returns the tensor's header entry
// ({"dtype", "shape", "offset", "nbytes"}, offset relative to the blob start, 64-aligned).
class CatqBlobWriter {
 public:
  // Raw tensor (floating types stored as F32).
  nlohmann::json add(const at::Tensor& t);
  // Integer codes q ∈ [lo, lo + 2^bits − 1], stored as (q − lo) at `bits` bits each, LSB first, row-major.
  nlohmann::json add_packed(const at::Tensor& q, int bits, int64_t lo);
  const std::vector<uint8_t>& data() const { return blob_; }

 private:
  size_t place(const uint8_t* p, size_t n);
  std::vector<uint8_t> blob_;
};

// Reads tensors back from the blob, validating every entry against it (bounds, sizes, dtype; F32 finite).
class CatqBlobReader {
 public:
  CatqBlobReader(const uint8_t* blob, size_t size, std::string file) : blob_(blob), size_(size), file_(std::move(file)) {}
  // Error(Format) naming the file and `what` for a malformed entry. PACKED entries come back as int32 codes.
  at::Tensor get(const nlohmann::json& e, const std::string& what) const;

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

// Writes magic, version, header length, `header` as JSON, padding and the blob, atomically.
void write_catq_container(const std::string& path, const nlohmann::json& header, const CatqBlobWriter& blob);

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

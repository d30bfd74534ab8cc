// The GGUF container's reader (format: gguf.h): metadata values, tensor infos, every size / count / offset checked,
// fp32 decoding of tensor data. Writer: gguf_builder.cpp; block formats: gguf_blocks.h; Llama: gguf_llama.cpp.
#include "io/gguf.h"

#include <cstring>

#include "core/error.h"
#include "core/file_util.h"
#include "quant/ggml_blocks.h"

namespace catq {

namespace {

size_t fixed_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

std::string read_gguf_string(ByteReader& r, const char* what) {
  uint64_t len = r.read<uint64_t>(what);
  r.need(len, what);  // a huge declared length fails here, before any allocation
  return r.read_string(static_cast<size_t>(len), what);
}

GgufValue read_value(ByteReader& r, GgufType type, const std::string& key, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::U8: v.u = r.read<uint8_t>("u8 value"); break;
    case GgufType::I8: v.i = r.read<int8_t>("i8 value"); break;
    case GgufType::U16: v.u = r.read<uint16_t>("u16 value"); break;
    case GgufType::I16: v.i = r.read<int16_t>("i16 value"); break;
    case GgufType::U32: v.u = r.read<uint32_t>("u32 value"); break;
    case GgufType::I32: v.i = r.read<int32_t>("i32 value"); break;
    case GgufType::U64: v.u = r.read<uint64_t>("u64 value"); break;
    case GgufType::I64: v.i = r.read<int64_t>("i64 value"); break;
    case GgufType::F32: v.f = r.read<float>("f32 value"); break;
    case GgufType::F64: v.f = r.read<double>("f64 value"); break;
    case GgufType::Bool: {
      uint8_t b = r.read<uint8_t>("bool value");
      if (b > 1) fail(ErrorKind::Format, "{}: metadata {}: bool value {} is neither 0 nor 1", r.name(), key, b);
      v.u = b;
      break;
    }
    case GgufType::String: v.s = read_gguf_string(r, "string value"); break;
    case GgufType::Array: {
      if (depth >= 8) fail(ErrorKind::Format, "{}: metadata {}: arrays nested more than 8 deep", r.name(), key);
      uint32_t et = r.read<uint32_t>("array element type");
      if (et > static_cast<uint32_t>(GgufType::F64))
        fail(ErrorKind::Format, "{}: metadata {}: unknown array element type {}", r.name(), key, et);
      v.elem_type = static_cast<GgufType>(et);
      uint64_t count = r.read<uint64_t>("array length");
      // Every element takes at least this many bytes, so the count is bounded by the bytes left.
      size_t min_size = fixed_size(v.elem_type);
      if (v.elem_type == GgufType::String) min_size = 8;
      if (v.elem_type == GgufType::Array) min_size = 12;
      if (count > r.remaining() / min_size)
        fail(ErrorKind::Format, "{}: metadata {}: array of {} {} elements cannot fit in the {} bytes left", r.name(),
             key, count, gguf_type_name(v.elem_type), r.remaining());
      v.arr.reserve(static_cast<size_t>(count));
      for (uint64_t k = 0; k < count; ++k) v.arr.push_back(read_value(r, v.elem_type, key, depth + 1));
      break;
    }
    default:
      fail(ErrorKind::Format, "{}: metadata {}: unknown value type {} at offset {}", r.name(), key,
           static_cast<uint32_t>(type), r.pos());
  }
  return v;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8: return "u8";
    case GgufType::I8: return "i8";
    case GgufType::U16: return "u16";
    case GgufType::I16: return "i16";
    case GgufType::U32: return "u32";
    case GgufType::I32: return "i32";
    case GgufType::F32: return "f32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::U64: return "u64";
    case GgufType::I64: return "i64";
    case GgufType::F64: return "f64";
  }
  return "?";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
    case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
    default: return false;
  }
}

int64_t GgufValue::as_int() const {
  switch (type) {
    case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: return i;
    default: return u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
  }
}

double GgufValue::as_double() const {
  if (type == GgufType::F32 || type == GgufType::F64) return f;
  return static_cast<double>(as_int());
}

std::string GgufValue::describe() const {
  switch (type) {
    case GgufType::String: return s.size() > 60 ? fmt::format("\"{}...\"", s.substr(0, 57)) : fmt::format("\"{}\"", s);
    case GgufType::Bool: return u ? "true" : "false";
    case GgufType::F32: case GgufType::F64: return fmt::format("{}", f);
    case GgufType::Array: return fmt::format("[{} x {}]", arr.size(), gguf_type_name(elem_type));
    default: return std::to_string(as_int());
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv[it->second].second;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors[it->second];
}

GgufFile read_gguf(const std::string& path) {
  GgufFile g;
  g.path = path;
  g.file = MappedFile::open(path);
  ByteReader r(g.file->data(), g.file->size(), path);
  const uint8_t* magic = r.take(4, "GGUF magic");
  if (std::memcmp(magic, "GGUF", 4) != 0)
    fail(ErrorKind::Format, "{}: not a GGUF file (magic bytes {:02x} {:02x} {:02x} {:02x}, expected \"GGUF\")", path,
         magic[0], magic[1], magic[2], magic[3]);
  g.version = r.read<uint32_t>("GGUF version");
  if (g.version != 2 && g.version != 3) {
    bool big_endian = g.version == 0x03000000u || g.version == 0x02000000u;
    fail(ErrorKind::Unsupported, "{}: GGUF version {}{} is not supported (catq reads versions 2 and 3)", path,
         g.version, big_endian ? " (a big-endian file?)" : "");
  }
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Minimum encoded sizes: a kv is >= 13 bytes, a tensor info >= 24 bytes.
  if (n_kv > r.remaining() / 13)
    fail(ErrorKind::Format, "{}: header declares {} metadata entries, more than the file ({} bytes) can hold", path,
         n_kv, g.file->size());
  if (n_tensors > r.remaining() / 24)
    fail(ErrorKind::Format, "{}: header declares {} tensors, more than the file ({} bytes) can hold", path, n_tensors,
         g.file->size());

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = read_gguf_string(r, "metadata key");
    uint32_t t = r.read<uint32_t>("metadata value type");
    if (t > static_cast<uint32_t>(GgufType::F64))
      fail(ErrorKind::Format, "{}: metadata {}: unknown value type {}", path, key, t);
    GgufValue v = read_value(r, static_cast<GgufType>(t), key, 0);
    if (!g.kv_index_.emplace(key, g.kv.size()).second)
      fail(ErrorKind::Format, "{}: duplicate metadata key {}", path, key);
    g.kv.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = g.find("general.alignment")) {
    if (!a->is_integer() || a->as_int() <= 0 || a->as_int() > (1 << 20) || (a->as_int() & (a->as_int() - 1)) != 0)
      fail(ErrorKind::Format, "{}: general.alignment {} must be a positive power of two (at most 2^20)", path,
           a->describe());
    g.alignment = static_cast<uint64_t>(a->as_int());
  }

  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.name = read_gguf_string(r, "tensor name");
    uint32_t nd = r.read<uint32_t>("tensor n_dims");
    if (nd < 1 || nd > 4)
      fail(ErrorKind::Format, "{}: tensor {} has {} dimensions (GGUF allows 1..4)", path, t.name, nd);
    for (uint32_t d = 0; d < nd; ++d) {
      uint64_t ne = r.read<uint64_t>("tensor dimension");
      if (ne > (1ull << 40)) fail(ErrorKind::Format, "{}: tensor {} declares dimension {} = {}", path, t.name, d, ne);
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    t.type = r.read<uint32_t>("tensor type");
    t.offset = r.read<uint64_t>("tensor data offset");
    const GgmlTypeTraits* ti = ggml_type_traits(t.type);
    if (!ti) fail(ErrorKind::Format, "{}: tensor {} has unknown ggml type id {}", path, t.name, t.type);
    uint64_t numel = checked_numel(t.ne, path, "tensor " + t.name);
    if (t.ne[0] % ti->block != 0)
      fail(ErrorKind::Format, "{}: tensor {} of type {}: row length {} is not a multiple of the block size {}", path,
           t.name, ti->name, t.ne[0], ti->block);
    t.nbytes = numel / ti->block * ti->bytes;
    if (t.offset % g.alignment != 0)
      fail(ErrorKind::Format, "{}: tensor {} data offset {} is not a multiple of the alignment {}", path, t.name,
           t.offset, g.alignment);
    if (!g.tensor_index_.emplace(t.name, g.tensors.size()).second)
      fail(ErrorKind::Format, "{}: duplicate tensor name {}", path, t.name);
    g.tensors.push_back(std::move(t));
  }
  g.data_offset = (r.pos() + g.alignment - 1) / g.alignment * g.alignment;
  const uint64_t size = g.file->size();
  const uint64_t avail = size >= g.data_offset ? size - g.data_offset : 0;
  for (const auto& t : g.tensors) {
    if (g.data_offset > size || t.offset > avail || t.nbytes > avail - t.offset)
      fail(ErrorKind::Format, "{}: tensor {} data [{}, {}) lies past the end of the file ({} bytes): truncated?", path,
           t.name, g.data_offset + t.offset, g.data_offset + t.offset + t.nbytes, size);
  }
  return g;
}

namespace {

// The torch dtype of a type stored as plain elements; nullopt for block types.
std::optional<at::ScalarType> plain_dtype(uint32_t type) {
  switch (type) {
    case GGML_F32: return at::kFloat;
    case GGML_F16: return at::kHalf;
    case GGML_BF16: return at::kBFloat16;
    default: return std::nullopt;
  }
}

}  // namespace

bool gguf_type_is_plain(uint32_t type) { return plain_dtype(type).has_value(); }

at::Tensor GgufFile::tensor(const GgufTensorInfo& t) const {
  const std::optional<at::ScalarType> st = plain_dtype(t.type);
  if (!st) return tensor_f32(t);
  const uint8_t* p = tensor_data(t);
  const std::vector<int64_t> shape = t.shape();
  if (t.nbytes > 0 && reinterpret_cast<uintptr_t>(p) % c10::elementSize(*st) == 0)
    return mapped_tensor(file, data_offset + t.offset, shape, *st);
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(*st));
  if (t.nbytes > 0) std::memcpy(out.data_ptr(), p, t.nbytes);
  return out;
}

at::Tensor GgufFile::tensor_f32(const GgufTensorInfo& t) const {
  const uint8_t* p = tensor_data(t);
  const int64_t n = static_cast<int64_t>(checked_numel(t.ne, path, t.name));
  at::Tensor out;
  if (plain_dtype(t.type)) {
    at::Tensor v = tensor(t);
    // .to() copies unless v already is fp32; a mapped fp32 view is cloned so the result never aliases the mapping.
    out = v.scalar_type() != at::kFloat ? v.to(at::kFloat) : is_mapped_tensor(v) ? v.clone() : v;
  } else {
    const GgmlTypeTraits* tt = ggml_type_traits(t.type);
    if (!tt || !tt->dequantize)
      fail(ErrorKind::Unsupported, "{}: tensor {} has ggml type {}; catq can read F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, "
           "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_NL "
           "tensors",
           path, t.name, ggml_type_name(t.type));
    out = at::empty({n}, at::kFloat);
    float* o = out.data_ptr<float>();
    for (int64_t b = 0; b < n / tt->block; ++b) tt->dequantize(p + b * tt->bytes, o + b * tt->block);
    out = out.reshape(t.shape());
  }
  file->release(data_offset + t.offset, t.nbytes);
  return out;
}

std::map<std::string, int64_t> gguf_tensors_by_type(const GgufFile& g) {
  std::map<std::string, int64_t> n;
  for (const GgufTensorInfo& t : g.tensors) ++n[ggml_type_name(t.type)];
  return n;
}

double gguf_bits_per_weight(const GgufFile& g) {
  double bytes = 0, elements = 0;
  for (const GgufTensorInfo& t : g.tensors) {
    bytes += static_cast<double>(t.nbytes);
    double n = 1;
    for (int64_t e : t.ne) n *= static_cast<double>(e);
    elements += n;
  }
  return elements > 0 ? 8 * bytes / elements : 0.0;
}

}  // namespace catq

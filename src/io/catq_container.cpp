// The .catq container (catq_container.h): blob writer / reader with the bit-packing of codes, quantizer params,
// writing the file, the read preamble, and the public probes catq_file_kind / is_catq_file.
#include "io/catq_container.h"

#include <cstdio>
#include <cstring>
#include <optional>

#include "core/error.h"
#include "core/file_util.h"
#include "io/catq_file.h"

namespace catq {

using nlohmann::json;

namespace {

constexpr char kMagic[8] = {'C', 'A', 'T', 'Q', 'M', 'D', 'L', '\0'};
constexpr size_t kAlign = 64;

size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

bool has_magic(const char* head, size_t n) { return n == 8 && std::memcmp(head, kMagic, 8) == 0; }

const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kInt: return "I32";
    case at::kLong: return "I64";
    case at::kByte: return "U8";
    case at::kChar: return "I8";
    case at::kBool: return "BOOL";
    default: fail(ErrorKind::Unsupported, "catq file: tensors of type {} cannot be stored", c10::toString(t));
  }
}

std::optional<at::ScalarType> parse_dtype(const std::string& s) {
  if (s == "F32") return at::kFloat;
  if (s == "I32") return at::kInt;
  if (s == "I64") return at::kLong;
  if (s == "U8") return at::kByte;
  if (s == "I8") return at::kChar;
  if (s == "BOOL") return at::kBool;
  return std::nullopt;
}

}  // namespace

// ---- Blob ------------------------------------------------------------------------------------------------

json CatqBlobWriter::add(const at::Tensor& t_in) {
  at::Tensor t = t_in.detach().contiguous().cpu();
  if (at::isFloatingType(t.scalar_type())) t = t.to(at::kFloat);
  json e = {{"dtype", dtype_name(t.scalar_type())}, {"shape", t.sizes().vec()}};
  const size_t nbytes = static_cast<size_t>(t.numel()) * t.element_size();
  e["offset"] = place(static_cast<const uint8_t*>(t.data_ptr()), nbytes);
  e["nbytes"] = nbytes;
  return e;
}

json CatqBlobWriter::add_packed(const at::Tensor& q_in, int bits, int64_t lo) {
  at::Tensor q = q_in.to(at::kLong).contiguous().reshape({-1});
  const int64_t n = q.numel();
  std::vector<uint8_t> bytes((static_cast<size_t>(n) * bits + 7) / 8, 0);
  const int64_t* p = q.data_ptr<int64_t>();
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t v = static_cast<uint64_t>(p[i] - lo);
    CATQ_CHECK(v <= mask, Internal, "catq file: code {} outside the {}-bit range starting at {}", p[i], bits, lo);
    const uint64_t bit = static_cast<uint64_t>(i) * bits;
    for (int b = 0; b < bits; ++b)
      if ((v >> b) & 1) bytes[(bit + b) / 8] |= static_cast<uint8_t>(1u << ((bit + b) % 8));
  }
  json e = {{"dtype", "PACKED"}, {"bits", bits}, {"min", lo}, {"shape", q_in.sizes().vec()}};
  e["offset"] = place(bytes.data(), bytes.size());
  e["nbytes"] = bytes.size();
  return e;
}

size_t CatqBlobWriter::place(const uint8_t* p, size_t n) {
  const size_t off = align_up(blob_.size());
  blob_.resize(off + n, 0);
  if (n) std::memcpy(blob_.data() + off, p, n);
  return off;
}

at::Tensor CatqBlobReader::get(const json& e, const std::string& what) const {
  try {
    const std::string dtype = e.at("dtype").get<std::string>();
    const std::vector<int64_t> shape = e.at("shape").get<std::vector<int64_t>>();
    for (int64_t d : shape)
      CATQ_CHECK(d >= 0, Format, "{}: {}: negative dimension in shape", file_, what);
    const uint64_t numel = checked_numel(shape, file_, what);
    const uint64_t off = e.at("offset").get<uint64_t>(), nbytes = e.at("nbytes").get<uint64_t>();
    CATQ_CHECK(off <= size_ && nbytes <= size_ - off, Format,
               "{}: {}: data [{}, +{}) lies outside the {}-byte tensor area (truncated file?)", file_, what, off, nbytes,
               size_);
    const uint8_t* p = blob_ + off;
    if (dtype == "PACKED") {
      const int bits = e.at("bits").get<int>();
      const int64_t lo = e.at("min").get<int64_t>();
      CATQ_CHECK(bits >= 1 && bits <= 16, Format, "{}: {}: packed width {} outside 1..16", file_, what, bits);
      CATQ_CHECK(nbytes == (numel * bits + 7) / 8, Format, "{}: {}: {} bytes hold {} values of {} bits, expected {}",
                 file_, what, nbytes, numel, bits, (numel * bits + 7) / 8);
      at::Tensor q = at::empty({static_cast<int64_t>(numel)}, at::kInt);
      int32_t* out = q.data_ptr<int32_t>();
      for (uint64_t i = 0; i < numel; ++i) {
        uint32_t v = 0;
        const uint64_t bit = i * bits;
        for (int b = 0; b < bits; ++b) v |= static_cast<uint32_t>((p[(bit + b) / 8] >> ((bit + b) % 8)) & 1u) << b;
        out[i] = static_cast<int32_t>(lo + v);
      }
      return q.reshape(shape);
    }
    auto st = parse_dtype(dtype);
    CATQ_CHECK(st.has_value(), Format, "{}: {}: unknown dtype '{}', expected F32, I32, I64, U8, I8, BOOL or PACKED",
               file_, what, dtype);
    const uint64_t esize = c10::elementSize(*st);
    CATQ_CHECK(nbytes == numel * esize, Format, "{}: {}: {} bytes for {} values of {}, expected {}", file_, what, nbytes,
               numel, dtype, numel * esize);
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(*st));
    if (nbytes) std::memcpy(t.data_ptr(), p, nbytes);
    if (*st == at::kFloat)
      CATQ_CHECK(at::isfinite(t).all().item<bool>(), Format, "{}: {}: contains NaN or Inf", file_, what);
    return t;
  } catch (const json::exception& ex) {
    fail(ErrorKind::Format, "{}: {}: malformed tensor entry: {}", file_, what, ex.what());
  }
}

// ---- Quantizer params ------------------------------------------------------------------------------------

json params_to_json(const QuantParams& p, CatqBlobWriter& blob) {
  json j = {{"scheme", to_string(p.scheme)}, {"granularity", to_string(p.granularity)}, {"axis", p.axis},
            {"group_size", p.group_size}, {"bits", p.bits}, {"qmin", p.qmin}, {"qmax", p.qmax}};
  if (p.scale.defined()) j["scale"] = blob.add(p.scale);
  if (p.zero_point.defined()) j["zero_point"] = blob.add(p.zero_point.to(at::kInt));
  if (p.codebook.defined()) j["codebook"] = blob.add(p.codebook);
  if (p.threshold.defined()) j["threshold"] = blob.add(p.threshold);
  return j;
}

QuantParams params_from_json(const json& j, const CatqBlobReader& blob, const std::string& where,
                             const std::string& file) {
  QuantParams p;
  auto scheme = parse_scheme(j.at("scheme").get<std::string>());
  auto gran = parse_granularity(j.at("granularity").get<std::string>());
  CATQ_CHECK(scheme && gran, Format, "{}: {}: unknown scheme or granularity", file, where);
  p.scheme = *scheme;
  p.granularity = *gran;
  p.axis = j.at("axis").get<int>();
  p.group_size = j.at("group_size").get<int64_t>();
  p.bits = j.at("bits").get<int>();
  p.qmin = j.at("qmin").get<int64_t>();
  p.qmax = j.at("qmax").get<int64_t>();
  CATQ_CHECK(p.bits >= 1 && p.bits <= 16 && p.qmin < p.qmax && p.qmax - p.qmin < (int64_t{1} << p.bits), Format,
             "{}: {}: inconsistent integer range [{}, {}] for {} bits", file, where, p.qmin, p.qmax, p.bits);
  if (j.contains("scale")) p.scale = blob.get(j["scale"], where + ".scale");
  if (j.contains("zero_point")) p.zero_point = blob.get(j["zero_point"], where + ".zero_point");
  if (j.contains("codebook")) p.codebook = blob.get(j["codebook"], where + ".codebook");
  if (j.contains("threshold")) p.threshold = blob.get(j["threshold"], where + ".threshold");
  if (p.scheme == Scheme::Uniform || p.scheme == Scheme::Binary || p.scheme == Scheme::Ternary) {
    CATQ_CHECK(p.scale.defined() && p.zero_point.defined() && p.scale.sizes() == p.zero_point.sizes(), Format,
               "{}: {}: scale and zero_point must both be present with the same shape", file, where);
    CATQ_CHECK((p.scale > 0).all().item<bool>(), Format, "{}: {}: scales must be positive", file, where);
  }
  return p;
}

// ---- The file --------------------------------------------------------------------------------------------

void write_catq_container(const std::string& path, const json& h, const CatqBlobWriter& blob) {
  const std::string header = h.dump();
  std::string out(kMagic, 8);
  auto put_u32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  auto put_u64 = [&](uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); };
  put_u32(kCatqVersion);
  put_u32(0);
  put_u64(header.size());
  out += header;
  out.resize(align_up(out.size()), '\0');
  out.append(reinterpret_cast<const char*>(blob.data().data()), blob.data().size());
  write_file_atomic(path, out);
}

CatqContainer read_catq_container(const std::string& path) {
  CatqContainer c;
  c.path = path;
  c.bytes = read_file_bytes(path);
  ByteReader r(c.bytes.data(), c.bytes.size(), path);
  std::string magic = r.read_string(8, "magic");
  CATQ_CHECK(has_magic(magic.data(), magic.size()), Format, "{}: not a catq quantized model (wrong magic, expected "
             "\"CATQMDL\\0\")", path);
  const uint32_t version = r.read<uint32_t>("version");
  CATQ_CHECK(version == kCatqVersion, Unsupported, "{}: catq file version {}, this catq reads version {}", path, version,
             kCatqVersion);
  r.read<uint32_t>("reserved");
  const uint64_t hlen = r.read<uint64_t>("header length");
  CATQ_CHECK(hlen <= r.remaining(), Format, "{}: header length {} exceeds the {} bytes left (truncated file?)", path, hlen,
             r.remaining());
  const std::string header = r.read_string(hlen, "header");
  c.blob_start = align_up(r.pos());
  CATQ_CHECK(c.blob_start <= c.bytes.size(), Format, "{}: truncated after the header", path);
  try {
    c.header = json::parse(header);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: malformed header: {}", path, e.what());
  }
  CATQ_CHECK(c.header.is_object(), Format, "{}: the header is not a JSON object", path);
  return c;
}

std::string catq_file_kind(const std::string& path) {
  CatqContainer c = read_catq_container(path);
  const std::string f = c.header.value("format", "");
  if (f == kCatqCnnFormat) return "cnn";
  if (f == kCatqLlmFormat) return "llm";
  fail(ErrorKind::Format, "{}: header 'format' is '{}', expected {} or {}", path, f, kCatqCnnFormat, kCatqLlmFormat);
}

// A cheap probe that never throws: only the magic (a malformed file that starts with it is a catq file, for
// read_catq_container to explain).
bool is_catq_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char head[8] = {0};
  size_t n = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  return has_magic(head, n);
}

}  // namespace catq

// The .catq container (catq_container.h): blob writer / reader with the bit-packing of codes, quantizer params,
// writing the file, the read preamble, and the public probes catq_file_kind / is_catq_file.
#include "io/catq_container.h"

#include <cstdio>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <type_traits>

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

CatqBlobWriter::CatqBlobWriter(const std::string& spill_path) : spill_path_(spill_path) {
  f_ = std::fopen(spill_path.c_str(), "wb");
  if (!f_) fail(ErrorKind::Io, "{}: cannot create: {}", spill_path, std::strerror(errno));
}

CatqBlobWriter::~CatqBlobWriter() {
  if (f_) std::fclose(f_);
}

void CatqBlobWriter::close() {
  if (!f_) {
    CATQ_CHECK(!failed_, Io, "{}: write failed (disk full?)", spill_path_);
    return;
  }
  bool ok = std::fflush(f_) == 0 && !failed_;
  ok = std::fclose(f_) == 0 && ok;
  f_ = nullptr;
  if (!ok) {
    failed_ = true;
    fail(ErrorKind::Io, "{}: write failed (disk full?)", spill_path_);
  }
}

void CatqBlobWriter::put(const void* p, size_t n) {
  if (!n) return;
  if (spills()) {
    CATQ_CHECK(f_ != nullptr, Internal, "{}: blob written after close()", spill_path_);
    if (std::fwrite(p, 1, n, f_) != n) {
      failed_ = true;
      fail(ErrorKind::Io, "{}: write failed (disk full?)", spill_path_);
    }
  } else {
    blob_.insert(blob_.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
  }
  size_ += n;
}

uint8_t* CatqBlobWriter::grow(size_t n) {
  blob_.resize(size_ + n);
  uint8_t* p = blob_.data() + size_;
  size_ += n;
  return p;
}

size_t CatqBlobWriter::begin_entry() {
  static const uint8_t zeros[kAlign] = {};
  const size_t off = align_up(size_);
  put(zeros, off - size_);
  return off;
}

json CatqBlobWriter::add(const at::Tensor& t_in) {
  at::Tensor t = t_in.detach().contiguous().cpu();
  if (at::isFloatingType(t.scalar_type()) && t.scalar_type() != at::kFloat && spills()) {
    // A bf16 / f16 tensor (e.g. a memory-mapped 128k-token embedding table) is widened to F32 1 Mi elements at a
    // time: bounded memory, the same bytes.
    json e = {{"dtype", dtype_name(at::kFloat)}, {"shape", t.sizes().vec()}};
    const size_t nbytes = static_cast<size_t>(t.numel()) * 4;
    e["offset"] = begin_entry();
    const at::Tensor flat = t.view(-1);
    constexpr int64_t kChunk = int64_t{1} << 20;
    for (int64_t b = 0; b < flat.numel(); b += kChunk) {
      const at::Tensor c = flat.narrow(0, b, std::min(kChunk, flat.numel() - b)).to(at::kFloat).contiguous();
      put(c.data_ptr(), static_cast<size_t>(c.numel()) * 4);
    }
    e["nbytes"] = nbytes;
    return e;
  }
  if (at::isFloatingType(t.scalar_type())) t = t.to(at::kFloat);
  json e = {{"dtype", dtype_name(t.scalar_type())}, {"shape", t.sizes().vec()}};
  const size_t nbytes = static_cast<size_t>(t.numel()) * t.element_size();
  e["offset"] = begin_entry();
  put(t.data_ptr(), nbytes);
  e["nbytes"] = nbytes;
  return e;
}

json CatqBlobWriter::add_packed(const at::Tensor& q_in, int bits, int64_t lo) {
  CATQ_CHECK(bits >= 1 && bits <= 16, Internal, "catq file: packed width {} outside 1..16", bits);
  const at::Tensor q = flat_codes(q_in);
  const int64_t n = q.numel();
  const size_t nbytes = (static_cast<size_t>(n) * bits + 7) / 8;
  json e = {{"dtype", "PACKED"}, {"bits", bits}, {"min", lo}, {"shape", q_in.sizes().vec()}};
  e["offset"] = begin_entry();
  if (!spills()) {
    pack_codes(q, 0, n, bits, lo, grow(nbytes));
  } else {  // bounded memory: 1 Mi codes (a whole number of bytes at any width) at a time
    constexpr int64_t kChunk = int64_t{1} << 20;
    std::vector<uint8_t> buf(static_cast<size_t>(kChunk) * bits / 8);
    for (int64_t b = 0; b < n; b += kChunk) {
      const int64_t m = std::min(kChunk, n - b);
      const size_t mb = (static_cast<size_t>(m) * bits + 7) / 8;
      pack_codes(q, b, m, bits, lo, buf.data());
      put(buf.data(), mb);
    }
  }
  e["nbytes"] = nbytes;
  return e;
}

json CatqBlobWriter::add_weight(const QuantizedWeight& w) {
  CATQ_CHECK(!w.is_ggml(), Internal, "catq file: a {} weight is stored by the GGUF writer, not in a .catq", w.traits().name);
  w.validate("catq file");
  json wj = params_to_json(w.params, *this);
  json e = {{"dtype", "PACKED"}, {"bits", w.bits}, {"min", w.params.qmin}, {"shape", w.shape}};
  e["offset"] = begin_entry();
  put(w.data.data(), w.data.size());
  e["nbytes"] = w.data.size();
  wj["codes"] = std::move(e);
  return wj;
}

QuantizedWeight CatqBlobReader::get_weight(const json& wj, const std::string& what) const {
  QuantParams p = params_from_json(wj, *this, what, file_);
  try {
    const json& e = wj.at("codes");
    if (e.at("dtype") == "PACKED" && e.at("bits").get<int>() == code_bits(p.qmin, p.qmax) &&
        e.at("min").get<int64_t>() == p.qmin) {
      QuantizedWeight w;
      w.format = weight_format_of(p.scheme);
      w.shape = e.at("shape").get<std::vector<int64_t>>();
      w.bits = e.at("bits").get<int>();
      for (int64_t d : w.shape) CATQ_CHECK(d >= 0, Format, "{}: {} codes: negative dimension in shape", file_, what);
      const uint64_t numel = checked_numel(w.shape, file_, what + " codes");
      const uint64_t off = e.at("offset").get<uint64_t>(), n = e.at("nbytes").get<uint64_t>();
      CATQ_CHECK(off <= size_ && n <= size_ - off, Format, "{}: {} codes: data [{}, +{}) lies outside the {}-byte tensor "
                 "area (truncated file?)", file_, what, off, n, size_);
      CATQ_CHECK(n == (numel * w.bits + 7) / 8, Format, "{}: {} codes: {} bytes hold {} values of {} bits, expected {}",
                 file_, what, n, numel, w.bits, (numel * w.bits + 7) / 8);
      w.data.assign(blob_ + off, blob_ + off + n);
      w.params = std::move(p);
      try {
        w.validate(what);
      } catch (const Error& err) {
        fail(ErrorKind::Format, "{}: {}", file_, err.what());
      }
      return w;
    }
  } catch (const json::exception& ex) {
    fail(ErrorKind::Format, "{}: {}: malformed codes entry: {}", file_, what, ex.what());
  }
  const at::Tensor codes = get(wj.at("codes"), what + " codes");
  try {
    return make_quantized_weight(codes, std::move(p));
  } catch (const Error& err) {
    fail(ErrorKind::Format, "{}: {}: {}", file_, what, err.what());
  }
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
      unpack_codes(p, static_cast<int64_t>(numel), bits, lo, q.data_ptr<int32_t>());
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
  // Binary codes are ±1: one bit of information in the range [−1, 1].
  const bool binary = p.scheme == Scheme::Binary && p.bits == 1 && p.qmin == -1 && p.qmax == 1;
  CATQ_CHECK(p.bits >= 1 && p.bits <= 16 && p.qmin < p.qmax && (binary || p.qmax - p.qmin < (int64_t{1} << p.bits)),
             Format, "{}: {}: inconsistent integer range [{}, {}] for {} bits", file, where, p.qmin, p.qmax, p.bits);
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

void write_catq_container(const std::string& path, const json& h, CatqBlobWriter& blob) {
  const std::string header = h.dump();
  std::string out(kMagic, 8);
  auto put_u32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  auto put_u64 = [&](uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); };
  put_u32(kCatqVersion);
  put_u32(0);
  put_u64(header.size());
  out += header;
  out.resize(align_up(out.size()), '\0');
  if (!blob.spills()) {
    out.append(reinterpret_cast<const char*>(blob.data().data()), blob.data().size());
    write_file_atomic(path, out);
    return;
  }
  // Header, then the spill file copied in 8 MiB chunks, into a temp file renamed over `path`.
  blob.close();
  std::random_device rd;
  const std::string tmp = fmt::format("{}.tmp{:08x}", path, rd());
  std::FILE* in = std::fopen(blob.spill_path().c_str(), "rb");
  if (!in) fail(ErrorKind::Io, "{}: cannot open: {}", blob.spill_path(), std::strerror(errno));
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) {
    std::fclose(in);
    fail(ErrorKind::Io, "{}: cannot create: {}", tmp, std::strerror(errno));
  }
  bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  std::vector<char> buf(size_t{8} << 20);
  size_t copied = 0;
  while (ok) {
    const size_t got = std::fread(buf.data(), 1, buf.size(), in);
    if (got == 0) break;
    ok = std::fwrite(buf.data(), 1, got, f) == got;
    copied += got;
  }
  const bool read_ok = !std::ferror(in) && copied == blob.size();
  std::fclose(in);
  ok = std::fflush(f) == 0 && ok;
  ok = std::fclose(f) == 0 && ok;
  if (!ok || !read_ok) {
    std::remove(tmp.c_str());
    if (!read_ok) fail(ErrorKind::Io, "{}: read back {} of its {} bytes", blob.spill_path(), copied, blob.size());
    fail(ErrorKind::Io, "{}: write failed (disk full?)", path);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail(ErrorKind::Io, "{}: cannot rename temp file into place: {}", path, std::strerror(e));
  }
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

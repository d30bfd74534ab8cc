// GgufBuilder: the writer of GGUF bytes (container layout: gguf.h), used by write_gguf_llama and by tests to build
// unusual files. Reader: gguf_file.cpp.
#include "io/gguf.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/file_util.h"

namespace catq {

void GgufBuilder::key(const std::string& k, GgufType t) {
  uint64_t n = k.size();
  kv_.append(reinterpret_cast<const char*>(&n), 8);
  kv_ += k;
  uint32_t tt = static_cast<uint32_t>(t);
  kv_.append(reinterpret_cast<const char*>(&tt), 4);
  ++n_kv_;
}

template <typename T>
static void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
static void put_str(std::string& s, const std::string& v) {
  put<uint64_t>(s, v.size());
  s += v;
}

void GgufBuilder::add_u32(const std::string& k, uint32_t v) { key(k, GgufType::U32); put(kv_, v); }
void GgufBuilder::add_i32(const std::string& k, int32_t v) { key(k, GgufType::I32); put(kv_, v); }
void GgufBuilder::add_u64(const std::string& k, uint64_t v) { key(k, GgufType::U64); put(kv_, v); }
void GgufBuilder::add_f32(const std::string& k, float v) { key(k, GgufType::F32); put(kv_, v); }
void GgufBuilder::add_bool(const std::string& k, bool v) { key(k, GgufType::Bool); put<uint8_t>(kv_, v ? 1 : 0); }
void GgufBuilder::add_string(const std::string& k, const std::string& v) { key(k, GgufType::String); put_str(kv_, v); }
void GgufBuilder::add_string_array(const std::string& k, const std::vector<std::string>& v) {
  key(k, GgufType::Array);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufType::String));
  put<uint64_t>(kv_, v.size());
  for (auto& s : v) put_str(kv_, s);
}
void GgufBuilder::add_f32_array(const std::string& k, const std::vector<float>& v) {
  key(k, GgufType::Array);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufType::F32));
  put<uint64_t>(kv_, v.size());
  for (float x : v) put(kv_, x);
}
void GgufBuilder::add_i32_array(const std::string& k, const std::vector<int32_t>& v) {
  key(k, GgufType::Array);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufType::I32));
  put<uint64_t>(kv_, v.size());
  for (int32_t x : v) put(kv_, x);
}
void GgufBuilder::add_tensor(const std::string& name, const std::vector<int64_t>& ne, uint32_t type, std::string data) {
  const uint64_t n = data.size();
  tensors_.push_back({name, ne, type, std::move(data), n, false});
}

void GgufBuilder::declare_tensor(const std::string& name, const std::vector<int64_t>& ne, uint32_t type) {
  const GgmlTypeTraits* t = ggml_type_traits(type);
  CATQ_CHECK(t != nullptr, Internal, "GGUF: tensor {} declared with unknown ggml type {}", name, type);
  uint64_t numel = 1;
  for (int64_t d : ne) numel *= static_cast<uint64_t>(d);
  CATQ_CHECK(ne.empty() || ne[0] % t->block == 0, Internal, "GGUF: tensor {}: rows of {} values are not whole {} blocks",
             name, ne.empty() ? 0 : ne[0], t->name);
  tensors_.push_back({name, ne, type, std::string(), numel / static_cast<uint64_t>(t->block) * static_cast<uint64_t>(t->bytes),
                      true});
}

std::string GgufBuilder::build(uint32_t version, uint32_t alignment) const {
  for (const T& t : tensors_)
    CATQ_CHECK(!t.declared, Internal, "GGUF: tensor {} is declared without data (write it with a GgufStreamWriter)", t.name);
  std::string s = header(version, alignment);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    s += tensors_[i].data;
    s.resize(s.size() + padding(tensors_[i].data.size(), alignment, i + 1 == tensors_.size()), '\0');
  }
  return s;
}

void GgufBuilder::write(const std::string& path, uint32_t version, uint32_t alignment) const {
  for (const T& t : tensors_)
    CATQ_CHECK(!t.declared, Internal, "GGUF: tensor {} is declared without data (write it with a GgufStreamWriter)", t.name);
  AtomicFile f(path);
  f.write(header(version, alignment));
  const std::string zeros(alignment, '\0');
  for (size_t i = 0; i < tensors_.size(); ++i) {
    f.write(tensors_[i].data);
    f.write(zeros.data(), padding(tensors_[i].data.size(), alignment, i + 1 == tensors_.size()));
  }
  f.commit();
}

size_t GgufBuilder::padding(size_t bytes, uint32_t alignment, bool last) {
  return last ? 0 : (alignment - bytes % alignment) % alignment;
}

std::string GgufBuilder::header(uint32_t version, uint32_t alignment) const {
  std::string s = "GGUF";
  put<uint32_t>(s, version);
  put<uint64_t>(s, tensors_.size());
  put<uint64_t>(s, n_kv_);
  s += kv_;
  auto align = [&](uint64_t x) { return (x + alignment - 1) / alignment * alignment; };
  uint64_t off = 0;
  std::vector<uint64_t> offs;
  for (const auto& t : tensors_) {
    put_str(s, t.name);
    put<uint32_t>(s, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<uint64_t>(s, static_cast<uint64_t>(d));
    put<uint32_t>(s, t.type);
    off = align(off);
    offs.push_back(off);
    put<uint64_t>(s, off);
    off += t.nbytes;
  }
  s.resize(align(s.size()), '\0');  // the data section starts aligned; each tensor's data is padded to the next
  return s;
}

// ---- GgufStreamWriter ----------------------------------------------------------------------------------------

struct GgufStreamWriter::Impl {
  std::string path, tmp;
  std::FILE* f = nullptr;
  bool finished = false;
  uint64_t data_start = 0, end = 0;
  struct Slot { uint64_t offset, nbytes; bool done; };
  std::map<std::string, Slot> slots;  // declared tensors

  void put_at(uint64_t off, const void* p, size_t n) {
    if (fseeko(f, static_cast<off_t>(off), SEEK_SET) != 0 || (n && std::fwrite(p, 1, n, f) != n))
      fail(ErrorKind::Io, "{}: write failed (disk full?)", path);
  }
};

GgufStreamWriter::GgufStreamWriter(const std::string& path, const GgufBuilder& b, uint32_t version, uint32_t alignment)
    : impl_(std::make_unique<Impl>()) {
  Impl& w = *impl_;
  w.path = path;
  std::random_device rd;
  w.tmp = fmt::format("{}.tmp{:08x}", path, rd());
  w.f = std::fopen(w.tmp.c_str(), "wb");
  if (!w.f) fail(ErrorKind::Io, "{}: cannot create: {}", w.tmp, std::strerror(errno));
  const std::string head = b.header(version, alignment);
  w.data_start = head.size();
  w.put_at(0, head.data(), head.size());
  uint64_t off = 0;
  for (const GgufBuilder::T& t : b.tensors_) {
    off = (off + alignment - 1) / alignment * alignment;
    if (t.declared) {
      CATQ_CHECK(w.slots.emplace(t.name, Impl::Slot{off, t.nbytes, false}).second, Internal,
                 "GGUF: tensor {} declared twice", t.name);
    } else {
      w.put_at(w.data_start + off, t.data.data(), t.data.size());
    }
    off += t.nbytes;
  }
  w.end = w.data_start + off;  // no padding after the last tensor
}

GgufStreamWriter::~GgufStreamWriter() {
  if (!impl_) return;
  if (impl_->f) std::fclose(impl_->f);
  if (!impl_->finished) std::remove(impl_->tmp.c_str());
}

void GgufStreamWriter::write(const std::string& name, const void* data, size_t n) {
  Impl& w = *impl_;
  CATQ_CHECK(!w.finished, Internal, "{}: GGUF tensor {} written after finish()", w.path, name);
  auto it = w.slots.find(name);
  CATQ_CHECK(it != w.slots.end(), Internal, "{}: GGUF tensor {} was not declared", w.path, name);
  CATQ_CHECK(!it->second.done, Internal, "{}: GGUF tensor {} written twice", w.path, name);
  CATQ_CHECK(n == it->second.nbytes, Internal, "{}: GGUF tensor {}: {} bytes, declared {}", w.path, name, n,
             it->second.nbytes);
  w.put_at(w.data_start + it->second.offset, data, n);
  it->second.done = true;
}

bool GgufStreamWriter::written(const std::string& name) const {
  auto it = impl_->slots.find(name);
  return it != impl_->slots.end() && it->second.done;
}

void GgufStreamWriter::finish() {
  Impl& w = *impl_;
  CATQ_CHECK(!w.finished, Internal, "{}: GgufStreamWriter::finish() called twice", w.path);
  for (const auto& [name, slot] : w.slots)
    CATQ_CHECK(slot.done, Internal, "{}: GGUF tensor {} was declared but never written", w.path, name);
  // Padding between tensors is a hole where data arrived out of order: make the file end where the data ends.
  bool ok = std::fflush(w.f) == 0 && ftruncate(fileno(w.f), static_cast<off_t>(w.end)) == 0;
  ok = std::fclose(w.f) == 0 && ok;
  w.f = nullptr;
  if (!ok) fail(ErrorKind::Io, "{}: write failed (disk full?)", w.path);
  if (std::rename(w.tmp.c_str(), w.path.c_str()) != 0)
    fail(ErrorKind::Io, "{}: cannot rename temp file into place: {}", w.path, std::strerror(errno));
  w.finished = true;
}

}  // namespace catq

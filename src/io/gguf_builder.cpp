// GgufBuilder: the writer of GGUF bytes (container layout: gguf.h), used by write_gguf_llama and by tests to build
// unusual files. Reader: gguf_file.cpp.
#include "io/gguf.h"

#include "core/file_util.h"
#include "core/atomic_file.h"

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
  tensors_.push_back({name, ne, type, std::move(data)});
}

std::string GgufBuilder::build(uint32_t version, uint32_t alignment) const {
  std::string s = header(version, alignment);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    s += tensors_[i].data;
    s.resize(s.size() + padding(tensors_[i].data.size(), alignment, i + 1 == tensors_.size()), '\0');
  }
  return s;
}

void GgufBuilder::write(const std::string& path, uint32_t version, uint32_t alignment) const {
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
    off += t.data.size();
  }
  s.resize(align(s.size()), '\0');  // the data section starts aligned; each tensor's data is padded to the next
  return s;
}

}  // namespace catq

// Whole-file reading, bounds-checked binary parsing, and atomic writes (temp file + rename).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace catq {

// Reads a whole file; throws Error(Io) naming the file when it is missing or unreadable.
std::vector<uint8_t> read_file_bytes(const std::string& path);
std::string read_file_text(const std::string& path);
bool file_exists(const std::string& path);
uint64_t file_size(const std::string& path);  // throws Error(Io)

// Writes `data` to `path` atomically: a half-written output file never appears under `path`.
void write_file_atomic(const std::string& path, const void* data, size_t size);
inline void write_file_atomic(const std::string& path, std::string_view s) { write_file_atomic(path, s.data(), s.size()); }

// Sequential little-endian reader over a byte buffer that never reads past the end:
// every overrun is Error(Format) naming the file, the offset and what was being read.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string name) : p_(data), n_(size), name_(std::move(name)) {}
  size_t pos() const { return pos_; }
  size_t size() const { return n_; }
  size_t remaining() const { return n_ - pos_; }
  const std::string& name() const { return name_; }
  const uint8_t* data() const { return p_; }

  void need(size_t bytes, const char* what) const {
    if (bytes > n_ - pos_)
      fail(ErrorKind::Format, "{}: truncated file: need {} bytes for {} at offset {}, only {} left", name_, bytes,
           what, pos_, n_ - pos_);
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  // Returns a pointer to `bytes` bytes and advances.
  const uint8_t* take(size_t bytes, const char* what) {
    need(bytes, what);
    const uint8_t* q = p_ + pos_;
    pos_ += bytes;
    return q;
  }
  std::string read_string(size_t len, const char* what) {
    const uint8_t* q = take(len, what);
    return std::string(reinterpret_cast<const char*>(q), len);
  }
  void seek(size_t off, const char* what) {
    if (off > n_) fail(ErrorKind::Format, "{}: offset {} for {} is past the end of the file ({} bytes)", name_, off, what, n_);
    pos_ = off;
  }
  void skip(size_t bytes, const char* what) { take(bytes, what); }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  std::string name_;
};

// Multiplies sizes, throwing Error(Format) on overflow or when the product exceeds `limit`
// (guards against "huge declared sizes" in malformed files).
uint64_t checked_numel(const std::vector<int64_t>& shape, const std::string& file, const std::string& what,
                       uint64_t limit = (1ull << 40));

}  // namespace catq

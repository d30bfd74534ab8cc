#include "core/file_util.h"
#include "core/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <random>

namespace catq {

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

uint64_t file_size(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail(ErrorKind::Io, "{}: cannot open: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(ErrorKind::Io, "{}: not a regular file", path);
  return static_cast<uint64_t>(st.st_size);
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  uint64_t n = file_size(path);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(ErrorKind::Io, "{}: cannot open: {}", path, std::strerror(errno));
  std::vector<uint8_t> buf(n);
  size_t got = n ? std::fread(buf.data(), 1, n, f) : 0;
  std::fclose(f);
  if (got != n) fail(ErrorKind::Io, "{}: read {} of {} bytes", path, got, n);
  return buf;
}

std::string read_file_text(const std::string& path) {
  auto b = read_file_bytes(path);
  return std::string(b.begin(), b.end());
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  AtomicFile f(path);
  f.write(data, size);
  f.commit();
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  std::random_device rd;
  tmp_ = fmt::format("{}.tmp{:08x}", path_, rd());
  reg_.reset(tmp_);  // registered before it exists: a signal now finds nothing to remove
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail(ErrorKind::Io, "{}: cannot create the output file (temporary {}): {}", path_, tmp_, std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (f_) std::fclose(f_);
  if (!committed_) std::remove(tmp_.c_str());
}

void AtomicFile::write(const void* p, size_t n) {
  if (n && std::fwrite(p, 1, n, f_) != n)
    fail(ErrorKind::Io, "{}: write failed after {} bytes: {} (disk full or file size limit?); nothing was written",
         path_, written_, std::strerror(errno));
  written_ += n;
}

void AtomicFile::commit() {
  errno = 0;
  bool ok = std::fflush(f_) == 0;
  int e = errno;
  ok = std::fclose(f_) == 0 && ok;
  if (!e) e = errno;
  f_ = nullptr;
  if (!ok)
    fail(ErrorKind::Io, "{}: write failed: {} (disk full or file size limit?); nothing was written", path_,
         std::strerror(e ? e : EIO));
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0)
    fail(ErrorKind::Io, "{}: cannot rename temp file into place: {}", path_, std::strerror(errno));
  committed_ = true;
  reg_.release();
}

uint64_t checked_numel(const std::vector<int64_t>& shape, const std::string& file, const std::string& what,
                       uint64_t limit) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail(ErrorKind::Format, "{}: {} has negative dimension {}", file, what, d);
    if (d != 0 && n > limit / static_cast<uint64_t>(d))
      fail(ErrorKind::Format, "{}: {} declares an impossible size (more than {} elements)", file, what, limit);
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

}  // namespace catq

#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace catq {

namespace {

int to_madvise(MappedFile::Advice a) {
  switch (a) {
    case MappedFile::Advice::Sequential: return MADV_SEQUENTIAL;
    case MappedFile::Advice::Random: return MADV_RANDOM;
    case MappedFile::Advice::WillNeed: return MADV_WILLNEED;
    case MappedFile::Advice::Normal: break;
  }
  return MADV_NORMAL;
}

size_t page_size() {
  static const size_t p = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

// Closes the descriptor on every path out of open().
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

const uint8_t kEmpty[8] = {};

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path, Advice advice) {
  Fd fd;
  fd.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd.fd < 0) fail(ErrorKind::Io, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st;
  if (::fstat(fd.fd, &st) != 0) fail(ErrorKind::Io, "{}: cannot stat: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(ErrorKind::Io, "{}: not a regular file", path);
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  m->data_ = kEmpty;
  if (m->size_ == 0) return m;  // mmap of length 0 is EINVAL: nothing to map
  void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (p != MAP_FAILED) {
    m->data_ = static_cast<const uint8_t*>(p);
    m->mapped_ = true;
    if (advice != Advice::Normal) ::madvise(p, m->size_, to_madvise(advice));
    return m;
  }
  const int e = errno;
  if (e != ENODEV && e != EACCES && e != EINVAL)
    fail(ErrorKind::Io, "{}: cannot map {} bytes: {}", path, m->size_, std::strerror(e));
  // A file system without mmap: read the file instead.
  m->fallback_.resize(m->size_);
  size_t got = 0;
  while (got < m->size_) {
    ssize_t r = ::read(fd.fd, m->fallback_.data() + got, m->size_ - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail(ErrorKind::Io, "{}: read {} of {} bytes{}{}", path, got, m->size_, r < 0 ? ": " : "",
                     r < 0 ? std::strerror(errno) : "");
    got += static_cast<size_t>(r);
  }
  m->data_ = m->fallback_.data();
  return m;
}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

bool MappedFile::contains(const void* p, size_t bytes) const {
  const uint8_t* q = static_cast<const uint8_t*>(p);
  return q >= data_ && q <= data_ + size_ && bytes <= static_cast<size_t>(data_ + size_ - q);
}

void MappedFile::advise(uint64_t offset, uint64_t length, Advice advice) const {
  if (!mapped_ || offset >= size_ || length == 0) return;
  length = std::min<uint64_t>(length, size_ - offset);
  const uint64_t ps = page_size();
  const uint64_t b = offset / ps * ps;
  ::madvise(const_cast<uint8_t*>(data_) + b, offset + length - b, to_madvise(advice));
}

void MappedFile::release(uint64_t offset, uint64_t length) const {
  if (!mapped_ || offset >= size_ || length == 0) return;
  const uint64_t ps = page_size();
  const uint64_t end = std::min<uint64_t>(offset + length, size_);
  uint64_t b = (offset + ps - 1) / ps * ps;
  // The last partial page of the file may be released too (nothing else lives past the end).
  uint64_t e = end == size_ ? (end + ps - 1) / ps * ps : end / ps * ps;
  if (e > b) ::madvise(const_cast<uint8_t*>(data_) + b, e - b, MADV_DONTNEED);
}

// ---------------------------------------------------------------------------------------------------

namespace {

void delete_mapped_ctx(void* ctx) { delete static_cast<std::shared_ptr<const MappedFile>*>(ctx); }

}  // namespace

at::Tensor mapped_tensor(const std::shared_ptr<const MappedFile>& file, uint64_t offset, at::IntArrayRef shape,
                         at::ScalarType dtype) {
  CATQ_CHECK(file != nullptr, Internal, "mapped_tensor: no file");
  const size_t es = c10::elementSize(dtype);
  int64_t numel = 1;
  for (int64_t d : shape) {
    CATQ_CHECK(d >= 0, Internal, "{}: mapped_tensor: negative dimension", file->path());
    numel *= d;
  }
  const size_t nbytes = static_cast<size_t>(numel) * es;
  CATQ_CHECK(offset <= file->size() && nbytes <= file->size() - offset, Internal,
             "{}: mapped_tensor: bytes [{}, {}) outside the {}-byte file", file->path(), offset, offset + nbytes,
             file->size());
  const uint8_t* p = file->data() + offset;
  CATQ_CHECK(reinterpret_cast<uintptr_t>(p) % es == 0, Internal,
             "{}: mapped_tensor: offset {} is not aligned to the {}-byte element", file->path(), offset, es);
  auto* ctx = new std::shared_ptr<const MappedFile>(file);
  c10::DataPtr dp(const_cast<uint8_t*>(p), ctx, &delete_mapped_ctx, c10::Device(c10::kCPU));
  c10::Storage storage(c10::Storage::use_byte_size_t(), nbytes, std::move(dp), /*allocator=*/nullptr,
                       /*resizable=*/false);
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t k = shape.size(); k-- > 1;) strides[k - 1] = strides[k] * std::max<int64_t>(shape[k], 1);
  return at::empty({0}, at::TensorOptions().dtype(dtype)).set_(storage, 0, shape, strides);
}

bool is_mapped_tensor(const at::Tensor& t) {
  return t.defined() && t.has_storage() && t.storage().data_ptr().get_deleter() == &delete_mapped_ctx;
}

std::shared_ptr<const MappedFile> mapped_tensor_file(const at::Tensor& t) {
  if (!is_mapped_tensor(t)) return nullptr;
  return *static_cast<std::shared_ptr<const MappedFile>*>(t.storage().data_ptr().get_context());
}

namespace {

// The byte range [offset, offset + length) of the file that t's elements span (t may be a strided view).
bool tensor_range(const at::Tensor& t, const MappedFile& f, uint64_t& offset, uint64_t& length) {
  if (t.numel() == 0) return false;
  int64_t lo = 0, hi = 0;  // element offsets relative to data_ptr
  for (int64_t d = 0; d < t.dim(); ++d) {
    const int64_t span = (t.size(d) - 1) * t.stride(d);
    (span < 0 ? lo : hi) += span;
  }
  const uint8_t* p = static_cast<const uint8_t*>(t.data_ptr());
  const uint8_t* b = p + lo * static_cast<int64_t>(t.element_size());
  const uint8_t* e = p + (hi + 1) * static_cast<int64_t>(t.element_size());
  if (!f.contains(b, static_cast<size_t>(e - b))) return false;
  offset = static_cast<uint64_t>(b - f.data());
  length = static_cast<uint64_t>(e - b);
  return true;
}

}  // namespace

void release_mapped_pages(const at::Tensor& t) {
  auto f = mapped_tensor_file(t);
  uint64_t off, len;
  if (f && tensor_range(t, *f, off, len)) f->release(off, len);
}

void advise_mapped_pages(const at::Tensor& t, MappedFile::Advice advice) {
  auto f = mapped_tensor_file(t);
  uint64_t off, len;
  if (f && tensor_range(t, *f, off, len)) f->advise(off, len, advice);
}

}  // namespace catq

// Read-only memory mapping of a whole file (mmap MAP_PRIVATE / PROT_READ), owned by a shared_ptr so that tensors
// viewing the mapping keep it alive (mapped_tensor below).
//
// Pages are read from the file when first touched and belong to the page cache: they count in the process's RSS
// only while mapped and touched, and the kernel can drop them under memory pressure (they are clean). release()
// hands a byte range's pages back (MADV_DONTNEED; a later access reads them from the file again).
//
// The mapping is READ-ONLY: writing through a pointer into it (or into a tensor made by mapped_tensor) is a
// SIGSEGV, not an error. If the file is truncated by someone else while mapped, touching the lost pages is a
// SIGBUS — as for every mmap reader (llama.cpp, safetensors' Python loader); catq does not guard against it.
//
// An empty file has size() 0 and a non-null data() (nothing is mapped). A file that cannot be mapped (a
// file system without mmap support) is read into memory instead; is_mapped() then says false.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace catq {

class MappedFile {
 public:
  enum class Advice { Normal, Sequential, Random, WillNeed };

  // Maps `path`; Error(Io) naming the file when it is missing, not a regular file, or unreadable.
  static std::shared_ptr<const MappedFile> open(const std::string& path, Advice advice = Advice::Normal);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  bool is_mapped() const { return mapped_; }
  // True when [p, p + bytes) lies inside the file's bytes.
  bool contains(const void* p, size_t bytes = 1) const;

  // madvise hints for a byte range (offset, length relative to the file start); a no-op when not mapped. The
  // range is widened to whole pages for the hints, narrowed to whole pages for release().
  void advise(uint64_t offset, uint64_t length, Advice advice) const;
  // Drops the pages wholly inside the range from this process (MADV_DONTNEED). Safe at any time: the mapping is
  // read-only and clean, so the data is read again from the file on the next access.
  void release(uint64_t offset, uint64_t length) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
  std::vector<uint8_t> fallback_;  // the file's bytes when it could not be mapped
};

// A CPU tensor viewing `shape` elements of `dtype` at byte `offset` of the file, without copying. The tensor holds
// the shared_ptr, so the mapping stays alive as long as the tensor (or any view of it) does.
// READ-ONLY: such tensors must never be written (no copy_, mul_, add_, ... and no in-place autograd updates): the
// pages are mapped PROT_READ and a write is a SIGSEGV. Clone them (or .to(at::kFloat), which copies) before
// modifying. The caller checks that the range lies in the file and that offset is aligned to the element size
// (data() + offset must be a multiple of the element size); Error(Internal) otherwise.
at::Tensor mapped_tensor(const std::shared_ptr<const MappedFile>& file, uint64_t offset, at::IntArrayRef shape,
                         at::ScalarType dtype);
// True when t's storage was made by mapped_tensor (t views a read-only mapping; views of it too).
bool is_mapped_tensor(const at::Tensor& t);
// The mapping a mapped tensor views (e.g. to release() its pages once a layer is done); null for other tensors.
std::shared_ptr<const MappedFile> mapped_tensor_file(const at::Tensor& t);
// For a mapped tensor (any view): hands the pages of its bytes back (MappedFile::release) / gives a hint for them;
// no-op for other tensors. Touched pages of a mapping count in the process's RSS (as file-backed, reclaimable memory)
// until released or unmapped: a pipeline that walks a whole checkpoint layer by layer should release each layer's
// weights when done with them, or RSS (e.g. /usr/bin/time's peak) grows to the checkpoint's size.
void release_mapped_pages(const at::Tensor& t);
void advise_mapped_pages(const at::Tensor& t, MappedFile::Advice advice);

}  // namespace catq

#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "core/temp_files.h"

namespace catq {

// A file written piece by piece into a temporary file next to the target, renamed into place by commit(); removed
// when destroyed uncommitted (an error on the way leaves no partial output), and by a fatal signal while it exists
// (core/temp_files.h). Error(Io) on failures, naming the target and the system's reason.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* p, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  uint64_t written() const { return written_; }
  void commit();

 private:
  std::string path_, tmp_;
  std::FILE* f_ = nullptr;
  TempFileRegistration reg_;
  bool committed_ = false;
  uint64_t written_ = 0;
};

}  // namespace catq

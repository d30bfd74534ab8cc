#include "core/source_dir.h"

#include <filesystem>

namespace catq {

const char* source_dir() { return CATQ_SOURCE_DIR_VALUE; }

std::string path_beside_executable(const std::string& name) {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? name : (exe.parent_path() / name).string();
}

}  // namespace catq

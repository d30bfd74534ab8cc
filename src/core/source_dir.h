// Where this catq was built from and where its executables are. The checkout's path is compiled into one file only
// (source_dir.cpp), so every other object is the same in any clone or worktree (ccache shares them) and tests find
// the command next to themselves.
#pragma once
#include <string>

namespace catq {
// The checkout this catq was built from (bench/configs, .cache, ../shared next to it). CATQ_SOURCE_DIR is this call.
const char* source_dir();
// `name` in the folder of the running executable (the build folder for catq_tests and catq: the
// tests' CATQ_CLI_PATH is path_beside_executable("catq")).
std::string path_beside_executable(const std::string& name);
}  // namespace catq

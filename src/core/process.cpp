#include "core/process.h"

#include <cstdio>

namespace catq {

std::string run_capture(const std::string& cmd, int* code) {
  std::string out;
  *code = -1;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *code = pclose(p);
  return out;
}

}  // namespace catq

#include "core/memory_usage.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace catq {

namespace {

int64_t status_kb(const char* key) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  int64_t kb = 0;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, n) == 0 && line[n] == ':') {
      kb = std::strtoll(line + n + 1, nullptr, 10);
      break;
    }
  std::fclose(f);
  return kb;
}

bool tracing() {
  static const bool on = [] {
    const char* v = std::getenv("CATQ_TRACE_MEMORY");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

}  // namespace

int64_t resident_bytes() { return status_kb("VmRSS") * 1024; }
int64_t peak_resident_bytes() { return status_kb("VmHWM") * 1024; }

void trace_memory(const char* stage, long index) {
  if (!tracing()) return;
  static const auto start = std::chrono::steady_clock::now();  // the first traced stage
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string what = index >= 0 ? std::string(stage) + " " + std::to_string(index) : std::string(stage);
  std::fprintf(stderr, "memory: %8.1f s %s rss %.0f MB peak %.0f MB\n", t, what.c_str(), resident_bytes() / 1e6,
               peak_resident_bytes() / 1e6);
}

}  // namespace catq

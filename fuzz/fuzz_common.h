// Shared by the libFuzzer targets (fuzz/targets/fuzz_*.cpp): the policy on exceptions, inputs as files, inputs in
// several parts.
//
// Policy: malformed input must end in a catq::Error of a user-facing kind (Io, Format, Unsupported, Config, Data;
// Usage for strings the command line passes through). Anything else escaping a reader — Error(Internal), a c10::Error
// from libtorch, a std::exception from the standard library or nlohmann::json — is a bug (the `catq` command reports it
// as exit code 1, "internal error") and aborts, so libFuzzer records it as a crash with the input that caused it.
// Crashes, hangs (-timeout), leaks and allocations over -rss_limit_mb / -malloc_limit_mb are caught by libFuzzer and
// the sanitizers themselves.
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include "core/error.h"

namespace catq::fuzz {

[[noreturn]] inline void bug(const char* what, const std::string& msg) {
  std::fprintf(stderr, "\n*** catq fuzz: %s escaped the reader (a bug: malformed input must be a catq::Error of a "
               "user-facing kind):\n%s\n", what, msg.c_str());
  std::fflush(stderr);
  std::abort();
}

// Runs f; returns true when it succeeded, false when it threw an expected catq::Error; aborts on anything else.
template <typename F>
bool expect_clean(F&& f) {
  try {
    f();
    return true;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Internal) bug("catq::Error(Internal)", e.what());
    return false;
  } catch (const c10::Error& e) {
    bug("c10::Error", e.what());
  } catch (const std::exception& e) {
    bug(typeid(e).name(), e.what());
  }
}

// A private folder for this process's input files, under $CATQ_FUZZ_TMP, else /dev/shm (memory), else $TMPDIR or
// /tmp; removed at exit.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* env = std::getenv("CATQ_FUZZ_TMP");
    std::string base = env && *env ? env : "";
    if (base.empty()) {
      struct stat st;
      if (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0) base = "/dev/shm";
    }
    if (base.empty()) base = std::getenv("TMPDIR") && *std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    std::string tmpl = base + "/catq_fuzz_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) bug("setup", "mkdtemp failed under " + base);
    std::string d = buf.data();
    static std::string to_remove = d;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(to_remove, ec);
    });
    return d;
  }();
  return dir;
}

// Writes bytes to scratch_dir()/name (replacing it) and returns the path.
inline std::string write_input(const std::string& name, const void* data, size_t size) {
  std::string path = scratch_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) bug("setup", "cannot create " + path);
  if (size && std::fwrite(data, 1, size, f) != size) bug("setup", "cannot write " + path);
  std::fclose(f);
  return path;
}
inline std::string write_input(const std::string& name, std::string_view s) { return write_input(name, s.data(), s.size()); }
inline void remove_input(const std::string& name) { ::unlink((scratch_dir() + "/" + name).c_str()); }

// Inputs made of several files: the parts are separated by kPartSeparator (the dictionaries hold it). Missing parts
// are empty.
inline constexpr std::string_view kPartSeparator = "\n#~catq-part~#\n";
inline std::vector<std::string_view> split_parts(const uint8_t* data, size_t size, size_t n) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < n) {
    size_t k = s.find(kPartSeparator);
    if (k == std::string_view::npos) break;
    parts.push_back(s.substr(0, k));
    s.remove_prefix(k + kPartSeparator.size());
  }
  parts.push_back(s);
  parts.resize(n);
  return parts;
}

// Once per process: libtorch on one thread (the fuzzer runs one input at a time; OpenMP pools only add noise).
inline void init_process() {
  setenv("OMP_NUM_THREADS", "1", 1);
  at::set_num_threads(1);
}

}  // namespace catq::fuzz

// Every target calls this from LLVMFuzzerInitialize.
#define CATQ_FUZZ_INIT()                                                         \
  extern "C" int LLVMFuzzerInitialize(int*, char***) {                           \
    catq::fuzz::init_process();                                                  \
    return 0;                                                                    \
  }

// Errors: every failure a user can cause is a catq::Error with a category that maps to an exit code.
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace catq {

// Exit codes of the `catq` command (documented in README).
enum class ErrorKind : int {
  Internal = 1,     // a bug: should never happen
  Usage = 2,        // bad command line (CLI11 uses 2 too)
  Io = 3,           // missing / unreadable / unwritable file
  Format = 4,       // a file is malformed: truncated, wrong magic, bad sizes
  Unsupported = 5,  // valid input catq does not handle (unknown op, dtype, ...)
  Config = 6,       // malformed quantization / method config
  Data = 7,         // data set problems (shape mismatch, too few samples)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return static_cast<int>(kind_); }

 private:
  ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(kind, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace catq

// CATQ_CHECK(cond, kind, "fmt", args...) -> throws catq::Error when cond is false.
#define CATQ_CHECK(cond, kind, ...)                    \
  do {                                                 \
    if (!(cond)) ::catq::fail(::catq::ErrorKind::kind, __VA_ARGS__); \
  } while (0)

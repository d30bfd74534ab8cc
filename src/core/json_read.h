// JSON read from files: bounded nesting, checked integers.
//
// parse_json(text): nlohmann's parser is iterative, but copying, comparing and dumping a value (error messages do)
// recurse, as do catq's own walks over nested components, so a file of 100,000 nested brackets would overflow the
// stack. parse_json refuses nesting deeper than max_depth (default 64; real files nest a handful of levels) before
// parsing, with nlohmann::json::out_of_range, which the readers turn into an Error naming the file.
//
// Integers read from JSON in files. nlohmann's get<T>() for an integer T converts a floating-point JSON value with a
// plain cast: undefined behaviour when it does not fit (a file holding 1e300 or 1e999 where a count is expected; found
// by fuzzing the .catq reader) and a silent truncation of 1.5 to 1. json_int<T>(j) accepts an integer in T's range, or
// a floating-point value that is exactly such an integer (4.0, as some JSON writers print integers); anything else
// throws nlohmann::json::type_error, which every reader already turns into an Error naming the file and the field.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <algorithm>
#include <vector>

#include <nlohmann/json.hpp>

namespace catq {

inline constexpr int kJsonMaxDepth = 64;

// The deepest nesting of arrays / objects in JSON text (brackets inside strings ignored).
inline int json_nesting_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

inline nlohmann::json parse_json(std::string_view text, int max_depth = kJsonMaxDepth) {
  const int depth = json_nesting_depth(text);
  if (depth > max_depth)
    throw nlohmann::json::out_of_range::create(
        406, "arrays / objects nested " + std::to_string(depth) + " levels deep (at most " + std::to_string(max_depth) +
                 " accepted)", static_cast<const nlohmann::json*>(nullptr));
  return nlohmann::json::parse(text);
}

template <typename T>
T json_int(const nlohmann::json& j) {
  static_assert(std::is_integral_v<T>);
  using L = std::numeric_limits<T>;
  auto bad = [&](const char* why) {
    return nlohmann::json::type_error::create(302, std::string(why) + ", got " + j.dump(), &j);
  };
  if (j.is_number_unsigned()) {
    const uint64_t u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(L::max())) throw bad("integer out of range");
    return static_cast<T>(u);
  }
  if (j.is_number_integer()) {
    const int64_t v = j.get<int64_t>();
    if ((L::is_signed && v < static_cast<int64_t>(L::min())) || (!L::is_signed && v < 0) ||
        (v > 0 && static_cast<uint64_t>(v) > static_cast<uint64_t>(L::max())))
      throw bad("integer out of range");
    return static_cast<T>(v);
  }
  if (j.is_number_float()) {
    const double d = j.get<double>();
    // 2^63 and 2^64 are exact doubles; L::max() + 1.0 is one of them (or exact for narrower types).
    if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(L::min()) ||
        d >= static_cast<double>(L::max()) + 1.0)
      throw bad("expected an integer");
    return static_cast<T>(d);
  }
  throw bad("expected an integer");
}

template <typename T>
std::vector<T> json_ints(const nlohmann::json& j) {
  if (!j.is_array()) throw nlohmann::json::type_error::create(302, "expected an array of integers, got " + j.dump(), &j);
  std::vector<T> v;
  v.reserve(j.size());
  for (const nlohmann::json& e : j) v.push_back(json_int<T>(e));
  return v;
}

}  // namespace catq

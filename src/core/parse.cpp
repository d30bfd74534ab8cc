#include "core/parse.h"

#include <cmath>
#include <exception>

#include "core/error.h"

namespace catq {

double parse_count(const std::string& s, const std::string& what) {
  CATQ_CHECK(!s.empty(), Usage, "{}: empty value (expected a number such as 5M, 1.5e9 or 300k)", what);
  double mult = 1;
  std::string num = s;
  switch (s.back()) {
    case 'k': case 'K': mult = 1e3; break;
    case 'M': mult = 1e6; break;
    case 'B': case 'G': mult = 1e9; break;
    case 'T': mult = 1e12; break;
    default: break;
  }
  if (mult != 1) num.pop_back();
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(num, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  CATQ_CHECK(used == num.size() && !num.empty() && std::isfinite(v), Usage,
             "{}: '{}' is not a number (expected e.g. 5M, 1.5e9, 300k, 2B)", what, s);
  return v * mult;
}

}  // namespace catq

// Parsing of human-written numbers shared by several commands and methods.
#pragma once
#include <string>

namespace catq {

// "5M", "1.5e9", "300k", "2B", "1T" → number (k/K = 1e3, M = 1e6, B/G = 1e9, T = 1e12). Error(Usage) naming
// `what` for anything else.
double parse_count(const std::string& s, const std::string& what);

}  // namespace catq

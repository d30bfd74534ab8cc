// The exact multiple-choice knapsack both mixed-precision allocators use (CNN bit widths, methods/cnn/mixed_precision.h;
// GGUF tensor types to a bits-per-weight target, methods/llm/gguf_quantize.h): min Σ loss[l][c_l] subject to
// Σ cost[l][c_l] ≤ budget, by dynamic programming over costs rounded *up* to budget / resolution, so the answer never
// exceeds the budget (it may miss the optimum by that rounding).
#pragma once
#include <vector>

namespace catq {

// cost[l][c] and loss[l][c] per item and candidate; returns the chosen candidate index per item. Error(Config) when
// even the cheapest choices exceed the budget.
std::vector<int> knapsack_choose(const std::vector<std::vector<double>>& cost, const std::vector<std::vector<double>>& loss,
                                 double budget, int resolution = 4000);

}  // namespace catq

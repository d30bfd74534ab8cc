#include "methods/knapsack.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace catq {

std::vector<int> knapsack_choose(const std::vector<std::vector<double>>& cost, const std::vector<std::vector<double>>& loss,
                                 double budget, int resolution) {
  CATQ_CHECK(std::isfinite(budget) && budget > 0, Config, "mixed precision: budget {} must be positive", budget);
  CATQ_CHECK(resolution >= 10, Config, "mixed precision: resolution {} too small", resolution);
  const size_t L = cost.size();
  CATQ_CHECK(loss.size() == L, Internal, "knapsack: cost and loss tables differ in size");
  double cheapest = 0;
  for (const auto& c : cost) cheapest += *std::min_element(c.begin(), c.end());
  CATQ_CHECK(cheapest <= budget, Config, "mixed precision: the budget {:.6g} is below the cheapest allocation ({:.6g})",
             budget, cheapest);
  const double unit = budget / resolution;
  const double inf = std::numeric_limits<double>::infinity();
  // dp[l][u]: least loss of layers < l using u units; choice[l][u]: candidate of layer l - 1 on that path.
  std::vector<std::vector<double>> dp(L + 1, std::vector<double>(resolution + 1, inf));
  std::vector<std::vector<int>> choice(L + 1, std::vector<int>(resolution + 1, -1));
  dp[0][0] = 0;
  for (size_t l = 0; l < L; ++l) {
    for (size_t c = cost[l].size(); c-- > 0;) {  // higher candidates first: they win ties
      // Rounded up: Σ of rounded costs ≥ Σ of real costs, so every DP-feasible set is really feasible.
      const double units = std::ceil(cost[l][c] / unit - 1e-9);
      if (units > resolution) continue;
      const int du = static_cast<int>(std::max(units, 0.0));
      for (int u = 0; u + du <= resolution; ++u) {
        if (dp[l][u] == inf) continue;
        const double v = dp[l][u] + loss[l][c];
        if (v < dp[l + 1][u + du]) {
          dp[l + 1][u + du] = v;
          choice[l + 1][u + du] = static_cast<int>(c);
        }
      }
    }
  }
  int best_u = -1;
  for (int u = 0; u <= resolution; ++u)
    if (dp[L][u] < inf && (best_u < 0 || dp[L][u] <= dp[L][best_u])) best_u = u;  // ties: spend the budget
  if (best_u < 0) {
    // Rounding up made every set look too expensive (a budget at or just above the cheapest allocation): the
    // cheapest choice per layer fits for real (checked above).
    std::vector<int> pick(L);
    for (size_t l = 0; l < L; ++l)
      pick[l] = static_cast<int>(std::min_element(cost[l].begin(), cost[l].end()) - cost[l].begin());
    return pick;
  }
  std::vector<int> pick(L);
  int u = best_u;
  for (size_t l = L; l > 0; --l) {
    const int c = choice[l][u];
    pick[l - 1] = c;
    u -= static_cast<int>(std::max(std::ceil(cost[l - 1][c] / unit - 1e-9), 0.0));
  }
  return pick;
}

}  // namespace catq

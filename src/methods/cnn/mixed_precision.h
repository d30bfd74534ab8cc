// Budget-constrained mixed precision for CNNs (methods.md §5, the seed's description): each quantizable layer
// gets a bit width b from the candidates (default {2, 4, 8}; weights and input activations both at b) — or, with
// `pairs`, a (weight bits, activation bits) pair such as W4A8 or W2A4, decoupled — so that
// the model's cost stays within a budget:
//   BOPs  = Σ_l MACs_l · b_w,l · b_a,l           (per image)
//   bytes = Σ_l numel(W_l) · b_w,l / 8           (weight codes; scales and zero-points not counted)
// The first conv and the last linear stay at 8 bits (the academic setting) and count at that cost.
//
// Two allocators:
//   knapsack  per-layer sensitivity s_l(b) = KL(FP ‖ model with only layer l at b bits, the rest at 8) on the
//             calibration images, then the multiple-choice knapsack min Σ s_l(b_l) s.t. cost ≤ budget, solved
//             exactly by dynamic programming over costs rounded *up* to 1/resolution of the budget (so the
//             answer never exceeds the budget; it may miss the optimum by that rounding).
//   gumbel    differentiable search: logits θ_l over the candidates, relaxed choice g_l = softmax((θ_l + G)/τ)
//             (G Gumbel noise, τ annealed geometrically τ0 → τ1); the layer's weight and input are Σ_c g_lc ·
//             Q_c(·); loss = KL(FP ‖ mixture) + λ·(E[cost]/budget − 1) with E[cost] = Σ_l Σ_c g_lc cost_l(c);
//             dual ascent λ ← max(0, λ + η·(E[cost]/budget − 1)) each step; at the end b_l = argmax θ_l. If the
//             argmax exceeds the budget, layers are lowered one step at a time, cheapest loss of preference
//             (θ) per saved cost first, until it fits: the result never exceeds the budget either. Then layers
//             are raised one step at a time (most θ-preferred per added cost first) while the budget allows:
//             the relaxation's argmax tends to end well below the budget (measured: 70–79 % of it on ResNet-20).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "methods/knapsack.h"
#include "sim/executor.h"
#include "sim/quant_config.h"

namespace catq {

enum class BudgetKind { Bops, Bytes };

// A candidate of the allocation: weight bits and input-activation bits of one layer.
struct BitPair {
  int w = 8, a = 8;
  bool operator==(const BitPair& o) const { return w == o.w && a == o.a; }
  std::string str() const;  // "w4a8"
};
// Parses "wWaA" (e.g. w4a8); Error(Usage) naming `what` otherwise.
BitPair parse_bit_pair(const std::string& s, const std::string& what);

struct MpLayer {
  std::string name;
  int64_t macs = 0;          // per image
  int64_t weight_numel = 0;
  bool fixed = false;        // first / last layer: always fixed_bits
  int fixed_bits = 8;
};

// The executor's layers with their costs; `sample` (a batch of images) is run once to measure conv output sizes.
std::vector<MpLayer> mp_layers(const GraphExecutor& ex, const at::Tensor& sample);
double layer_cost(const MpLayer& l, int bits, BudgetKind k);
double layer_cost(const MpLayer& l, BitPair bits, BudgetKind k);  // BOPs MACs·w·a, bytes numel·w/8
double total_cost(const std::vector<MpLayer>& layers, const std::vector<int>& bits, BudgetKind k);
// The cost of every free layer at `bits` (fixed layers at their own bits).
double uniform_cost(const std::vector<MpLayer>& layers, int bits, BudgetKind k);

// Parses a budget: a number with an optional k/M/G/T suffix, or "wN" = the cost of uniform N-bit layers
// (e.g. --budget-bops w3 is what uniform W3A3 would cost). Error(Usage) naming `what` otherwise.
double parse_budget(const std::string& s, const std::vector<MpLayer>& layers, BudgetKind k, const std::string& what);


struct MixedPrecisionOptions {
  std::string allocator = "knapsack";       // knapsack | gumbel
  std::vector<int> candidates = {2, 4, 8};  // ascending; WbAb each
  std::vector<BitPair> pairs;               // decoupled candidates instead (any order; sorted by cost)
  BudgetKind kind = BudgetKind::Bops;
  double budget = 0;
  int64_t max_images = 512;                 // calibration images used for sensitivities / the search
  // gumbel
  int64_t iters = 300;
  int64_t batch = 64;
  double lr = 0.05;                         // Adam on θ
  double tau0 = 1.0, tau1 = 0.1;
  double dual_lr = 0.5;
  uint64_t seed = 0;
};

struct MixedPrecisionResult {
  std::vector<std::string> layers;
  std::vector<int> bits;      // weight bits per layer
  std::vector<int> act_bits;  // input-activation bits per layer (= bits unless pairs were given)
  double cost = 0, budget = 0;
  QuantConfig config;       // academic_config with one override per free layer
  nlohmann::json report;    // allocator, costs, per-layer sensitivities or final θ, λ trace
};

// Allocates bit widths for the BN-folded executor `ex` (academic setting) on calibration images [N, C, H, W].
// Error(Config) for an empty / unsorted candidate list, bits outside 2..8, a non-positive or unreachable budget.
MixedPrecisionResult allocate_bits(const GraphExecutor& ex, const at::Tensor& calib_images, const MixedPrecisionOptions& o);

}  // namespace catq

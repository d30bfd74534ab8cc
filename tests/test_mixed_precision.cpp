// Budgeted mixed precision (src/methods/mixed_precision.h): the exact knapsack against brute force, the budget
// never exceeded (random instances, both allocators on a tiny CNN, BOPs and bytes), costs, budget parsing, and
// bad input.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "core/error.h"
#include "ir/builder.h"
#include "methods/cnn/pipeline.h"
#include "methods/cnn/mixed_precision.h"
#include "sim/sim_quant.h"

using namespace catq;

namespace {

Graph tiny_cnn() {
  torch::manual_seed(11);
  GraphBuilder b("tiny_mp");
  std::string x = b.input("image", {-1, 3, 8, 8});
  x = b.relu(b.conv(x, 3, 8, 3, 1, 1, "c1"));
  x = b.relu(b.conv(x, 8, 16, 3, 2, 1, "c2"));
  x = b.relu(b.conv(x, 16, 16, 3, 1, 1, "c3"));
  x = b.relu(b.conv(x, 16, 8, 1, 1, 0, "c4"));
  x = b.flatten(b.op("GlobalAveragePool", {x}));
  b.output(b.linear(x, 8, 4, "fc"));
  return b.build();
}

}  // namespace

TEST(MixedPrecision, KnapsackIsExactAndWithinBudgetOnRandomInstances) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> U(0.0, 1.0);
  for (int trial = 0; trial < 40; ++trial) {
    const int L = 2 + trial % 5, C = 3;
    std::vector<std::vector<double>> cost(L, std::vector<double>(C)), loss(L, std::vector<double>(C));
    double cheapest = 0, dearest = 0;
    for (int l = 0; l < L; ++l) {
      const double macs = 1 + 100 * U(rng);
      const int bits[3] = {2, 4, 8};
      for (int c = 0; c < C; ++c) {
        cost[l][c] = macs * bits[c] * bits[c];
        loss[l][c] = (C - 1 - c) * U(rng) * 3;  // fewer bits, more loss (not always proportionally)
      }
      cheapest += cost[l][0];
      dearest += cost[l][C - 1];
    }
    const double budget = cheapest + (dearest - cheapest) * U(rng) * 0.7;
    std::vector<int> pick = knapsack_choose(cost, loss, budget, 20000);
    double c_sum = 0, l_sum = 0;
    for (int l = 0; l < L; ++l) c_sum += cost[l][pick[l]], l_sum += loss[l][pick[l]];
    EXPECT_LE(c_sum, budget) << trial;
    // Brute force over all C^L choices.
    double best = 1e300;
    std::vector<int> idx(L, 0);
    while (true) {
      double cs = 0, ls = 0;
      for (int l = 0; l < L; ++l) cs += cost[l][idx[l]], ls += loss[l][idx[l]];
      if (cs <= budget) best = std::min(best, ls);
      int l = 0;
      while (l < L && ++idx[l] == C) idx[l++] = 0;
      if (l == L) break;
    }
    // Exact up to the cost rounding (1/20000 of the budget per layer): never better than the optimum, and at the
    // optimum unless the optimum sits within the rounding of the budget.
    EXPECT_GE(l_sum, best - 1e-9) << trial;
    if (l_sum > best + 1e-9) {
      // Only allowed if the brute-force optimum is within L rounding units of the budget.
      double slack = 1e300;
      std::fill(idx.begin(), idx.end(), 0);
      while (true) {
        double cs = 0, ls = 0;
        for (int l = 0; l < L; ++l) cs += cost[l][idx[l]], ls += loss[l][idx[l]];
        if (cs <= budget && std::fabs(ls - best) < 1e-12) slack = std::min(slack, budget - cs);
        int l = 0;
        while (l < L && ++idx[l] == C) idx[l++] = 0;
        if (l == L) break;
      }
      EXPECT_LE(slack, L * budget / 20000) << trial;
    }
  }
  // The cheapest allocation exactly at the budget is found despite the rounding.
  std::vector<std::vector<double>> cost = {{4, 16, 64}, {8, 32, 128}}, loss = {{2, 1, 0}, {2, 1, 0}};
  EXPECT_EQ(knapsack_choose(cost, loss, 12.0), (std::vector<int>{0, 0}));
  EXPECT_THROW(knapsack_choose(cost, loss, 11.0), Error);
  EXPECT_THROW(knapsack_choose(cost, loss, -1.0), Error);
}

TEST(MixedPrecision, CostsAndBudgetParsing) {
  GraphExecutor ex(tiny_cnn());
  at::Tensor img = torch::randn({2, 3, 8, 8});
  auto layers = mp_layers(ex, img);
  ASSERT_EQ(layers.size(), 5u);
  EXPECT_TRUE(layers[0].fixed);
  EXPECT_TRUE(layers[4].fixed);
  EXPECT_EQ(layers[0].macs, 8 * 8 * 8 * 3 * 9);    // 8×8 outputs × 8 channels × 27 weights each
  EXPECT_EQ(layers[1].macs, 4 * 4 * 16 * 8 * 9);   // stride 2
  EXPECT_EQ(layers[4].macs, 8 * 4);
  EXPECT_EQ(layers[2].weight_numel, 16 * 16 * 9);
  const double w4 = uniform_cost(layers, 4, BudgetKind::Bops);
  double expect = 0;
  for (const auto& l : layers) expect += l.macs * (l.fixed ? 64.0 : 16.0);
  EXPECT_DOUBLE_EQ(w4, expect);
  EXPECT_DOUBLE_EQ(parse_budget("w4", layers, BudgetKind::Bops, "--budget-bops"), w4);
  EXPECT_DOUBLE_EQ(parse_budget("2.5M", layers, BudgetKind::Bytes, "--budget-bytes"), 2.5e6);
  EXPECT_DOUBLE_EQ(layer_cost(layers[2], 2, BudgetKind::Bytes), 16 * 16 * 9 * 2 / 8.0);
  EXPECT_THROW(parse_budget("four", layers, BudgetKind::Bops, "--budget-bops"), Error);
}

// Both allocators on a tiny net at budgets between uniform 2-bit and uniform 8-bit: never above the budget, the
// config they return quantizes the net to exactly the bits they report.
TEST(MixedPrecision, AllocatorsNeverExceedTheBudget) {
  GraphExecutor ex(tiny_cnn());
  torch::manual_seed(12);
  at::Tensor images = torch::randn({64, 3, 8, 8});
  auto layers = mp_layers(ex, images);
  for (BudgetKind kind : {BudgetKind::Bops, BudgetKind::Bytes}) {
    const double lo = uniform_cost(layers, 2, kind), hi = uniform_cost(layers, 8, kind);
    for (const std::string alloc : {"knapsack", "gumbel"}) {
      for (double frac : {0.0, 0.1, 0.4}) {
        MixedPrecisionOptions o;
        o.allocator = alloc;
        o.kind = kind;
        o.budget = lo + frac * (hi - lo);
        o.iters = 40;
        o.batch = 32;
        MixedPrecisionResult r = allocate_bits(ex, images, o);
        EXPECT_LE(r.cost, o.budget) << alloc << " " << frac;
        EXPECT_DOUBLE_EQ(r.cost, total_cost(layers, r.bits, kind));
        EXPECT_EQ(r.bits.front(), 8);
        EXPECT_EQ(r.bits.back(), 8);
        if (frac == 0.0)
          for (size_t l = 1; l + 1 < r.bits.size(); ++l) EXPECT_EQ(r.bits[l], 2) << alloc;  // the only feasible one
        SimQuant sq(r.config);
        sq.bind(ex.layers());
        for (size_t l = 0; l < r.bits.size(); ++l) {
          EXPECT_EQ(sq.layer(r.layers[l]).weight_spec.bits, r.bits[l]) << r.layers[l];
          EXPECT_EQ(sq.layer(r.layers[l]).input_spec.bits, r.bits[l]) << r.layers[l];
        }
      }
    }
  }
  // A generous budget (1 % above uniform 8-bit: room for the cost rounding) keeps everything at 8 bits.
  MixedPrecisionOptions o;
  o.budget = uniform_cost(layers, 8, BudgetKind::Bops) * 1.01;
  MixedPrecisionResult r = allocate_bits(ex, images, o);
  for (int b : r.bits) EXPECT_EQ(b, 8);
}

// Decoupled weight / activation bits (--alloc-pairs): BOPs count MACs·w·a, the config carries both widths, and at
// the budget of uniform W4A4 with W2A4 / W4A4 / W4A8 / W8A8 on offer the allocation stays within it.
TEST(MixedPrecision, DecoupledWeightAndActivationBits) {
  GraphExecutor ex(tiny_cnn());
  torch::manual_seed(13);
  at::Tensor images = torch::randn({64, 3, 8, 8});
  auto layers = mp_layers(ex, images);
  for (const std::string alloc : {"knapsack", "gumbel"}) {
    MixedPrecisionOptions o;
    o.allocator = alloc;
    o.pairs = {parse_bit_pair("w8a8", "t"), parse_bit_pair("w2a4", "t"), parse_bit_pair("w4a8", "t"),
               parse_bit_pair("w4a4", "t")};  // any order
    o.budget = uniform_cost(layers, 4, BudgetKind::Bops);
    o.iters = 40;
    o.batch = 32;
    MixedPrecisionResult r = allocate_bits(ex, images, o);
    ASSERT_EQ(r.act_bits.size(), r.bits.size());
    EXPECT_LE(r.cost, o.budget) << alloc;
    double cost = 0;
    for (size_t l = 0; l < layers.size(); ++l) cost += layer_cost(layers[l], BitPair{r.bits[l], r.act_bits[l]}, o.kind);
    EXPECT_DOUBLE_EQ(r.cost, cost);
    SimQuant sq(r.config);
    sq.bind(ex.layers());
    for (size_t l = 0; l < r.bits.size(); ++l) {
      EXPECT_EQ(sq.layer(r.layers[l]).weight_spec.bits, r.bits[l]) << r.layers[l];
      EXPECT_EQ(sq.layer(r.layers[l]).input_spec.bits, r.act_bits[l]) << r.layers[l];
    }
    EXPECT_EQ(r.report.at("candidates").front(), "w2a4");  // sorted by cost
  }
  EXPECT_EQ(layer_cost(layers[1], BitPair{2, 4}, BudgetKind::Bops), static_cast<double>(layers[1].macs) * 8);
  EXPECT_EQ(layer_cost(layers[1], BitPair{2, 4}, BudgetKind::Bytes), static_cast<double>(layers[1].weight_numel) / 4);
  EXPECT_THROW(parse_bit_pair("w4", "--alloc-pairs"), Error);
  EXPECT_THROW(parse_bit_pair("w4a9", "--alloc-pairs"), Error);
  EXPECT_THROW(parse_bit_pair("w4a4x", "--alloc-pairs"), Error);
  MixedPrecisionOptions o;
  o.pairs = {BitPair{4, 4}, BitPair{4, 4}};
  o.budget = uniform_cost(layers, 4, BudgetKind::Bops);
  EXPECT_THROW(allocate_bits(ex, images, o), Error);
}

TEST(MixedPrecision, BadInput) {
  GraphExecutor ex(tiny_cnn());
  at::Tensor images = torch::randn({8, 3, 8, 8});
  auto layers = mp_layers(ex, images);
  MixedPrecisionOptions o;
  o.budget = uniform_cost(layers, 2, BudgetKind::Bops) * 0.99;  // below the cheapest
  EXPECT_THROW(allocate_bits(ex, images, o), Error);
  o.budget = uniform_cost(layers, 4, BudgetKind::Bops);
  o.candidates = {4, 2};
  EXPECT_THROW(allocate_bits(ex, images, o), Error);
  o.candidates = {1, 4};
  EXPECT_THROW(allocate_bits(ex, images, o), Error);
  o.candidates = {2, 4, 8};
  o.allocator = "random";
  EXPECT_THROW(allocate_bits(ex, images, o), Error);
}

#include "methods/cnn/mixed_precision.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "core/error.h"
#include "core/progress.h"
#include "eval/classification.h"
#include "methods/cnn/pipeline.h"
#include "core/parse.h"
#include "methods/cnn/rtn.h"
#include "sim/sim_quant.h"

namespace catq {

using nlohmann::json;

std::vector<MpLayer> mp_layers(const GraphExecutor& ex, const at::Tensor& sample) {
  std::vector<MpLayer> out;
  for (const LayerInfo& l : ex.layers()) {
    MpLayer m;
    m.name = l.name;
    m.macs = l.macs_per_sample;
    m.weight_numel = 1;
    for (int64_t d : l.weight_shape) m.weight_numel *= d;
    m.fixed = l.is_first || l.is_last;
    out.push_back(m);
  }
  // Conv MACs depend on the output size: one forward of one image gives it (MACs = outputs · weight numel / O).
  if (sample.defined() && sample.size(0) > 0) {
    auto& hook = const_cast<GraphExecutor&>(ex).on_layer_output;
    auto saved = hook;
    hook = [&](const LayerInfo& l, const at::Tensor& y) {
      MpLayer& m = out.at(l.index);
      const int64_t per_sample = y.numel() / std::max<int64_t>(y.size(0), 1);
      m.macs = per_sample * (m.weight_numel / std::max<int64_t>(l.weight_shape.at(0), 1));
    };
    try {
      at::NoGradGuard ng;
      ex.forward(sample.slice(0, 0, 1));
    } catch (...) {
      hook = saved;
      throw;
    }
    hook = saved;
  }
  return out;
}

std::string BitPair::str() const { return fmt::format("w{}a{}", w, a); }

BitPair parse_bit_pair(const std::string& s, const std::string& what) {
  int w = 0, a = 0;
  char tail = 0;
  CATQ_CHECK(std::sscanf(s.c_str(), "w%da%d%c", &w, &a, &tail) == 2 && w >= 2 && w <= 8 && a >= 2 && a <= 8, Usage,
             "{} '{}': expected wWaA with weight and activation bits 2..8 (e.g. w4a8)", what, s);
  return {w, a};
}

double layer_cost(const MpLayer& l, BitPair bits, BudgetKind k) {
  const double w = l.fixed ? l.fixed_bits : bits.w, a = l.fixed ? l.fixed_bits : bits.a;
  return k == BudgetKind::Bops ? static_cast<double>(l.macs) * w * a : static_cast<double>(l.weight_numel) * w / 8.0;
}

double layer_cost(const MpLayer& l, int bits, BudgetKind k) { return layer_cost(l, BitPair{bits, bits}, k); }

double total_cost(const std::vector<MpLayer>& layers, const std::vector<int>& bits, BudgetKind k) {
  double c = 0;
  for (size_t i = 0; i < layers.size(); ++i) c += layer_cost(layers[i], bits.at(i), k);
  return c;
}

double uniform_cost(const std::vector<MpLayer>& layers, int bits, BudgetKind k) {
  return total_cost(layers, std::vector<int>(layers.size(), bits), k);
}

double parse_budget(const std::string& s, const std::vector<MpLayer>& layers, BudgetKind k, const std::string& what) {
  if (s.size() >= 2 && (s[0] == 'w' || s[0] == 'W') && std::all_of(s.begin() + 1, s.end(), ::isdigit)) {
    const int b = std::stoi(s.substr(1));
    CATQ_CHECK(b >= 1 && b <= 16, Usage, "{} '{}': uniform bits must be 1..16", what, s);
    return uniform_cost(layers, b, k);
  }
  return parse_count(s, what);
}


namespace {

// Routes each layer to the SimQuant of its chosen candidate (sensitivities, final checks).
struct RouteContext : QuantContext {
  std::vector<SimQuant*> sqs;
  std::vector<int> choice;  // per layer index
  void bind(const std::vector<LayerInfo>& layers) override {
    for (auto* s : sqs) s->bind(layers);
  }
  at::Tensor weight(const LayerInfo& l, const at::Tensor& w) override { return sqs[choice.at(l.index)]->weight(l, w); }
  at::Tensor input(const LayerInfo& l, const at::Tensor& x) override { return sqs[choice.at(l.index)]->input(l, x); }
};

// The relaxed model of the Gumbel search: Σ_c g_lc · Q_c(·) for free layers; fixed layers use candidate 0's
// quantizer (every candidate config keeps them at 8 bits).
struct MixContext : QuantContext {
  std::vector<SimQuant*> sqs;
  std::vector<bool> fixed;
  at::Tensor g;  // [layers, candidates], differentiable
  void bind(const std::vector<LayerInfo>& layers) override {
    for (auto* s : sqs) s->bind(layers);
  }
  template <typename F>
  at::Tensor mix(const LayerInfo& l, const F& q) {
    if (fixed.at(l.index)) return q(sqs[0]);
    at::Tensor out;
    for (size_t c = 0; c < sqs.size(); ++c) {
      at::Tensor t = q(sqs[c]) * g[l.index][static_cast<int64_t>(c)];
      out = out.defined() ? out + t : t;
    }
    return out;
  }
  at::Tensor weight(const LayerInfo& l, const at::Tensor& w) override {
    return mix(l, [&](SimQuant* s) { return s->weight(l, w); });
  }
  at::Tensor input(const LayerInfo& l, const at::Tensor& x) override {
    return mix(l, [&](SimQuant* s) { return s->input(l, x); });
  }
};

at::Tensor batched_logits(const GraphExecutor& ex, QuantContext* ctx, const at::Tensor& images) {
  return logits_of([&](const at::Tensor& x) { return ex.forward(x, ctx); }, images, 256);
}

}  // namespace

MixedPrecisionResult allocate_bits(const GraphExecutor& ex, const at::Tensor& calib_images, const MixedPrecisionOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<BitPair> cand = o.pairs;
  if (cand.empty()) {
    CATQ_CHECK(!o.candidates.empty() && std::is_sorted(o.candidates.begin(), o.candidates.end()) &&
                   std::adjacent_find(o.candidates.begin(), o.candidates.end()) == o.candidates.end(),
               Config, "mixed precision: candidate bits must be distinct and ascending");
    for (int b : o.candidates) cand.push_back({b, b});
  }
  for (const BitPair& b : cand)
    CATQ_CHECK(b.w >= 2 && b.w <= 8 && b.a >= 2 && b.a <= 8, Config, "mixed precision: candidate {} has bits outside "
               "2..8", b.str());
  // Cheapest first (BOPs: w·a; bytes: w), so "one step down / up" below means cheaper / dearer.
  std::stable_sort(cand.begin(), cand.end(), [&](const BitPair& x, const BitPair& y) {
    const int cx = o.kind == BudgetKind::Bops ? x.w * x.a : x.w, cy = o.kind == BudgetKind::Bops ? y.w * y.a : y.w;
    return cx != cy ? cx < cy : (x.w != y.w ? x.w < y.w : x.a < y.a);
  });
  for (size_t i = 1; i < cand.size(); ++i)
    CATQ_CHECK(!(cand[i] == cand[i - 1]), Config, "mixed precision: candidate {} given twice", cand[i].str());
  const bool equal_bits = std::all_of(cand.begin(), cand.end(), [](const BitPair& b) { return b.w == b.a; });
  // Report keys: "4bit" / "w4" as before for WbAb candidates, "w4a8" for decoupled ones.
  auto key = [&](const BitPair& b) { return equal_bits ? fmt::format("{}bit", b.w) : b.str(); };
  auto uniform_key = [&](const BitPair& b) { return equal_bits ? fmt::format("w{}", b.w) : b.str(); };
  auto uniform_pair_cost = [&](const std::vector<MpLayer>& ls, const BitPair& b) {
    double c = 0;
    for (const MpLayer& l : ls) c += layer_cost(l, b, o.kind);
    return c;
  };
  CATQ_CHECK(o.allocator == "knapsack" || o.allocator == "gumbel", Config,
             "mixed precision: allocator '{}', expected knapsack or gumbel", o.allocator);
  CATQ_CHECK(calib_images.defined() && calib_images.size(0) > 0, Data, "mixed precision: no calibration images");
  const std::vector<MpLayer> layers = mp_layers(ex, calib_images);
  const BudgetKind k = o.kind;
  const double cheapest = uniform_pair_cost(layers, cand.front());
  CATQ_CHECK(std::isfinite(o.budget) && o.budget >= cheapest, Config,
             "mixed precision: the budget {:.6g} {} is below the cheapest allocation, uniform {} ({:.6g})", o.budget,
             k == BudgetKind::Bops ? "BOPs" : "bytes", cand.front().str(), cheapest);
  at::Tensor images = calib_images.slice(0, 0, std::min<int64_t>(o.max_images, calib_images.size(0)));

  // One calibrated SimQuant per candidate (academic setting at c bits; first / last layer at 8 in all of them).
  std::vector<std::unique_ptr<SimQuant>> owned;
  std::vector<SimQuant*> sqs;
  for (const BitPair& c : cand) {
    owned.push_back(std::make_unique<SimQuant>(academic_config(c.str())));
    calibrate_rtn(ex, *owned.back(), images);
    sqs.push_back(owned.back().get());
  }
  const size_t L = layers.size(), C = cand.size();
  std::vector<std::vector<double>> cost(L, std::vector<double>(C));
  for (size_t l = 0; l < L; ++l)
    for (size_t c = 0; c < C; ++c) cost[l][c] = layer_cost(layers[l], cand[c], k);
  at::Tensor fp_logits = batched_logits(ex, nullptr, images);

  MixedPrecisionResult r;
  r.budget = o.budget;
  json cand_j = json::array();
  for (const BitPair& c : cand) cand_j.push_back(equal_bits ? json(c.w) : json(c.str()));
  json rep = {{"allocator", o.allocator}, {"candidates", cand_j}, {"images", images.size(0)},
              {"budget_kind", k == BudgetKind::Bops ? "bops" : "bytes"}, {"budget", o.budget}};
  std::vector<int> pick(L, static_cast<int>(C) - 1);
  if (o.allocator == "knapsack") {
    // Sensitivity of each free layer at each candidate, the rest at the highest candidate.
    RouteContext route;
    route.sqs = sqs;
    std::vector<std::vector<double>> loss(L, std::vector<double>(C, 0.0));
    route.choice.assign(L, static_cast<int>(C) - 1);
    const double base = kl_divergence(fp_logits, batched_logits(ex, &route, images));
    Progress bar("mixed precision: sensitivities", static_cast<int64_t>(L * (C - 1)));
    json sens = json::array();
    for (size_t l = 0; l < L; ++l) {
      json row = {{"layer", layers[l].name}};
      for (size_t c = 0; c + 1 < C; ++c) {
        if (!layers[l].fixed) {
          route.choice[l] = static_cast<int>(c);
          loss[l][c] = std::max(0.0, kl_divergence(fp_logits, batched_logits(ex, &route, images)) - base);
          route.choice[l] = static_cast<int>(C) - 1;
          row["kl_" + key(cand[c])] = loss[l][c];
        }
        bar.step();
      }
      sens.push_back(row);
    }
    bar.finish();
    // Fixed layers: a single (highest) choice.
    for (size_t l = 0; l < L; ++l)
      if (layers[l].fixed)
        for (size_t c = 0; c + 1 < C; ++c) cost[l][c] = std::numeric_limits<double>::infinity();
    pick = knapsack_choose(cost, loss, o.budget);
    rep["base_kl"] = base;
    rep["sensitivity"] = sens;
  } else {
    torch::manual_seed(o.seed);
    at::Tensor theta = torch::zeros({static_cast<int64_t>(L), static_cast<int64_t>(C)}).set_requires_grad(true);
    torch::optim::Adam opt(std::vector<at::Tensor>{theta}, torch::optim::AdamOptions(o.lr));
    at::Tensor cost_t = torch::zeros({static_cast<int64_t>(L), static_cast<int64_t>(C)});
    std::vector<bool> fixed(L);
    for (size_t l = 0; l < L; ++l) {
      fixed[l] = layers[l].fixed;
      for (size_t c = 0; c < C; ++c) cost_t[l][c] = cost[l][c];
    }
    at::Tensor free_mask = torch::tensor(std::vector<float>(L, 1.0f));
    for (size_t l = 0; l < L; ++l) free_mask[l] = fixed[l] ? 0.0f : 1.0f;
    const double fixed_cost = [&] {
      double s = 0;
      for (size_t l = 0; l < L; ++l) if (fixed[l]) s += cost[l][C - 1];
      return s;
    }();
    MixContext mix;
    mix.sqs = sqs;
    mix.fixed = fixed;
    double lambda = 0;
    at::Generator gen = make_generator(o.seed + 41);
    json trace = json::array();
    Progress bar("mixed precision: gumbel search", o.iters);
    for (int64_t it = 0; it < o.iters; ++it) {
      const double tau = o.tau0 * std::pow(o.tau1 / o.tau0, o.iters > 1 ? static_cast<double>(it) / (o.iters - 1) : 1.0);
      at::Tensor u = at::rand(theta.sizes(), gen).clamp(1e-6, 1 - 1e-6);
      at::Tensor gumbel = -at::log(-at::log(u));
      mix.g = at::softmax((theta + gumbel) / tau, 1);
      const int64_t b0 = (it * o.batch) % images.size(0);
      at::Tensor x = images.slice(0, b0, b0 + o.batch);
      at::Tensor t = fp_logits.slice(0, b0, b0 + o.batch);
      at::Tensor z = ex.forward(x, &mix);
      at::Tensor kl = at::kl_div(at::log_softmax(z, 1), at::log_softmax(t, 1), at::Reduction::Sum, true) / x.size(0);
      at::Tensor ecost = ((mix.g * cost_t).sum(1) * free_mask).sum() + fixed_cost;
      at::Tensor excess = ecost / o.budget - 1.0;
      at::Tensor loss = kl + lambda * excess;
      opt.zero_grad();
      loss.backward();
      opt.step();
      lambda = std::max(0.0, lambda + o.dual_lr * excess.item<double>());
      if (it % 25 == 0 || it + 1 == o.iters)
        trace.push_back({{"iter", it}, {"tau", tau}, {"kl", kl.item<double>()}, {"expected_cost_ratio", excess.item<double>() + 1},
                         {"lambda", lambda}});
      bar.step(1, fmt::format("kl {:.4f} cost/budget {:.3f} lambda {:.3g}", kl.item<double>(), excess.item<double>() + 1, lambda));
    }
    bar.finish();
    at::Tensor th = theta.detach();
    for (size_t l = 0; l < L; ++l) pick[l] = fixed[l] ? static_cast<int>(C) - 1 : static_cast<int>(th[l].argmax().item<int64_t>());
    // Repair: lower one layer one step at a time, the least loss of preference per saved cost first.
    int repaired = 0;
    auto cur_cost = [&] {
      double s = 0;
      for (size_t l = 0; l < L; ++l) s += cost[l][pick[l]];
      return s;
    };
    while (cur_cost() > o.budget) {
      int best = -1;
      double best_score = std::numeric_limits<double>::infinity();
      for (size_t l = 0; l < L; ++l) {
        if (fixed[l] || pick[l] == 0) continue;
        const double saved = cost[l][pick[l]] - cost[l][pick[l] - 1];
        if (saved <= 0) continue;
        const double score = (th[l][pick[l]].item<double>() - th[l][pick[l] - 1].item<double>()) / saved;
        if (score < best_score) best_score = score, best = static_cast<int>(l);
      }
      CATQ_CHECK(best >= 0, Internal, "mixed precision: cannot repair the allocation to fit the budget");
      --pick[best];
      ++repaired;
    }
    // Fill: the relaxation tends to end below the budget (E[cost] is held at the budget while the argmax rounds
    // many layers down); raise layers one step at a time, most θ-preferred per added cost first, while they fit.
    int filled = 0;
    while (true) {
      int best = -1;
      double best_score = -std::numeric_limits<double>::infinity();
      const double now = cur_cost();
      for (size_t l = 0; l < L; ++l) {
        if (fixed[l] || pick[l] + 1 >= static_cast<int>(C)) continue;
        const double extra = cost[l][pick[l] + 1] - cost[l][pick[l]];
        if (now + extra > o.budget) continue;
        const double score = (th[l][pick[l] + 1].item<double>() - th[l][pick[l]].item<double>()) / std::max(extra, 1e-12);
        if (score > best_score) best_score = score, best = static_cast<int>(l);
      }
      if (best < 0) break;
      ++pick[best];
      ++filled;
    }
    json th_j = json::array();
    for (size_t l = 0; l < L; ++l) {
      std::vector<double> row(C);
      for (size_t c = 0; c < C; ++c) row[c] = th[l][c].item<double>();
      th_j.push_back({{"layer", layers[l].name}, {"theta", row}});
    }
    rep["theta"] = th_j;
    rep["trace"] = trace;
    rep["repaired_steps"] = repaired;
    rep["filled_steps"] = filled;
    rep["iters"] = o.iters;
    rep["tau"] = {o.tau0, o.tau1};
    rep["dual_lr"] = o.dual_lr;
    rep["lr"] = o.lr;
    rep["seed"] = o.seed;
  }

  // The allocation as data: the academic config with one exact-name override per free layer.
  r.config = academic_config(cand.back().str());
  json alloc = json::array();
  for (size_t l = 0; l < L; ++l) {
    const BitPair b = layers[l].fixed ? BitPair{layers[l].fixed_bits, layers[l].fixed_bits} : cand[pick[l]];
    r.layers.push_back(layers[l].name);
    r.bits.push_back(b.w);
    r.act_bits.push_back(b.a);
    json row = {{"layer", layers[l].name}, {"cost", layer_cost(layers[l], b, k)}};
    if (equal_bits) row["bits"] = b.w;
    else row["weight_bits"] = b.w, row["act_bits"] = b.a;
    alloc.push_back(row);
    if (layers[l].fixed) continue;
    QuantConfig::Rule rule;
    std::string escaped;
    for (char ch : layers[l].name) {
      if (std::string("\\^$.|?*+()[]{}").find(ch) != std::string::npos) escaped += '\\';
      escaped += ch;
    }
    rule.pattern = "^" + escaped + "$";
    rule.is_regex = true;
    rule.re = std::make_shared<std::regex>(rule.pattern, std::regex::ECMAScript);
    rule.weight = json{{"bits", b.w}};
    rule.input = json{{"bits", b.a}};
    r.config.overrides.push_back(rule);
  }
  r.config.source = fmt::format("mixed precision ({}, {} budget {:.6g})", o.allocator,
                                k == BudgetKind::Bops ? "BOPs" : "bytes", o.budget);
  r.cost = 0;
  for (size_t l = 0; l < L; ++l) r.cost += layer_cost(layers[l], BitPair{r.bits[l], r.act_bits[l]}, k);
  CATQ_CHECK(r.cost <= o.budget * (1 + 1e-12), Internal, "mixed precision: allocation costs {} > budget {}", r.cost, o.budget);
  {
    RouteContext route;
    route.sqs = sqs;
    for (size_t l = 0; l < L; ++l) route.choice.push_back(pick[l]);
    rep["rtn_kl"] = kl_divergence(fp_logits, batched_logits(ex, &route, images));
  }
  rep["cost"] = r.cost;
  rep["uniform_costs"] = json::object();
  for (const BitPair& c : cand) rep["uniform_costs"][uniform_key(c)] = uniform_pair_cost(layers, c);
  rep["allocation"] = alloc;
  rep["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.report = rep;
  return r;
}

}  // namespace catq

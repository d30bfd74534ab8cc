#include "methods/qat/co_qat.h"

#include <cmath>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "core/error.h"

namespace catq {

double tokens_per_param_byte(double tokens, double params, double bits) {
  CATQ_CHECK(std::isfinite(tokens) && tokens > 0, Config, "QAT plan: tokens must be a positive number, got {}", tokens);
  CATQ_CHECK(std::isfinite(params) && params > 0, Config, "QAT plan: parameters must be a positive number, got {}",
             params);
  CATQ_CHECK(std::isfinite(bits) && bits >= 1 && bits <= 32, Config, "QAT plan: bits must be in 1..32, got {}", bits);
  return tokens / (params * bits / 8.0);
}

double optimal_qat_fraction(double s) {
  CATQ_CHECK(std::isfinite(s) && s > 1, Config,
             "QAT plan: tokens per parameter-byte S = {:.4g}; the published fit f = exp(-6.7297 / ln S) needs S > 1 "
             "(more training tokens than bytes of the quantized model)", s);
  return std::exp(-6.7297 / std::log(s));
}

namespace {
// The JSON keys in the order of the law's terms ("B" is the data coefficient; Bc in code, since B is the bits).
const std::vector<std::pair<const char*, double QatLossLaw::*>>& law_fields() {
  static const std::vector<std::pair<const char*, double QatLossLaw::*>> f = {
      {"E", &QatLossLaw::E},         {"A", &QatLossLaw::A},         {"alpha", &QatLossLaw::alpha},
      {"B", &QatLossLaw::Bc},        {"beta", &QatLossLaw::beta},   {"theta", &QatLossLaw::theta},
      {"kappa", &QatLossLaw::kappa}, {"phi", &QatLossLaw::phi},     {"chi", &QatLossLaw::chi},
      {"psi", &QatLossLaw::psi},     {"omega", &QatLossLaw::omega}, {"lambda", &QatLossLaw::lambda},
      {"mu", &QatLossLaw::mu},       {"nu", &QatLossLaw::nu},       {"xi", &QatLossLaw::xi},
      {"rho", &QatLossLaw::rho}};
  return f;
}
}  // namespace

QatLossLaw QatLossLaw::from_json(const nlohmann::json& j, const std::string& source) {
  CATQ_CHECK(j.is_object(), Config, "{}: expected a JSON object with the loss-law constants", source);
  QatLossLaw law;
  std::vector<std::string> names;
  for (const auto& [key, member] : law_fields()) {
    names.push_back(key);
    CATQ_CHECK(j.contains(key), Config, "{}: missing constant \"{}\" (expected E, A, alpha, B, beta, theta, kappa, "
               "phi, chi, psi, omega, lambda, mu, nu, xi, rho)", source, key);
    const auto& v = j.at(key);
    CATQ_CHECK(v.is_number() && std::isfinite(v.get<double>()), Config, "{}: \"{}\" must be a finite number", source,
               key);
    law.*member = v.get<double>();
  }
  for (const auto& [key, value] : j.items()) {
    bool known = key == "description";
    for (const auto& n : names) known = known || key == n;
    CATQ_CHECK(known, Config, "{}: unknown key \"{}\" (expected the 16 loss-law constants and description)", source, key);
  }
  return law;
}

nlohmann::json QatLossLaw::to_json() const {
  nlohmann::json j;
  for (const auto& [key, member] : law_fields()) j[key] = this->*member;
  return j;
}

double QatLossLaw::predict(double params, double tokens, double bits, double f) const {
  const double s = tokens_per_param_byte(tokens, params, bits);
  CATQ_CHECK(std::isfinite(f) && f > 0 && f < 1, Config, "QAT loss law: the QAT fraction must be in (0, 1), got {}", f);
  const double s_qat = f * s, s_fp = (1 - f) * s;
  return E + A / std::pow(params, alpha) + Bc / std::pow(tokens, beta) + theta * std::exp2(-kappa * bits) +
         phi * std::exp2(-chi * bits) / (std::pow(params, psi) * std::pow(s_qat, omega)) +
         lambda * std::exp2(-mu * bits) / (std::pow(params, nu) * std::pow(s_fp, xi) * std::pow(s_qat, rho));
}

double QatLossLaw::best_fraction(double params, double tokens, double bits) const {
  // Coarse log-spaced scan (the law can be flat or have its minimum near either end), then golden section.
  auto L = [&](double f) { return predict(params, tokens, bits, f); };
  const double lo = 1e-4, hi = 1 - 1e-4;
  int best_i = 0;
  std::vector<double> grid;
  for (int i = 0; i <= 200; ++i) {
    const double u = static_cast<double>(i) / 200;  // logit-spaced in (lo, hi)
    const double logit = std::log(lo / (1 - lo)) + u * (std::log(hi / (1 - hi)) - std::log(lo / (1 - lo)));
    grid.push_back(1 / (1 + std::exp(-logit)));
  }
  double best = INFINITY;
  for (int i = 0; i < static_cast<int>(grid.size()); ++i) {
    const double v = L(grid[i]);
    if (v < best) best = v, best_i = i;
  }
  double a = grid[std::max(0, best_i - 1)], b = grid[std::min(static_cast<int>(grid.size()) - 1, best_i + 1)];
  const double g = (std::sqrt(5.0) - 1) / 2;
  double c = b - g * (b - a), d = a + g * (b - a);
  while (b - a > 1e-6) {
    if (L(c) < L(d)) b = d; else a = c;
    c = b - g * (b - a);
    d = a + g * (b - a);
  }
  return (a + b) / 2;
}

QatPlan plan_qat(double params, double tokens, double bits, const QatLossLaw* law) {
  QatPlan p;
  p.params = params;
  p.tokens = tokens;
  p.bits = bits;
  p.s = tokens_per_param_byte(tokens, params, bits);
  p.fraction = optimal_qat_fraction(p.s);
  p.qat_tokens = p.fraction * tokens;
  p.fp_tokens = tokens - p.qat_tokens;
  if (law) {
    p.has_law = true;
    p.loss_at_fraction = law->predict(params, tokens, bits, p.fraction);
    p.law_best_fraction = law->best_fraction(params, tokens, bits);
    p.law_best_loss = law->predict(params, tokens, bits, p.law_best_fraction);
    p.loss_at_10pct = law->predict(params, tokens, bits, 0.1);
  }
  return p;
}

nlohmann::json to_json(const QatPlan& p) {
  nlohmann::json j = {{"params", p.params},
                      {"tokens", p.tokens},
                      {"bits", p.bits},
                      {"tokens_per_param_byte", p.s},
                      {"qat_fraction", p.fraction},
                      {"qat_tokens", p.qat_tokens},
                      {"fp_tokens", p.fp_tokens},
                      {"formula", "f = exp(-6.7297 / ln S), S = D / (N * B / 8)"}};
  if (p.has_law)
    j["loss_law"] = {{"loss_at_qat_fraction", p.loss_at_fraction},
                     {"best_fraction", p.law_best_fraction},
                     {"best_loss", p.law_best_loss},
                     {"loss_at_10_percent", p.loss_at_10pct}};
  return j;
}

QatFit fit_qat_law(const std::vector<QatRun>& runs, const QatFitOptions& o) {
  CATQ_CHECK(runs.size() >= 4, Data, "QAT law fit: {} runs; need at least 4", runs.size());
  CATQ_CHECK(o.restarts >= 1 && o.iters >= 1 && o.delta > 0, Config, "QAT law fit: restarts, iters and delta must be positive");
  const int64_t n = static_cast<int64_t>(runs.size());
  std::vector<double> logN, logD, bits, logSq, logSf, logL;
  for (size_t i = 0; i < runs.size(); ++i) {
    const QatRun& r = runs[i];
    CATQ_CHECK(r.params > 0 && r.tokens > 0 && r.bits > 0 && r.loss > 0 && r.fraction > 0 && r.fraction < 1, Data,
               "QAT law fit: run {} has N {}, D {}, bits {}, f {}, loss {}: expected positive values and f in (0, 1)", i,
               r.params, r.tokens, r.bits, r.fraction, r.loss);
    const double s = tokens_per_param_byte(r.tokens, r.params, r.bits);
    logN.push_back(std::log(r.params));
    logD.push_back(std::log(r.tokens));
    bits.push_back(r.bits);
    logSq.push_back(std::log(r.fraction * s));
    logSf.push_back(std::log((1 - r.fraction) * s));
    logL.push_back(std::log(r.loss));
  }
  auto opts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor tN = at::tensor(logN, opts), tD = at::tensor(logD, opts), tB = at::tensor(bits, opts) * std::log(2.0);
  at::Tensor tSq = at::tensor(logSq, opts), tSf = at::tensor(logSf, opts), tL = at::tensor(logL, opts);
  // θ = [e, a, α, b, β, t, κ, p, χ, ψ, ω, l, μ, ν, ξ, ρ]; coefficients are exp(e), exp(a), ...; exponents are
  // softplus(·) ≥ 0, so every term falls with N, D, bits, S_qat and S_fp as the law intends (and the optimum in f
  // is interior: f → 0 starves S_qat, f → 1 starves S_fp).
  static const bool is_exponent[16] = {false, false, true, false, true, false, true, false, true, true, true,
                                       false, true, true, true, true};
  auto log_pred = [&](const at::Tensor& raw) {
    at::Tensor th = at::where(at::tensor(std::vector<uint8_t>(is_exponent, is_exponent + 16)).to(at::kBool),
                              at::softplus(raw), raw);
    auto c = [&](int i) { return th[i]; };
    at::Tensor terms = at::stack({c(0).expand({n}), c(1) - c(2) * tN, c(3) - c(4) * tD, c(5) - c(6) * tB,
                                  c(7) - c(8) * tB - c(9) * tN - c(10) * tSq,
                                  c(11) - c(12) * tB - c(13) * tN - c(14) * tSf - c(15) * tSq}, 0);
    return at::logsumexp(terms, 0);
  };
  auto objective = [&](const at::Tensor& th) {
    at::Tensor r = log_pred(th) - tL;
    return at::huber_loss(r, at::zeros_like(r), at::Reduction::Mean, o.delta) / o.delta;
  };
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed + 1);
  const double lmin = *std::min_element(logL.begin(), logL.end());
  // Initial ranges: E below the smallest loss, coefficients around the loss scale, exponents in (0, 1.5).
  const std::vector<std::pair<double, double>> ranges = {
      {lmin - 2.0, lmin - 0.05}, {0, 6}, {0.05, 0.8}, {0, 6}, {0.05, 0.8}, {-4, 2}, {0.2, 2}, {-4, 3}, {0.2, 2},
      {0.0, 0.6}, {0.0, 0.8}, {-4, 3}, {0.2, 2}, {0.0, 0.6}, {0.0, 0.8}, {0.0, 0.8}};
  at::Tensor best;
  double best_obj = INFINITY;
  for (int r = 0; r < o.restarts; ++r) {
    std::vector<double> init;
    at::Tensor u = at::rand({16}, gen, opts);
    for (int i = 0; i < 16; ++i) {
      const double v = ranges[i].first + (ranges[i].second - ranges[i].first) * u[i].item<double>();
      init.push_back(is_exponent[i] ? std::log(std::expm1(std::max(v, 1e-3))) : v);  // softplus⁻¹
    }
    at::Tensor th = at::tensor(init, opts).set_requires_grad(true);
    torch::optim::LBFGS opt({th}, torch::optim::LBFGSOptions(1.0).max_iter(o.iters).line_search_fn("strong_wolfe")
                                      .tolerance_grad(1e-12).tolerance_change(1e-14));
    auto closure = [&] {
      opt.zero_grad();
      at::Tensor l = objective(th);
      l.backward();
      return l;
    };
    try {
      opt.step(closure);
    } catch (const c10::Error&) {
      continue;  // a diverging start: skip it
    }
    at::NoGradGuard ng;
    const double v = objective(th).item<double>();
    if (std::isfinite(v) && v < best_obj) {
      best_obj = v;
      best = th.detach().clone();
    }
  }
  CATQ_CHECK(best.defined(), Data, "QAT law fit: no restart converged to a finite objective");
  auto v = [&](int i) {
    const double x = best[i].item<double>();
    return is_exponent[i] ? (x > 30 ? x : std::log1p(std::exp(x))) : x;
  };
  QatFit f;
  f.law.E = std::exp(v(0));
  f.law.A = std::exp(v(1));
  f.law.alpha = v(2);
  f.law.Bc = std::exp(v(3));
  f.law.beta = v(4);
  f.law.theta = std::exp(v(5));
  f.law.kappa = v(6);
  f.law.phi = std::exp(v(7));
  f.law.chi = v(8);
  f.law.psi = v(9);
  f.law.omega = v(10);
  f.law.lambda = std::exp(v(11));
  f.law.mu = v(12);
  f.law.nu = v(13);
  f.law.xi = v(14);
  f.law.rho = v(15);
  f.objective = best_obj;
  f.runs = static_cast<int>(n);
  double rel = 0;
  for (const QatRun& r : runs) rel += std::fabs(f.law.predict(r.params, r.tokens, r.bits, r.fraction) - r.loss) / r.loss;
  f.mean_abs_rel = rel / static_cast<double>(n);
  return f;
}

}  // namespace catq

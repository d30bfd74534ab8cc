// Compute-optimal QAT planning (src/methods/co_qat.h): the published fraction formula at the values methods.md
// lists, the loss law and its optimum, input errors.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "methods/co_qat.h"

using namespace catq;

TEST(QatPlan, FractionMatchesThePublishedValues) {
  // methods.md §5: S = 10 → 0.05, 100 → 0.23, 1e3 → 0.38, 1e4 → 0.48, 1e5 → 0.56 (two decimals).
  const std::pair<double, double> table[] = {{10, 0.05}, {100, 0.23}, {1e3, 0.38}, {1e4, 0.48}, {1e5, 0.56}};
  for (auto [s, f] : table) EXPECT_NEAR(optimal_qat_fraction(s), f, 0.005) << s;
  // Monotone in S, and tends to 0 as S → 1⁺.
  EXPECT_LT(optimal_qat_fraction(50), optimal_qat_fraction(51));
  EXPECT_LT(optimal_qat_fraction(1.01), 1e-100);
}

TEST(QatPlan, TokensPerParameterByte) {
  // 1B parameters at 4 bits = 0.5 GB; 100B tokens → S = 200.
  EXPECT_DOUBLE_EQ(tokens_per_param_byte(100e9, 1e9, 4), 200.0);
  QatPlan p = plan_qat(1e9, 100e9, 4);
  EXPECT_DOUBLE_EQ(p.s, 200.0);
  EXPECT_NEAR(p.fraction, std::exp(-6.7297 / std::log(200.0)), 1e-12);
  EXPECT_NEAR(p.qat_tokens + p.fp_tokens, 100e9, 1);
  EXPECT_FALSE(p.has_law);
  EXPECT_DOUBLE_EQ(parse_count("5M", "x"), 5e6);
  EXPECT_DOUBLE_EQ(parse_count("1.5e9", "x"), 1.5e9);
  EXPECT_DOUBLE_EQ(parse_count("300k", "x"), 3e5);
  EXPECT_DOUBLE_EQ(parse_count("2B", "x"), 2e9);
}

namespace {
// A law with only the QAT/FP interaction terms: L = E + φ/S_qat^ω + λ/S_fp^ξ (N^0 = 1, 2^0 = 1).
// d/df [φ (fS)^-ω + λ ((1-f)S)^-ξ] = 0 with ω = ξ = 1 gives f* = √φ / (√φ + √λ), independent of S.
QatLossLaw interaction_law(double phi, double lambda) {
  QatLossLaw l;
  l.E = 1.5;
  l.phi = phi;
  l.omega = 1;
  l.lambda = lambda;
  l.xi = 1;
  return l;
}
}  // namespace

TEST(QatPlan, LossLawValueAndOptimum) {
  QatLossLaw l = interaction_law(4, 1);
  const double n = 1e6, d = 1e8, b = 4;  // S = 200
  EXPECT_NEAR(l.predict(n, d, b, 0.5), 1.5 + 4 / 100.0 + 1 / 100.0, 1e-12);
  EXPECT_NEAR(l.best_fraction(n, d, b), 2.0 / 3.0, 1e-4);
  // Every term: a hand-evaluated full law.
  QatLossLaw f;
  f.E = 1; f.A = 2; f.alpha = 0.5; f.Bc = 3; f.beta = 0.25; f.theta = 0.5; f.kappa = 1; f.phi = 1; f.chi = 0.5;
  f.psi = 0.1; f.omega = 0.5; f.lambda = 2; f.mu = 0.25; f.nu = 0.2; f.xi = 0.3; f.rho = 0.4;
  const double s = d / (n * b / 8), sq = 0.3 * s, sf = 0.7 * s;
  const double want = 1 + 2 / std::pow(n, 0.5) + 3 / std::pow(d, 0.25) + 0.5 * std::pow(2, -4.0) +
                      std::pow(2, -2.0) / (std::pow(n, 0.1) * std::pow(sq, 0.5)) +
                      2 * std::pow(2, -1.0) / (std::pow(n, 0.2) * std::pow(sf, 0.3) * std::pow(sq, 0.4));
  EXPECT_NEAR(f.predict(n, d, b, 0.3), want, 1e-12);
  // JSON round trip, and the plan carries the law's numbers.
  QatLossLaw back = QatLossLaw::from_json(f.to_json(), "test");
  EXPECT_DOUBLE_EQ(back.predict(n, d, b, 0.3), want);
  QatPlan p = plan_qat(n, d, b, &l);
  EXPECT_TRUE(p.has_law);
  EXPECT_NEAR(p.law_best_fraction, 2.0 / 3.0, 1e-4);
  EXPECT_LE(p.law_best_loss, p.loss_at_fraction);
  EXPECT_LE(p.law_best_loss, p.loss_at_10pct);
}

TEST(BadInputQatPlan, ClearErrors) {
  auto kind = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.kind();
    }
    return ErrorKind::Internal;
  };
  EXPECT_EQ(kind([] { tokens_per_param_byte(1e6, 0, 4); }), ErrorKind::Config);
  EXPECT_EQ(kind([] { tokens_per_param_byte(-1, 1e6, 4); }), ErrorKind::Config);
  EXPECT_EQ(kind([] { tokens_per_param_byte(1e6, 1e6, 0); }), ErrorKind::Config);
  EXPECT_EQ(kind([] { optimal_qat_fraction(0.5); }), ErrorKind::Config);  // fewer tokens than bytes
  EXPECT_EQ(kind([] { optimal_qat_fraction(NAN); }), ErrorKind::Config);
  EXPECT_EQ(kind([] { interaction_law(1, 1).predict(1e6, 1e8, 4, 1.0); }), ErrorKind::Config);
  EXPECT_EQ(kind([] { QatLossLaw::from_json(nlohmann::json{{"E", 1}}, "law.json"); }), ErrorKind::Config);
  nlohmann::json j = interaction_law(1, 1).to_json();
  j["gamma"] = 1;
  EXPECT_EQ(kind([&] { QatLossLaw::from_json(j, "law.json"); }), ErrorKind::Config);
  j.erase("gamma");
  j["E"] = "one";
  EXPECT_EQ(kind([&] { QatLossLaw::from_json(j, "law.json"); }), ErrorKind::Config);
  EXPECT_EQ(kind([] { parse_count("5X", "--params"); }), ErrorKind::Usage);
  EXPECT_EQ(kind([] { parse_count("", "--params"); }), ErrorKind::Usage);
  EXPECT_EQ(kind([] { parse_count("M", "--params"); }), ErrorKind::Usage);
}

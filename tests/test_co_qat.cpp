// Compute-optimal QAT planning (src/methods/co_qat.h): the published fraction formula at the values methods.md
// lists, the loss law and its optimum, input errors.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "core/parse.h"
#include "methods/qat/co_qat.h"

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

// ---- FP → QAT runs (src/methods/qat_llm.h) and the loss-law fit ----------------------------------------------

#include <torch/torch.h>

#include "io/catq_file.h"
#include "llm/train_llm.h"
#include "methods/qat/llm_qat.h"

TEST(QatSchedules, FusedSwitchesAtPeakAndDecaysInsideQat) {
  PhaseSchedules p = fp_qat_schedules(1000, 0.3, QatScheduleKind::Fused, 1e-3, 0.05, 0.2);
  EXPECT_EQ(p.fp_steps, 700);
  EXPECT_EQ(p.qat_steps, 300);
  EXPECT_EQ(p.qat_first_step, 700);
  EXPECT_DOUBLE_EQ(p.fp.lr(699), 1e-3);      // the FP phase ends at the peak
  EXPECT_DOUBLE_EQ(p.qat.lr(700), 1e-3);     // QAT starts there, no re-warmup
  EXPECT_EQ(p.qat.decay_steps(), 200);       // decay_frac·T, inside the QAT phase
  EXPECT_LT(p.qat.lr(999), 1e-5);
  // A QAT phase shorter than the decay holds the whole decay.
  PhaseSchedules s = fp_qat_schedules(1000, 0.05, QatScheduleKind::Fused, 1e-3, 0.05, 0.2);
  EXPECT_EQ(s.qat_steps, 50);
  EXPECT_EQ(s.qat.decay_steps(), 50);
  EXPECT_DOUBLE_EQ(s.fp.lr(949), 1e-3);
}

TEST(QatSchedules, ClassicCoolsDownThenRewarms) {
  PhaseSchedules p = fp_qat_schedules(1000, 0.3, QatScheduleKind::Classic, 1e-3, 0.05, 0.2);
  EXPECT_EQ(p.fp.total_steps, 700);
  EXPECT_EQ(p.qat.total_steps, 300);
  EXPECT_EQ(p.qat_first_step, 0);
  EXPECT_LT(p.fp.lr(699), 1e-5);             // the FP phase has its own cooldown
  EXPECT_LT(p.qat.lr(0), 1e-4);              // QAT warms up again
  EXPECT_DOUBLE_EQ(p.qat.lr(100), 1e-3);
  EXPECT_LT(p.qat.lr(299), 2e-5);            // last step: one decay step above lr_min = 0
  EXPECT_THROW(fp_qat_schedules(1000, 1.5, QatScheduleKind::Classic, 1e-3, 0.05, 0.2), Error);
  EXPECT_THROW(fp_qat_schedules(0, 0.5, QatScheduleKind::Fused, 1e-3, 0.05, 0.2), Error);
  EXPECT_THROW(parse_qat_schedule("fusion"), Error);
  EXPECT_EQ(fp_qat_schedules(10, 0.0, QatScheduleKind::Fused, 1e-3, 0.05, 0.2).qat_steps, 0);
  EXPECT_EQ(fp_qat_schedules(10, 1.0, QatScheduleKind::Classic, 1e-3, 0.05, 0.2).fp_steps, 0);
}

TEST(QatLlm, WeightOnlyConfigKeepsTheHeadFp) {
  LlamaConfig c;
  c.dim = 16; c.hidden_dim = 32; c.n_layers = 1; c.n_heads = 2; c.n_kv_heads = 2; c.vocab_size = 20; c.seq_len = 16;
  LlamaModel m = LlamaModel::random(c, 1);
  for (int bits : {1, 2, 4}) {
    SimQuant sq(weight_only_qat_config(bits));
    m.bind(&sq);
    for (const auto& l : m.layer_infos()) {
      const auto& sl = sq.layer(l.name);
      EXPECT_FALSE(sl.input_spec.enabled) << l.name;
      EXPECT_EQ(sl.weight_spec.enabled, l.name != "output") << l.name;
      if (l.name != "output") EXPECT_EQ(sl.weight_spec.bits, bits);
    }
  }
  EXPECT_EQ(SimQuant(weight_only_qat_config(1)).config().defaults.weight.scheme, Scheme::Binary);
  EXPECT_THROW(weight_only_qat_config(0), Error);
  EXPECT_THROW(weight_only_qat_config(4, 1), Error);
  SimQuant head4(weight_only_qat_config(2, 4));
  m.bind(&head4);
  EXPECT_EQ(head4.layer("output").weight_spec.bits, 4);
  EXPECT_EQ(head4.layer("blk.0.attn_q").weight_spec.bits, 2);
}

// A tiny model on a learnable token stream: QAT at 2 bits ends below RTN of the FP model it started from, and the
// committed model (SEQ codebooks) round-trips through the quantized-LLM file.
TEST(QatLlm, QatBeatsRtnAtTwoBitsAndRoundTrips) {
  LlamaConfig c;
  c.dim = 32; c.hidden_dim = 64; c.n_layers = 1; c.n_heads = 2; c.n_kv_heads = 2; c.vocab_size = 24; c.seq_len = 64;
  LlamaModel m = init_llama(c, 3);
  // A noisy cycle: token t+1 = (t·5 + 3) mod 23 + 1 most of the time.
  std::vector<int64_t> toks;
  uint64_t x = 7;
  int64_t t = 1;
  for (int i = 0; i < 6000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t = (x >> 60) < 2 ? static_cast<int64_t>((x >> 33) % 23) + 1 : (t * 5 + 3) % 23 + 1;
    toks.push_back(t);
  }
  at::Tensor stream = at::tensor(toks, at::kLong);
  at::Tensor train = stream.slice(0, 0, 5000), val = stream.slice(0, 5000);
  FpQatOptions o;
  o.total_steps = 300;
  o.qat_fraction = 0.4;
  o.bits = 2;
  o.lr = 3e-3;
  o.train.batch = 8;
  o.train.seq = 32;
  o.train.label = "test";
  SimQuant sq(weight_only_qat_config(2));
  FpQatRun run = train_fp_then_qat(m, train, val, 0, o, sq, 16);
  EXPECT_EQ(run.fp.size(), 180u);
  EXPECT_EQ(run.qat.size(), 120u);
  EXPECT_LT(run.fp_val_nll, std::log(24.0) * 0.8);  // the FP phase learned something
  EXPECT_LT(run.val_nll, run.ptq_val_nll) << "QAT " << run.val_nll << " vs RTN " << run.ptq_val_nll;
  EXPECT_EQ(sq.weight_params("blk.0.attn_q")->scheme, Scheme::KMeans);
  const std::string path = ::testing::TempDir() + "catq_qat_llm.catq";
  write_catq_llm(path, m, sq, nullptr, {{"test", true}});
  QuantizedLlama q = read_catq_llm(path);
  EXPECT_NEAR(stream_nll(q.model, val, 0, 32, 16, q.sq.get()), run.val_nll, 1e-4);
  std::remove(path.c_str());
}

// carry_optimizer_state: the FP phase is the same run; the QAT phase continues the weights' AdamW moments, so it
// takes different steps from a fresh start (and still trains).
TEST(QatLlm, CarriedOptimizerStateChangesOnlyTheQatPhase) {
  LlamaConfig c;
  c.dim = 16; c.hidden_dim = 32; c.n_layers = 1; c.n_heads = 2; c.n_kv_heads = 2; c.vocab_size = 12; c.seq_len = 32;
  std::vector<int64_t> toks;
  for (int i = 0; i < 2000; ++i) toks.push_back((i * 7 + i / 5) % 11 + 1);
  at::Tensor stream = at::tensor(toks, at::kLong);
  at::Tensor train = stream.slice(0, 0, 1600), val = stream.slice(0, 1600);
  auto run = [&](bool carry) {
    LlamaModel m = init_llama(c, 4);
    FpQatOptions o;
    o.total_steps = 40;
    o.qat_fraction = 0.5;
    o.bits = 4;
    o.train.batch = 4;
    o.train.seq = 16;
    o.train.label = "test";
    o.carry_optimizer_state = carry;
    SimQuant sq(weight_only_qat_config(4));
    return train_fp_then_qat(m, train, val, 0, o, sq, 8);
  };
  const FpQatRun fresh = run(false), carried = run(true);
  EXPECT_DOUBLE_EQ(fresh.fp_val_nll, carried.fp_val_nll);
  EXPECT_DOUBLE_EQ(fresh.ptq_val_nll, carried.ptq_val_nll);
  EXPECT_NE(fresh.val_nll, carried.val_nll);
  EXPECT_TRUE(std::isfinite(carried.val_nll));
  EXPECT_LT(carried.val_nll, std::log(12.0));
}

TEST(QatLawFit, RecoversASyntheticLaw) {
  QatLossLaw truth;
  truth.E = 1.2; truth.A = 30; truth.alpha = 0.3; truth.Bc = 40; truth.beta = 0.28; truth.theta = 2; truth.kappa = 1.2;
  truth.phi = 3; truth.chi = 0.9; truth.psi = 0.1; truth.omega = 0.35; truth.lambda = 1.5; truth.mu = 0.8; truth.nu = 0.1;
  truth.xi = 0.2; truth.rho = 0.3;
  std::vector<QatRun> runs;
  for (double n : {1e5, 4e5, 1.6e6})
    for (double d : {3e5, 1.2e6, 5e6})
      for (double b : {2.0, 4.0})
        for (double f : {0.05, 0.15, 0.3, 0.5, 0.8}) runs.push_back({n, d, b, f, truth.predict(n, d, b, f)});
  QatFitOptions o;
  o.restarts = 8;
  QatFit fit = fit_qat_law(runs, o);
  EXPECT_LT(fit.mean_abs_rel, 0.01);
  // Its optimum is where the truth's is, to a few hundredths, at a point inside the data.
  EXPECT_NEAR(fit.law.best_fraction(4e5, 1.2e6, 4), truth.best_fraction(4e5, 1.2e6, 4), 0.08);
  EXPECT_THROW(fit_qat_law({runs[0], runs[1]}), Error);
  std::vector<QatRun> bad(runs.begin(), runs.begin() + 5);
  bad[0].fraction = 0;
  EXPECT_THROW(fit_qat_law(bad), Error);
}

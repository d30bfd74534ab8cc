// Property tests of the quantizer (src/quant/quantizer.h) and the observers (src/quant/observer.h).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "quant/observer.h"
#include "quant/quantizer.h"

using namespace catq;

namespace {

QuantSpec uniform(int bits, bool sym, bool sgn, Granularity g = Granularity::PerTensor, int64_t group = 0) {
  QuantSpec s;
  s.bits = bits;
  s.symmetric = sym;
  s.is_signed = sgn;
  s.granularity = g;
  s.group_size = group;
  return s;
}

double mse(const at::Tensor& a, const at::Tensor& b) { return (a - b).pow(2).mean().item<double>(); }

// Scale broadcast to every element of x (works for every granularity).
at::Tensor scale_per_element(const at::Tensor& x, const QuantParams& p) {
  return (group_view(x, p) * 0 + p.scale).reshape(x.sizes());
}

}  // namespace

TEST(QuantSpec, IntegerRanges) {
  EXPECT_EQ(uniform(8, true, true).qmin(), -128);
  EXPECT_EQ(uniform(8, true, true).qmax(), 127);
  QuantSpec r = uniform(8, true, true);
  r.restricted = true;
  EXPECT_EQ(r.qmin(), -127);
  EXPECT_EQ(uniform(8, false, false).qmin(), 0);
  EXPECT_EQ(uniform(8, false, false).qmax(), 255);
  EXPECT_EQ(uniform(4, false, true).qmin(), -8);
  EXPECT_EQ(uniform(4, false, true).qmax(), 7);
  EXPECT_EQ(uniform(16, true, true).qmax(), 32767);
  EXPECT_EQ(uniform(1, false, false).qmax(), 1);
  EXPECT_EQ(uniform(3, true, true).resolved_axis(2), 0);
  QuantSpec g = uniform(4, true, true, Granularity::PerGroup, 8);
  EXPECT_EQ(g.resolved_axis(2), 1);  // linear [out, in]: groups along in
  EXPECT_EQ(g.resolved_axis(4), 1);  // conv [O, I, kh, kw]: groups along I
  g.axis = -1;
  EXPECT_EQ(g.resolved_axis(2), 1);
}

TEST(QuantShapes, ParamShapesAndRows) {
  EXPECT_EQ(param_shape({8, 64}, Granularity::PerGroup, 1, 32), (std::vector<int64_t>{8, 2, 1}));
  EXPECT_EQ(param_shape({4, 8, 3, 3}, Granularity::PerGroup, 1, 4), (std::vector<int64_t>{4, 2, 1, 1, 1}));
  EXPECT_EQ(param_shape({4, 8, 3, 3}, Granularity::PerChannel, 0, 0), (std::vector<int64_t>{4, 1, 1, 1}));
  EXPECT_EQ(param_shape({2, 5, 16}, Granularity::PerToken, 0, 0), (std::vector<int64_t>{2, 5, 1}));
  EXPECT_TRUE(param_shape({2, 5}, Granularity::PerTensor, 0, 0).empty());
  torch::manual_seed(1);
  at::Tensor x = torch::randn({3, 4, 5});
  for (auto [g, axis, group] : {std::tuple{Granularity::PerChannel, 1, int64_t{0}}, {Granularity::PerGroup, 1, 2},
                                {Granularity::PerTensor, 0, 0}, {Granularity::PerToken, 0, 0}}) {
    at::Tensor rows = to_rows(x, g, axis, group);
    EXPECT_TRUE(at::equal(from_rows(rows, x.sizes(), g, axis, group), x));
  }
  // Channel rows hold exactly the channel's values.
  at::Tensor rows = to_rows(x, Granularity::PerChannel, 1, 0);
  EXPECT_TRUE(at::equal(rows[2], x.select(1, 2).reshape({-1})));
  // Group rows: (prefix, block) → the block's G indices along the axis and everything after it.
  rows = to_rows(x, Granularity::PerGroup, 1, 2);
  EXPECT_TRUE(at::equal(rows[3], x[1].slice(0, 2, 4).reshape({-1})));
}

// |x − fq(x)| ≤ s/2 inside the representable range, for many spec / granularity combinations.
TEST(QuantProperties, NearestErrorAtMostHalfStep) {
  torch::manual_seed(2);
  std::vector<QuantSpec> specs;
  for (int bits : {2, 3, 4, 8}) {
    for (bool sym : {true, false}) {
      specs.push_back(uniform(bits, sym, true));
      specs.push_back(uniform(bits, sym, !sym));
      QuantSpec c = uniform(bits, sym, true, Granularity::PerChannel);
      specs.push_back(c);
      specs.push_back(uniform(bits, sym, true, Granularity::PerGroup, 16));
      specs.push_back(uniform(bits, sym, false, Granularity::PerToken));
    }
  }
  for (const QuantSpec& s : specs) {
    at::Tensor x = torch::randn({12, 64}) * torch::rand({12, 1}) * 3 + 0.3;
    QuantParams p = compute_params(s, x);
    at::Tensor fq = fake_quantize(x, p);
    at::Tensor sc = scale_per_element(x, p);
    at::Tensor zp = (group_view(x, p) * 0 + p.zero_point.to(at::kFloat)).reshape(x.sizes());
    // Inside the range extended by half a step on each side, nearest rounding is off by at most s/2.
    at::Tensor lo = sc * (p.qmin - zp) - sc * 0.5, hi = sc * (p.qmax - zp) + sc * 0.5;
    at::Tensor inside = (x >= lo) & (x <= hi);
    at::Tensor err = (x - fq).abs();
    EXPECT_TRUE(((err <= sc * 0.5 * (1 + 1e-5) + 1e-6) | ~inside).all().item<bool>()) << s.str();
    if (!(s.symmetric && !s.is_signed)) {  // min-max covers all values (unsigned symmetric drops negatives)
      EXPECT_TRUE(inside.all().item<bool>()) << s.str();
    }
    EXPECT_TRUE(at::isfinite(fq).all().item<bool>());
  }
}

TEST(QuantProperties, AsymmetricZeroIsExact) {
  torch::manual_seed(3);
  for (double shift : {-5.0, -0.3, 0.0, 0.7, 4.0}) {
    for (int bits : {2, 4, 8}) {
      at::Tensor x = torch::randn({8, 33}) + shift;
      x.view({-1}).index_fill_(0, torch::randperm(8 * 33).slice(0, 0, 40), 0.0);
      for (auto g : {Granularity::PerTensor, Granularity::PerChannel, Granularity::PerToken}) {
        for (bool sgn : {true, false}) {
          QuantSpec s = uniform(bits, false, sgn, g);
          at::Tensor fq = fake_quantize(x, compute_params(s, x));
          EXPECT_TRUE((fq.masked_select(x == 0) == 0).all().item<bool>()) << s.str() << " shift " << shift;
        }
      }
    }
  }
}

TEST(QuantProperties, FakeQuantIsIdempotent) {
  torch::manual_seed(4);
  at::Tensor x = torch::randn({16, 64}) * 2;
  std::vector<QuantSpec> specs = {uniform(4, true, true), uniform(3, false, false, Granularity::PerChannel),
                                  uniform(4, true, true, Granularity::PerGroup, 8),
                                  uniform(8, false, true, Granularity::PerToken)};
  QuantSpec km = uniform(2, true, true, Granularity::PerChannel);
  km.scheme = Scheme::KMeans;
  specs.push_back(km);
  QuantSpec bin = uniform(1, true, true, Granularity::PerChannel);
  bin.scheme = Scheme::Binary;
  specs.push_back(bin);
  QuantSpec ter = uniform(2, true, true, Granularity::PerChannel);
  ter.scheme = Scheme::Ternary;
  specs.push_back(ter);
  for (const QuantSpec& s : specs) {
    QuantParams p = compute_params(s, x);
    if (s.granularity == Granularity::PerToken) p = compute_params(s, x);  // same params for the second pass
    at::Tensor once = fake_quantize(x, p);
    at::Tensor twice = fake_quantize(once, p);
    EXPECT_TRUE(at::equal(once, twice)) << s.str();
  }
}

TEST(QuantProperties, FakeQuantIsMonotonic) {
  torch::manual_seed(5);
  at::Tensor x = std::get<0>((torch::randn({4, 2000}) * 3).sort(1));  // each row ascending
  // Monotonic within each set of shared params: rows here (tensor / token), blocks of 500 for groups.
  for (auto s : {uniform(2, true, true), uniform(4, false, false), uniform(3, true, true, Granularity::PerToken),
                 uniform(4, false, true, Granularity::PerGroup, 500)}) {
    at::Tensor fq = fake_quantize(x, compute_params(s, x)).reshape({4, 4, 500});
    EXPECT_TRUE((fq.slice(2, 1) >= fq.slice(2, 0, -1)).all().item<bool>()) << s.str();
  }
  QuantSpec km = uniform(3, true, true);
  km.scheme = Scheme::KMeans;
  at::Tensor flat = std::get<0>(x.reshape({-1}).sort());
  at::Tensor fq = fake_quantize(flat, compute_params(km, flat));
  EXPECT_TRUE((fq.slice(0, 1) >= fq.slice(0, 0, -1)).all().item<bool>());
}

TEST(QuantProperties, ZeroAndConstantTensorsAreSafe) {
  for (auto s : {uniform(4, true, true), uniform(4, false, false), uniform(8, false, true, Granularity::PerChannel),
                 uniform(4, true, true, Granularity::PerToken)}) {
    for (float c : {0.0f, 3.0f, -2.5f}) {
      at::Tensor x = torch::full({4, 8}, c);
      QuantParams p = compute_params(s, x);
      EXPECT_TRUE(at::isfinite(p.scale).all().item<bool>());
      EXPECT_TRUE((p.scale > 0).all().item<bool>());
      at::Tensor fq = fake_quantize(x, p);
      EXPECT_TRUE(at::isfinite(fq).all().item<bool>()) << s.str();
      EXPECT_TRUE(at::allclose(fq, x, 1e-5, 1e-6)) << s.str() << " c=" << c;
    }
  }
  // Binary / ternary / kmeans on zeros.
  for (Scheme sc : {Scheme::Binary, Scheme::Ternary, Scheme::KMeans}) {
    QuantSpec s = uniform(sc == Scheme::Binary ? 1 : 2, true, true, Granularity::PerChannel);
    s.scheme = sc;
    at::Tensor x = torch::zeros({3, 5});
    at::Tensor fq = fake_quantize(x, compute_params(s, x));
    EXPECT_TRUE(at::isfinite(fq).all().item<bool>());
    EXPECT_EQ(fq.abs().max().item<float>(), 0.0f);
  }
}

TEST(QuantProperties, QuantizeDequantizeMatchesFakeQuant) {
  torch::manual_seed(6);
  at::Tensor x = torch::randn({6, 4, 3, 3});
  for (auto s : {uniform(4, true, true, Granularity::PerChannel), uniform(8, false, false),
                 uniform(4, false, true, Granularity::PerGroup, 2)}) {
    QuantParams p = compute_params(s, x);
    at::Tensor q = quantize(x, p);
    EXPECT_EQ(q.scalar_type(), at::kInt);
    EXPECT_GE(q.min().item<int>(), p.qmin);
    EXPECT_LE(q.max().item<int>(), p.qmax);
    EXPECT_TRUE(at::allclose(dequantize(q, p), fake_quantize(x, p), 1e-6, 1e-7)) << s.str();
  }
  QuantSpec km = uniform(2, true, true, Granularity::PerChannel);
  km.scheme = Scheme::KMeans;
  QuantParams p = compute_params(km, x);
  EXPECT_EQ(p.codebook.sizes(), (at::IntArrayRef{6, 4}));
  at::Tensor q = quantize(x, p);
  EXPECT_GE(q.min().item<int>(), 0);
  EXPECT_LE(q.max().item<int>(), 3);
  EXPECT_TRUE(at::equal(dequantize(q, p), fake_quantize(x, p)));
}

TEST(QuantSchemes, KMeansBeatsUniformAtTwoBitsOnGaussian) {
  torch::manual_seed(7);
  at::Tensor x = torch::randn({20000});
  QuantSpec km = uniform(2, true, true);
  km.scheme = Scheme::KMeans;
  QuantParams p = compute_params(km, x);
  double e_km = mse(x, fake_quantize(x, p));
  double e_uni = mse(x, fake_quantize(x, compute_params(uniform(2, false, true), x)));
  QuantSpec best_uniform = uniform(2, false, true);
  best_uniform.observer = ObserverKind::Mse;
  double e_mse = mse(x, fake_quantize(x, compute_params(best_uniform, x)));
  EXPECT_LT(e_km, e_uni);
  EXPECT_LT(e_km, e_mse);
  EXPECT_NEAR(e_km, 0.1175, 0.01);  // Lloyd-Max 4-level Gaussian quantizer distortion
  // Codebook ≈ Lloyd-Max levels ±0.4528, ±1.510.
  at::Tensor cb = p.codebook.reshape({-1});
  EXPECT_NEAR(cb[0].item<float>(), -1.51, 0.05);
  EXPECT_NEAR(cb[2].item<float>(), 0.4528, 0.05);
}

TEST(QuantSchemes, KMeansImportanceWeights) {
  torch::manual_seed(8);
  at::Tensor x = torch::randn({1, 4000});
  at::Tensor imp = (x.abs() > 1.5).to(at::kFloat) * 100 + 0.01;  // the tails matter most
  QuantSpec km = uniform(2, true, true);
  km.scheme = Scheme::KMeans;
  at::Tensor fq_plain = fake_quantize(x, compute_params(km, x));
  at::Tensor fq_imp = fake_quantize(x, compute_params(km, x, imp));
  auto werr = [&](const at::Tensor& fq) { return ((x - fq).pow(2) * imp).sum().item<double>(); };
  EXPECT_LT(werr(fq_imp), werr(fq_plain));
}

TEST(QuantSchemes, BinaryAlphaIsMeanAbsPerChannel) {
  torch::manual_seed(9);
  at::Tensor w = torch::randn({5, 7, 3});
  QuantSpec s = uniform(1, true, true, Granularity::PerChannel);
  s.scheme = Scheme::Binary;
  QuantParams p = compute_params(s, w);
  at::Tensor alpha = w.abs().mean({1, 2}, true);
  EXPECT_TRUE(at::allclose(p.scale, alpha));
  at::Tensor fq = fake_quantize(w, p);
  EXPECT_TRUE(at::allclose(fq, alpha * at::where(w >= 0, 1.0f, -1.0f)));
  at::Tensor q = quantize(w, p);
  EXPECT_TRUE(((q == 1) | (q == -1)).all().item<bool>());
  EXPECT_TRUE(at::allclose(dequantize(q, p), fq));
}

TEST(QuantSchemes, TernaryThresholdAndAlpha) {
  torch::manual_seed(10);
  at::Tensor w = torch::randn({4, 100});
  QuantSpec s = uniform(2, true, true, Granularity::PerChannel);
  s.scheme = Scheme::Ternary;
  QuantParams p = compute_params(s, w);
  for (int c = 0; c < 4; ++c) {
    at::Tensor row = w[c];
    double delta = 0.7 * row.abs().mean().item<double>();
    at::Tensor big = row.abs() > delta;
    double alpha = row.abs().masked_select(big).mean().item<double>();
    EXPECT_NEAR(p.threshold[c][0].item<double>(), delta, 1e-5);
    EXPECT_NEAR(p.scale[c][0].item<double>(), alpha, 1e-5);
    at::Tensor fq = fake_quantize(w, p)[c];
    at::Tensor want = ((row > delta).to(at::kFloat) - (row < -delta).to(at::kFloat)) * alpha;
    EXPECT_TRUE(at::allclose(fq, want, 1e-5, 1e-6));
  }
}

TEST(QuantRounding, StochasticIsUnbiasedAndSeeded) {
  at::Tensor v = torch::full({200000}, 0.3f);
  at::Tensor r1 = round_values(v, Rounding::Stochastic, make_generator(42));
  at::Tensor r2 = round_values(v, Rounding::Stochastic, make_generator(42));
  EXPECT_TRUE(at::equal(r1, r2));
  EXPECT_TRUE(((r1 == 0) | (r1 == 1)).all().item<bool>());
  EXPECT_NEAR(r1.mean().item<double>(), 0.3, 0.005);
  at::Tensor neg = round_values(torch::full({200000}, -2.75f), Rounding::Stochastic, make_generator(1));
  EXPECT_NEAR(neg.mean().item<double>(), -2.75, 0.005);
  // Fake-quant with stochastic rounding is unbiased inside the range.
  torch::manual_seed(11);
  at::Tensor x = torch::rand({64}) * 2 - 1;
  QuantParams p = compute_params(uniform(3, false, true), x);
  at::Tensor acc = torch::zeros_like(x);
  auto gen = make_generator(7);
  for (int i = 0; i < 2000; ++i) acc += fake_quantize(x, p, Rounding::Stochastic, gen);
  const double sc = p.scale.item<double>(), z = p.zero_point.item<int>();
  at::Tensor inside = (x >= sc * (p.qmin - z)) & (x <= sc * (p.qmax - z));  // no clamping there
  EXPECT_GT(inside.sum().item<int64_t>(), 50);
  EXPECT_LT((acc / 2000 - x).masked_select(inside).abs().max().item<double>(), 0.1 * sc);
  // Nearest is half-to-even.
  at::Tensor h = round_values(torch::tensor({0.5f, 1.5f, 2.5f, -0.5f, -1.5f}), Rounding::Nearest);
  EXPECT_TRUE(at::equal(h, torch::tensor({0.0f, 2.0f, 2.0f, -0.0f, -2.0f})));
}

TEST(QuantProperties, PerTokenIsPerRow) {
  torch::manual_seed(12);
  at::Tensor x = torch::randn({3, 5, 16}) * torch::rand({3, 5, 1}) * 10;
  QuantSpec s = uniform(8, false, false, Granularity::PerToken);
  QuantParams p = compute_params(s, x);
  EXPECT_EQ(p.scale.sizes(), (at::IntArrayRef{3, 5, 1}));
  at::Tensor expect = (x.amax(-1, true).clamp_min(0) - x.amin(-1, true).clamp_max(0)) / 255;
  EXPECT_TRUE(at::allclose(p.scale, expect, 1e-5, 1e-8));
}

// ---- Observers ------------------------------------------------------------------------------------------------

TEST(QuantObserver, MinMaxAccumulatesAcrossBatches) {
  auto obs = Observer::create(uniform(8, false, false));
  obs->observe(torch::tensor({0.0f, 1.0f, 2.0f}));
  obs->observe(torch::tensor({-1.0f, 0.5f}));
  QuantParams p = obs->compute();
  EXPECT_NEAR(p.scale.item<float>(), 3.0 / 255, 1e-7);
  EXPECT_EQ(p.zero_point.item<int>(), 85);  // 0 − round(−1 / (3/255)) = 85
  EXPECT_EQ(obs->batches(), 2);
}

TEST(QuantObserver, EmaMovingAverage) {
  QuantSpec s = uniform(8, false, false);
  s.observer = ObserverKind::EmaMinMax;
  s.momentum = 0.5;
  auto obs = Observer::create(s);
  obs->observe(torch::tensor({-2.0f, 4.0f}));
  obs->observe(torch::tensor({0.0f, 2.0f}));  // range (-1, 3)
  QuantParams p = obs->compute();
  EXPECT_NEAR(p.scale.item<float>(), 4.0 / 255, 1e-7);
}

TEST(QuantObserver, PerChannelActivationsShape) {
  torch::manual_seed(13);
  QuantSpec s = uniform(8, false, false, Granularity::PerChannel);
  s.axis = 1;
  auto obs = Observer::create(s);
  at::Tensor a = torch::randn({2, 3, 4, 4}), b = torch::randn({5, 3, 4, 4}) * 2;
  obs->observe(a);
  obs->observe(b);
  QuantParams p = obs->compute();
  EXPECT_EQ(p.scale.sizes(), (at::IntArrayRef{1, 3, 1, 1}));
  at::Tensor all = torch::cat({a, b}, 0);
  at::Tensor lo = all.amin({0, 2, 3}, true).clamp_max(0), hi = all.amax({0, 2, 3}, true).clamp_min(0);
  EXPECT_TRUE(at::allclose(p.scale, (hi - lo) / 255));
}

TEST(QuantObserver, PercentileClipsOutliers) {
  torch::manual_seed(14);
  at::Tensor x = torch::randn({200000});
  x.index_put_({torch::arange(0, 20)}, 1000.0);
  QuantSpec s = uniform(8, true, true);
  s.observer = ObserverKind::Percentile;
  s.percentile = 99.9;
  auto obs = Observer::create(s);
  obs->observe(x.slice(0, 0, 100000));
  obs->observe(x.slice(0, 100000));
  double amax = obs->compute().scale.item<double>() * 127;
  EXPECT_GT(amax, 3.0);   // |N(0,1)| 99.9th percentile ≈ 3.29
  EXPECT_LT(amax, 3.6);
  QuantSpec mm = uniform(8, true, true);
  EXPECT_NEAR(compute_params(mm, x).scale.item<double>() * 127, 1000.0, 1e-3);
  // Asymmetric two-sided percentiles.
  s.symmetric = false;
  s.is_signed = false;
  QuantParams pa = compute_params(s, torch::rand({100000}) * 10 + 5);  // range contains 0 → [0, ~15]
  EXPECT_NEAR(pa.scale.item<double>() * 255, 15.0, 0.1);
}

TEST(QuantObserver, PercentileSubsamplesHugeInputs) {
  torch::manual_seed(15);
  QuantSpec s = uniform(8, true, true);
  s.observer = ObserverKind::Percentile;
  s.percentile = 99.0;
  s.max_samples = 1 << 16;
  auto obs = Observer::create(s);
  std::vector<at::Tensor> all;
  for (int i = 0; i < 4; ++i) {
    all.push_back(torch::randn({1 << 20}) * (i == 3 ? 2.0 : 1.0));
    obs->observe(all.back());
  }
  // Mixture of 3 N(0,1) batches and one N(0,4): the subsample must represent all batches.
  double want = std::get<0>(at::kthvalue(torch::cat(all).abs(), static_cast<int64_t>(0.99 * (4 << 20)))).item<double>();
  double amax = obs->compute().scale.item<double>() * 127;
  EXPECT_NEAR(amax, want, 0.03 * want);
}

TEST(QuantObserver, MseBeatsMinMaxOnHeavyTails) {
  torch::manual_seed(16);
  // Laplace-like heavy tails: sign · exponential.
  at::Tensor e = -torch::log(torch::rand({50000}).clamp_min(1e-12));
  at::Tensor x = e * at::where(torch::rand({50000}) < 0.5, 1.0f, -1.0f);
  for (bool sym : {true, false}) {
    QuantSpec mm = uniform(4, sym, true);
    QuantSpec ms = mm;
    ms.observer = ObserverKind::Mse;
    double e_mm = mse(x, fake_quantize(x, compute_params(mm, x)));
    double e_ms = mse(x, fake_quantize(x, compute_params(ms, x)));
    EXPECT_LT(e_ms, 0.7 * e_mm) << "symmetric " << sym;
  }
  // L_2.4 variant also clips.
  QuantSpec p24 = uniform(4, true, true);
  p24.observer = ObserverKind::Mse;
  p24.mse_p = 2.4;
  EXPECT_LT(compute_params(p24, x).scale.item<double>(), compute_params(uniform(4, true, true), x).scale.item<double>());
}

TEST(QuantObserver, MsePerChannel) {
  torch::manual_seed(17);
  at::Tensor w = torch::randn({8, 256}) * torch::linspace(0.1, 2.0, 8).reshape({8, 1});
  // Channel 0 heavy-tailed (Laplace): clipping pays off there.
  w[0] = -torch::log(torch::rand({256}).clamp_min(1e-12)) * at::where(torch::rand({256}) < 0.5, 1.0f, -1.0f);
  QuantSpec mm = uniform(3, true, true, Granularity::PerChannel);
  QuantSpec ms = mm;
  ms.observer = ObserverKind::Mse;
  QuantParams pm = compute_params(mm, w), ps = compute_params(ms, w);
  EXPECT_EQ(ps.scale.sizes(), (at::IntArrayRef{8, 1}));
  EXPECT_TRUE((ps.scale <= pm.scale + 1e-7).all().item<bool>());
  at::Tensor em = (w - fake_quantize(w, pm)).pow(2).mean(1), es = (w - fake_quantize(w, ps)).pow(2).mean(1);
  EXPECT_TRUE((es <= em + 1e-7).all().item<bool>());
  EXPECT_LT(es[0].item<double>(), 0.8 * em[0].item<double>());
}

TEST(QuantObserver, KlThresholdInsideRange) {
  torch::manual_seed(18);
  at::Tensor x = torch::relu(torch::randn({100000}) * at::where(torch::rand({100000}) < 0.01, 8.0f, 1.0f));
  for (int bits : {4, 8}) {
    QuantSpec s = uniform(bits, false, false);
    s.observer = ObserverKind::Kl;
    QuantParams p = compute_params(s, x);
    double hi = p.scale.item<double>() * (p.qmax - p.zero_point.item<int>());  // top of the range
    double xmax = x.max().item<double>();
    EXPECT_GT(hi, 0.0);
    EXPECT_LE(hi, xmax * (1 + 1e-6));
    if (bits == 4) {
      EXPECT_LT(hi, xmax);  // clips the tail
    }
  }
  // A uniform histogram is best represented by the full range.
  std::vector<double> flat(2048, 10.0);
  EXPECT_DOUBLE_EQ(kl_threshold(flat, 0.5, 128), 2048 * 0.5);
  // A histogram with a far, tiny tail: the threshold drops below the tail.
  std::vector<double> tail(2048, 0.0);
  for (int i = 0; i < 200; ++i) tail[i] = 1000.0 - 4 * i;
  tail[2047] = 1.0;
  double t = kl_threshold(tail, 1.0, 128);
  EXPECT_GE(t, 128.0);
  EXPECT_LT(t, 2047.0);
}

TEST(QuantObserver, KlPerChannelAndSigned) {
  torch::manual_seed(19);
  at::Tensor x = torch::randn({4, 20000});
  QuantSpec s = uniform(8, true, true, Granularity::PerChannel);
  s.observer = ObserverKind::Kl;
  QuantParams p = compute_params(s, x);
  EXPECT_EQ(p.scale.sizes(), (at::IntArrayRef{4, 1}));
  at::Tensor amax = p.scale * 127;
  EXPECT_TRUE((amax > 2.0).all().item<bool>());
  EXPECT_TRUE((amax <= x.abs().amax(1, true) + 1e-5).all().item<bool>());
}

TEST(BadInputObserver, NothingObservedOrNonFinite) {
  auto obs = Observer::create(uniform(8, true, true), "conv1 input");
  try {
    obs->compute();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("conv1 input"), std::string::npos);
  }
  obs->observe(torch::tensor({1.0f, std::numeric_limits<float>::quiet_NaN()}));
  EXPECT_THROW(obs->compute(), Error);
  QuantSpec c = uniform(8, true, true, Granularity::PerChannel);
  auto oc = Observer::create(c);
  oc->observe(torch::randn({3, 4}));
  EXPECT_THROW(oc->observe(torch::randn({5, 4})), Error);  // channel count changed
  QuantSpec t = uniform(8, true, true, Granularity::PerToken);
  EXPECT_THROW(Observer::create(t), Error);
  QuantSpec bad = uniform(9, true, true);
  EXPECT_THROW(Observer::create(bad), Error);
  EXPECT_THROW(compute_params(uniform(4, true, true), torch::empty({0})), Error);
  // Group size that does not divide.
  EXPECT_THROW(compute_params(uniform(4, true, true, Granularity::PerGroup, 5), torch::randn({4, 12})), Error);
  // Axis out of range.
  QuantSpec ax = uniform(4, true, true, Granularity::PerChannel);
  ax.axis = 3;
  EXPECT_THROW(compute_params(ax, torch::randn({4, 12})), Error);
}

TEST(BadInputQuantSpec, ValidateNamesTheField) {
  auto expect_field = [](QuantSpec s, const std::string& field) {
    try {
      s.validate("cfg.json: defaults.weight");
      FAIL() << "expected an error for " << field;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Config);
      std::string m = e.what();
      EXPECT_NE(m.find("cfg.json"), std::string::npos) << m;
      EXPECT_NE(m.find(field), std::string::npos) << m;
    }
  };
  expect_field(uniform(0, true, true), "bits");
  expect_field(uniform(9, true, true), "bits");
  expect_field(uniform(1, true, true), "bits");  // no positive level
  expect_field(uniform(4, true, true, Granularity::PerGroup, 0), "group_size");
  QuantSpec s = uniform(8, true, true);
  s.percentile = 120;
  expect_field(s, "percentile");
  s = uniform(8, true, true);
  s.momentum = 1.0;
  expect_field(s, "momentum");
  s = uniform(8, false, false);
  s.restricted = true;
  expect_field(s, "restricted");
  s = uniform(4, true, true);
  s.scheme = Scheme::Binary;
  expect_field(s, "bits");
  s = uniform(4, true, true, Granularity::PerToken);
  s.scheme = Scheme::KMeans;
  expect_field(s, "scheme");
}

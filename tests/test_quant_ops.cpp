// Integer requantization / integer linear (src/quant/requant.h) and the autograd fake-quant ops
// (src/quant/fake_quant.h).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "quant/fake_quant.h"
#include "quant/quantizer.h"
#include "quant/requant.h"

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

long double round_half_away(long double v) { return v >= 0 ? std::floor(v + 0.5L) : -std::floor(-v + 0.5L); }

}  // namespace

TEST(QuantRequant, FixedPointRepresentation) {
  for (double m : {1.0, 0.5, 0.75, 1.0 / 3.0, 1e-6, 123.456, 999.999, 0.9999999999}) {
    FixedPointMultiplier f = FixedPointMultiplier::from_real(m);
    EXPECT_GE(f.multiplier, 1 << 30);
    EXPECT_GE(f.right_shift, 0);
    EXPECT_LE(std::fabs(f.to_real() - m) / m, std::ldexp(1.0, -30)) << m;
  }
  EXPECT_EQ(FixedPointMultiplier::from_real(0.0).apply(12345), 0);
  EXPECT_EQ(FixedPointMultiplier::from_real(1.0).apply(-7), -7);
  EXPECT_EQ(FixedPointMultiplier::from_real(0.5).apply(3), 2);    // 1.5 → 2 (half away from zero)
  EXPECT_EQ(FixedPointMultiplier::from_real(0.5).apply(-3), -2);  // −1.5 → −2
  EXPECT_EQ(FixedPointMultiplier::from_real(1000.0).apply(INT32_MAX), INT32_MAX);  // saturates
  EXPECT_EQ(FixedPointMultiplier::from_real(1000.0).apply(INT32_MIN), INT32_MIN);
}

// apply(acc) is within 1 LSB of round(acc · M) for random accumulators and multipliers in (1e-6, 1e3).
TEST(QuantRequant, WithinOneLsbOfFloatReference) {
  std::mt19937_64 rng(123);
  std::uniform_real_distribution<double> logm(std::log(1e-6), std::log(1e3));
  int64_t checked = 0, exact = 0;
  for (int i = 0; i < 3000; ++i) {
    const double m = std::exp(logm(rng));
    FixedPointMultiplier f = FixedPointMultiplier::from_real(m);
    for (int64_t range : {int64_t{1000}, int64_t{1} << 20, int64_t{INT32_MAX}}) {
      std::uniform_int_distribution<int64_t> acc_d(-range, range);
      for (int j = 0; j < 10; ++j) {
        const int64_t acc = acc_d(rng);
        long double ref = round_half_away(static_cast<long double>(acc) * m);
        ref = std::clamp<long double>(ref, INT32_MIN, INT32_MAX);
        const int32_t got = f.apply(acc);
        ASSERT_LE(std::fabs(static_cast<long double>(got) - ref), 1.0L) << "acc " << acc << " M " << m;
        ++checked;
        exact += static_cast<long double>(got) == ref;
      }
    }
  }
  EXPECT_GT(static_cast<double>(exact) / checked, 0.99);
}

TEST(QuantRequant, RequantizeTensorPerChannelWithZeroPointAndSaturation) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> logm(std::log(1e-6), std::log(1e3));
  const int64_t n = 50, c = 6;
  at::Tensor acc = torch::randint(-100000, 100000, {n, c}, at::kInt);
  std::vector<FixedPointMultiplier> ms;
  std::vector<double> reals;
  for (int64_t k = 0; k < c; ++k) {
    reals.push_back(k == 0 ? 0.75 : std::exp(logm(rng)) * 1e-2);
    ms.push_back(FixedPointMultiplier::from_real(reals.back()));
  }
  at::Tensor out = requantize(acc, ms, 1, 3, -128, 127);
  ASSERT_EQ(out.scalar_type(), at::kInt);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < c; ++k) {
      long double ref = round_half_away(static_cast<long double>(acc[i][k].item<int>()) * reals[k]) + 3;
      ref = std::clamp<long double>(ref, -128, 127);
      EXPECT_LE(std::fabs(out[i][k].item<int>() - ref), 1.0L);
    }
  // One multiplier = per tensor.
  at::Tensor one = requantize(acc, {FixedPointMultiplier::from_real(1e-3)}, 0, 0, 0, 255);
  EXPECT_GE(one.min().item<int>(), 0);
  EXPECT_LE(one.max().item<int>(), 100);
}

TEST(QuantRequant, IntegerLinearMatchesReferenceAndFloatPipeline) {
  torch::manual_seed(21);
  // Integer accumulators with zero-point cross terms are exact.
  at::Tensor qx = torch::randint(0, 256, {5, 64}, at::kInt);
  at::Tensor qw = torch::randint(-8, 8, {7, 64}, at::kInt);
  at::Tensor zw = torch::randint(-2, 3, {7}, at::kInt);
  const int32_t zx = 117;
  at::Tensor acc = integer_linear(qx, zx, qw, zw);
  at::Tensor ref = at::matmul(qx.to(at::kLong) - zx, (qw.to(at::kLong) - zw.to(at::kLong).reshape({7, 1})).t());
  EXPECT_TRUE(at::equal(acc.to(at::kLong), ref));

  // Full integer pipeline y_q = requant(acc) vs float: x, W → fake-quant → matmul → quantize to s_y.
  at::Tensor x = torch::rand({16, 32}) * 4;
  at::Tensor w = torch::randn({8, 32}) * 0.2;
  QuantParams px = compute_params(uniform(8, false, false), x);
  QuantParams pw = compute_params(uniform(8, true, true, Granularity::PerChannel), w);
  at::Tensor y = at::matmul(dequantize(quantize(x, px), px), dequantize(quantize(w, pw), pw).t());
  QuantParams py = compute_params(uniform(8, false, false), y);
  at::Tensor a = integer_linear(quantize(x, px), px.zero_point.item<int>(), quantize(w, pw), pw.zero_point.reshape({-1}));
  std::vector<FixedPointMultiplier> ms;
  for (int64_t o = 0; o < 8; ++o)
    ms.push_back(FixedPointMultiplier::from_real(px.scale.item<double>() * pw.scale[o][0].item<double>() /
                                                 py.scale.item<double>()));
  at::Tensor yq = requantize(a, ms, 1, py.zero_point.item<int>(), py.qmin, py.qmax);
  at::Tensor yref = quantize(y, py);
  EXPECT_LE((yq - yref).abs().max().item<int>(), 1);
}

// ---- Fake-quant autograd -------------------------------------------------------------------------------------

TEST(QuantFakeQuant, SteGradientIsClippedIdentity) {
  torch::manual_seed(22);
  for (auto s : {uniform(4, true, true), uniform(3, false, false), uniform(4, true, true, Granularity::PerChannel),
                 uniform(4, false, true, Granularity::PerGroup, 5)}) {
    at::Tensor base = torch::randn({6, 20}) * 3;
    QuantParams p = compute_params(s, base * 0.5);  // half the range: many values clip
    at::Tensor x = base.clone().requires_grad_(true);
    at::Tensor c = torch::randn({6, 20});
    at::Tensor y = fake_quant_ste(x, p);
    EXPECT_TRUE(at::equal(y.detach(), fake_quantize(base, p)));
    (y * c).sum().backward();
    at::Tensor sc = (group_view(base, p) * 0 + p.scale).reshape(base.sizes());
    at::Tensor zp = (group_view(base, p) * 0 + p.zero_point.to(at::kFloat)).reshape(base.sizes());
    at::Tensor inside = (base >= sc * (p.qmin - zp)) & (base <= sc * (p.qmax - zp));
    EXPECT_TRUE(at::allclose(x.grad(), c * inside.to(at::kFloat))) << s.str();
    EXPECT_GT(inside.logical_not().sum().item<int64_t>(), 0);
    // Outside the range the output is flat: finite differences are 0 there, like the gradient.
    const float h = 1e-3f;
    at::Tensor fd = (fake_quantize(base + h, p) - fake_quantize(base - h, p)) / (2 * h);
    at::Tensor far_out = ~inside & ((base - sc * (p.qmax - zp)).abs() > 2 * h) & ((base - sc * (p.qmin - zp)).abs() > 2 * h);
    EXPECT_TRUE((fd.masked_select(far_out) == 0).all().item<bool>());
  }
}

TEST(QuantFakeQuant, SteNonUniformSchemesPassGradient) {
  torch::manual_seed(23);
  QuantSpec s = uniform(1, true, true, Granularity::PerChannel);
  s.scheme = Scheme::Binary;
  at::Tensor x = torch::randn({3, 9}).requires_grad_(true);
  QuantParams p = compute_params(s, x.detach());
  fake_quant_ste(x, p).sum().backward();
  EXPECT_TRUE(at::equal(x.grad(), torch::ones({3, 9})));
}

namespace {

// LSQ's analytic gradients for a learnable scale s (broadcast against xv) and constant zero-point z.
std::pair<at::Tensor, at::Tensor> lsq_reference(const at::Tensor& xv, const at::Tensor& s, const at::Tensor& z,
                                                const at::Tensor& c, double qmin, double qmax, double g) {
  at::Tensor v = xv / s;
  at::Tensor below = (v + z) < qmin, above = (v + z) > qmax;
  at::Tensor inside = ~(below | above);
  at::Tensor ds = at::where(below, qmin - z, at::where(above, qmax - z, at::round(v) - v));
  at::Tensor gs = at::sum_to(c * ds, s.sizes()) * g;
  return {c * inside.to(at::kFloat), gs};
}

}  // namespace

TEST(QuantFakeQuant, LsqGradientsPerTensor) {
  torch::manual_seed(24);
  for (bool sym : {true, false}) {
    at::Tensor base = torch::randn({200}) * 2 + (sym ? 0.0 : 0.7);
    QuantParams p = compute_params(uniform(4, sym, true), base * 0.6);
    at::Tensor x = base.clone().requires_grad_(true);
    at::Tensor s = p.scale.clone().requires_grad_(true);
    at::Tensor c = torch::randn({200});
    at::Tensor y = fake_quant_lsq(x, s, p);
    EXPECT_TRUE(at::allclose(y.detach(), fake_quantize(base, p)));
    (y * c).sum().backward();
    const double g = 1.0 / std::sqrt(200.0 * p.qmax);
    EXPECT_NEAR(lsq_grad_scale(200, p.qmax), g, 1e-12);
    auto [gx, gs] = lsq_reference(base, p.scale, p.zero_point.to(at::kFloat), c, p.qmin, p.qmax, g);
    EXPECT_TRUE(at::allclose(x.grad(), gx));
    EXPECT_NEAR(s.grad().item<double>(), gs.item<double>(), 1e-5 * (1 + std::fabs(gs.item<double>())));
  }
}

TEST(QuantFakeQuant, LsqScaleGradientMatchesFiniteDifferencesWhenSaturated) {
  // Every value clips: x̂ = s·(qmax − z) or s·(qmin − z), linear in s, so finite differences are exact.
  torch::manual_seed(25);
  at::Tensor base = (torch::rand({50}) + 1.0) * at::where(torch::rand({50}) < 0.5, 100.0f, -100.0f);
  QuantParams p = compute_params(uniform(3, true, true), torch::tensor({-1.0f, 1.0f}));
  at::Tensor c = torch::randn({50});
  auto loss = [&](double sv) {
    at::Tensor s = torch::tensor(static_cast<float>(sv));
    return (fake_quant_lsq(base, s, p, 1.0) * c).sum().item<double>();
  };
  const double s0 = p.scale.item<double>(), h = 1e-3 * s0;
  const double fd = (loss(s0 + h) - loss(s0 - h)) / (2 * h);
  at::Tensor s = p.scale.clone().requires_grad_(true);
  (fake_quant_lsq(base, s, p, 1.0) * c).sum().backward();
  EXPECT_NEAR(s.grad().item<double>(), fd, 1e-3 * (1 + std::fabs(fd)));
}

TEST(QuantFakeQuant, LsqGradientsPerChannelAndGroup) {
  torch::manual_seed(26);
  at::Tensor base = torch::randn({4, 30}) * torch::linspace(0.5, 3.0, 4).reshape({4, 1});
  for (auto spec : {uniform(4, true, true, Granularity::PerChannel), uniform(4, false, false, Granularity::PerChannel),
                    uniform(3, true, true, Granularity::PerGroup, 10)}) {
    QuantParams p = compute_params(spec, base * 0.7);
    at::Tensor x = base.clone().requires_grad_(true);
    at::Tensor s = p.scale.clone().requires_grad_(true);
    at::Tensor c = torch::randn({4, 30});
    at::Tensor y = fake_quant_lsq(x, s, p);
    EXPECT_TRUE(at::allclose(y.detach(), fake_quantize(base, p), 1e-5, 1e-6));
    (y * c).sum().backward();
    const double g = 1.0 / std::sqrt(120.0 * p.qmax);
    at::Tensor xv = group_view(base, p), cv = group_view(c, p);
    auto [gx, gs] = lsq_reference(xv, p.scale, p.zero_point.to(at::kFloat), cv, p.qmin, p.qmax, g);
    EXPECT_TRUE(at::allclose(x.grad(), gx.reshape(base.sizes()))) << spec.str();
    EXPECT_EQ(s.grad().sizes(), p.scale.sizes());
    EXPECT_TRUE(at::allclose(s.grad(), gs, 1e-4, 1e-6)) << spec.str();
  }
}

TEST(BadInputFakeQuant, RejectsMismatchedParams) {
  QuantParams p = compute_params(uniform(4, true, true, Granularity::PerChannel), torch::randn({4, 8}));
  EXPECT_THROW(fake_quantize(torch::randn({5, 8}), p), Error);
  EXPECT_THROW(fake_quant_lsq(torch::randn({5, 8}), p.scale, p), Error);
  EXPECT_THROW(FixedPointMultiplier::from_real(-1.0), Error);
  EXPECT_THROW(FixedPointMultiplier::from_real(std::nan("")), Error);
  EXPECT_THROW(FixedPointMultiplier::from_real(1e10), Error);
  EXPECT_THROW(requantize(torch::zeros({2, 3}, at::kInt), {FixedPointMultiplier::from_real(1), FixedPointMultiplier::from_real(1)}, 1, 0, 0, 255), Error);
  EXPECT_THROW(integer_linear(torch::zeros({2, 3}, at::kInt), 0, torch::zeros({4, 5}, at::kInt), at::Tensor()), Error);
}

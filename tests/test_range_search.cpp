// quant/range_search: the scalar references against the libtorch code they replaced (observer.cpp / quantizer.cpp
// before issue 15 deliverable 5, kept here as legacy_*), and the AVX-512 paths against the scalar references
// (bit-identical).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "quant/observer.h"
#include "quant/quantizer.h"
#include "quant/range_search.h"

using namespace catq;

namespace {

bool have_avx512() { return range_isa_supported(RangeIsa::Avx512); }

QuantSpec uniform_spec(int bits, bool sym, bool is_signed, Granularity g = Granularity::PerChannel, int64_t group = 0) {
  QuantSpec s;
  s.bits = bits;
  s.symmetric = sym;
  s.is_signed = is_signed;
  s.granularity = g;
  s.group_size = group;
  if (g == Granularity::PerChannel) s.axis = 0;
  return s;
}

RangeGrid grid_of(const QuantSpec& s) { return {s.qmin(), s.qmax(), s.symmetric, s.is_signed}; }

// The old MseObserver loop (libtorch), on rows [R, M] with the exact ranges lo0 / hi0 [R]. Also returns every
// candidate's error [R, grid] (column i = candidate k = grid − i).
std::pair<at::Tensor, at::Tensor> legacy_mse(const QuantSpec& spec, const at::Tensor& data, const at::Tensor& mn,
                                             const at::Tensor& mx, at::Tensor* errs) {
  const int64_t r = data.size(0);
  const bool square = spec.mse_p == 2.0;
  at::Tensor lo0 = mn.reshape({r, 1}), hi0 = mx.reshape({r, 1});
  at::Tensor best_err = at::full({r, 1}, std::numeric_limits<float>::infinity());
  at::Tensor best_lo = lo0.clone(), best_hi = hi0.clone();
  const double qmin = static_cast<double>(spec.qmin()), qmax = static_cast<double>(spec.qmax());
  std::vector<at::Tensor> all;
  for (int k = spec.mse_grid; k >= 1; --k) {
    const double ratio = static_cast<double>(k) / spec.mse_grid;
    at::Tensor lo = lo0 * ratio, hi = hi0 * ratio;
    QuantParams p = params_from_range(spec, lo, hi);
    at::Tensor z = p.zero_point.to(at::kFloat);
    at::Tensor d = data - ((at::round(data / p.scale) + z).clamp(qmin, qmax) - z) * p.scale;
    at::Tensor err = (square ? d.square() : d.abs().pow(spec.mse_p)).mean(1, true);
    all.push_back(err);
    at::Tensor better = err < best_err;
    best_err = at::where(better, err, best_err);
    best_lo = at::where(better, lo, best_lo);
    best_hi = at::where(better, hi, best_hi);
  }
  if (errs) *errs = at::cat(all, 1);
  return {best_lo.reshape({r}), best_hi.reshape({r})};
}

// Rows of several kinds: Gaussian, Laplace, uniform, outliers, constant, zeros, tiny and huge magnitudes.
at::Tensor mixed_rows(int64_t rows, int64_t cols, uint64_t seed) {
  torch::manual_seed(seed);
  at::Tensor x = torch::randn({rows, cols});
  for (int64_t r = 0; r < rows; ++r) {
    at::Tensor row = x[r];
    switch (r % 9) {
      case 0: break;
      case 1: row.copy_(-torch::log(torch::rand({cols}).clamp_min(1e-12)) * at::where(torch::rand({cols}) < 0.5, 1.0f, -1.0f)); break;
      case 2: row.copy_(torch::rand({cols}) * 3 + 0.5); break;  // all positive
      case 3: row.index_put_({static_cast<int64_t>(r % cols)}, 40.0); break;  // one outlier
      case 4: row.fill_(0.75f); break;
      case 5: row.zero_(); break;
      case 6: row.mul_(1e-20f); break;
      case 7: row.mul_(3e4f).sub_(1e5f); break;  // all negative, large
      case 8: row.copy_(-torch::rand({cols})); break;
    }
  }
  return x;
}

struct Case {
  int bits;
  bool sym, is_signed;
  double p;
};
std::vector<Case> cases() {
  std::vector<Case> c;
  for (int bits : {2, 3, 4, 8})
    for (bool sym : {false, true})
      for (bool sg : {true, false})
        for (double p : {2.0, 2.4}) {
          if (sym && sg && bits == 1) continue;
          c.push_back({bits, sym, sg, p});
        }
  return c;
}

std::vector<float> vec(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace

TEST(RangeSearch, RangeParamsMatchParamsFromRange) {
  torch::manual_seed(1);
  at::Tensor lo = torch::randn({4000}) * at::pow(10.0, torch::randint(-35, 5, {4000}).to(at::kFloat));
  at::Tensor hi = torch::randn({4000}) * at::pow(10.0, torch::randint(-35, 5, {4000}).to(at::kFloat));
  lo.slice(0, 0, 50).zero_();
  hi.slice(0, 25, 75).zero_();
  for (const Case& c : cases()) {
    if (c.p != 2.0) continue;
    QuantSpec s = uniform_spec(c.bits, c.sym, c.is_signed);
    QuantParams p = params_from_range(s, lo, hi);
    auto sv = vec(p.scale), lv = vec(lo), hv = vec(hi);
    at::Tensor zt = p.zero_point.to(at::kFloat).contiguous();
    for (int64_t i = 0; i < lo.numel(); ++i) {
      float sc, z;
      range_params(grid_of(s), lv[i], hv[i], sc, z);
      ASSERT_EQ(sc, sv[i]) << s.str() << " lo " << lv[i] << " hi " << hv[i];
      ASSERT_EQ(z, zt.data_ptr<float>()[i]) << s.str() << " lo " << lv[i] << " hi " << hv[i];
    }
  }
}

TEST(RangeSearch, PowAccuracy) {
  std::mt19937 g(2);
  std::uniform_real_distribution<double> e(-45.0, 38.0);
  for (double p : {2.4, 1.0, 3.0, 0.5, 4.0, 16.0}) {
    double worst = 0;
    for (int i = 0; i < 200000; ++i) {
      const float a = static_cast<float>(std::pow(10.0, e(g)));
      const double want = std::pow(static_cast<double>(a), static_cast<double>(static_cast<float>(p)));
      if (!(want > 1e-37 && want < 1e37)) continue;  // the float result is subnormal or overflows
      worst = std::max(worst, std::fabs(pow_abs_ref(a, p) - want) / want);
      ASSERT_EQ(pow_abs_ref(-a, p), pow_abs_ref(a, p));
    }
    EXPECT_LT(worst, 1e-6) << "p = " << p;
  }
  EXPECT_EQ(pow_abs_ref(0.0f, 2.4), 0.0f);
  EXPECT_GT(pow_abs_ref(1e-40f, 0.5), 0.0f);  // subnormal input
}

TEST(RangeSearch, MinMaxScalarAvx512Torch) {
  for (int64_t cols : {1, 15, 16, 17, 32, 100, 2048}) {
    at::Tensor x = mixed_rows(37, cols, 3 + cols);
    x[11][cols / 2] = std::numeric_limits<float>::quiet_NaN();
    const int64_t r = x.size(0);
    std::vector<float> mn(r), mx(r), mn2(r), mx2(r);
    row_minmax(x.data_ptr<float>(), r, cols, cols, mn.data(), mx.data(), RangeIsa::Scalar);
    auto tmn = vec(std::get<0>(x.min(1))), tmx = vec(std::get<0>(x.max(1)));
    for (int64_t i = 0; i < r; ++i) {
      if (i == 11) {
        EXPECT_TRUE(std::isnan(mn[i]) && std::isnan(mx[i]) && std::isnan(tmn[i]));
        continue;
      }
      EXPECT_EQ(mn[i], tmn[i]);
      EXPECT_EQ(mx[i], tmx[i]);
    }
    if (!have_avx512()) continue;
    row_minmax(x.data_ptr<float>(), r, cols, cols, mn2.data(), mx2.data(), RangeIsa::Avx512);
    for (int64_t i = 0; i < r; ++i) {
      if (i == 11) {
        EXPECT_TRUE(std::isnan(mn2[i]) && std::isnan(mx2[i]));
        continue;
      }
      EXPECT_EQ(mn2[i], mn[i]);
      EXPECT_EQ(mx2[i], mx[i]);
    }
  }
}

// The AVX-512 search is bit-identical to the scalar reference: same k, same lo / hi.
TEST(RangeSearch, MseAvx512MatchesScalar) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU";
  int checked = 0;
  for (int64_t cols : {1, 7, 16, 32, 33, 128, 256, 257, 1000}) {
    const int64_t rows = cols >= 1000 ? 10 : 37;
    at::Tensor x = mixed_rows(rows, cols, 100 + cols);
    at::Tensor mn = std::get<0>(x.min(1)).contiguous(), mx = std::get<0>(x.max(1)).contiguous();
    for (const Case& c : cases()) {
      if (cols >= 257 && (c.bits == 3 || (c.p != 2.0 && c.bits != 4))) continue;  // keep the test short
      MseSearch s;
      s.grid = grid_of(uniform_spec(c.bits, c.sym, c.is_signed));
      s.p = c.p;
      s.candidates = cols == 33 ? 37 : 100;  // an odd grid exercises the single-candidate tail
      std::vector<float> lo1(rows), hi1(rows), lo2(rows), hi2(rows);
      std::vector<int32_t> k1(rows), k2(rows);
      mse_search(s, x.data_ptr<float>(), rows, cols, cols, mn.data_ptr<float>(), mx.data_ptr<float>(), lo1.data(),
                 hi1.data(), RangeIsa::Scalar, k1.data());
      mse_search(s, x.data_ptr<float>(), rows, cols, cols, mn.data_ptr<float>(), mx.data_ptr<float>(), lo2.data(),
                 hi2.data(), RangeIsa::Avx512, k2.data());
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_EQ(k1[r], k2[r]) << "cols " << cols << " row " << r << " bits " << c.bits << " sym " << c.sym << " p " << c.p;
        ASSERT_EQ(lo1[r], lo2[r]);
        ASSERT_EQ(hi1[r], hi2[r]);
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

// The scalar reference against the libtorch loop it replaced: the same candidate k, except where the legacy errors
// of the two choices tie within 1e-6 relative. (Exact agreement is impossible: torch sums the mean in another
// order, divides by s where we multiply by 1/s, and uses Sleef's powf for p ≠ 2; each moves an error by ~1e-7.)
TEST(RangeSearch, MseScalarMatchesLegacyTorch) {
  int64_t rows_checked = 0, ties = 0;
  double worst = 0;
  for (int64_t cols : {1, 5, 32, 300}) {
    const int64_t rows = cols > 32 ? 18 : 90;
    at::Tensor x = mixed_rows(rows, cols, 200 + cols);
    at::Tensor mn = std::get<0>(x.min(1)).contiguous(), mx = std::get<0>(x.max(1)).contiguous();
    for (const Case& c : cases()) {
      QuantSpec spec = uniform_spec(c.bits, c.sym, c.is_signed);
      spec.observer = ObserverKind::Mse;
      spec.mse_p = c.p;
      at::Tensor errs;
      auto [llo, lhi] = legacy_mse(spec, x, mn, mx, &errs);
      MseSearch s;
      s.grid = grid_of(spec);
      s.p = c.p;
      s.candidates = spec.mse_grid;
      std::vector<float> lo(rows), hi(rows);
      std::vector<int32_t> k(rows);
      mse_search(s, x.data_ptr<float>(), rows, cols, cols, mn.data_ptr<float>(), mx.data_ptr<float>(), lo.data(),
                 hi.data(), RangeIsa::Scalar, k.data());
      auto lv = vec(llo), hv = vec(lhi);
      auto ea = errs.accessor<float, 2>();
      for (int64_t r = 0; r < rows; ++r) {
        ++rows_checked;
        if (lo[r] == lv[r] && hi[r] == hv[r]) continue;
        // Which k did the legacy loop pick? The first (largest) k reaching its minimum error.
        int64_t kl = 0;
        float best = std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < spec.mse_grid; ++i)
          if (ea[r][i] < best) best = ea[r][i], kl = spec.mse_grid - i;
        ASSERT_GT(k[r], 0);
        const double e_new = ea[r][spec.mse_grid - k[r]], e_old = ea[r][spec.mse_grid - kl];
        EXPECT_LE(std::fabs(e_new - e_old), 1e-6 * std::fabs(e_old))
            << "cols " << cols << " row " << r << " " << spec.str() << " p " << c.p << ": k " << k[r] << " vs legacy "
            << kl;
        ++ties;
        worst = std::max(worst, std::fabs(e_new - e_old) / std::max(std::fabs(e_old), 1e-30));
      }
    }
  }
  EXPECT_LT(ties, rows_checked / 100) << "near-ties should be rare";
  std::printf("[ info ] %lld rows x configs, %lld near-ties with the legacy loop (largest relative gap %.2g)\n",
              static_cast<long long>(rows_checked), static_cast<long long>(ties), worst);
}

// The observer end to end (sampling, params) against the legacy loop, and independent of the thread count.
TEST(RangeSearch, MseObserverMatchesLegacyAndThreads) {
  torch::manual_seed(5);
  at::Tensor w = torch::randn({96, 256}) * 0.02;
  w.index_put_({torch::arange(0, 96), torch::randint(0, 256, {96})}, 0.3);
  for (bool sym : {false, true}) {
    QuantSpec spec = uniform_spec(4, sym, true, Granularity::PerGroup, 32);
    spec.observer = ObserverKind::Mse;
    const int before = at::get_num_threads();
    at::set_num_threads(1);
    QuantParams p1 = compute_params(spec, w);
    at::set_num_threads(2);
    QuantParams p2 = compute_params(spec, w);
    at::set_num_threads(before);
    EXPECT_TRUE(at::equal(p1.scale, p2.scale));
    EXPECT_TRUE(at::equal(p1.zero_point, p2.zero_point));
    at::Tensor rows = w.reshape({-1, 32});
    at::Tensor mn = std::get<0>(rows.min(1)), mx = std::get<0>(rows.max(1));
    auto [lo, hi] = legacy_mse(spec, rows, mn, mx, nullptr);
    QuantParams pl = params_from_range(spec, lo.reshape({96, 8, 1}), hi.reshape({96, 8, 1}), 1);
    // Near-ties aside (see above) the params are the legacy ones.
    const double agree = (p1.scale == pl.scale).to(at::kDouble).mean().item<double>();
    EXPECT_GT(agree, 0.99) << "sym " << sym;
  }
}

TEST(RangeSearch, PercentileMatchesLegacySort) {
  for (int64_t cols : {1, 2, 31, 32, 1000}) {
    at::Tensor x = mixed_rows(27, cols, 300 + cols);
    for (double q : {0.0, 0.001, 0.01, 0.3, 0.5, 0.99, 0.999, 0.9999, 1.0}) {
      for (bool abs : {false, true}) {
        at::Tensor t = abs ? x.abs() : x;
        at::Tensor sorted = std::get<0>(t.sort(1));
        const double pos = q * static_cast<double>(cols - 1);
        int64_t i0 = static_cast<int64_t>(std::floor(pos)), i1 = std::min<int64_t>(i0 + 1, cols - 1);
        const double f = pos - static_cast<double>(i0);
        auto want = vec(sorted.select(1, i0) * (1.0 - f) + sorted.select(1, i1) * f);
        std::vector<float> got(27), scratch(cols);
        row_percentile(x.data_ptr<float>(), 27, cols, cols, q, abs, got.data(), scratch.data());
        for (int64_t r = 0; r < 27; ++r) ASSERT_EQ(got[r], want[r]) << "cols " << cols << " q " << q << " row " << r;
      }
    }
  }
  // The observer clips an outlier per channel.
  QuantSpec s = uniform_spec(8, true, true);
  s.observer = ObserverKind::Percentile;
  s.percentile = 99.0;
  torch::manual_seed(7);
  at::Tensor w = torch::randn({8, 1024});
  w[0][0] = 100.0;
  QuantParams p = compute_params(s, w);
  EXPECT_LT(p.scale[0][0].item<float>() * 127, 4.0);
  EXPECT_GT(p.scale[0][0].item<float>() * 127, 2.0);
}

// quantize / fake_quantize on the CPU go through rtn_runs: bit-identical to the tensor expression.
TEST(RangeSearch, RtnBitIdenticalToTensorExpression) {
  torch::manual_seed(6);
  struct G {
    Granularity g;
    int axis;
    int64_t group;
  };
  for (G gr : {G{Granularity::PerTensor, 0, 0}, G{Granularity::PerChannel, 0, 0}, G{Granularity::PerChannel, 1, 0},
               G{Granularity::PerGroup, 1, 32}, G{Granularity::PerGroup, 1, 8}}) {
    for (const Case& c : cases()) {
      if (c.p != 2.0) continue;
      QuantSpec s = uniform_spec(c.bits, c.sym, c.is_signed, gr.g, gr.group);
      s.axis = gr.g == Granularity::PerTensor ? std::optional<int>() : std::optional<int>(gr.axis);
      at::Tensor x = torch::randn({24, 64, 3}) * 2;
      x[0][0][0] = 0.5f * 3.0f;  // exact half-way cases are likely at s = 1 / 2^k
      QuantParams p = compute_params(s, x);
      // Clip some values and give some groups a scale that makes x / s land on .5 exactly.
      at::Tensor xs = x * 1.7;
      at::Tensor xv = group_view(xs, p);
      at::Tensor z = p.zero_point.to(at::kFloat);
      at::Tensor q = (at::round(xv / p.scale) + z).clamp(p.qmin, p.qmax);
      at::Tensor want_q = q.reshape(xs.sizes()).to(at::kInt), want_x = ((q - z) * p.scale).reshape(xs.sizes());
      EXPECT_TRUE(at::equal(quantize(xs, p), want_q)) << s.str();
      EXPECT_TRUE(at::equal(fake_quantize(xs, p), want_x)) << s.str();
    }
  }
  // The kernel's two paths on one layout.
  if (!have_avx512()) return;
  at::Tensor x = torch::randn({40, 96}) * 3;
  at::Tensor sc = torch::rand({40 * 3}) + 0.05, zp = torch::randint(-8, 8, {40 * 3}, at::kInt);
  sc[5] = 0.25f;  // x / s lands on halves
  RunLayout L{40, 3, 32, 3, 1};
  for (RangeIsa isa : {RangeIsa::Scalar, RangeIsa::Avx512}) {
    at::Tensor codes = at::empty({40, 96}, at::kInt), deq = at::empty({40, 96});
    rtn_runs(L, 0, 120, x.data_ptr<float>(), sc.data_ptr<float>(), zp.data_ptr<int32_t>(), -8, 7,
             codes.data_ptr<int32_t>(), deq.data_ptr<float>(), isa);
    at::Tensor xv = x.reshape({40, 3, 32}), s3 = sc.reshape({40, 3, 1}), z3 = zp.reshape({40, 3, 1}).to(at::kFloat);
    at::Tensor q = (at::round(xv / s3) + z3).clamp(-8, 7);
    EXPECT_TRUE(at::equal(codes, q.reshape({40, 96}).to(at::kInt))) << to_string(isa);
    EXPECT_TRUE(at::equal(deq, ((q - z3) * s3).reshape({40, 96}))) << to_string(isa);
  }
}

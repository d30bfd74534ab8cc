// GPTQ's fused column kernel (quant/gptq_kernel) and the fp32 pipeline around it (methods/llm/gptq): the AVX-512
// path against the scalar reference (bit-identical), the factor against its definition, and the whole algorithm
// against a plain double-precision GPTQ written from the paper (one column at a time, no lazy batches).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/Parallel.h>

#include "core/error.h"
#include "methods/llm/gptq.h"
#include "quant/gptq_kernel.h"
#include "quant/quantizer.h"

using namespace catq;

namespace {

QuantSpec weight_spec(int bits, int64_t group) {
  QuantSpec s;
  s.bits = bits;
  s.symmetric = false;
  s.granularity = group ? Granularity::PerGroup : Granularity::PerChannel;
  s.group_size = group;
  return s;
}

// Correlated inputs, as real activations are.
at::Tensor hessian(int64_t in, int64_t tokens) {
  at::Tensor mix = torch::randn({in, in}) * 0.3 + at::eye(in);
  at::Tensor x = at::matmul(torch::randn({tokens, in}), mix);
  return at::matmul(x.t(), x).to(at::kDouble);
}

// GPTQ as the paper states it, in double: U = chol((H + λI)⁻¹)ᵀ, each column quantized then its error spread over
// all later columns at once.
at::Tensor reference_codes(const at::Tensor& w, const at::Tensor& h, const QuantParams& p, bool act_order) {
  const int64_t in = w.size(1);
  at::Tensor perm = act_order ? at::argsort(h.diagonal(), 0, true) : at::arange(in, at::kLong);
  at::Tensor hp = h.index_select(0, perm).index_select(1, perm);
  hp = hp + 0.01 * hp.diagonal().mean() * at::eye(in, at::kDouble);
  at::Tensor u = at::linalg_cholesky(at::linalg_inv(hp), /*upper=*/true);
  at::Tensor wp = w.to(at::kDouble).index_select(1, perm).clone();
  const int64_t ng = p.scale.numel() / w.size(0);
  const at::Tensor sc = p.scale.to(at::kDouble).reshape({w.size(0), ng});
  const at::Tensor zc = p.zero_point.to(at::kDouble).reshape({w.size(0), ng});
  at::Tensor q = at::empty_like(wp);
  for (int64_t j = 0; j < in; ++j) {
    const int64_t g = p.group_size ? perm[j].item<int64_t>() / p.group_size : 0;
    const at::Tensor s = sc.select(1, g), z = zc.select(1, g), col = wp.select(1, j);
    const at::Tensor qj = (at::round(col / s) + z).clamp(p.qmin, p.qmax);
    q.select(1, j).copy_(qj);
    const at::Tensor e = (col - s * (qj - z)) / u[j][j];
    if (j + 1 < in) wp.slice(1, j + 1).sub_(at::outer(e, u[j].slice(0, j + 1)));
  }
  return q.index_select(1, at::argsort(perm)).to(at::kInt);
}

}  // namespace

TEST(GptqKernel, Avx512MatchesTheScalarReferenceBitForBit) {
  if (!range_isa_supported(RangeIsa::Avx512)) GTEST_SKIP() << "this CPU has no AVX-512F";
  torch::manual_seed(3);
  for (int64_t cnt : {1, 15, 16, 17, 64, 100, 128}) {
    const int64_t rows = 11, ld = cnt + 5;
    at::Tensor u = at::triu(torch::randn({cnt, cnt}) * 0.1);
    u.diagonal().copy_(torch::rand({cnt}) + 0.5);
    at::Tensor w = torch::randn({rows, ld});
    at::Tensor s = torch::rand({rows, cnt}) * 0.2 + 0.05, z = at::round(torch::rand({rows, cnt}) * 15);
    at::Tensor w2 = w.clone();
    at::Tensor c1 = at::zeros({rows, ld}, at::kInt), c2 = c1.clone(), d1 = at::zeros({rows, ld}), d2 = d1.clone();
    at::Tensor e1 = at::zeros({rows, cnt}), e2 = e1.clone();
    gptq_batch_rows(rows, cnt, w.data_ptr<float>(), ld, u.data_ptr<float>(), cnt, s.data_ptr<float>(),
                    z.data_ptr<float>(), 0, 15, c1.data_ptr<int32_t>(), d1.data_ptr<float>(), ld, e1.data_ptr<float>(),
                    RangeIsa::Scalar);
    gptq_batch_rows(rows, cnt, w2.data_ptr<float>(), ld, u.data_ptr<float>(), cnt, s.data_ptr<float>(),
                    z.data_ptr<float>(), 0, 15, c2.data_ptr<int32_t>(), d2.data_ptr<float>(), ld, e2.data_ptr<float>(),
                    RangeIsa::Avx512);
    EXPECT_TRUE(at::equal(w, w2)) << cnt;
    EXPECT_TRUE(at::equal(c1, c2)) << cnt;
    EXPECT_TRUE(at::equal(d1, d2)) << cnt;
    EXPECT_TRUE(at::equal(e1, e2)) << cnt;
    // Columns outside the batch are untouched, and the codes are in range.
    EXPECT_TRUE(at::equal(w.narrow(1, cnt, ld - cnt), w2.narrow(1, cnt, ld - cnt)));
    EXPECT_GE(c1.narrow(1, 0, cnt).min().item<int>(), 0);
    EXPECT_LE(c1.narrow(1, 0, cnt).max().item<int>(), 15);
  }
}

TEST(GptqKernel, FactorIsTheUpperCholeskyFactorOfTheDampedInverse) {
  torch::manual_seed(5);
  const at::Tensor h = hessian(48, 400);
  for (bool act_order : {false, true}) {
    GptqOptions o;
    o.act_order = act_order;
    const GptqFactor f = gptq_factor(h, o);
    at::Tensor hp = h.index_select(0, f.perm).index_select(1, f.perm);
    hp = hp + 0.01 * hp.diagonal().mean() * at::eye(48, at::kDouble);
    const at::Tensor u = f.u.to(at::kDouble);
    EXPECT_TRUE(at::equal(u, at::triu(u)));
    EXPECT_TRUE(at::allclose(at::matmul(u.t(), u), at::linalg_inv(hp), 1e-3, 1e-6 * hp.diagonal().mean().item<double>()));
  }
}

TEST(GptqKernel, Fp32BlockedGptqAgreesWithPlainDoubleGptq) {
  torch::manual_seed(7);
  const int64_t out = 40, in = 96;
  const at::Tensor h = hessian(in, 1024);
  const at::Tensor w = torch::randn({out, in});
  for (bool act_order : {false, true})
    for (int64_t group : {int64_t{0}, int64_t{32}}) {
      GptqOptions o;
      o.act_order = act_order;
      o.block = 32;  // three lazy batches
      const GptqResult r = gptq_quantize(w, h, weight_spec(4, group), o);
      const at::Tensor ref = reference_codes(w, h, r.params, act_order);
      // fp32 against double: a code near a rounding boundary may flip, and its error then moves the later columns
      // slightly; the objective must stay the same.
      const double agree = (r.codes == ref).to(at::kDouble).mean().item<double>();
      EXPECT_GE(agree, 0.98) << "act_order " << act_order << " group " << group;
      const at::Tensor dref = dequantize(ref, r.params).to(at::kDouble), wd = w.to(at::kDouble);
      const double pref = (at::matmul(wd - dref, h) * (wd - dref)).sum().item<double>();
      EXPECT_NEAR(r.proxy_gptq, pref, 0.02 * pref) << "act_order " << act_order << " group " << group;
      EXPECT_LT(r.proxy_gptq, 0.9 * r.proxy_rtn);
      // The thread count does not change the result (rows are independent; the GEMMs split over rows).
      const int before = at::get_num_threads();
      at::set_num_threads(1);
      const GptqResult r1 = gptq_quantize(w, h, weight_spec(4, group), o);
      at::set_num_threads(before);
      EXPECT_TRUE(at::equal(r1.codes, r.codes));
    }
}

TEST(BadInputGptq, NonFiniteWeightIsRefused) {
  at::Tensor w = torch::randn({4, 8});
  w[1][2] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(gptq_quantize(w, at::eye(8, at::kDouble), weight_spec(4, 0), {}), Error);
}

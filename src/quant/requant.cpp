#include "quant/requant.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace catq {

FixedPointMultiplier FixedPointMultiplier::from_real(double m) {
  CATQ_CHECK(std::isfinite(m) && m >= 0.0, Config, "requantization multiplier {} must be finite and >= 0", m);
  CATQ_CHECK(m < 2147483648.0, Config, "requantization multiplier {} is too large, expected < 2^31", m);
  FixedPointMultiplier r;
  if (m == 0.0) return r;
  int e = 0;
  double f = std::frexp(m, &e);  // m = f · 2^e, f ∈ [0.5, 1)
  int64_t q = std::llround(f * 2147483648.0);
  if (q == (int64_t{1} << 31)) {  // f rounded up to 1.0
    q >>= 1;
    ++e;
  }
  r.multiplier = static_cast<int32_t>(q);
  r.right_shift = 31 - e;  // ≥ 0 because m < 2^31
  return r;
}

double FixedPointMultiplier::to_real() const { return std::ldexp(static_cast<double>(multiplier), -right_shift); }

int32_t FixedPointMultiplier::apply(int64_t acc) const {
  acc = std::clamp<int64_t>(acc, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
  const int64_t prod = acc * static_cast<int64_t>(multiplier);  // |prod| < 2^62
  int64_t out;
  if (right_shift == 0) {
    out = prod;
  } else if (right_shift >= 63) {
    out = 0;  // |prod| / 2^63 < 0.5
  } else {
    const int64_t half = int64_t{1} << (right_shift - 1);
    const int64_t mag = prod >= 0 ? prod : -prod;
    const int64_t r = (mag + half) >> right_shift;  // half away from zero
    out = prod >= 0 ? r : -r;
  }
  return static_cast<int32_t>(
      std::clamp<int64_t>(out, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()));
}

int32_t FixedPointMultiplier::apply_tflite(int32_t x) const {
  if (multiplier == 0 || right_shift > 62) return 0;
  const int exponent = 31 - right_shift;
  const int left = exponent > 0 ? exponent : 0, right = exponent > 0 ? 0 : -exponent;
  const int64_t shifted = static_cast<int64_t>(x) * (int64_t{1} << left);
  const int32_t a = static_cast<int32_t>(
      std::clamp<int64_t>(shifted, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()));
  // SaturatingRoundingDoublingHighMul(a, multiplier): round(a · multiplier / 2^31), the only overflow case saturated.
  int32_t high;
  if (a == std::numeric_limits<int32_t>::min() && multiplier == std::numeric_limits<int32_t>::min()) {
    high = std::numeric_limits<int32_t>::max();
  } else {
    const int64_t ab = static_cast<int64_t>(a) * multiplier;
    const int64_t nudge = ab >= 0 ? (int64_t{1} << 30) : (1 - (int64_t{1} << 30));
    high = static_cast<int32_t>((ab + nudge) / (int64_t{1} << 31));  // C++ division truncates toward zero
  }
  // RoundingDivideByPOT(high, right): ties away from zero.
  if (right == 0) return high;
  if (right > 31) return 0;
  const int64_t mask = (int64_t{1} << right) - 1;
  const int64_t remainder = static_cast<int64_t>(high) & mask;
  const int64_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
  return static_cast<int32_t>((static_cast<int64_t>(high) >> right) + (remainder > threshold ? 1 : 0));
}

at::Tensor requantize(const at::Tensor& acc_in, const std::vector<FixedPointMultiplier>& m, int axis,
                      int32_t zero_point, int64_t qmin, int64_t qmax) {
  CATQ_CHECK(!m.empty(), Config, "requantize: no multiplier given");
  CATQ_CHECK(qmin <= qmax, Config, "requantize: empty output range [{}, {}]", qmin, qmax);
  at::Tensor acc = acc_in.detach().to(at::kCPU).to(at::kInt).contiguous();
  int64_t inner = 1, channels = 1;
  if (m.size() > 1) {
    if (axis < 0) axis += acc.dim();
    CATQ_CHECK(axis >= 0 && axis < acc.dim() && acc.size(axis) == static_cast<int64_t>(m.size()), Config,
               "requantize: {} multipliers do not match axis {} of shape [{}]", m.size(), axis,
               fmt::join(acc.sizes(), ","));
    channels = acc.size(axis);
    for (int64_t d = axis + 1; d < acc.dim(); ++d) inner *= acc.size(d);
  }
  at::Tensor out = at::empty_like(acc);
  const int32_t* a = acc.data_ptr<int32_t>();
  int32_t* o = out.data_ptr<int32_t>();
  const int64_t n = acc.numel();
  for (int64_t i = 0; i < n; ++i) {
    const FixedPointMultiplier& f = m[channels > 1 ? (i / inner) % channels : 0];
    int64_t v = static_cast<int64_t>(f.apply(a[i])) + zero_point;
    o[i] = static_cast<int32_t>(std::clamp(v, qmin, qmax));
  }
  return out.to(acc_in.device());
}

at::Tensor integer_linear(const at::Tensor& qx_in, int32_t zx, const at::Tensor& qw_in, const at::Tensor& zw_in) {
  CATQ_CHECK(qx_in.dim() == 2 && qw_in.dim() == 2 && qx_in.size(1) == qw_in.size(1), Data,
             "integer_linear: expected qx [N,K] and qw [O,K], got [{}] and [{}]", fmt::join(qx_in.sizes(), ","),
             fmt::join(qw_in.sizes(), ","));
  at::Tensor qx = qx_in.to(at::kCPU).to(at::kLong), qw = qw_in.to(at::kCPU).to(at::kLong);
  at::Tensor zw = zw_in.defined() ? zw_in.to(at::kCPU).to(at::kLong).reshape({-1}) : at::zeros({1}, at::kLong);
  CATQ_CHECK(zw.numel() == 1 || zw.numel() == qw.size(0), Data,
             "integer_linear: {} weight zero-points for {} output channels", zw.numel(), qw.size(0));
  const int64_t k = qx.size(1);
  // Integer GEMM, then the precomputed cross terms (row sums of x, column sums of w).
  at::Tensor acc = at::matmul(qx, qw.t());
  acc = acc - qx.sum(1, true) * zw.reshape({1, -1}) - zx * qw.sum(1).reshape({1, -1}) + k * zx * zw.reshape({1, -1});
  CATQ_CHECK(acc.numel() == 0 || (acc.max().item<int64_t>() <= std::numeric_limits<int32_t>::max() &&
                                  acc.min().item<int64_t>() >= std::numeric_limits<int32_t>::min()),
             Data, "integer_linear: int32 accumulator overflow (K = {})", k);
  return acc.to(at::kInt);
}

}  // namespace catq

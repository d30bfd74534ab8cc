// Torch-free kernels behind the weight observers and RTN (observer.cpp, quantizer.cpp): per-row min / max, the
// MSE clip-ratio grid search, per-row percentiles and uniform quantize / fake-quantize, on raw float arrays.
// A "row" is one set of elements sharing a (scale, zero-point) pair (to_rows(): a group, a channel, a tensor);
// x is rows × cols, row-major with leading dimension ld ≥ cols. Each kernel handles a row range, so callers can
// split rows over threads; rows are independent, so results do not depend on the split.
//
// Every kernel has a scalar reference (portable C++) and, where it pays, an AVX-512F path chosen at run time
// (range_best_isa(): the CPU's best, capped by CATQ_ISA=scalar|avx2 like runtime/kernels.h; there is no AVX2
// path here, so avx2 means scalar). The SIMD paths perform the same IEEE operations in the same order as the
// scalar reference and give bit-identical results (tests/test_range_search.cpp).
//
//   range_params  scale / zero-point of one range, float32 arithmetic exactly as params_from_range:
//                 symmetric  s = amax / qmax (amax = max(|lo|, |hi|), unsigned: max(hi, 0)), z = 0
//                 asymmetric lo' = min(lo, 0), hi' = max(hi, 0), s = (hi' − lo') / (qmax − qmin),
//                            z = clamp(qmin − round(lo' / s), qmin, qmax)
//                 s ≤ 1e-30 (zero range) → s = 1.
//   row_minmax    exact min / max per row; a row holding a NaN gets NaN for both (so callers' finiteness checks
//                 still see it, as with torch's min / max).
//   mse_search    MseObserver's grid search: for k = grid … 1, r = k / grid (as float), lo = r·min, hi = r·max,
//                 (s, z) = range_params(lo, hi), err_k = mean_j |x_j − x̂_j|^p with
//                 x̂ = s·round(clamp(x·(1/s), qmin − z, qmax − z)) (= s·(clamp(round(x/s) + z) − z) except where x/s
//                 is within an ulp of a rounding boundary, which moves err_k by ~1e-7 relative), x − x̂ and the
//                 running sum of (x − x̂)² as fused multiply-adds (one rounding each); keeps the first k
//                 with err_k < the best so far (strict: ties keep the wider range). Sum order: rows with
//                 cols ≤ kMseRowLanesMaxCols sum j sequentially (the SIMD path puts 16 rows in the 16 lanes);
//                 longer rows sum into 64 partial sums (j mod 64), combined in a fixed tree (one row at a time,
//                 the lanes along j). p = 2 squares; other p use a float pow of ~1e-7 relative accuracy
//                 (pow_abs_ref), identical in both paths.
//   row_percentile torch's linear-interpolated quantile per row (of |x| when abs): v = the sorted row,
//                 pos = q·(cols − 1), i0 = ⌊pos⌋, i1 = min(i0 + 1, cols − 1), f = pos − i0,
//                 out = v[i0]·float(1 − f) + v[i1]·float(f); exact selection (one pass keeping the ≤ 16 most
//                 extreme values when i0 is that close to either end, else nth_element), scalar only.
//   rtn_runs      q = clamp(round(x / s) + z, qmin, qmax) (true division, round half to even), x̂ = (q − z)·s:
//                 bit-identical to quantize() / fake_quantize() of quantizer.h.
#pragma once
#include <cstdint>

namespace catq {

enum class RangeIsa { Scalar, Avx512 };
const char* to_string(RangeIsa isa);
bool range_isa_supported(RangeIsa isa);  // by this CPU
RangeIsa range_best_isa();

// What params_from_range needs of a QuantSpec.
struct RangeGrid {
  int64_t qmin = 0, qmax = 255;
  bool symmetric = false;
  bool is_signed = true;
};

// Scale and zero-point (as float) of the range [lo, hi].
void range_params(const RangeGrid& g, float lo, float hi, float& scale, float& zero);

void row_minmax(const float* x, int64_t rows, int64_t cols, int64_t ld, float* mn, float* mx, RangeIsa isa);

struct MseSearch {
  RangeGrid grid;
  double p = 2.0;       // L_p of the error
  int candidates = 100;  // mse_grid: ratios k / candidates, k = candidates … 1
};
// Rows up to this many columns are searched 16 rows at a time (lanes = rows); longer rows one at a time.
constexpr int64_t kMseRowLanesMaxCols = 256;
// mn / mx: the range of each row (the exact min / max, which may come from more data than x holds).
// Writes the chosen range to lo / hi, and the chosen k to best_k when given (0 when no candidate had a finite
// error: lo / hi are then mn / mx, as with k = candidates).
void mse_search(const MseSearch& s, const float* x, int64_t rows, int64_t cols, int64_t ld, const float* mn,
                const float* mx, float* lo, float* hi, RangeIsa isa, int32_t* best_k = nullptr);
// |a|^p as mse_search evaluates it (a finite; 0 → 0). Exposed for tests.
float pow_abs_ref(float a, double p);

// q ∈ [0, 1]; scratch: at least cols floats.
void row_percentile(const float* x, int64_t rows, int64_t cols, int64_t ld, double q, bool abs, float* out,
                    float* scratch);

// Runs of `inner` contiguous elements sharing one (scale, zero): run u = o·channels + c (o < outer, c < channels)
// starts at x + u·inner and uses params index o·p_outer + c·p_channel (group: p_outer = channels, p_channel = 1;
// channel: 0, 1; tensor: 0, 0).
struct RunLayout {
  int64_t outer = 1, channels = 1, inner = 1;
  int64_t p_outer = 0, p_channel = 0;
};
// Runs [u0, u1). codes (int32) and / or deq (float) may be null; they use x's indexing.
void rtn_runs(const RunLayout& l, int64_t u0, int64_t u1, const float* x, const float* scale, const int32_t* zero,
              int64_t qmin, int64_t qmax, int32_t* codes, float* deq, RangeIsa isa);

}  // namespace catq

#include "quant/gptq_kernel.h"

#include <cmath>
#include <limits>

#include "core/error.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define CATQ_GK_X86 1
#endif

// Both paths must round alike: no FMA contraction of the update, whatever -march the project is built with.
#if defined(__clang__)
#pragma clang fp contract(off)
#define CATQ_GK_NO_CONTRACT
#elif defined(__GNUC__)
#define CATQ_GK_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define CATQ_GK_NO_CONTRACT
#endif

namespace catq {

namespace {

// One batch (the arguments of gptq_batch_rows). step() quantizes element (r, i), stores its code, value and error,
// and returns the error; both paths share it (the columns are sequential), they differ only in the update.
struct Batch {
  int64_t cnt;
  float* w;
  int64_t ldw;
  const float* u;
  int64_t ldu;
  const float *scale, *zero;
  float qmin, qmax;
  int32_t* codes;
  float* deq;
  int64_t ldc;
  float* err;

  CATQ_GK_NO_CONTRACT inline float step(int64_t r, int64_t i) const {
    const float x = w[r * ldw + i], s = scale[r * cnt + i], z = zero[r * cnt + i];
    float q = std::nearbyint(x / s) + z;
    q = q > qmin ? q : qmin;  // as vmax / vmin in range_search: NaN stays NaN
    q = q < qmax ? q : qmax;
    const float d = (q - z) * s;
    codes[r * ldc + i] = std::isnan(q) ? std::numeric_limits<int32_t>::min() : static_cast<int32_t>(q);
    deq[r * ldc + i] = d;
    return err[r * cnt + i] = (x - d) / u[i * ldu + i];
  }
};

CATQ_GK_NO_CONTRACT void rows_ref(const Batch& b, int64_t rows) {
  for (int64_t r = 0; r < rows; ++r) {
    float* wr = b.w + r * b.ldw;
    for (int64_t i = 0; i < b.cnt; ++i) {
      const float e = b.step(r, i);
      const float* ui = b.u + i * b.ldu;
      for (int64_t k = i + 1; k < b.cnt; ++k) {
        const float p = e * ui[k];
        wr[k] = wr[k] - p;
      }
    }
  }
}

#ifdef CATQ_GK_X86
__attribute__((target("avx512f"))) CATQ_GK_NO_CONTRACT void rows_avx512(const Batch& b, int64_t rows) {
  const int64_t cnt = b.cnt;
  for (int64_t r = 0; r < rows; ++r) {
    float* wr = b.w + r * b.ldw;
    for (int64_t i = 0; i < cnt; ++i) {
      const __m512 e = _mm512_set1_ps(b.step(r, i));
      const float* ui = b.u + i * b.ldu;
      int64_t k = i + 1;
      for (; k + 16 <= cnt; k += 16)
        _mm512_storeu_ps(wr + k, _mm512_sub_ps(_mm512_loadu_ps(wr + k), _mm512_mul_ps(e, _mm512_loadu_ps(ui + k))));
      if (k < cnt) {
        const __mmask16 m = static_cast<__mmask16>((1u << (cnt - k)) - 1);
        const __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, wr + k), _mm512_mul_ps(e, _mm512_maskz_loadu_ps(m, ui + k)));
        _mm512_mask_storeu_ps(wr + k, m, v);
      }
    }
  }
}
#endif

}  // namespace

void gptq_batch_rows(int64_t rows, int64_t cnt, float* w, int64_t ldw, const float* u, int64_t ldu, const float* scale,
                     const float* zero, float qmin, float qmax, int32_t* codes, float* deq, int64_t ldc, float* err,
                     RangeIsa isa) {
  CATQ_CHECK(range_isa_supported(isa), Usage, "GPTQ kernel: ISA {} is not supported by this CPU", to_string(isa));
  const Batch b{cnt, w, ldw, u, ldu, scale, zero, qmin, qmax, codes, deq, ldc, err};
#ifdef CATQ_GK_X86
  if (isa == RangeIsa::Avx512) return rows_avx512(b, rows);
#endif
  rows_ref(b, rows);
}

namespace {

// The code of the level nearest t: rounding for a uniform grid, a scan of the (short, ascending) codebook otherwise.
inline int nearest_level(float t, int levels, const float* values) {
  if (!values) {
    const float r = std::nearbyint(t);
    if (!(r >= 0.0f)) return 0;  // also NaN
    return r > static_cast<float>(levels - 1) ? levels - 1 : static_cast<int>(r);
  }
  if (std::isnan(t)) return 0;
  int c = 0;
  while (c + 1 < levels && std::fabs(values[c + 1] - t) <= std::fabs(values[c] - t)) ++c;
  return c;
}

}  // namespace

CATQ_GK_NO_CONTRACT void gptq_batch_rows_grid(int64_t rows, int64_t cnt, float* w, int64_t ldw, const float* u,
                                              int64_t ldu, const float* scale, const float* offset, int levels,
                                              const float* level_values, uint8_t* codes, float* deq, int64_t ldc,
                                              float* err) {
  CATQ_CHECK(levels >= 2 && levels <= 256, Internal, "GPTQ grid: {} levels", levels);
  for (int64_t r = 0; r < rows; ++r) {
    float* wr = w + r * ldw;
    for (int64_t i = 0; i < cnt; ++i) {
      const float x = wr[i], s = scale[r * cnt + i], m = offset[r * cnt + i];
      const int c = s != 0 ? nearest_level((x - m) / s, levels, level_values) : 0;
      const float d = s * (level_values ? level_values[c] : static_cast<float>(c)) + m;
      codes[r * ldc + i] = static_cast<uint8_t>(c);
      deq[r * ldc + i] = d;
      const float e = err[r * cnt + i] = (x - d) / u[i * ldu + i];
      const float* ui = u + i * ldu;
      for (int64_t k = i + 1; k < cnt; ++k) wr[k] -= e * ui[k];
    }
  }
}

}  // namespace catq

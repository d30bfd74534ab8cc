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

// The quantization of one element and its error, shared by both paths (scalar: the columns are sequential).
struct ColumnStep {
  float q, d, e;
};
CATQ_GK_NO_CONTRACT inline ColumnStep column_step(float x, float s, float z, float qmin, float qmax, float uii) {
  float q = std::nearbyint(x / s) + z;
  q = q > qmin ? q : qmin;  // as vmax / vmin in range_search: NaN stays NaN
  q = q < qmax ? q : qmax;
  const float d = (q - z) * s;
  return {q, d, (x - d) / uii};
}

inline int32_t code_of(float q) { return std::isnan(q) ? std::numeric_limits<int32_t>::min() : static_cast<int32_t>(q); }

CATQ_GK_NO_CONTRACT void rows_ref(int64_t r0, int64_t r1, int64_t cnt, float* w, int64_t ldw, const float* u,
                                  int64_t ldu, const float* scale, const float* zero, float qmin, float qmax,
                                  int32_t* codes, float* deq, int64_t ldc, float* err) {
  for (int64_t r = r0; r < r1; ++r) {
    float* wr = w + r * ldw;
    for (int64_t i = 0; i < cnt; ++i) {
      const ColumnStep st = column_step(wr[i], scale[r * cnt + i], zero[r * cnt + i], qmin, qmax, u[i * ldu + i]);
      codes[r * ldc + i] = code_of(st.q);
      deq[r * ldc + i] = st.d;
      err[r * cnt + i] = st.e;
      const float* ui = u + i * ldu;
      for (int64_t k = i + 1; k < cnt; ++k) {
        const float p = st.e * ui[k];
        wr[k] = wr[k] - p;
      }
    }
  }
}

#ifdef CATQ_GK_X86
__attribute__((target("avx512f"))) CATQ_GK_NO_CONTRACT void rows_avx512(int64_t r0, int64_t r1, int64_t cnt, float* w,
                                                                        int64_t ldw, const float* u, int64_t ldu,
                                                                        const float* scale, const float* zero,
                                                                        float qmin, float qmax, int32_t* codes,
                                                                        float* deq, int64_t ldc, float* err) {
  for (int64_t r = r0; r < r1; ++r) {
    float* wr = w + r * ldw;
    for (int64_t i = 0; i < cnt; ++i) {
      const ColumnStep st = column_step(wr[i], scale[r * cnt + i], zero[r * cnt + i], qmin, qmax, u[i * ldu + i]);
      codes[r * ldc + i] = code_of(st.q);
      deq[r * ldc + i] = st.d;
      err[r * cnt + i] = st.e;
      const float* ui = u + i * ldu;
      const __m512 e = _mm512_set1_ps(st.e);
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
#ifdef CATQ_GK_X86
  if (isa == RangeIsa::Avx512)
    return rows_avx512(0, rows, cnt, w, ldw, u, ldu, scale, zero, qmin, qmax, codes, deq, ldc, err);
#endif
  rows_ref(0, rows, cnt, w, ldw, u, ldu, scale, zero, qmin, qmax, codes, deq, ldc, err);
}

}  // namespace catq

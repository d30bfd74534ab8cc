#include "runtime/act_quant.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/error.h"
#include "runtime/kernels.h"

// GCC 12's _mm512_reduce_add_epi32 reads an uninitialised temporary inside its own header (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace catq {

#if defined(__x86_64__)
// Pixels [p0, p1) of C channels (C % 16 == 0): u8 codes, and where hp / sp are given x̂ and Σ_c (code − zero).
// False when a value is not finite.
static __attribute__((target("avx512f,avx512bw"))) bool quantize_pixels_avx512(const float* xp, int64_t p0, int64_t p1,
                                                                         int64_t C, float s, float z, float lo,
                                                                         float hi, int32_t shift, int32_t zero,
                                                                         float* hp, uint8_t* qp, float* sp) {
  const __m512 sv = _mm512_set1_ps(s), zv = _mm512_set1_ps(z), lov = _mm512_set1_ps(lo), hiv = _mm512_set1_ps(hi);
  const __m512i off = _mm512_set1_epi32(shift - zero), sh = _mm512_set1_epi32(shift);
  __mmask16 finite = 0xFFFF;
  for (int64_t p = p0; p < p1; ++p) {
    __m512i acc = _mm512_setzero_si512();
    for (int64_t c = 0; c < C; c += 16) {
      const __m512 v = _mm512_loadu_ps(xp + p * C + c);
      finite &= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_EQ_OQ);
      __m512 q = _mm512_roundscale_ps(_mm512_div_ps(v, sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, zv), lov), hiv);
      if (hp) _mm512_storeu_ps(hp + p * C + c, _mm512_mul_ps(_mm512_sub_ps(q, zv), sv));
      const __m512i qi = _mm512_cvtps_epi32(q);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qp + p * C + c), _mm512_cvtepi32_epi8(_mm512_add_epi32(qi, sh)));
      acc = _mm512_add_epi32(acc, _mm512_add_epi32(qi, off));
    }
    if (sp) sp[p] = static_cast<float>(_mm512_reduce_add_epi32(acc));
  }
  return finite == 0xFFFF;
}
#endif

// The simulation's fake quantizer, element for element: q = clamp(round(x / s) + z), x̂ = (q − z)·s (AVX-512 for
// 16-channel multiples: the same IEEE division, round-half-even and clamp). x NHWC float; codes always written,
// x̂ and the per-pixel sums Σ_c (code − zero) where hp / sp are given.
void quantize_nhwc(const NhwcQuant& c, const float* xp, int64_t npix, int64_t C, uint8_t* qp, float* hp, float* sp) {
  const float s = c.scale, z = static_cast<float>(c.zero - c.shift);
  const float lo = static_cast<float>(c.qmin), hi = static_cast<float>(c.qmax);
  std::atomic<bool> finite{true};
  const bool simd = C % 16 == 0 && isa_supported(KernelIsa::Avx512) && best_isa() == KernelIsa::Avx512;
  at::parallel_for(0, npix, 256, [&](int64_t p0, int64_t p1) {
    bool ok = true;
#if defined(__x86_64__)
    if (simd) {
      ok = quantize_pixels_avx512(xp, p0, p1, C, s, z, lo, hi, c.shift, c.zero, hp, qp, sp);
    } else
#endif
    for (int64_t p = p0; p < p1; ++p) {
      int32_t sum = 0;
      for (int64_t k = 0; k < C; ++k) {
        const float v = xp[p * C + k];
        ok &= std::isfinite(v);
        const float qf = std::clamp(std::nearbyint(v / s) + z, lo, hi);
        if (hp) hp[p * C + k] = (qf - z) * s;
        const int32_t code = static_cast<int32_t>(qf) + c.shift;
        qp[p * C + k] = static_cast<uint8_t>(code);
        sum += code - c.zero;
      }
      if (sp) sp[p] = static_cast<float>(sum);
    }
    if (!ok) finite = false;
  });
  CATQ_CHECK(finite, Data, "integer conv: input holds NaN or Inf");
}

}  // namespace catq

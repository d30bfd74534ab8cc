// NHWC activation quantizer for the integer convolution (runtime/int_conv.h), with run-time ISA dispatch: the
// simulation's fake quantizer, element for element, writing u8 codes (and optionally x̂ and per-pixel code sums) in
// one pass. AVX-512 (AVX-512F + BW) for channel counts that are multiples of 16 when best_isa() is avx512
// (runtime/kernels.h, CATQ_ISA caps it); the scalar loop otherwise — the same IEEE division, round-half-even and
// clamp, so both paths give identical results.
#pragma once
#include <cstdint>

namespace catq {

// A per-tensor activation quantizer: q = clamp(round(x / scale) + (zero − shift), qmin, qmax), x̂ = (q − (zero −
// shift))·scale, the stored code q + shift.
struct NhwcQuant {
  float scale = 1;
  int32_t zero = 0;           // in u8 code space (after the shift)
  int32_t shift = 0;          // +128 for signed activation codes
  int32_t qmin = 0, qmax = 255;  // code range before the shift
};

// x: npix pixels × C channels (NHWC float). Codes (npix × C u8) always written; x̂ (npix × C float) where xhat is
// given, the per-pixel sums Σ_c (code − zero) (npix floats) where sums is given. Error(Data) "integer conv: input
// holds NaN or Inf" when a value is not finite.
void quantize_nhwc(const NhwcQuant& q, const float* x, int64_t npix, int64_t C, uint8_t* codes, float* xhat,
                   float* sums);

}  // namespace catq

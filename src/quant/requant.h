// Integer-only arithmetic (methods.md §1 "integer matmul"): integer accumulation with precomputed zero-point
// cross terms, and requantization of int32 accumulators by a real multiplier M = s_x·s_w / s_y represented as
// an int32 fixed-point multiplier plus a right shift (gemmlowp / TFLite representation).
//
//   M ≈ multiplier · 2^(−right_shift),  multiplier ∈ [2^30, 2^31) (a Q0.31 mantissa of M), right_shift ≥ 0
//   apply(acc) = round(acc · multiplier / 2^right_shift)  — one rounding of the exact 64-bit product,
//                half away from zero (as gemmlowp's RoundingDivideByPOT), saturated to int32.
// Unlike gemmlowp's two-step SaturatingRoundingDoublingHighMul + RoundingDivideByPOT (which rounds twice),
// the single rounding stays within 0.5 LSB + the multiplier's 2^-31 relative error of the real product.
#pragma once
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

namespace catq {

struct FixedPointMultiplier {
  int32_t multiplier = 0;  // 0 only for M == 0
  int right_shift = 0;

  // Error(Config) for M < 0, non-finite, or M ≥ 2^31.
  static FixedPointMultiplier from_real(double m);
  double to_real() const;
  // round(acc · M), saturated to the int32 range.
  int32_t apply(int64_t acc) const;
  // TFLite's MultiplyByQuantizedMultiplier (gemmlowp's two roundings: SaturatingRoundingDoublingHighMul, then
  // RoundingDivideByPOT with ties away from zero), bit-exact with TFLite's reference integer kernels. TFLite's
  // exponent is 31 − right_shift; a multiplier whose right shift exceeds 62 (M < 2^-32) gives 0, as TFLite's
  // QuantizeMultiplier flushes such multipliers to zero.
  int32_t apply_tflite(int32_t acc) const;
};

// out = clamp(apply_c(acc) + zero_point, qmin, qmax) as int32. `m` holds one multiplier (per tensor) or one per
// index along `axis` (per output channel). acc: int32 tensor (any device; computed on the CPU).
at::Tensor requantize(const at::Tensor& acc, const std::vector<FixedPointMultiplier>& m, int axis,
                      int32_t zero_point, int64_t qmin, int64_t qmax);

// Integer linear layer accumulators: acc[n, o] = Σ_k (qx[n,k] − zx)·(qw[o,k] − zw[o]) computed as
// qx·qwᵀ − zw[o]·Σ_k qx[n,k] − zx·Σ_k qw[o,k] + K·zx·zw[o] (the last three terms are per-row / per-channel
// constants a deployment precomputes). qx [N,K], qw [O,K] integer tensors; zw: int tensor [O] or 0-dim.
// Returns int32 [N,O]; Error(Data) when an accumulator overflows int32.
at::Tensor integer_linear(const at::Tensor& qx, int32_t zx, const at::Tensor& qw, const at::Tensor& zw);

}  // namespace catq

// Differentiable fake quantization (torch::autograd::Function) for QAT and reconstruction.
//
// fake_quant_ste — forward fake_quantize(x, p). Clipped straight-through estimator for the uniform scheme:
//   ∂x̂/∂x = 1 where x/s + z ∈ [qmin, qmax] (x inside the representable range [s(qmin−z), s(qmax−z)]), else 0.
//   kmeans / binary / ternary pass the gradient unchanged (plain STE). Params get no gradient. When no gradient is
//   wanted (grad mode off or x not requiring grad) it is fake_quantize(x, p) itself: no mask, no autograd node.
//
// fake_quant_lsq — LSQ (Esser et al., 2020) with a learnable scale; zero-point constant (0 when symmetric):
//   v = x/s,  x̂ = s·(clamp(round(v) + z, qmin, qmax) − z)
//   ∂x̂/∂x = 1 inside (qmin ≤ v + z ≤ qmax), 0 outside
//   ∂x̂/∂s = round(v) − v inside, qmin − z below, qmax − z above, times the grad-scale factor
//           g = 1/sqrt(numel(x)·qmax) (LSQ paper / MQBench; pass grad_scale > 0 to override)
//   scale has QuantParams::scale's shape for x (0-dim per tensor, broadcast shape per channel / group), and the
//   gradient is summed to that shape. Rounding is nearest.
#pragma once
#include <optional>

#include <ATen/ATen.h>

#include "quant/quantizer.h"

namespace catq {

at::Tensor fake_quant_ste(const at::Tensor& x, const QuantParams& p, Rounding r = Rounding::Nearest,
                          std::optional<at::Generator> gen = std::nullopt);

// p supplies granularity / axis / group_size / zero_point / qmin / qmax (p.scale is ignored: `scale` is used).
at::Tensor fake_quant_lsq(const at::Tensor& x, const at::Tensor& scale, const QuantParams& p, double grad_scale = 0.0);

// Per-tensor LSQ (scale 0-dim float32, zero-point z) in one fused pass over x, with an optional keep-mask
// (QDrop): where keep[i] the output is x[i] itself (gradient 1, no contribution to the scale's gradient).
// Same values and gradients as fake_quant_lsq(x, scale, p) + at::where(keep, x, ·), several times faster on
// CPU for the large activation tensors of block reconstruction. x must be float32 on the CPU; any dense memory
// layout is kept (the keep-mask must have x's strides).
at::Tensor fake_quant_lsq_per_tensor(const at::Tensor& x, const at::Tensor& scale, double zero_point, int64_t qmin,
                                     int64_t qmax, double grad_scale, const at::Tensor& keep = {});

// The default LSQ grad-scale factor 1/sqrt(numel·qmax).
double lsq_grad_scale(int64_t numel, int64_t qmax);

}  // namespace catq

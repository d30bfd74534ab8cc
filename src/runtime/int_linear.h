// Integer linear layers for the integer runtime (issue 5): IntLinear, a quantized linear layer's weights packed for
// the low-bit kernels, and prepare_int_linear, which builds it from a SimQuant layer. IntegerRuntime
// (runtime/int_runtime.h) runs a model's linear layers through it.
//
// Per layer (IntLinear):
//   integer   — uniform weights (per channel / per group / per tensor, ≤ 8 bits, stored in 2/4/8-bit containers)
//               and 8-bit-or-less activations quantized per token (dynamic) or per tensor (static, calibrated):
//               runtime/int_gemm.h (W8A8, W4A8, W4A4, ...), the activation quantization fused into the call;
//   weight-only — same weights, floating-point activations: runtime/kernels.h gemv_packed_i16 / gemv_packed (W8A16,
//               W4A16, W2A16; decode on int16 activations where AVX-512 VNNI allows, prefill on an fp32 GEMM);
//   codebook  — k-means weights of ≤ 3 bits (a codebook per output row or one per tensor) with floating-point
//               activations: runtime/kernels.h gemv_codebook (codewords looked up in registers);
//   simulated — anything else (floating-point weights, binary / ternary schemes, stochastic rounding,
//               per-channel activations): prepare_int_linear returns nullptr with the reason, and the runtime runs
//               the SimQuant's fake-quantized linear, named with the reason in IntegerRuntime::report().
#pragma once
#include <memory>
#include <string>

#include <ATen/ATen.h>

#include "runtime/int_gemm.h"
#include "runtime/kernels.h"
#include "runtime/packed.h"
#include "sim/sim_quant.h"

namespace catq {

struct IntLinear {
  enum class Kind { Integer, WeightOnly, Codebook };
  Kind kind = Kind::Integer;
  IntWeights weights;  // Integer: codes + integer zero-points; WeightOnly uses weights.w only
  PackedCodebook codebook;  // Codebook: k-means indices (≤ 3 bits) and codewords, float activations
  ActQuant act;        // Integer only
  int weight_bits = 0, act_bits = 0;  // as quantized (the container may be wider: 3-bit codes live in 4 bits)

  // y = x·Ŵᵀ for x [..., in] float32 (CPU). Error(Data) for a shape mismatch or non-finite activations.
  at::Tensor forward(const at::Tensor& x) const;
  // WeightOnly decode (fewer than 16 rows) runs gemv_packed_i16 (activations as int16 per group, runtime/kernels.h)
  // when the CPU has AVX-512 VNNI, the layout suits it and CATQ_ISA does not cap the ISA below avx512.
  bool int16_activations() const {
    return kind == Kind::WeightOnly && best_isa() == KernelIsa::Avx512 && i16_simd() && i16_supported(weights.w);
  }
  std::string str() const;  // e.g. "W4A8 int (4-bit codes, per channel, per-token act)"

 private:
  at::Tensor forward_codebook(const at::Tensor& x) const;
};

// Prepares layer `l` (bound in a SimQuant, weight params computed) with weight tensor w [out, in]: the codes are the
// layer's installed codes, or quantize(w, params). Returns nullptr and sets *why when the layer cannot run on the
// kernels.
std::unique_ptr<IntLinear> prepare_int_linear(const SimQuant::Layer& l, const at::Tensor& w, std::string* why);

}  // namespace catq

// Integer 2-D convolution for the integer runtime (issue 5): IntConv, a conv layer's int8 weights and static input
// quantizer run on oneDNN's int8 primitive, and prepare_int_conv, which builds it from a SimQuant layer.
// IntegerRuntime (runtime/int_runtime.h) runs conv layers through it; IntegerCnn (runtime/int_cnn.h) chains its
// requantized outputs.
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "sim/sim_quant.h"

namespace catq {

// An activation quantizer in u8 code space: x̂ = scale·(code − zero), code ∈ [lo, hi].
struct CodeSpace {
  float scale = 1;
  int32_t zero = 0, lo = 0, hi = 255;
  bool operator==(const CodeSpace& o) const { return scale == o.scale && zero == o.zero && lo == o.lo && hi == o.hi; }
};

// A 2-D convolution (grouped too: depthwise) on oneDNN's int8 primitive (AVX-512 VNNI / AMX where the CPU has them): weights as s8 codes
// (≤ 8 bits; unsigned 8-bit codes shifted by −128), activations as u8 codes with a zero-point (static per-tensor
// params; signed codes shifted by +128), int32 accumulation, per-output-channel f32 output scale s_x·s_w[o]. oneDNN
// has no weight zero-points: with asymmetric weights the runtime subtracts s_x·s_w[o]·z_w[o]·Σ_window(q − z_x),
// the window sums from a one-output-channel convolution of the codes. The bias is added after.
// Weights of ≤ 7 bits are recentred (q − z_w fits int8), which removes the correction. input() quantizes a conv
// layer's input once — the simulation's x̂ for the graph (a shared value's other readers see it) and the codes for
// conv(). The primitive is created once per input shape.
struct IntConv {
  at::Tensor codes;              // [O, C, kh, kw] int8
  std::vector<float> out_scale;  // O
  std::vector<float> zero_term;  // O: s_x·s_w[o]·z_w[o] (z_w in the shifted int8 code space)
  bool asymmetric = false;       // some z_w ≠ 0
  float x_scale = 1;
  int32_t x_zero = 0;            // in u8 code space
  int x_shift = 0;               // +128 for signed activation codes
  int32_t x_qmin = 0, x_qmax = 255;  // activation code range before the shift
  int weight_bits = 0, act_bits = 0;
  struct Primitive;              // oneDNN objects (int_conv.cpp)
  mutable std::vector<std::shared_ptr<Primitive>> cache;

  // An input quantized once: x̂ (what the simulation's quantizer returns, channels-last), the u8 codes (NHWC) and
  // the per-pixel channel sums Σ_c (q − z_x) (for asymmetric 8-bit weights).
  struct Input {
    at::Tensor xhat, codes, csum;
  };
  Input quantize_input(const at::Tensor& x) const;  // Error(Data) for a wrong shape or NaN / Inf
  at::Tensor quantize_codes(const at::Tensor& x) const;  // the u8 codes alone (NHWC), same arithmetic
  at::Tensor forward(const Input& in, const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                     at::IntArrayRef dilation) const;

  using Codes = CodeSpace;
  Codes input_codes() const { return {x_scale, x_zero, x_qmin + x_shift, x_qmax + x_shift}; }
  // The output requantized inside the primitive (integer graph execution, runtime/int_cnn.h): the codes of
  // `out` for relu?(conv(x̂) + bias [+ residual x̂_r]), the residual given as codes of its own quantizer with the
  // output's shape. oneDNN post-ops: per-channel output scale s_x·s_w[o] / s_out, the constant terms (bias, zero-
  // points) folded into the bias, `sum` for the residual, one clip to the code range (ReLU is the lower bound).
  // Needs symmetric int8 weights (asymmetric() false): the weight zero-point correction has no post-op.
  // `clip_max` (finite): the output is first clipped to [0, clip_max] (ReLU6 / Clip(0, M)), in codes
  // min(hi, zero + round(clip_max / scale)).
  at::Tensor forward_codes(const at::Tensor& codes, const at::Tensor& bias, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, const Codes& out, bool relu,
                           const at::Tensor& residual = {}, const Codes& residual_codes = {},
                           float clip_max = std::numeric_limits<float>::infinity()) const;
  // Groups: the input has groups · codes.size(1) channels (a depthwise convolution: codes [C·M, 1, kh, kw], groups
  // C). Grouped convolutions need symmetric int8 weights (the zero-point correction sums over all input channels).
  int64_t groups_for(int64_t in_channels) const { return in_channels / codes.size(1); }
  std::string str() const;

 private:
  std::shared_ptr<Primitive> primitive(at::IntArrayRef in_shape, at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef dilation, const Codes* out, bool relu, bool sum,
                                       float sum_scale, float clip_max) const;
};
// Prepares conv layer `l` (bound in a SimQuant, integer codes installed, input calibrated). Returns nullptr and sets
// *why when the layer cannot run on oneDNN int8.
std::unique_ptr<IntConv> prepare_int_conv(const SimQuant::Layer& l, std::string* why);
// True when this CPU has VNNI (AVX-512 VNNI or AVX-VNNI). Without it oneDNN's u8×s8 convolution multiplies through
// int16 pairs (vpmaddubsw) and, to avoid their saturation, scales the weights by 1/2 (oneDNN's "Nuances of int8
// computations"): the result no longer equals the integer codes' arithmetic, so prepare_int_conv refuses and the
// layer runs simulated (exact) instead.
bool onednn_int8_conv_exact();

}  // namespace catq

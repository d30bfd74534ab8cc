// Runs a full-integer (int8) TFLite model with TFLite's integer arithmetic, so catq can score the official int8
// files (and its own int8 TFLite output) itself.
//
// Semantics: those of TFLite's reference integer kernels (tensorflow/lite/kernels/internal/reference/integer_ops):
// NHWC int8 activations, int8 weights per output channel with zero-point 0, int32 biases of scale s_in · s_w[o],
// int32 accumulation of (x − z_in) · w, requantization by TFLite's fixed-point multiplier (M = s_in · s_w[o] / s_out
// computed in double, QuantizeMultiplier → FixedPointMultiplier, MultiplyByQuantizedMultiplier →
// FixedPointMultiplier::apply_tflite), + z_out, clamped to the fused activation's range (zero_point + round(0 / s),
// round(6 / s), ...). ADD as TFLite: both inputs shifted left by 20 bits and scaled to twice the larger input scale,
// summed, requantized. AVERAGE_POOL_2D: the window sum over its real elements divided with rounding half away from
// zero. MEAN (height and width): (x − z_in) summed, scaled by s_in / s_out, divided by the count with the same
// rounding. QUANTIZE from float: round half away from zero (std::round), + z. Not bit-exact with TFLite: SOFTMAX
// (computed in float, then quantized; TFLite uses a fixed-point exp), which only matters when it is not the final
// operator — a final SOFTMAX is dropped by default and the dequantized logits are returned.
//
// Operators: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, PAD, RESHAPE,
// SQUEEZE, RELU, RELU6, SOFTMAX, QUANTIZE, DEQUANTIZE; int8 activations (float only at a QUANTIZE input or a
// DEQUANTIZE output). Anything else is Error(Unsupported) naming the operator when the executor is built.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "io/tflite.h"

namespace catq {

class TfliteInt8Executor {
 public:
  explicit TfliteInt8Executor(TfliteModel m, bool drop_final_softmax = true);
  ~TfliteInt8Executor();
  TfliteInt8Executor(const TfliteInt8Executor&) = delete;
  TfliteInt8Executor& operator=(const TfliteInt8Executor&) = delete;

  const TfliteModel& model() const;
  // Images as catq's data sets hold them (float [N, C, H, W] for 4-D NHWC inputs, else [N, ...] in the model's
  // order), quantized with the input tensor's params; returns the dequantized output (logits when the final SOFTMAX
  // is dropped) as float [N, ...]. Images run in parallel (at::parallel_for).
  at::Tensor forward(const at::Tensor& x) const;
  // One image's int8 input codes (NHWC, the input tensor's layout) → the output tensor's int8 codes (the final
  // SOFTMAX's input when dropped).
  std::vector<int8_t> run_codes(const std::vector<int8_t>& input) const;
  // Every int8 tensor one image computes (tensor index → codes), for tests and debugging.
  std::map<int32_t, std::vector<int8_t>> trace(const std::vector<int8_t>& input) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace catq

// A quantized CNN (graph + SimQuant with installed integer weight codes) as a full-integer int8 TFLite model with the
// operators of TFLite Micro (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, AVERAGE_POOL_2D, MAX_POOL_2D, MEAN,
// PAD, RESHAPE, RELU, RELU6, QUANTIZE, SOFTMAX): `catq export X.catq --format tflite --calib DATA`.
//
// What maps how:
//   weights     the layer's integer codes minus their zero-point, int8 (must fit: symmetric 8-bit weights —
//               --bits w8a8-wsym — or any ≤ 7-bit weights), per-channel scales (conv: dimension 0 of OHWI;
//               depthwise: dimension 3 of [1, kh, kw, C·M]; fully connected: dimension 0 of [O, I])
//   biases      int32 round(b / (s_in · s_w[o])); a channel whose bias would not fit (its weights all but zero, a
//               tiny scale) gets a larger weight scale and rescaled codes, as the TFLite converter does
//   activations int8 per tensor, NHWC. A value a quantized layer reads takes that layer's input quantizer (8-bit
//               codes shifted by −128 into int8, same scale); a second layer reading it with another quantizer gets
//               a QUANTIZE (requantization) in front. Values the simulation keeps in float (a convolution's output
//               before a residual ADD, pooling outputs, the logits) get min/max ranges measured by running the
//               simulation on `calib` images. AVERAGE_POOL_2D / RESHAPE outputs share their input's parameters
//               (TFLite requires it).
//   activations  Relu / Clip(0, 6) after a convolution, fully connected layer or ADD fuse into it (RELU / RELU6)
//   padding     explicit pads equal to TFLite's SAME → SAME, none → VALID, anything else → a PAD operator first
//   end         the logits (int8) and a SOFTMAX (scale 1/256, zero-point −128), as the MLPerf Tiny int8 files
// The file differs from the simulation where the simulation keeps float values (the measured ranges above round
// them to 8 bits). Refused with Error(Unsupported), naming the layer or node: weights that do not fit int8,
// activations of fewer or more than 8 bits or not per-tensor static, grouped convolutions other than depthwise,
// reshapes of 4-D activations whose spatial size is not 1×1, and any other operator.
#pragma once
#include <string>
#include <vector>

#include "io/tflite.h"
#include "sim/executor.h"
#include "sim/sim_quant.h"

namespace catq {

struct TfliteExportReport {
  int64_t calibrated_tensors = 0;  // activations with measured ranges (not a layer's input quantizer)
  int64_t requantize_ops = 0;      // QUANTIZE operators inserted (a value read with two quantizers, pooling)
  int64_t pad_ops = 0;             // PAD operators inserted (padding that is neither SAME nor VALID)
  int64_t rescaled_channels = 0;   // weight channels whose scale was raised so that their bias fits int32
};

// `calib`: images as the data set holds them (NCHW), run through the simulation (sq in Mode::Quantize) to measure the
// ranges of values the simulation keeps in float.
TfliteModel tflite_int8_model(const GraphExecutor& ex, SimQuant& sq, const at::Tensor& calib,
                              TfliteExportReport* report = nullptr);

}  // namespace catq

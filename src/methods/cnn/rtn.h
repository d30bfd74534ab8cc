// RTN (round-to-nearest) PTQ: calibrate activation ranges with the config's observers, weights from their own
// observer. Every other PTQ method starts from this state.
#pragma once
#include <ATen/ATen.h>

#include "sim/executor.h"
#include "sim/sim_quant.h"

namespace catq {

// Runs `images` (float [N, C, H, W]) through the model in batches with `sq` observing activations, fixes the
// activation params, and computes every layer's weight params (one quantized forward). Leaves `sq` in
// Mode::Quantize. Error(Data) for an empty calibration set.
void calibrate_rtn(const GraphExecutor& ex, SimQuant& sq, const at::Tensor& images, int64_t batch = 250);

}  // namespace catq

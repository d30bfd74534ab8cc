// ONNX writing: the IR as an ONNX model, and a quantized CNN as a QDQ model (QuantizeLinear / DequantizeLinear,
// opset ≥ 13) that ONNX Runtime runs with the same arithmetic as catq's simulation.
//
// QDQ layout of one quantized conv / linear layer reading value v:
//   weight:  W_q (uint8 codes, or int8 when the range is signed) ─ DequantizeLinear(scale[C], zero_point[C],
//            axis = output channel) ─> the layer's weight input          (per-channel; per-tensor: scalars)
//   input:   v ─ Clip(s·(qmin − z), s·(qmax − z)) ─ QuantizeLinear(s, z) ─ DequantizeLinear(s, z) ─> the layer
//            The Clip makes an 8-bit container carry a b-bit grid: after it, round(x/s) + z stays in [qmin, qmax].
// As in the executor (sim/executor.h), non-layer consumers of v (a residual shortcut) read the quantized value of
// the first layer that reads v; a second layer reading v applies its own quantizer. Biases stay float. A CAT head
// becomes ONNX ops after the logits (append_cat_head).
#pragma once
#include <string>

#include "ir/graph.h"
#include "quant/cat_head.h"
#include "sim/executor.h"
#include "sim/sim_quant.h"

namespace catq {

// Writes g as an ONNX model (ai.onnx opset max(g.opset, min_opset)) atomically. Error(Unsupported) for graph
// attributes, tensor types ONNX cannot hold, or ops whose signature changed between g.opset and the written opset.
void write_onnx(const Graph& g, const std::string& path, int64_t min_opset = 0);

// The QDQ graph of `ex` quantized by `sq` (integer weight codes installed for every quantized layer; per-tensor
// static input params). Error(Unsupported) for quantizers QDQ cannot express (codebooks, per-group or per-token
// activations, more than 8 bits).
Graph qdq_graph(const GraphExecutor& ex, const SimQuant& sq);

// Appends a CAT / plain-affine head (quant/cat_head.h) to the graph's first output as ONNX ops:
//   p = (z − mean)·basis                              Sub, MatMul (PCA only)
//   k = ArgMin_k(−2·p·c_kᵀ + ‖c_k‖²)                   MatMul, Mul, Add, ArgMin (the nearest centroid; K > 1 only)
//   z̃ = z ⊙ Gather(γ', k) + Gather(β', k)             γ' = (1 − α) + α·γ, β' = α·β
// The output keeps the graph output's name and shape. α = 0 adds nothing.
void append_cat_head(Graph& g, const CatHead& head);

}  // namespace catq

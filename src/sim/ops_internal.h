// ONNX operator implementations shared by sim/ops.cpp (helpers, dispatch), sim/ops_nn.cpp (compute ops) and
// sim/ops_shape.cpp (shape and data-movement ops). Internal to sim/: the executor's entry point is run_node
// (sim/executor.h).
#pragma once
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "sim/executor.h"

namespace catq::ops {

using Tensors = std::vector<at::Tensor>;

// ---- Helpers (sim/ops.cpp) ----------------------------------------------------------------------------------
[[noreturn]] void op_fail(const Node& n, const std::string& msg);
const at::Tensor& in(const Node& n, const Tensors& x, size_t i);  // Error(Unsupported) when missing
bool present(const Tensors& x, size_t i);
std::vector<int64_t> to_ints(const at::Tensor& t);
int64_t norm_axis(const Node& n, int64_t axis, int64_t rank);
std::vector<int64_t> spatial_pads(const Node& n, at::IntArrayRef x_sizes, const std::vector<int64_t>& kernel,
                                  const std::vector<int64_t>& strides, const std::vector<int64_t>& dil);
at::Tensor pad_spatial(const at::Tensor& x, const std::vector<int64_t>& pads, double value);

// ---- Ops: one function per ONNX op (ops_nn.cpp, ops_shape.cpp) -------------------------------------------------
Tensors op_conv(const Node& n, const Tensors& x, QuantContext* ctx, const LayerInfo* layer);
Tensors op_gemm(const Node& n, const Tensors& x, QuantContext* ctx, const LayerInfo* layer);
Tensors op_matmul(const Node& n, const Tensors& x, QuantContext* ctx, const LayerInfo* layer);
Tensors op_batchnorm(const Node& n, const Tensors& x);
Tensors op_pool(const Node& n, const Tensors& x, bool is_max);
Tensors op_quantize_linear(const Node& n, const Tensors& x);
Tensors op_dequantize_linear(const Node& n, const Tensors& x);
Tensors op_softmax(const Node& n, const Tensors& x, int64_t opset);
Tensors op_reduce_mean(const Node& n, const Tensors& x, int64_t opset);
at::Tensor binary(const Node& n, const Tensors& x, char op);
Tensors op_clip(const Node& n, const Tensors& x, int64_t opset);
Tensors op_reshape(const Node& n, const Tensors& x, int64_t opset);
Tensors op_slice(const Node& n, const Tensors& x, int64_t opset);
Tensors op_pad(const Node& n, const Tensors& x, int64_t opset);
Tensors op_gather(const Node& n, const Tensors& x);
Tensors op_split(const Node& n, const Tensors& x, int64_t opset);
Tensors op_unsqueeze(const Node& n, const Tensors& x, int64_t opset);
Tensors op_squeeze(const Node& n, const Tensors& x, int64_t opset);
at::Tensor attr_tensor_value(const Node& n);

}  // namespace catq::ops

// ONNX operator semantics on libtorch tensors. One function per op; run_node dispatches by op_type.
// Where ONNX and torch differ (asymmetric pads, negative slice steps, integer division) the op builds
// the ONNX behaviour explicitly rather than trusting torch's defaults.
#include <limits>

#include "core/error.h"
#include "ir/onnx_dtype.h"
#include "sim/executor.h"
#include "sim/ops_internal.h"

namespace catq {

namespace ops {

[[noreturn]] void op_fail(const Node& n, const std::string& msg) {
  fail(ErrorKind::Unsupported, "node '{}' ({}): {}", n.name, n.op_type, msg);
}

const at::Tensor& in(const Node& n, const Tensors& x, size_t i) {
  if (i >= x.size() || !x[i].defined()) op_fail(n, fmt::format("missing required input {}", i));
  return x[i];
}
bool present(const Tensors& x, size_t i) { return i < x.size() && x[i].defined(); }

std::vector<int64_t> to_ints(const at::Tensor& t) {
  auto c = t.to(at::kLong).contiguous().reshape({-1});
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

int64_t norm_axis(const Node& n, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) op_fail(n, fmt::format("axis {} out of range for rank {}", axis, rank));
  return axis < 0 ? axis + rank : axis;
}

// Spatial padding for Conv/Pool: returns [begin..., end...] per spatial dim honouring auto_pad.
std::vector<int64_t> spatial_pads(const Node& n, at::IntArrayRef x_sizes, const std::vector<int64_t>& kernel,
                                  const std::vector<int64_t>& strides, const std::vector<int64_t>& dil) {
  size_t sd = kernel.size();
  std::string ap = n.attr_string("auto_pad", "NOTSET");
  std::vector<int64_t> pads = n.attr_ints("pads", std::vector<int64_t>(2 * sd, 0));
  if (pads.size() != 2 * sd) op_fail(n, fmt::format("pads has {} values, expected {}", pads.size(), 2 * sd));
  if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
    for (size_t i = 0; i < sd; ++i) {
      int64_t in = x_sizes[2 + i], out = (in + strides[i] - 1) / strides[i];
      int64_t total = std::max<int64_t>(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - in);
      int64_t small = total / 2, big = total - small;
      pads[i] = ap == "SAME_UPPER" ? small : big;
      pads[i + sd] = ap == "SAME_UPPER" ? big : small;
    }
  } else if (ap == "VALID") {
    std::fill(pads.begin(), pads.end(), 0);
  }
  return pads;
}

// torch's F.pad order: last dim first, (begin, end) pairs.
at::Tensor pad_spatial(const at::Tensor& x, const std::vector<int64_t>& pads, double value) {
  size_t sd = pads.size() / 2;
  std::vector<int64_t> tp;
  for (size_t i = sd; i-- > 0;) { tp.push_back(pads[i]); tp.push_back(pads[i + sd]); }
  bool any = std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p != 0; });
  return any ? at::constant_pad_nd(x, tp, value) : x;
}

}  // namespace ops

using namespace ops;

bool ConvGeometry::symmetric() const {
  const size_t sd = pads.size() / 2;
  for (size_t i = 0; i < sd; ++i)
    if (pads[i] != pads[i + sd]) return false;
  return true;
}

std::vector<int64_t> ConvGeometry::begin_pads() const {
  return std::vector<int64_t>(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(pads.size() / 2));
}

ConvGeometry conv_geometry(const Node& n, at::IntArrayRef x_sizes, at::IntArrayRef w_sizes) {
  if (x_sizes.size() < 3) op_fail(n, fmt::format("input must have rank >= 3, got {}", x_sizes.size()));
  if (w_sizes.size() != x_sizes.size()) op_fail(n, "weight rank differs from input rank");
  const size_t sd = x_sizes.size() - 2;
  ConvGeometry g;
  const std::vector<int64_t> kernel = n.attr_ints("kernel_shape", std::vector<int64_t>(w_sizes.begin() + 2, w_sizes.end()));
  g.strides = n.attr_ints("strides", std::vector<int64_t>(sd, 1));
  g.dilations = n.attr_ints("dilations", std::vector<int64_t>(sd, 1));
  g.group = n.attr_int("group", 1);
  if (x_sizes[1] != w_sizes[1] * g.group)
    op_fail(n, fmt::format("input has {} channels but weight expects {} x {} groups", x_sizes[1], w_sizes[1], g.group));
  g.pads = spatial_pads(n, x_sizes, kernel, g.strides, g.dilations);
  return g;
}

std::vector<at::Tensor> run_node(const Node& n, const std::vector<at::Tensor>& x, int64_t opset, QuantContext* ctx,
                                 const LayerInfo* layer) {
  const std::string& op = n.op_type;
  if (op == "Conv") return op_conv(n, x, ctx, layer);
  if (op == "Gemm") return op_gemm(n, x, ctx, layer);
  if (op == "MatMul") return op_matmul(n, x, ctx, layer);
  if (op == "BatchNormalization") return op_batchnorm(n, x);
  if (op == "Relu") return {at::relu(in(n, x, 0))};
  if (op == "LeakyRelu") return {at::leaky_relu(in(n, x, 0), n.attr_float("alpha", 0.01f))};
  if (op == "Clip") return op_clip(n, x, opset);
  if (op == "Sigmoid") return {at::sigmoid(in(n, x, 0))};
  if (op == "HardSigmoid")
    return {at::clamp(in(n, x, 0) * n.attr_float("alpha", 0.2f) + n.attr_float("beta", 0.5f), 0.0, 1.0)};
  if (op == "HardSwish") return {in(n, x, 0) * at::clamp(in(n, x, 0) / 6.0 + 0.5, 0.0, 1.0)};
  if (op == "Tanh") return {at::tanh(in(n, x, 0))};
  if (op == "Add") return {binary(n, x, '+')};
  if (op == "Sub") return {binary(n, x, '-')};
  if (op == "Mul") return {binary(n, x, '*')};
  if (op == "Div") return {binary(n, x, '/')};
  if (op == "MaxPool") return op_pool(n, x, true);
  if (op == "AveragePool") return op_pool(n, x, false);
  if (op == "GlobalAveragePool") {
    at::Tensor X = in(n, x, 0);
    std::vector<int64_t> dims;
    for (int64_t d = 2; d < X.dim(); ++d) dims.push_back(d);
    return {X.mean(dims, true)};
  }
  if (op == "Flatten") {
    at::Tensor X = in(n, x, 0);
    int64_t ax = n.attr_int("axis", 1);
    if (ax < 0) ax += X.dim();
    if (ax < 0 || ax > X.dim()) op_fail(n, "axis out of range");
    int64_t rows = 1;
    for (int64_t i = 0; i < ax; ++i) rows *= X.size(i);
    int64_t cols = 1;
    for (int64_t i = ax; i < X.dim(); ++i) cols *= X.size(i);
    return {X.reshape({rows, cols})};
  }
  if (op == "Reshape") return op_reshape(n, x, opset);
  if (op == "ArgMin" || op == "ArgMax") {
    // ONNX: int64 indices along `axis` (default 0), the first extreme unless select_last_index.
    const at::Tensor X = in(n, x, 0);
    const int64_t axis = norm_axis(n, n.attr_int("axis", 0), X.dim());
    const bool keep = n.attr_int("keepdims", 1) != 0, last = n.attr_int("select_last_index", 0) != 0;
    const at::Tensor src = last ? X.flip({axis}) : X;
    at::Tensor idx = op == "ArgMin" ? src.argmin(axis, keep) : src.argmax(axis, keep);
    if (last) idx = (X.size(axis) - 1) - idx;
    return {idx};
  }
  if (op == "Transpose") {
    at::Tensor X = in(n, x, 0);
    std::vector<int64_t> perm = n.attr_ints("perm");
    if (perm.empty()) for (int64_t i = X.dim(); i-- > 0;) perm.push_back(i);
    if (static_cast<int64_t>(perm.size()) != X.dim()) op_fail(n, "perm length differs from rank");
    return {X.permute(perm)};
  }
  if (op == "Concat") {
    std::vector<at::Tensor> parts;
    for (const auto& t : x) if (t.defined()) parts.push_back(t);
    if (parts.empty()) op_fail(n, "no inputs");
    return {at::cat(parts, norm_axis(n, n.attr_int("axis", 0), parts[0].dim()))};
  }
  if (op == "Split") return op_split(n, x, opset);
  if (op == "Slice") return op_slice(n, x, opset);
  if (op == "QuantizeLinear") return op_quantize_linear(n, x);
  if (op == "DequantizeLinear") return op_dequantize_linear(n, x);
  if (op == "Pad") return op_pad(n, x, opset);
  if (op == "Shape") {
    at::Tensor X = in(n, x, 0);
    int64_t r = X.dim(), s = n.attr_int("start", 0), e = n.attr_int("end", r);
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = std::clamp<int64_t>(s, 0, r);
    e = std::clamp<int64_t>(e, s, r);
    std::vector<int64_t> dims(X.sizes().begin() + s, X.sizes().begin() + e);
    return {at::tensor(dims, at::kLong)};
  }
  if (op == "Gather") return op_gather(n, x);
  if (op == "Unsqueeze") return op_unsqueeze(n, x, opset);
  if (op == "Squeeze") return op_squeeze(n, x, opset);
  if (op == "Cast") {
    int64_t to = n.attr_int("to", 1);
    at::ScalarType t = onnx_dtype_to_torch(static_cast<int32_t>(to), fmt::format("node '{}' (Cast)", n.name));
    return {in(n, x, 0).to(t)};
  }
  if (op == "ConstantOfShape") {
    auto shape = to_ints(in(n, x, 0));
    at::Tensor v = n.has("value") ? n.attrs.at("value").t : at::zeros({1}, at::kFloat);
    if (v.numel() != 1) op_fail(n, "value must have exactly one element");
    return {at::full(shape, v.reshape({}).item(), at::TensorOptions().dtype(v.scalar_type()))};
  }
  if (op == "Constant") return {attr_tensor_value(n)};
  if (op == "Identity") return {in(n, x, 0)};
  if (op == "Softmax") return op_softmax(n, x, opset);
  if (op == "ReduceMean") return op_reduce_mean(n, x, opset);
  fail(ErrorKind::Unsupported, "unsupported op '{}' in node '{}'", op, n.name);
}

}  // namespace catq

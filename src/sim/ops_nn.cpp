// ONNX compute ops on libtorch tensors: convolution, Gemm / MatMul, batch norm, pooling, softmax, reductions,
// elementwise arithmetic, Clip, QuantizeLinear / DequantizeLinear.
#include <limits>

#include "core/error.h"
#include "sim/ops_internal.h"

namespace catq::ops {

namespace {

at::Tensor conv_nd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, at::IntArrayRef s,
                   at::IntArrayRef p, at::IntArrayRef d, int64_t g) {
  return at::convolution(x, w, b, s, p, d, false, std::vector<int64_t>(s.size(), 0), g);
}

// QuantizeLinear / DequantizeLinear (opset ≥ 13): a scalar scale / zero-point, or 1-D ones along `axis` (default 1;
// only read for 1-D params).
at::Tensor along_axis(const Node& n, const at::Tensor& p, int64_t rank) {
  if (p.numel() == 1) return p.reshape({});
  if (p.dim() != 1) op_fail(n, fmt::format("scale / zero-point must be a scalar or 1-D, got rank {}", p.dim()));
  const int64_t axis = norm_axis(n, n.attr_int("axis", 1), rank);
  std::vector<int64_t> shape(static_cast<size_t>(rank), 1);
  shape[static_cast<size_t>(axis)] = p.numel();
  return p.reshape(shape);
}

}  // namespace

Tensors op_conv(const Node& n, const Tensors& x, QuantContext* ctx, const LayerInfo* layer) {
  at::Tensor X = in(n, x, 0), W = in(n, x, 1);
  at::Tensor B = present(x, 2) ? x[2] : at::Tensor();
  const ConvGeometry geo = conv_geometry(n, X.sizes(), W.sizes());
  const std::vector<int64_t>& strides = geo.strides;
  const std::vector<int64_t>& dil = geo.dilations;
  const int64_t group = geo.group;
  std::vector<int64_t> p(strides.size(), 0);
  if (geo.symmetric()) p = geo.begin_pads();
  else X = pad_spatial(X, geo.pads, 0.0);
  if (ctx && layer) return {ctx->conv(*layer, X, W, B, strides, p, dil, group)};
  if (X.dim() == 4) {
    // oneDNN's channels-last convolution is ~3x faster than libtorch's NCHW path on CPU.
    X = X.contiguous(at::MemoryFormat::ChannelsLast);
    W = W.contiguous(at::MemoryFormat::ChannelsLast);
  }
  return {conv_nd(X, W, B, strides, p, dil, group)};
}

Tensors op_gemm(const Node& n, const Tensors& x, QuantContext* ctx, const LayerInfo* layer) {
  at::Tensor A = in(n, x, 0), B = in(n, x, 1);
  float alpha = n.attr_float("alpha", 1.f), beta = n.attr_float("beta", 1.f);
  if (n.attr_int("transA", 0)) A = A.t();
  bool tb = n.attr_int("transB", 0);
  at::Tensor Y;
  if (ctx && layer) {
    // Quantize B in nn.Linear layout [out, in].
    at::Tensor W = ctx->weight(*layer, tb ? B : B.t());
    Y = at::matmul(A, W.t());
  } else {
    Y = at::matmul(A, tb ? B.t() : B);
  }
  if (alpha != 1.f) Y = Y * alpha;
  if (present(x, 2)) Y = Y + (beta != 1.f ? x[2] * beta : x[2]);
  return {Y};
}

Tensors op_matmul(const Node& n, const Tensors& x, QuantContext* ctx, const LayerInfo* layer) {
  at::Tensor A = in(n, x, 0), B = in(n, x, 1);
  if (ctx && layer) {
    at::Tensor W = ctx->weight(*layer, B.t());  // [K,N] -> [out=N, in=K]
    return {at::matmul(A, W.t())};
  }
  return {at::matmul(A, B)};
}

Tensors op_batchnorm(const Node& n, const Tensors& x) {
  at::Tensor X = in(n, x, 0), scale = in(n, x, 1), bias = in(n, x, 2), mean = in(n, x, 3), var = in(n, x, 4);
  double eps = n.attr_float("epsilon", 1e-5f);
  std::vector<int64_t> shape(X.dim(), 1);
  if (X.dim() >= 2) shape[1] = X.size(1);
  auto r = [&](const at::Tensor& t) { return t.reshape(shape); };
  if (n.attr_int("training_mode", 0)) {
    // Batch statistics (population variance), running stats blended with `momentum`.
    std::vector<int64_t> dims;
    for (int64_t d = 0; d < X.dim(); ++d) if (d != 1) dims.push_back(d);
    at::Tensor bm = X.mean(dims), bv = X.var(dims, /*unbiased=*/false);
    double mom = n.attr_float("momentum", 0.9f);
    at::Tensor Y = (X - r(bm)) / at::sqrt(r(bv) + eps) * r(scale) + r(bias);
    return {Y, mean * mom + bm * (1 - mom), var * mom + bv * (1 - mom)};
  }
  return {(X - r(mean)) / at::sqrt(r(var) + eps) * r(scale) + r(bias)};
}

// Pooling via explicit padding so ONNX's asymmetric pads work; count_include_pad handled with a mask.
Tensors op_pool(const Node& n, const Tensors& x, bool is_max) {
  at::Tensor X = in(n, x, 0);
  if (X.dim() < 3 || X.dim() > 5) op_fail(n, fmt::format("input rank {} not supported (3-5)", X.dim()));
  size_t sd = X.dim() - 2;
  std::vector<int64_t> kernel = n.attr_ints("kernel_shape");
  if (kernel.size() != sd) op_fail(n, "kernel_shape missing or of the wrong length");
  std::vector<int64_t> strides = n.attr_ints("strides", std::vector<int64_t>(sd, 1));
  std::vector<int64_t> dil = n.attr_ints("dilations", std::vector<int64_t>(sd, 1));
  bool ceil = n.attr_int("ceil_mode", 0);
  std::vector<int64_t> pads = spatial_pads(n, X.sizes(), kernel, strides, dil);
  std::vector<int64_t> zero(sd, 0);
  if (is_max) {
    int64_t storage_order = n.attr_int("storage_order", 0);
    if (storage_order && sd != 2) op_fail(n, "storage_order=1 is only supported for 2-D pooling");
    // libtorch has no integer max pooling: pool in float (exact for 8/16-bit integers) and cast back.
    if (!at::isFloatingType(X.scalar_type())) {
      Node nf = n;
      Tensors xf = {X.to(at::kFloat)};
      Tensors r = op_pool(nf, xf, true);
      r[0] = r[0].to(X.scalar_type());
      return r;
    }
    // torch allows symmetric padding up to kernel/2 with -inf semantics; otherwise pad explicitly.
    bool sym = true;
    for (size_t i = 0; i < sd; ++i) sym = sym && pads[i] == pads[i + sd] && pads[i] * 2 <= kernel[i];
    std::vector<int64_t> p(sd, 0);
    at::Tensor Xp = X;
    if (sym) for (size_t i = 0; i < sd; ++i) p[i] = pads[i];
    else Xp = pad_spatial(X, pads, -std::numeric_limits<double>::infinity());
    bool want_idx = n.outputs.size() > 1 && !n.outputs[1].empty();
    at::Tensor Y, I;
    if (sd == 1) std::tie(Y, I) = at::max_pool1d_with_indices(Xp, kernel, strides, p, dil, ceil);
    else if (sd == 2) std::tie(Y, I) = at::max_pool2d_with_indices(Xp, kernel, strides, p, dil, ceil);
    else std::tie(Y, I) = at::max_pool3d_with_indices(Xp, kernel, strides, p, dil, ceil);
    if (!want_idx) return {Y};
    if (!sym) op_fail(n, "the Indices output with asymmetric padding is not supported");
    // torch gives indices within each (n, c) plane; ONNX flattens over the whole tensor.
    int64_t plane = 1;
    for (size_t i = 0; i < sd; ++i) plane *= X.size(2 + i);
    std::vector<int64_t> bshape(X.dim(), 1);
    bshape[0] = X.size(0);
    bshape[1] = X.size(1);
    at::Tensor base = at::arange(X.size(0) * X.size(1), at::kLong).reshape(bshape) * plane;
    if (storage_order) {  // column-major index within each plane: h + w * H
      int64_t H = X.size(2), W = X.size(3);
      I = at::remainder(I, W) * H + at::div(I, W, "floor");
    }
    return {Y, I + base};
  }
  for (int64_t d : dil) if (d != 1) op_fail(n, "dilations are not supported for AveragePool");
  bool include_pad = n.attr_int("count_include_pad", 0);
  at::Tensor Xp = pad_spatial(X, pads, 0.0);
  auto avg = [&](const at::Tensor& t, bool inc) -> at::Tensor {
    if (sd == 1) return at::avg_pool1d(t, kernel, strides, zero, ceil, inc);
    if (sd == 2) return at::avg_pool2d(t, kernel, strides, zero, ceil, inc);
    return at::avg_pool3d(t, kernel, strides, zero, ceil, inc);
  };
  bool any_pad = std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p != 0; });
  // Without padding, or when padding counts, the window average is what torch computes on the
  // explicitly padded tensor (ceil-mode overhang is excluded from the divisor by torch, as in ONNX).
  if (!any_pad || include_pad) return {avg(Xp, true)};
  // Exclude padding: sum over window / number of real elements in window.
  std::vector<int64_t> mshape(X.dim(), 1);
  for (size_t i = 0; i < sd; ++i) mshape[2 + i] = X.size(2 + i);
  at::Tensor mask = pad_spatial(at::ones(mshape, X.options()), pads, 0.0);
  at::Tensor num = avg(Xp, true), den = avg(mask, true);
  return {num / den};
}

Tensors op_quantize_linear(const Node& n, const Tensors& x) {
  const at::Tensor X = in(n, x, 0).to(at::kFloat);
  const at::Tensor Z = present(x, 2) ? x[2] : at::zeros({}, at::kByte);
  double lo = 0, hi = 255;
  if (Z.scalar_type() == at::kChar) lo = -128, hi = 127;
  else if (Z.scalar_type() != at::kByte) op_fail(n, "zero-point must be uint8 or int8");
  // saturate(round(x / scale) + zero_point), rounding half to even.
  const at::Tensor q = at::round(X / along_axis(n, in(n, x, 1).to(at::kFloat), X.dim())) +
                       along_axis(n, Z.to(at::kFloat), X.dim());
  return {q.clamp(lo, hi).to(Z.scalar_type())};
}

Tensors op_dequantize_linear(const Node& n, const Tensors& x) {
  const at::Tensor X = in(n, x, 0);
  const at::Tensor Z = present(x, 2) ? x[2].to(at::kFloat) : at::zeros({}, at::kFloat);
  return {(X.to(at::kFloat) - along_axis(n, Z, X.dim())) * along_axis(n, in(n, x, 1).to(at::kFloat), X.dim())};
}

Tensors op_softmax(const Node& n, const Tensors& x, int64_t opset) {
  at::Tensor X = in(n, x, 0);
  if (opset >= 13) return {at::softmax(X, norm_axis(n, n.attr_int("axis", -1), X.dim()))};
  int64_t ax = norm_axis(n, n.attr_int("axis", 1), X.dim());
  auto sizes = X.sizes().vec();
  int64_t rows = 1;
  for (int64_t i = 0; i < ax; ++i) rows *= sizes[i];
  return {at::softmax(X.reshape({rows, -1}), 1).reshape(sizes)};
}

Tensors op_reduce_mean(const Node& n, const Tensors& x, int64_t opset) {
  at::Tensor X = in(n, x, 0);
  bool keep = n.attr_int("keepdims", 1);
  std::vector<int64_t> axes = opset >= 18 ? (present(x, 1) ? to_ints(x[1]) : std::vector<int64_t>{}) : n.attr_ints("axes");
  if (axes.empty()) {
    if (opset >= 18 && n.attr_int("noop_with_empty_axes", 0)) return {X};
    for (int64_t a = 0; a < X.dim(); ++a) axes.push_back(a);
  }
  for (auto& a : axes) a = norm_axis(n, a, X.dim());
  at::Tensor Xf = at::isFloatingType(X.scalar_type()) ? X : X.to(at::kDouble);
  at::Tensor Y = Xf.mean(axes, keep);
  return {Y.to(X.scalar_type())};
}

at::Tensor binary(const Node& n, const Tensors& x, char op) {
  at::Tensor A = in(n, x, 0), B = in(n, x, 1);
  switch (op) {
    case '+': return A + B;
    case '-': return A - B;
    case '*': return A * B;
    default:
      if (at::isIntegralType(A.scalar_type(), true)) return at::div(A, B, "trunc");
      return A / B;
  }
}

Tensors op_clip(const Node& n, const Tensors& x, int64_t opset) {
  at::Tensor X = in(n, x, 0);
  if (opset < 11) return {at::clamp(X, n.attr_float("min", -std::numeric_limits<float>::max()), n.attr_float("max", std::numeric_limits<float>::max()))};
  at::Tensor Y = X;
  if (present(x, 1)) Y = at::maximum(Y, x[1].to(X.scalar_type()));
  if (present(x, 2)) Y = at::minimum(Y, x[2].to(X.scalar_type()));
  return {Y};
}

}  // namespace catq::ops

// ONNX operator semantics on libtorch tensors. One function per op; run_node dispatches by op_type.
// Where ONNX and torch differ (asymmetric pads, negative slice steps, integer division) the op builds
// the ONNX behaviour explicitly rather than trusting torch's defaults.
#include <limits>

#include "core/error.h"
#include "ir/onnx_dtype.h"
#include "sim/executor.h"

namespace catq {

namespace {

using Tensors = std::vector<at::Tensor>;

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

at::Tensor conv_nd(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, at::IntArrayRef s,
                   at::IntArrayRef p, at::IntArrayRef d, int64_t g) {
  return at::convolution(x, w, b, s, p, d, false, std::vector<int64_t>(s.size(), 0), g);
}

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

Tensors op_reshape(const Node& n, const Tensors& x, int64_t opset) {
  at::Tensor X = in(n, x, 0);
  std::vector<int64_t> shape = opset >= 5 ? to_ints(in(n, x, 1)) : n.attr_ints("shape");
  bool allowzero = n.attr_int("allowzero", 0);
  int64_t neg = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0 && !allowzero) {
      if (static_cast<int64_t>(i) >= X.dim()) op_fail(n, "0 in shape refers to a dimension the input lacks");
      shape[i] = X.size(i);
    } else if (shape[i] == -1) {
      if (neg >= 0) op_fail(n, "more than one -1 in target shape");
      neg = i;
    } else if (shape[i] < -1) {
      op_fail(n, fmt::format("invalid target dimension {}", shape[i]));
    }
  }
  if (neg >= 0) {
    int64_t known = 1;
    for (size_t i = 0; i < shape.size(); ++i) if (static_cast<int64_t>(i) != neg) known *= shape[i];
    if (known == 0 || X.numel() % known) op_fail(n, fmt::format("cannot reshape {} elements to [{}]", X.numel(), fmt::join(shape, ",")));
    shape[neg] = X.numel() / known;
  }
  int64_t total = 1;
  for (int64_t d : shape) total *= d;
  if (total != X.numel())
    op_fail(n, fmt::format("cannot reshape [{}] ({} elements) to [{}]", fmt::join(X.sizes(), ","), X.numel(), fmt::join(shape, ",")));
  return {X.reshape(shape)};
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

// Per-axis index vectors implement Slice (any step sign) and Pad's edge/reflect modes for any rank.
Tensors op_slice(const Node& n, const Tensors& x, int64_t opset) {
  at::Tensor X = in(n, x, 0);
  std::vector<int64_t> starts, ends, axes, steps;
  if (opset >= 10) {
    starts = to_ints(in(n, x, 1));
    ends = to_ints(in(n, x, 2));
    if (present(x, 3)) axes = to_ints(x[3]);
    if (present(x, 4)) steps = to_ints(x[4]);
  } else {
    starts = n.attr_ints("starts");
    ends = n.attr_ints("ends");
    axes = n.attr_ints("axes");
  }
  if (starts.size() != ends.size()) op_fail(n, "starts and ends differ in length");
  if (axes.empty()) for (size_t i = 0; i < starts.size(); ++i) axes.push_back(i);
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (axes.size() != starts.size() || steps.size() != starts.size()) op_fail(n, "axes/steps length mismatch");
  at::Tensor Y = X;
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t ax = norm_axis(n, axes[i], X.dim()), dim = X.size(ax), st = steps[i];
    if (st == 0) op_fail(n, "step 0");
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    if (st > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      if (st == 1) { Y = Y.slice(ax, s, std::max(s, e)); continue; }
    } else {
      s = std::clamp<int64_t>(s, -1, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
    }
    std::vector<int64_t> idx;
    for (int64_t k = s; st > 0 ? k < e : k > e; k += st) idx.push_back(k);
    Y = Y.index_select(ax, at::tensor(idx, at::kLong));
  }
  return {Y};
}

Tensors op_pad(const Node& n, const Tensors& x, int64_t opset) {
  at::Tensor X = in(n, x, 0);
  std::string mode = n.attr_string("mode", "constant");
  std::vector<int64_t> pads = opset >= 11 ? to_ints(in(n, x, 1)) : n.attr_ints("pads");
  double value = opset >= 11 ? (present(x, 2) && x[2].numel() ? x[2].reshape({-1})[0].item<double>() : 0.0)
                             : n.attr_float("value", 0.f);
  int64_t r = X.dim();
  std::vector<int64_t> axes;
  if (present(x, 3)) for (int64_t a : to_ints(x[3])) axes.push_back(norm_axis(n, a, r));
  else for (int64_t a = 0; a < r; ++a) axes.push_back(a);
  if (pads.size() != 2 * axes.size()) op_fail(n, fmt::format("pads has {} values, expected {}", pads.size(), 2 * axes.size()));
  std::vector<int64_t> full(2 * r, 0);
  for (size_t i = 0; i < axes.size(); ++i) { full[axes[i]] = pads[i]; full[axes[i] + r] = pads[i + axes.size()]; }
  if (mode == "constant") {
    std::vector<int64_t> tp;
    for (int64_t i = r; i-- > 0;) { tp.push_back(full[i]); tp.push_back(full[i + r]); }
    return {at::constant_pad_nd(X, tp, value)};
  }
  if (mode != "edge" && mode != "reflect") op_fail(n, fmt::format("pad mode '{}' is not supported", mode));
  at::Tensor Y = X;
  for (int64_t a = 0; a < r; ++a) {
    int64_t b = full[a], e = full[a + r], dim = Y.size(a);
    if (b == 0 && e == 0) continue;
    if (b < 0 || e < 0) op_fail(n, "negative pads need mode=constant");
    if (mode == "reflect" && (b >= dim || e >= dim)) op_fail(n, "reflect pads must be smaller than the dimension");
    std::vector<int64_t> idx;
    for (int64_t k = -b; k < dim + e; ++k) {
      int64_t j = k;
      if (mode == "edge") j = std::clamp<int64_t>(k, 0, dim - 1);
      else { if (j < 0) j = -j; if (j >= dim) j = 2 * (dim - 1) - j; }
      idx.push_back(j);
    }
    Y = Y.index_select(a, at::tensor(idx, at::kLong));
  }
  return {Y};
}

Tensors op_gather(const Node& n, const Tensors& x) {
  at::Tensor X = in(n, x, 0), I = in(n, x, 1).to(at::kLong);
  int64_t ax = norm_axis(n, n.attr_int("axis", 0), X.dim());
  int64_t dim = X.size(ax);
  if (I.numel() && (I.min().item<int64_t>() < -dim || I.max().item<int64_t>() >= dim))
    op_fail(n, fmt::format("index out of range for axis {} of size {}", ax, dim));
  at::Tensor idx = at::where(I < 0, I + dim, I);
  at::Tensor Y = X.index_select(ax, idx.reshape({-1}));
  std::vector<int64_t> shape(X.sizes().begin(), X.sizes().begin() + ax);
  for (int64_t d : I.sizes()) shape.push_back(d);
  for (int64_t i = ax + 1; i < X.dim(); ++i) shape.push_back(X.size(i));
  return {Y.reshape(shape)};
}

Tensors op_split(const Node& n, const Tensors& x, int64_t opset) {
  at::Tensor X = in(n, x, 0);
  int64_t ax = norm_axis(n, n.attr_int("axis", 0), X.dim());
  std::vector<int64_t> split = opset >= 13 ? (present(x, 1) ? to_ints(x[1]) : std::vector<int64_t>{}) : n.attr_ints("split");
  int64_t outs = n.outputs.size(), dim = X.size(ax);
  if (split.empty()) {
    int64_t k = n.has("num_outputs") ? n.attr_int("num_outputs", outs) : outs;
    int64_t chunk = (dim + k - 1) / k;
    for (int64_t i = 0; i < k; ++i) split.push_back(std::min(chunk, dim - i * chunk));
  }
  int64_t sum = 0;
  for (int64_t s : split) sum += s;
  if (sum != dim) op_fail(n, fmt::format("split sizes sum to {} but axis has {}", sum, dim));
  Tensors r;
  int64_t off = 0;
  for (int64_t s : split) { r.push_back(X.narrow(ax, off, s)); off += s; }
  return r;
}

std::vector<int64_t> axes_input_or_attr(const Node& n, const Tensors& x, int64_t opset, int64_t since) {
  if (opset >= since) return present(x, 1) ? to_ints(x[1]) : std::vector<int64_t>{};
  return n.attr_ints("axes");
}

Tensors op_unsqueeze(const Node& n, const Tensors& x, int64_t opset) {
  at::Tensor X = in(n, x, 0);
  auto axes = axes_input_or_attr(n, x, opset, 13);
  int64_t r = X.dim() + axes.size();
  for (auto& a : axes) a = norm_axis(n, a, r);
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) op_fail(n, "repeated axis");
  for (int64_t a : axes) X = X.unsqueeze(a);
  return {X};
}

Tensors op_squeeze(const Node& n, const Tensors& x, int64_t opset) {
  at::Tensor X = in(n, x, 0);
  auto axes = axes_input_or_attr(n, x, opset, 13);
  if (axes.empty()) return {X.squeeze()};
  for (auto& a : axes) {
    a = norm_axis(n, a, X.dim());
    if (X.size(a) != 1) op_fail(n, fmt::format("cannot squeeze axis {} of size {}", a, X.size(a)));
  }
  std::sort(axes.rbegin(), axes.rend());
  for (int64_t a : axes) X = X.squeeze(a);
  return {X};
}

at::Tensor attr_tensor_value(const Node& n) {
  if (n.has("value")) return n.attrs.at("value").t;
  if (n.has("value_float")) return at::tensor(n.attr_float("value_float", 0.f));
  if (n.has("value_floats")) return at::tensor(n.attr_floats("value_floats"));
  if (n.has("value_int")) return at::tensor(n.attr_int("value_int", 0));
  if (n.has("value_ints")) return at::tensor(n.attr_ints("value_ints"), at::kLong);
  op_fail(n, "Constant without a supported value attribute (sparse/string constants are not supported)");
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

}  // namespace

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

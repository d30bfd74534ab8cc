// ONNX shape and data-movement ops on libtorch tensors: Reshape, Slice, Pad, Gather, Split, (Un)squeeze, Constant.
#include <limits>

#include "core/error.h"
#include "sim/ops_internal.h"

namespace catq::ops {

namespace {

std::vector<int64_t> axes_input_or_attr(const Node& n, const Tensors& x, int64_t opset, int64_t since) {
  if (opset >= since) return present(x, 1) ? to_ints(x[1]) : std::vector<int64_t>{};
  return n.attr_ints("axes");
}

}  // namespace

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

}  // namespace catq::ops

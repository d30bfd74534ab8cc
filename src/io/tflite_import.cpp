// TFLite → graph IR (NHWC operators become NCHW ONNX-style nodes; see tflite.h and docs/tflite.md).
#include <algorithm>
#include <set>

#include "core/error.h"
#include "io/tflite.h"

namespace catq {

namespace {

Attribute a_int(int64_t v) {
  Attribute a;
  a.type = Attribute::Type::Int;
  a.i = v;
  return a;
}
Attribute a_ints(std::vector<int64_t> v) {
  Attribute a;
  a.type = Attribute::Type::Ints;
  a.ints = std::move(v);
  return a;
}

// TF's SAME padding along one axis: the output is ceil(in / stride); the total padding is split with the extra
// element at the end. VALID: no padding.
std::pair<int64_t, int64_t> same_pads(int64_t in, int64_t k, int64_t stride, int64_t dil, int8_t padding) {
  if (padding == tfl::VALID) return {0, 0};
  const int64_t out = (in + stride - 1) / stride;
  const int64_t eff = (k - 1) * dil + 1;
  const int64_t total = std::max<int64_t>((out - 1) * stride + eff - in, 0);
  return {total / 2, total - total / 2};
}

class Importer {
 public:
  Importer(const TfliteModel& m, const TfliteImportOptions& o) : m_(m), o_(o) {
    g_.source = m.path;
    g_.name = m.description.empty() ? "tflite" : m.description;
    g_.opset = 13;
    value_.resize(m.tensors.size());
    nchw_.assign(m.tensors.size(), false);
  }

  Graph run() {
    for (int32_t i : m_.inputs) {
      const TfliteTensor& t = m_.tensor(i);
      CATQ_CHECK(!t.shape.empty(), Unsupported, "{}: input tensor '{}' has no shape", m_.path, t.name);
      ValueInfo vi;
      vi.name = unique(short_name(i) + (is_quantized(i) ? ":real" : ""));
      vi.has_shape = true;
      vi.shape.assign(t.shape.begin(), t.shape.end());
      vi.shape[0] = -1;
      if (vi.shape.size() == 4) vi.shape = {-1, t.shape[3], t.shape[1], t.shape[2]};
      g_.inputs.push_back(vi);
      bind(i, vi.name, vi.shape.size() == 4);
    }
    for (size_t k = 0; k < m_.ops.size(); ++k) import_op(k);
    for (int32_t i : m_.outputs) {
      auto alias = alias_.find(i);
      const int32_t src = alias == alias_.end() ? i : alias->second;
      CATQ_CHECK(!value_[src].empty(), Format, "{}: output tensor '{}' is not computed by any operator", m_.path,
                 m_.tensor(i).name);
      ValueInfo vi;
      vi.name = to_plain(src);
      const TfliteTensor& t = m_.tensor(src);
      vi.has_shape = true;
      vi.shape.assign(t.shape.begin(), t.shape.end());
      if (!vi.shape.empty()) vi.shape[0] = -1;
      g_.outputs.push_back(vi);
    }
    return std::move(g_);
  }

 private:
  const TfliteModel& m_;
  const TfliteImportOptions& o_;
  Graph g_;
  std::vector<std::string> value_;  // graph value holding each TFLite tensor (activations)
  std::vector<bool> nchw_;          // the value is the NCHW form of a 4-D NHWC tensor
  std::map<int32_t, at::Tensor> folded_;  // constants computed at import (DEQUANTIZE of a constant)
  std::map<int32_t, int32_t> alias_;      // a dropped final SOFTMAX: its output → its input
  std::set<std::string> names_;
  size_t op_index_ = 0;

  const TfliteTensor& T(int32_t i) const { return m_.tensor(i); }
  bool is_quantized(int32_t i) const {
    const TfliteTensor& t = T(i);
    return t.quant.present() && (t.type == TfliteType::Int8 || t.type == TfliteType::UInt8 || t.type == TfliteType::Int16);
  }
  std::string where() const {
    const TfliteOp& op = m_.ops[op_index_];
    return fmt::format("{}: operator {} ({}, output '{}')", m_.path, op_index_, op.name(),
                       op.outputs.empty() ? std::string() : T(op.outputs[0]).name);
  }
  std::string unique(std::string base) {
    if (base.empty()) base = "v";
    std::string s = base;
    for (int k = 1; names_.count(s); ++k) s = fmt::format("{}#{}", base, k);
    names_.insert(s);
    return s;
  }
  // A short readable node name: the first part of a TFLite tensor name ("model/conv2d/Relu;model/conv2d/BiasAdd;..."
  // → "model/conv2d/Relu").
  std::string short_name(int32_t i) const {
    std::string n = T(i).name;
    if (auto p = n.find(';'); p != std::string::npos) n = n.substr(0, p);
    return n.empty() ? fmt::format("t{}", i) : n;
  }
  std::string add_node(const std::string& op, std::vector<std::string> in, const std::string& out_base,
                       std::map<std::string, Attribute> attrs = {}, std::string out = "") {
    Node n;
    n.op_type = op;
    n.name = unique(out_base + "/" + op);
    n.inputs = std::move(in);
    if (out.empty()) out = unique(out_base + ":" + op);
    n.outputs = {out};
    n.attrs = std::move(attrs);
    g_.nodes.push_back(std::move(n));
    return out;
  }
  std::string add_const(const std::string& base, const at::Tensor& t) {
    const std::string name = unique(base);
    g_.initializers[name] = t.contiguous();
    return name;
  }

  // Emits op `op` producing tensor out (with the fused activation and the output's Q/DQ).
  void emit(const std::string& op, std::vector<std::string> in, int32_t out, std::map<std::string, Attribute> attrs,
            int8_t activation, bool out_nchw) {
    const std::string base = short_name(out);
    std::string v = add_node(op, std::move(in), base, std::move(attrs));
    v = activate(v, activation, base);
    bind(out, v, out_nchw);
  }
  std::string activate(const std::string& v, int8_t act, const std::string& base) {
    switch (act) {
      case tfl::ACT_NONE: return v;
      case tfl::ACT_RELU: return add_node("Relu", {v}, base);
      case tfl::ACT_RELU6: return clip(v, 0.f, 6.f, base);
      case tfl::ACT_RELU_N1_TO_1: return clip(v, -1.f, 1.f, base);
      case tfl::ACT_TANH: return add_node("Tanh", {v}, base);
      default: fail(ErrorKind::Unsupported, "{}: fused activation {} is not supported", where(), static_cast<int>(act));
    }
  }
  std::string clip(const std::string& v, float lo, float hi, const std::string& base) {
    return add_node("Clip", {v, add_const(base + "/min", at::scalar_tensor(lo)), add_const(base + "/max", at::scalar_tensor(hi))},
                    base);
  }
  // Tensor `out` is now held by graph value v; a quantized tensor gets QuantizeLinear → DequantizeLinear.
  void bind(int32_t out, const std::string& v, bool is_nchw) {
    nchw_[out] = is_nchw;
    if (!is_quantized(out)) {
      value_[out] = v;
      return;
    }
    const TfliteTensor& t = T(out);
    CATQ_CHECK(!t.quant.per_channel(), Unsupported, "{}: per-channel quantized activation '{}'", where(), t.name);
    CATQ_CHECK(t.type != TfliteType::Int16, Unsupported, "{}: int16 activation '{}' (int8 / uint8 models only)", where(),
               t.name);
    const std::string base = short_name(out);
    const std::string s = add_const(base + "/scale", at::scalar_tensor(t.quant.scale[0]));
    const at::ScalarType zt = t.type == TfliteType::Int8 ? at::kChar : at::kByte;
    const std::string z = add_const(base + "/zero_point", at::scalar_tensor(t.quant.zero_point[0], at::TensorOptions(zt)));
    const std::string q = add_node("QuantizeLinear", {v, s, z}, base);
    value_[out] = add_node("DequantizeLinear", {q, s, z}, base);
  }

  // The value of activation tensor i; Error(Format) when nothing computed it.
  std::string act(int32_t i) {
    CATQ_CHECK(i >= 0, Format, "{}: a required input is omitted", where());
    CATQ_CHECK(!value_[i].empty(), Unsupported, "{}: input tensor '{}' is {}", where(), T(i).name,
               T(i).is_constant() || folded_.count(i) ? "a constant (only weights / biases / shapes may be constants "
                                                        "here)" : "not computed by an earlier operator");
    return value_[i];
  }
  // Tensor i in TFLite's own (NHWC) layout.
  std::string to_plain(int32_t i) {
    const std::string v = act(i);
    if (!nchw_[i]) return v;
    const TfliteTensor& t = T(i);
    if (t.shape[1] == 1 && t.shape[2] == 1) {
      // [N, C, 1, 1] and [N, 1, 1, C] hold the same elements in the same order.
      return add_node("Reshape", {v, add_const(short_name(i) + "/nhwc_shape", at::tensor({int64_t{-1}, int64_t{1},
                                                                                             int64_t{1}, int64_t{t.shape[3]}}))},
                      short_name(i));
    }
    return add_node("Transpose", {v}, short_name(i), {{"perm", a_ints({0, 2, 3, 1})}});
  }
  bool is_const(int32_t i) const { return i >= 0 && (T(i).is_constant() || folded_.count(i)); }
  // A constant as float (dequantized when quantized).
  at::Tensor constant_real(int32_t i, const std::string& what) {
    CATQ_CHECK(is_const(i), Unsupported, "{}: {} '{}' must be a constant", where(), what, T(i).name);
    if (auto it = folded_.find(i); it != folded_.end()) return it->second;
    const TfliteTensor& t = T(i);
    at::Tensor x = t.to_tensor(m_.path);
    if (!t.quant.present() || t.type == TfliteType::Float32 || t.type == TfliteType::Float16) return x.to(at::kFloat);
    return dequantize(x.to(at::kDouble), t.quant, t.shape.size()).to(at::kFloat);
  }
  static at::Tensor dequantize(const at::Tensor& q, const TfliteQuant& p, size_t rank) {
    std::vector<double> s(p.scale.begin(), p.scale.end()), z(p.zero_point.begin(), p.zero_point.end());
    at::Tensor S = at::tensor(s, at::kDouble), Z = at::tensor(z, at::kDouble);
    if (p.per_channel()) {
      std::vector<int64_t> shape(rank, 1);
      shape[static_cast<size_t>(p.axis)] = static_cast<int64_t>(s.size());
      S = S.reshape(shape);
      Z = Z.reshape(shape);
    } else {
      S = S.reshape({});
      Z = Z.reshape({});
    }
    return (q - Z) * S;
  }
  std::vector<int64_t> const_ints(int32_t i, const std::string& what) {
    CATQ_CHECK(is_const(i), Unsupported, "{}: {} must be a constant tensor", where(), what);
    at::Tensor x = T(i).to_tensor(m_.path).to(at::kLong).reshape({-1});
    return std::vector<int64_t>(x.data_ptr<int64_t>(), x.data_ptr<int64_t>() + x.numel());
  }
  // A bias: float, or int32 with scale s_in · s_w[o] (as the integer kernels use it).
  at::Tensor bias_real(int32_t b, int64_t channels) {
    const TfliteTensor& t = T(b);
    at::Tensor v;
    if (t.type == TfliteType::Int32 && t.quant.present()) {
      v = T(b).to_tensor(m_.path).to(at::kDouble);
      v = dequantize(v, t.quant, 1).to(at::kFloat);
    } else {
      v = constant_real(b, "bias");
    }
    CATQ_CHECK(v.numel() == channels, Data, "{}: bias '{}' has {} values for {} output channels", where(), t.name,
               v.numel(), channels);
    return v.reshape({channels});
  }
  void check_rank(int32_t i, size_t rank, const std::string& what) {
    CATQ_CHECK(T(i).shape.size() == rank, Data, "{}: {} '{}' has shape [{}], expected rank {}", where(), what, T(i).name,
               fmt::join(T(i).shape, ","), rank);
  }
  int32_t in(const TfliteOp& op, size_t k, const char* what) {
    CATQ_CHECK(k < op.inputs.size() && op.inputs[k] >= 0, Format, "{}: missing input {} ({})", where(), k, what);
    return op.inputs[k];
  }
  int32_t out0(const TfliteOp& op) {
    CATQ_CHECK(op.outputs.size() == 1, Format, "{}: {} outputs, expected 1", where(), op.outputs.size());
    return op.outputs[0];
  }

  void conv(const TfliteOp& op, bool depthwise) {
    const int32_t x = in(op, 0, "input"), w = in(op, 1, "filter"), y = out0(op);
    const bool has_bias = op.inputs.size() > 2 && op.inputs[2] >= 0;
    check_rank(x, 4, "input");
    check_rank(w, 4, "filter");
    check_rank(y, 4, "output");
    const TfliteOptions& o = op.options;
    CATQ_CHECK(o.stride_h >= 1 && o.stride_w >= 1 && o.dilation_h >= 1 && o.dilation_w >= 1, Format,
               "{}: strides ({}, {}) and dilations ({}, {}) must be >= 1", where(), o.stride_h, o.stride_w, o.dilation_h,
               o.dilation_w);
    const auto& xs = T(x).shape;
    const auto& ws = T(w).shape;
    const int64_t cin = xs[3], cout = T(y).shape[3], kh = ws[1], kw = ws[2];
    at::Tensor W = constant_real(w, "filter");
    int64_t group = 1;
    if (depthwise) {
      CATQ_CHECK(ws[0] == 1 && ws[3] == cout && cin > 0 && cout % cin == 0, Data,
                 "{}: depthwise filter [{}] does not fit input channels {} and output channels {}", where(),
                 fmt::join(ws, ","), cin, cout);
      W = W.permute({3, 0, 1, 2});  // [1, kh, kw, C·M] → [C·M, 1, kh, kw]
      group = cin;
    } else {
      CATQ_CHECK(ws[0] == cout && ws[3] > 0 && cin % ws[3] == 0, Data,
                 "{}: filter [{}] (OHWI) does not fit input channels {} and output channels {}", where(),
                 fmt::join(ws, ","), cin, cout);
      W = W.permute({0, 3, 1, 2});  // OHWI → OIHW
      group = cin / ws[3];
    }
    auto [pt, pb] = same_pads(xs[1], kh, o.stride_h, o.dilation_h, o.padding);
    auto [pl, pr] = same_pads(xs[2], kw, o.stride_w, o.dilation_w, o.padding);
    const int64_t oh = (xs[1] + pt + pb - ((kh - 1) * o.dilation_h + 1)) / o.stride_h + 1;
    const int64_t ow = (xs[2] + pl + pr - ((kw - 1) * o.dilation_w + 1)) / o.stride_w + 1;
    CATQ_CHECK(oh == T(y).shape[1] && ow == T(y).shape[2], Data, "{}: output '{}' is [{}] but the convolution gives "
               "{}x{}", where(), T(y).name, fmt::join(T(y).shape, ","), oh, ow);
    const std::string base = short_name(y);
    std::vector<std::string> ins = {act(x), add_const(base + "/weight", W.contiguous())};
    if (has_bias) ins.push_back(add_const(base + "/bias", bias_real(op.inputs[2], cout)));
    emit("Conv", ins, y,
         {{"kernel_shape", a_ints({kh, kw})}, {"strides", a_ints({o.stride_h, o.stride_w})},
          {"dilations", a_ints({o.dilation_h, o.dilation_w})}, {"pads", a_ints({pt, pl, pb, pr})},
          {"group", a_int(group)}},
         o.activation, true);
  }

  void fully_connected(const TfliteOp& op) {
    const int32_t x = in(op, 0, "input"), w = in(op, 1, "weights"), y = out0(op);
    const bool has_bias = op.inputs.size() > 2 && op.inputs[2] >= 0;
    CATQ_CHECK(op.options.weights_format == 0, Unsupported, "{}: shuffled weights format", where());
    check_rank(w, 2, "weights");
    const int64_t out_f = T(w).shape[0], in_f = T(w).shape[1];
    const TfliteTensor& xt = T(x);
    int64_t per_row = 1;
    for (size_t d = 1; d < xt.shape.size(); ++d) per_row *= xt.shape[d];
    CATQ_CHECK(xt.shape.size() >= 2 && per_row == in_f, Unsupported,
               "{}: input [{}] does not flatten to one row of {} features per batch element", where(),
               fmt::join(xt.shape, ","), in_f);
    std::string v = to_plain(x);
    if (xt.shape.size() != 2) v = add_node("Flatten", {v}, short_name(y), {{"axis", a_int(1)}});
    const std::string base = short_name(y);
    std::vector<std::string> ins = {v, add_const(base + "/weight", constant_real(w, "weights"))};
    if (has_bias) ins.push_back(add_const(base + "/bias", bias_real(op.inputs[2], out_f)));
    emit("Gemm", ins, y, {{"transB", a_int(1)}}, op.options.activation, false);
  }

  // ADD / MUL: two activations of one layout, or an activation and a constant broadcast against it.
  void binary(const TfliteOp& op, const std::string& onnx_op) {
    const int32_t a = in(op, 0, "x"), b = in(op, 1, "y"), y = out0(op);
    std::vector<std::string> ins;
    bool layout = false;
    for (int32_t i : {a, b})
      if (!is_const(i)) layout = layout || nchw_[i];
    for (int32_t i : {a, b}) {
      if (!is_const(i)) {
        CATQ_CHECK(nchw_[i] == layout, Unsupported, "{}: operands of different layouts", where());
        ins.push_back(act(i));
        continue;
      }
      at::Tensor c = constant_real(i, "operand");
      if (layout) {
        CATQ_CHECK(c.dim() <= 4, Data, "{}: constant operand of rank {}", where(), c.dim());
        while (c.dim() < 4) c = c.unsqueeze(0);
        c = c.permute({0, 3, 1, 2});
      }
      ins.push_back(add_const(short_name(y) + "/operand", c.contiguous()));
    }
    emit(onnx_op, ins, y, {}, op.options.activation, layout);
  }

  void pool(const TfliteOp& op, bool is_max) {
    const int32_t x = in(op, 0, "input"), y = out0(op);
    check_rank(x, 4, "input");
    check_rank(y, 4, "output");
    const TfliteOptions& o = op.options;
    CATQ_CHECK(o.filter_h >= 1 && o.filter_w >= 1 && o.stride_h >= 1 && o.stride_w >= 1, Format,
               "{}: filter {}x{} and strides ({}, {}) must be >= 1", where(), o.filter_h, o.filter_w, o.stride_h,
               o.stride_w);
    const auto& xs = T(x).shape;
    auto [pt, pb] = same_pads(xs[1], o.filter_h, o.stride_h, 1, o.padding);
    auto [pl, pr] = same_pads(xs[2], o.filter_w, o.stride_w, 1, o.padding);
    std::map<std::string, Attribute> attrs = {{"kernel_shape", a_ints({o.filter_h, o.filter_w})},
                                              {"strides", a_ints({o.stride_h, o.stride_w})},
                                              {"pads", a_ints({pt, pl, pb, pr})}};
    if (!is_max) attrs["count_include_pad"] = a_int(0);  // TFLite averages over the window's real elements
    emit(is_max ? "MaxPool" : "AveragePool", {act(x)}, y, attrs, o.activation, true);
  }

  // RESHAPE / SQUEEZE: to the output tensor's shape, in TFLite's element order.
  void reshape(const TfliteOp& op) {
    const int32_t x = in(op, 0, "input"), y = out0(op);
    const TfliteTensor& yt = T(y);
    CATQ_CHECK(yt.numel() == T(x).numel(), Data, "{}: reshape of [{}] to [{}] changes the number of elements", where(),
               fmt::join(T(x).shape, ","), fmt::join(yt.shape, ","));
    std::vector<int64_t> shape(yt.shape.begin(), yt.shape.end());
    const bool keeps_batch = !shape.empty() && !T(x).shape.empty() && shape[0] == T(x).shape[0];
    if (keeps_batch) shape[0] = -1;
    const std::string base = short_name(y);
    std::string v = add_node("Reshape", {to_plain(x), add_const(base + "/shape", at::tensor(shape, at::kLong))}, base);
    if (shape.size() == 4) {
      v = add_node("Transpose", {v}, base, {{"perm", a_ints({0, 3, 1, 2})}});
      bind(y, v, true);
    } else {
      bind(y, v, false);
    }
  }

  void pad(const TfliteOp& op) {
    const int32_t x = in(op, 0, "input"), p = in(op, 1, "paddings"), y = out0(op);
    const size_t rank = T(x).shape.size();
    std::vector<int64_t> pads = const_ints(p, "paddings");
    CATQ_CHECK(pads.size() == 2 * rank, Data, "{}: {} padding values for an input of rank {}", where(), pads.size(), rank);
    std::vector<int64_t> order(rank);
    for (size_t d = 0; d < rank; ++d) order[d] = static_cast<int64_t>(d);
    if (nchw_[x]) order = {0, 3, 1, 2};
    std::vector<int64_t> onnx(2 * rank);
    for (size_t d = 0; d < rank; ++d) {
      onnx[d] = pads[2 * order[d]];
      onnx[d + rank] = pads[2 * order[d] + 1];
    }
    const std::string base = short_name(y);
    emit("Pad", {act(x), add_const(base + "/pads", at::tensor(onnx, at::kLong))}, y, {{"mode", [] {
                                                                                           Attribute a;
                                                                                           a.type = Attribute::Type::String;
                                                                                           a.s = "constant";
                                                                                           return a;
                                                                                         }()}},
         tfl::ACT_NONE, nchw_[x]);
  }

  void mean(const TfliteOp& op) {
    const int32_t x = in(op, 0, "input"), ax = in(op, 1, "axes"), y = out0(op);
    const int64_t rank = static_cast<int64_t>(T(x).shape.size());
    std::vector<int64_t> axes = const_ints(ax, "axes");
    for (auto& a : axes) {
      if (a < 0) a += rank;
      CATQ_CHECK(a >= 0 && a < rank, Data, "{}: axis out of range for rank {}", where(), rank);
      if (nchw_[x]) a = std::vector<int64_t>{0, 2, 3, 1}[static_cast<size_t>(a)];
    }
    std::sort(axes.begin(), axes.end());
    const bool keep = op.options.keep_dims;
    bool out_nchw = nchw_[x] && keep;
    if (nchw_[x] && !keep)
      CATQ_CHECK(axes == std::vector<int64_t>({2, 3}), Unsupported,
                 "{}: MEAN without keep_dims over axes other than height and width of a 4-D tensor", where());
    emit("ReduceMean", {act(x)}, y, {{"axes", a_ints(axes)}, {"keepdims", a_int(keep ? 1 : 0)}}, tfl::ACT_NONE,
         out_nchw);
  }

  void concat(const TfliteOp& op) {
    const int32_t y = out0(op);
    int64_t axis = op.options.axis;
    const int64_t rank = static_cast<int64_t>(T(y).shape.size());
    if (axis < 0) axis += rank;
    CATQ_CHECK(axis >= 0 && axis < rank, Data, "{}: axis {} out of range", where(), op.options.axis);
    std::vector<std::string> ins;
    bool layout = false;
    for (int32_t i : op.inputs) {
      ins.push_back(act(i));
      layout = nchw_[i];
    }
    if (layout) axis = std::vector<int64_t>{0, 2, 3, 1}[static_cast<size_t>(axis)];
    emit("Concat", ins, y, {{"axis", a_int(axis)}}, op.options.activation, layout);
  }

  void import_op(size_t k) {
    op_index_ = k;
    const TfliteOp& op = m_.ops[k];
    switch (op.code) {
      case tfl::CONV_2D: conv(op, false); break;
      case tfl::DEPTHWISE_CONV_2D: conv(op, true); break;
      case tfl::FULLY_CONNECTED: fully_connected(op); break;
      case tfl::ADD: binary(op, "Add"); break;
      case tfl::MUL: binary(op, "Mul"); break;
      case tfl::AVERAGE_POOL_2D: pool(op, false); break;
      case tfl::MAX_POOL_2D: pool(op, true); break;
      case tfl::RESHAPE: case tfl::SQUEEZE: reshape(op); break;
      case tfl::PAD: pad(op); break;
      case tfl::MEAN: mean(op); break;
      case tfl::CONCATENATION: concat(op); break;
      case tfl::RELU: case tfl::RELU6: case tfl::RELU_N1_TO_1: case tfl::LOGISTIC: {
        const int32_t x = in(op, 0, "input"), y = out0(op);
        const std::string base = short_name(y);
        std::string v = op.code == tfl::RELU ? add_node("Relu", {act(x)}, base)
                        : op.code == tfl::RELU6 ? clip(act(x), 0.f, 6.f, base)
                        : op.code == tfl::RELU_N1_TO_1 ? clip(act(x), -1.f, 1.f, base)
                                                       : add_node("Sigmoid", {act(x)}, base);
        bind(y, v, nchw_[x]);
        break;
      }
      case tfl::SOFTMAX: {
        const int32_t x = in(op, 0, "input"), y = out0(op);
        const bool is_output = std::find(m_.outputs.begin(), m_.outputs.end(), y) != m_.outputs.end();
        if (is_output && o_.drop_final_softmax) {
          alias_[y] = x;
          break;
        }
        std::string v = to_plain(x);
        if (op.options.beta != 1.f)
          v = add_node("Mul", {v, add_const(short_name(y) + "/beta", at::scalar_tensor(op.options.beta))}, short_name(y));
        bind(y, add_node("Softmax", {v}, short_name(y), {{"axis", a_int(-1)}}), false);
        break;
      }
      case tfl::QUANTIZE: case tfl::DEQUANTIZE: {
        const int32_t x = in(op, 0, "input"), y = out0(op);
        if (is_const(x)) {  // e.g. float16 weights: fold to a float32 constant
          folded_[y] = constant_real(x, "input");
          break;
        }
        bind(y, add_node("Identity", {act(x)}, short_name(y)), nchw_[x]);
        break;
      }
      default:
        fail(ErrorKind::Unsupported, "{}: operator {} ({}) is not supported; catq imports ADD, AVERAGE_POOL_2D, "
             "CONCATENATION, CONV_2D, DEPTHWISE_CONV_2D, DEQUANTIZE, FULLY_CONNECTED, LOGISTIC, MAX_POOL_2D, MEAN, MUL, "
             "PAD, QUANTIZE, RELU, RELU6, RELU_N1_TO_1, RESHAPE, SOFTMAX, SQUEEZE", m_.path, k, op.name());
    }
  }
};

}  // namespace

Graph tflite_to_graph(const TfliteModel& m, const TfliteImportOptions& o) { return Importer(m, o).run(); }

Graph load_tflite_graph(const std::string& path, const TfliteImportOptions& o) {
  return tflite_to_graph(read_tflite(path), o);
}

}  // namespace catq

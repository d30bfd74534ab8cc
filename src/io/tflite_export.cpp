#include "io/tflite_export.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>

#include "core/error.h"

namespace catq {

namespace {

std::vector<uint8_t> bytes_of(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  std::vector<uint8_t> b(static_cast<size_t>(c.nbytes()));
  if (!b.empty()) std::memcpy(b.data(), c.data_ptr(), b.size());
  return b;
}

bool same_quant(const TfliteQuant& a, const TfliteQuant& b) { return a.scale == b.scale && a.zero_point == b.zero_point; }

// TFLite's SAME padding along one axis (begin, end) for input `in`, kernel k, stride s, dilation d.
std::pair<int64_t, int64_t> same_pads(int64_t in, int64_t k, int64_t s, int64_t d) {
  const int64_t out = (in + s - 1) / s;
  const int64_t total = std::max<int64_t>((out - 1) * s + (k - 1) * d + 1 - in, 0);
  return {total / 2, total - total / 2};
}

class Exporter {
 public:
  Exporter(const GraphExecutor& ex, SimQuant& sq) : ex_(ex), sq_(sq), g_(ex.graph()) {}

  TfliteModel run(const at::Tensor& calib, TfliteExportReport* report) {
    CATQ_CHECK(g_.inputs.size() == 1 && g_.outputs.size() >= 1, Unsupported,
               "{}: TFLite export needs a model with one input (it has {})", g_.source, g_.inputs.size());
    measure(calib);
    for (const LayerInfo& l : ex_.layers()) {
      const size_t i = ex_.node_index(l);
      layer_at_[i] = &l;
      first_reader_.emplace(g_.nodes[i].inputs.at(0), &l);
      check_layer(l);
    }
    for (size_t i = 0; i < g_.nodes.size(); ++i)
      for (const auto& v : g_.nodes[i].inputs)
        if (!v.empty() && !g_.is_constant(v)) readers_[v].push_back(i);
    for (const auto& o : g_.outputs) outputs_.insert(o.name);
    m_.path = g_.source;
    m_.description = "catq int8 export of " + g_.source;
    m_.inputs = {tensor(g_.inputs[0].name)};
    for (size_t i = 0; i < g_.nodes.size(); ++i)
      if (!fused_.count(i)) emit(i);
    const int32_t logits = tensor(g_.outputs[0].name);
    TfliteQuant pq;
    pq.scale = {1.f / 256};
    pq.zero_point = {-128};
    const int32_t prob = add_tensor(g_.outputs[0].name + "/softmax", m_.tensor(logits).shape, pq);
    op(tfl::SOFTMAX, {logits}, {prob}).options.beta = 1.f;
    m_.outputs = {prob};
    if (report) *report = rep_;
    return std::move(m_);
  }

 private:
  const GraphExecutor& ex_;
  SimQuant& sq_;
  const Graph& g_;
  TfliteModel m_;
  TfliteExportReport rep_;
  std::map<std::string, std::vector<int64_t>> shape_;  // logical (NCHW) shapes, batch 1
  std::map<std::string, std::pair<float, float>> range_;
  std::map<std::string, int32_t> tensor_of_;
  std::map<std::string, std::vector<size_t>> readers_;
  std::set<std::string> outputs_;
  std::map<size_t, const LayerInfo*> layer_at_;
  std::map<std::string, const LayerInfo*> first_reader_;
  std::set<size_t> fused_;
  std::set<std::string> plain_;  // 4-D values stored in their own (logical) order

  [[noreturn]] void refuse(const Node& n, const std::string& why) const {
    fail(ErrorKind::Unsupported, "{}: TFLite export: node '{}' ({}): {}", g_.source, n.name, n.op_type, why);
  }

  // Runs the simulation on the calibration images: every value's shape and range.
  void measure(const at::Tensor& calib) {
    CATQ_CHECK(calib.defined() && calib.dim() >= 2 && calib.size(0) > 0, Data,
               "{}: TFLite export needs calibration images to measure the ranges of float values", g_.source);
    at::NoGradGuard ng;
    sq_.set_mode(SimQuant::Mode::Quantize);
    for (int64_t b = 0; b < calib.size(0); b += 100) {
      const at::Tensor x = calib.slice(0, b, b + 100);
      ValueMap rec;
      ex_.run({x}, &sq_, &rec);
      rec[g_.inputs[0].name] = x;
      for (const auto& [name, t] : rec) {
        if (!t.defined() || !at::isFloatingType(t.scalar_type()) || t.dim() == 0) continue;
        if (!shape_.count(name)) {
          std::vector<int64_t> s = t.sizes().vec();
          s[0] = 1;
          shape_[name] = s;
        }
        const float lo = t.min().item<float>(), hi = t.max().item<float>();
        auto it = range_.find(name);
        if (it == range_.end()) range_[name] = {lo, hi};
        else it->second = {std::min(it->second.first, lo), std::max(it->second.second, hi)};
      }
    }
  }

  void check_layer(const LayerInfo& l) const {
    const SimQuant::Layer& sl = sq_.layer(l.name);
    CATQ_CHECK(sl.weight_spec.enabled && sl.weight_codes.defined() && sl.weight_params &&
                   sl.weight_params->scheme == Scheme::Uniform,
               Unsupported, "{}: TFLite export: layer '{}' has no uniform integer weight codes", g_.source, l.name);
    const QuantParams& p = *sl.weight_params;
    CATQ_CHECK(p.granularity == Granularity::PerChannel || p.granularity == Granularity::PerTensor, Unsupported,
               "{}: TFLite export: layer '{}' has {} weights (per channel or per tensor only)", g_.source, l.name,
               to_string(p.granularity));
    const QuantParams* ip = sq_.input_params(l.name);
    CATQ_CHECK(sl.input_spec.enabled && ip && ip->granularity == Granularity::PerTensor && ip->bits == 8 &&
                   ip->qmax - ip->qmin == 255,
               Unsupported, "{}: TFLite export: layer '{}' needs a static per-tensor 8-bit input quantizer (int8 "
               "activations; quantize with A8, e.g. --bits w8a8-wsym)", g_.source, l.name);
  }

  TfliteQuant layer_input_quant(const LayerInfo& l) const {
    const QuantParams& ip = *sq_.input_params(l.name);
    TfliteQuant q;
    q.scale = {ip.scale.item<float>()};
    q.zero_point = {ip.zero_point.item<int64_t>() + (ip.qmin == 0 ? -128 : 0)};  // u8 codes → int8
    return q;
  }
  TfliteQuant measured(const std::string& v) {
    auto it = range_.find(v);
    CATQ_CHECK(it != range_.end(), Internal, "{}: TFLite export: no range measured for '{}'", g_.source, v);
    const float lo = std::min(it->second.first, 0.f), hi = std::max(it->second.second, std::max(lo + 1e-8f, 0.f));
    const float s = (hi - lo) / 255.f;
    TfliteQuant q;
    q.scale = {s};
    q.zero_point = {std::clamp<int64_t>(std::llround(-128.0 - lo / s), -128, 127)};
    ++rep_.calibrated_tensors;
    return q;
  }
  // 4-D values are NCHW in the graph and stored NHWC, except those a Transpose to NHWC made (plain_).
  std::vector<int32_t> tfl_shape(const std::string& v) const {
    const std::vector<int64_t>& s = shape_.at(v);
    if (s.size() == 4 && !plain_.count(v))
      return {1, static_cast<int32_t>(s[2]), static_cast<int32_t>(s[3]), static_cast<int32_t>(s[1])};
    return std::vector<int32_t>(s.begin(), s.end());
  }
  int32_t add_tensor(const std::string& name, std::vector<int32_t> shape, const TfliteQuant& q,
                     TfliteType type = TfliteType::Int8, std::vector<uint8_t> data = {}) {
    TfliteTensor t;
    t.name = name;
    t.shape = std::move(shape);
    t.type = type;
    t.quant = q;
    t.data = std::move(data);
    m_.tensors.push_back(std::move(t));
    return static_cast<int32_t>(m_.tensors.size() - 1);
  }
  // The tensor of value v: the input quantizer of the first layer reading it, else a measured range.
  int32_t tensor(const std::string& v) {
    if (auto it = tensor_of_.find(v); it != tensor_of_.end()) return it->second;
    CATQ_CHECK(shape_.count(v), Internal, "{}: TFLite export: value '{}' was not computed", g_.source, v);
    auto r = first_reader_.find(v);
    const TfliteQuant q = r != first_reader_.end() ? layer_input_quant(*r->second) : measured(v);
    return tensor_of_[v] = add_tensor(v, tfl_shape(v), q);
  }
  int32_t tensor_with(const std::string& v, const TfliteQuant& q) {
    CATQ_CHECK(!tensor_of_.count(v), Internal, "{}: TFLite export: '{}' written twice", g_.source, v);
    return tensor_of_[v] = add_tensor(v, tfl_shape(v), q);
  }
  // Value v as layer l reads it: requantized (QUANTIZE) when its tensor has other parameters.
  int32_t input_for(const std::string& v, const LayerInfo& l) {
    const int32_t t = tensor(v);
    const TfliteQuant want = layer_input_quant(l);
    if (same_quant(m_.tensor(t).quant, want)) return t;
    const int32_t r = add_tensor(v + "/requantized_for/" + l.name, m_.tensor(t).shape, want);
    op(tfl::QUANTIZE, {t}, {r});
    ++rep_.requantize_ops;
    return r;
  }
  TfliteOp& op(int32_t code, std::vector<int32_t> in, std::vector<int32_t> out) {
    TfliteOp o;
    o.code = code;
    o.inputs = std::move(in);
    o.outputs = std::move(out);
    m_.ops.push_back(std::move(o));
    return m_.ops.back();
  }
  int32_t constant(const std::string& name, const at::Tensor& t, TfliteType type, const TfliteQuant& q = {}) {
    return add_tensor(name, std::vector<int32_t>(t.sizes().begin(), t.sizes().end()), q, type, bytes_of(t));
  }

  // Relu or Clip(0, 6) as the only reader of v: its node index and TFLite activation, else -1.
  int fusable_activation(const std::string& v, int8_t* act) const {
    if (outputs_.count(v)) return -1;
    auto it = readers_.find(v);
    if (it == readers_.end() || it->second.size() != 1) return -1;
    const size_t r = it->second[0];
    const Node& n = g_.nodes[r];
    if (n.op_type == "Relu") {
      *act = tfl::ACT_RELU;
      return static_cast<int>(r);
    }
    if (clip_kind(n, act)) return static_cast<int>(r);
    return -1;
  }
  bool clip_kind(const Node& n, int8_t* act) const {
    if (n.op_type != "Clip" || n.inputs.size() != 3 || !g_.is_constant(n.inputs[1]) || !g_.is_constant(n.inputs[2]))
      return false;
    const double lo = g_.initializers.at(n.inputs[1]).item<double>(), hi = g_.initializers.at(n.inputs[2]).item<double>();
    if (lo == 0 && hi == 6) *act = tfl::ACT_RELU6;
    else if (lo == -1 && hi == 1) *act = tfl::ACT_RELU_N1_TO_1;
    else return false;
    return true;
  }
  // The node's output value and fused activation: the activation's output when one follows alone.
  std::string output_of(size_t i, int8_t* act) {
    const std::string& y = g_.nodes[i].outputs.at(0);
    *act = tfl::ACT_NONE;
    const int r = fusable_activation(y, act);
    if (r < 0) return y;
    fused_.insert(static_cast<size_t>(r));
    return g_.nodes[static_cast<size_t>(r)].outputs.at(0);
  }
  // Padding of a window op on NHWC input [1, H, W, C]: SAME / VALID, or a PAD operator first (returns the tensor the
  // op reads).
  int32_t padded(int32_t x, const Node& n, const std::vector<int64_t>& pads, const std::vector<int64_t>& k,
                 const std::vector<int64_t>& s, const std::vector<int64_t>& d, TfliteOptions& o) {
    const auto& xs = m_.tensor(x).shape;
    CATQ_CHECK(pads.size() == 4, Internal, "TFLite export: pads of node '{}'", n.name);
    const auto sh = same_pads(xs[1], k[0], s[0], d[0]), sw = same_pads(xs[2], k[1], s[1], d[1]);
    if (pads[0] == 0 && pads[1] == 0 && pads[2] == 0 && pads[3] == 0) {
      o.padding = tfl::VALID;
      return x;
    }
    if (pads[0] == sh.first && pads[2] == sh.second && pads[1] == sw.first && pads[3] == sw.second) {
      o.padding = tfl::SAME;
      return x;
    }
    const at::Tensor p = at::tensor({0, 0, static_cast<int32_t>(pads[0]), static_cast<int32_t>(pads[2]),
                                     static_cast<int32_t>(pads[1]), static_cast<int32_t>(pads[3]), 0, 0},
                                    at::kInt)
                             .reshape({4, 2});
    const int32_t pc = constant(n.name + "/paddings", p, TfliteType::Int32);
    std::vector<int32_t> shape = xs;
    shape[1] += static_cast<int32_t>(pads[0] + pads[2]);
    shape[2] += static_cast<int32_t>(pads[1] + pads[3]);
    const int32_t y = add_tensor(n.name + "/padded", shape, m_.tensor(x).quant);
    op(tfl::PAD, {x, pc}, {y});
    ++rep_.pad_ops;
    o.padding = tfl::VALID;
    return y;
  }

  // Weights (codes minus zero-point, int8) with per-channel scales; bias int32 of scale s_in·s_w[o].
  struct Weights {
    at::Tensor q;                // int8, the layer's codes layout
    std::vector<float> scale;    // per output channel
  };
  Weights weights(const LayerInfo& l) const {
    const SimQuant::Layer& sl = sq_.layer(l.name);
    const QuantParams& p = *sl.weight_params;
    const int64_t O = sl.weight_codes.size(0);
    std::vector<int64_t> zshape(static_cast<size_t>(sl.weight_codes.dim()), 1);
    zshape[0] = p.granularity == Granularity::PerTensor ? 1 : O;
    const at::Tensor q = sl.weight_codes.to(at::kLong) - p.zero_point.to(at::kLong).reshape(zshape);
    CATQ_CHECK(q.min().item<int64_t>() >= -128 && q.max().item<int64_t>() <= 127, Unsupported,
               "{}: TFLite export: layer '{}' has {}-bit asymmetric weights whose codes minus zero-point leave int8; "
               "TFLite's int8 weights have zero-point 0: quantize with symmetric weights (--bits w8a8-wsym)",
               g_.source, l.name, p.bits);
    Weights w;
    w.q = q.to(at::kChar);
    const at::Tensor s = p.scale.to(at::kFloat).reshape({-1}).expand({p.granularity == Granularity::PerTensor ? O : -1});
    for (int64_t o = 0; o < O; ++o) w.scale.push_back(s[o].item<float>());
    return w;
  }
  // The bias as int32 of scale s_in·s_w[o]. A channel whose weights are (nearly) all zero can have a weight scale so
  // small that its bias does not fit int32; as the TFLite converter does, its weight scale is raised until it fits
  // (bias = 2^30 steps at most) and its weight codes are rescaled (they are then all but zero).
  int32_t bias(const Node& n, size_t idx, const std::string& name, float s_in, Weights& w) {
    std::vector<float>& sw = w.scale;
    const int64_t O = static_cast<int64_t>(sw.size());
    at::Tensor b = n.inputs.size() > idx && !n.inputs[idx].empty() ? g_.initializers.at(n.inputs[idx]).to(at::kDouble)
                                                                    : at::zeros({O}, at::kDouble);
    CATQ_CHECK(b.numel() == O, Unsupported, "{}: TFLite export: node '{}' has {} bias values for {} channels", g_.source,
               n.name, b.numel(), O);
    b = b.reshape({O});
    at::Tensor q = at::empty({O}, at::kInt);
    TfliteQuant bq;
    for (int64_t o = 0; o < O; ++o) {
      const double bo = b[o].item<double>();
      double s = static_cast<double>(s_in) * sw[static_cast<size_t>(o)];
      if (std::abs(bo / s) > 1073741824.0) {
        const float old = sw[static_cast<size_t>(o)];
        sw[static_cast<size_t>(o)] = static_cast<float>(std::abs(bo) / (static_cast<double>(s_in) * 1073741824.0));
        at::Tensor ch = w.q.select(0, o);
        ch.copy_(at::round(ch.to(at::kFloat) * (old / sw[static_cast<size_t>(o)])).clamp(-128, 127).to(at::kChar));
        s = static_cast<double>(s_in) * sw[static_cast<size_t>(o)];
        ++rep_.rescaled_channels;
      }
      const double v = std::nearbyint(bo / s);
      CATQ_CHECK(std::abs(v) < 2147483647.0, Internal, "{}: TFLite export: bias of '{}' does not fit int32", g_.source,
                 n.name);
      q[o] = static_cast<int32_t>(v);
      bq.scale.push_back(static_cast<float>(s));
      bq.zero_point.push_back(0);
    }
    return constant(name, q, TfliteType::Int32, bq);
  }

  void conv(size_t i, const LayerInfo& l) {
    const Node& n = g_.nodes[i];
    const std::string& xv = n.inputs.at(0);
    const std::vector<int64_t>& xs = shape_.at(xv);
    const SimQuant::Layer& sl = sq_.layer(l.name);
    const ConvGeometry geo = conv_geometry(n, xs, sl.weight_codes.sizes());
    CATQ_CHECK(xs.size() == 4 && geo.strides.size() == 2, Unsupported, "{}: TFLite export: '{}' is not a 2-D convolution",
               g_.source, n.name);
    Weights w = weights(l);
    const int64_t O = w.q.size(0), kh = w.q.size(2), kw = w.q.size(3);
    bool depthwise = false;
    at::Tensor wt;
    if (geo.group == 1) {
      wt = w.q.permute({0, 2, 3, 1});  // OIHW → OHWI
    } else if (geo.group == xs[1] && w.q.size(1) == 1) {
      depthwise = true;
      wt = w.q.permute({1, 2, 3, 0});  // [C·M, 1, kh, kw] → [1, kh, kw, C·M]
    } else {
      refuse(n, fmt::format("grouped convolution with {} groups (depthwise or group 1 only)", geo.group));
    }
    TfliteQuant wq;
    wq.scale = w.scale;
    wq.zero_point.assign(w.scale.size(), 0);
    wq.axis = depthwise ? 3 : 0;
    int32_t x = input_for(xv, l);
    int8_t act = tfl::ACT_NONE;
    const std::string yv = output_of(i, &act);
    TfliteOptions o;
    o.stride_h = static_cast<int32_t>(geo.strides[0]);
    o.stride_w = static_cast<int32_t>(geo.strides[1]);
    o.dilation_h = static_cast<int32_t>(geo.dilations[0]);
    o.dilation_w = static_cast<int32_t>(geo.dilations[1]);
    o.activation = act;
    o.depth_multiplier = static_cast<int32_t>(depthwise ? O / xs[1] : 1);
    x = padded(x, n, geo.pads, {kh, kw}, geo.strides, geo.dilations, o);
    const int32_t bc = bias(n, 2, l.name + "/bias", m_.tensor(x).quant.scale[0], w);  // may rescale channels
    wt = depthwise ? w.q.permute({1, 2, 3, 0}) : w.q.permute({0, 2, 3, 1});
    wq.scale = w.scale;
    const int32_t wc = constant(l.name + "/weights", wt, TfliteType::Int8, wq);
    const int32_t y = tensor(yv);
    op(depthwise ? tfl::DEPTHWISE_CONV_2D : tfl::CONV_2D, {x, wc, bc}, {y}).options = o;
  }

  void fully_connected(size_t i, const LayerInfo& l) {
    const Node& n = g_.nodes[i];
    CATQ_CHECK(n.op_type == "Gemm" && n.attr_int("transA", 0) == 0 && n.attr_float("alpha", 1.f) == 1.f &&
                   n.attr_float("beta", 1.f) == 1.f,
               Unsupported, "{}: TFLite export: linear layer '{}' ({}) is not a plain Gemm", g_.source, n.name, n.op_type);
    const std::string& xv = n.inputs.at(0);
    CATQ_CHECK(shape_.at(xv).size() == 2, Unsupported, "{}: TFLite export: '{}' reads a rank-{} input", g_.source,
               n.name, shape_.at(xv).size());
    Weights w = weights(l);  // [out, in] (the QuantContext layout)
    TfliteQuant wq;
    wq.scale = w.scale;
    wq.zero_point.assign(w.scale.size(), 0);
    const int32_t x = input_for(xv, l);
    int8_t act = tfl::ACT_NONE;
    const std::string yv = output_of(i, &act);
    const int32_t bc = bias(n, 2, l.name + "/bias", m_.tensor(x).quant.scale[0], w);  // may rescale channels
    wq.scale = w.scale;
    const int32_t wc = constant(l.name + "/weights", w.q, TfliteType::Int8, wq);
    const int32_t y = tensor(yv);
    op(tfl::FULLY_CONNECTED, {x, wc, bc}, {y}).options.activation = act;
  }

  void pool(size_t i) {
    const Node& n = g_.nodes[i];
    const std::string& xv = n.inputs.at(0);
    const int32_t x = tensor(xv);
    const auto& xs = m_.tensor(x).shape;
    CATQ_CHECK(xs.size() == 4, Unsupported, "{}: TFLite export: pooling of a rank-{} value", g_.source, xs.size());
    TfliteOptions o;
    std::vector<int64_t> k, s, pads;
    if (n.op_type == "GlobalAveragePool") {
      k = {xs[1], xs[2]};
      s = {1, 1};
      pads = {0, 0, 0, 0};
    } else {
      k = n.attr_ints("kernel_shape");
      s = n.attr_ints("strides", {1, 1});
      pads = n.attr_ints("pads", {0, 0, 0, 0});
      CATQ_CHECK(k.size() == 2 && s.size() == 2 && pads.size() == 4 && n.attr_string("auto_pad", "NOTSET") == "NOTSET" &&
                     n.attr_int("ceil_mode", 0) == 0 && n.attr_ints("dilations", {1, 1}) == std::vector<int64_t>({1, 1}),
                 Unsupported, "{}: TFLite export: pooling node '{}' has attributes TFLite pooling cannot express",
                 g_.source, n.name);
      const bool any_pad = pads[0] || pads[1] || pads[2] || pads[3];
      if (n.op_type == "AveragePool" && any_pad && n.attr_int("count_include_pad", 0))
        refuse(n, "average pooling that counts the padding");
    }
    o.filter_h = static_cast<int32_t>(k[0]);
    o.filter_w = static_cast<int32_t>(k[1]);
    o.stride_h = static_cast<int32_t>(s[0]);
    o.stride_w = static_cast<int32_t>(s[1]);
    const auto sh = same_pads(xs[1], k[0], s[0], 1), sw = same_pads(xs[2], k[1], s[1], 1);
    if (pads == std::vector<int64_t>({0, 0, 0, 0})) o.padding = tfl::VALID;
    else if (pads == std::vector<int64_t>({sh.first, sw.first, sh.second, sw.second})) o.padding = tfl::SAME;
    else refuse(n, "padding that is neither SAME nor VALID");
    int8_t act = tfl::ACT_NONE;
    const std::string yv = output_of(i, &act);
    o.activation = act;
    const int32_t y = tensor_with(yv, m_.tensor(x).quant);  // TFLite: pooling keeps the input's parameters
    op(n.op_type == "MaxPool" ? tfl::MAX_POOL_2D : tfl::AVERAGE_POOL_2D, {x}, {y}).options = o;
  }

  void reshape(size_t i) {
    const Node& n = g_.nodes[i];
    const std::string& xv = n.inputs.at(0);
    const std::string& yv = n.outputs.at(0);
    // A 4-D value (NCHW) is stored NHWC: the same element order when its spatial size is 1x1 or it has one channel.
    auto plain = [&](const std::string& v) {
      const auto& s = shape_.at(v);
      return s.size() != 4 || plain_.count(v) || (s[2] == 1 && s[3] == 1) || s[1] == 1;
    };
    if (!plain(xv) || !plain(yv))
      refuse(n, "a reshape of a 4-D activation whose spatial size is not 1x1 (NHWC order would change)");
    const int32_t x = tensor(xv);
    const int32_t y = tensor_with(yv, m_.tensor(x).quant);
    const std::vector<int32_t>& ys = m_.tensor(y).shape;
    const int32_t sc = constant(n.name + "/shape", at::tensor(std::vector<int32_t>(ys.begin(), ys.end()), at::kInt),
                                TfliteType::Int32);
    op(tfl::RESHAPE, {x, sc}, {y}).options.new_shape = ys;
  }

  void emit(size_t i) {
    const Node& n = g_.nodes[i];
    if (auto it = layer_at_.find(i); it != layer_at_.end()) {
      if (it->second->kind == LayerKind::Conv) conv(i, *it->second);
      else fully_connected(i, *it->second);
      return;
    }
    const std::string& op_type = n.op_type;
    if (op_type == "Add") {
      CATQ_CHECK(n.inputs.size() == 2 && !g_.is_constant(n.inputs[0]) && !g_.is_constant(n.inputs[1]) &&
                     shape_.at(n.inputs[0]) == shape_.at(n.inputs[1]),
                 Unsupported, "{}: TFLite export: Add node '{}' is not a sum of two activations of one shape", g_.source,
                 n.name);
      const int32_t a = tensor(n.inputs[0]), b = tensor(n.inputs[1]);
      int8_t act = tfl::ACT_NONE;
      const std::string yv = output_of(i, &act);
      op(tfl::ADD, {a, b}, {tensor(yv)}).options.activation = act;
    } else if (op_type == "Relu" || op_type == "Clip") {
      int8_t act = tfl::ACT_RELU;
      if (op_type == "Clip" && (!clip_kind(n, &act) || act != tfl::ACT_RELU6))
        refuse(n, "a Clip other than ReLU6 (0, 6)");
      const int32_t x = tensor(n.inputs[0]);
      op(act == tfl::ACT_RELU ? tfl::RELU : tfl::RELU6, {x}, {tensor(n.outputs[0])});
    } else if (op_type == "AveragePool" || op_type == "MaxPool" || op_type == "GlobalAveragePool") {
      pool(i);
    } else if (op_type == "ReduceMean") {
      std::vector<int64_t> axes = n.attr_ints("axes");
      for (auto& a : axes) a = a < 0 ? a + 4 : a;
      std::sort(axes.begin(), axes.end());
      if (shape_.at(n.inputs[0]).size() != 4 || axes != std::vector<int64_t>({2, 3}))
        refuse(n, "a mean over axes other than height and width");
      const int32_t x = tensor(n.inputs[0]);
      const int32_t ax = constant(n.name + "/axes", at::tensor({1, 2}, at::kInt), TfliteType::Int32);
      op(tfl::MEAN, {x, ax}, {tensor(n.outputs[0])}).options.keep_dims = n.attr_int("keepdims", 1) != 0;
    } else if (op_type == "Transpose") {
      // NCHW → NHWC of a value stored NHWC (or back): the stored tensor already is the result; no operator.
      const std::string& xv = n.inputs.at(0);
      const std::vector<int64_t> perm = n.attr_ints("perm");
      const bool to_nhwc = perm == std::vector<int64_t>({0, 2, 3, 1}) && !plain_.count(xv);
      const bool to_nchw = perm == std::vector<int64_t>({0, 3, 1, 2}) && plain_.count(xv);
      if (shape_.at(xv).size() != 4 || (!to_nhwc && !to_nchw)) refuse(n, "a transpose other than NCHW <-> NHWC");
      if (to_nhwc) plain_.insert(n.outputs[0]);
      tensor_of_[n.outputs[0]] = tensor(xv);
    } else if (op_type == "Pad") {
      // Constant padding by 0.0 of the spatial dimensions: TFLite's PAD fills with the zero-point.
      const std::string& xv = n.inputs.at(0);
      if (shape_.at(xv).size() != 4 || n.attr_string("mode", "constant") != "constant" || n.inputs.size() < 2 ||
          !g_.is_constant(n.inputs[1]) || (n.inputs.size() > 2 && !n.inputs[2].empty() &&
                                           g_.initializers.at(n.inputs[2]).reshape({-1})[0].item<double>() != 0.0))
        refuse(n, "only constant zero padding of a 4-D activation");
      const at::Tensor p = g_.initializers.at(n.inputs[1]).to(at::kLong).reshape({-1});
      if (p.numel() != 8 || p[0].item<int64_t>() || p[1].item<int64_t>() || p[4].item<int64_t>() || p[5].item<int64_t>())
        refuse(n, "padding of the batch or channel dimension");
      const int32_t x = tensor(xv);
      const at::Tensor pc = at::tensor({0, 0, static_cast<int32_t>(p[2].item<int64_t>()), static_cast<int32_t>(p[6].item<int64_t>()),
                                        static_cast<int32_t>(p[3].item<int64_t>()), static_cast<int32_t>(p[7].item<int64_t>()),
                                        0, 0},
                                       at::kInt)
                                .reshape({4, 2});
      const int32_t pt = constant(n.name + "/paddings", pc, TfliteType::Int32);
      op(tfl::PAD, {x, pt}, {tensor_with(n.outputs[0], m_.tensor(x).quant)});
    } else if (op_type == "Reshape" || op_type == "Flatten" || op_type == "Squeeze" || op_type == "Unsqueeze" ||
               op_type == "Identity") {
      reshape(i);
    } else {
      refuse(n, "no TFLite Micro operator for it in catq's exporter");
    }
  }
};

}  // namespace

TfliteModel tflite_int8_model(const GraphExecutor& ex, SimQuant& sq, const at::Tensor& calib,
                              TfliteExportReport* report) {
  return Exporter(ex, sq).run(calib, report);
}

}  // namespace catq

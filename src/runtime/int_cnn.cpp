#include "runtime/int_cnn.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <set>

#include "core/error.h"

namespace catq {

namespace {

// Relu, or Clip(0, M) with constant bounds (ReLU6): a ReLU whose output is also clipped at M (*clip_max; ∞ for Relu).
bool relu_like(const Node& n, float* clip_max, const Graph& g) {
  if (n.op_type == "Relu") {
    *clip_max = std::numeric_limits<float>::infinity();
    return true;
  }
  if (n.op_type != "Clip" || g.opset < 11 || n.inputs.size() != 3) return false;
  const std::string &lo = n.inputs[1], &hi = n.inputs[2];
  if (lo.empty() || hi.empty() || !g.is_constant(lo) || !g.is_constant(hi)) return false;
  const at::Tensor a = g.initializers.at(lo), b = g.initializers.at(hi);
  if (a.numel() != 1 || b.numel() != 1 || a.item<double>() != 0.0) return false;
  const double m = b.item<double>();
  if (!(m > 0) || !std::isfinite(m)) return false;
  *clip_max = static_cast<float>(m);
  return true;
}

}  // namespace

IntegerCnn::IntegerCnn(const GraphExecutor& ex, SimQuant& sim) : ex_(ex), rt_(sim) {
  const Graph& g = ex_.graph();
  std::set<std::string> outputs;
  for (const auto& o : g.outputs) outputs.insert(o.name);
  std::map<std::string, std::vector<size_t>> readers;  // value -> reading nodes (once per input slot)
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& v : g.nodes[i].inputs)
      if (!v.empty() && !g.is_constant(v)) readers[v].push_back(i);
  auto single_reader = [&](const std::string& v) -> int {
    auto it = readers.find(v);
    if (outputs.count(v) || it == readers.end() || it->second.size() != 1) return -1;
    return static_cast<int>(it->second[0]);
  };
  // The codes a value can travel as: at least one layer reads it and every layer reading it is an integer conv
  // (symmetric int8 weights) with one common input quantizer. Non-layer readers then see that quantizer's x̂, as in
  // the simulation (GraphExecutor: a shared value is quantized once, by its first layer).
  auto carried_codes = [&](const std::string& v) -> std::optional<CodeSpace> {
    if (outputs.count(v)) return std::nullopt;
    std::optional<CodeSpace> cs;
    for (size_t i : readers[v]) {
      const Node& n = g.nodes[i];
      const LayerInfo* l = ex_.layer_of(n);
      if (!l) continue;
      if (n.inputs[0] != v || l->kind != LayerKind::Conv) return std::nullopt;
      const IntConv* c = rt_.int_conv(l->index);
      if (!c || c->asymmetric || (cs && !(*cs == c->input_codes()))) return std::nullopt;
      cs = c->input_codes();
    }
    return cs;
  };
  auto relu_like = [&](const Node& n, float* clip_max) { return catq::relu_like(n, clip_max, g); };
  std::vector<bool> skip(g.nodes.size(), false);
  std::map<size_t, Step> deferred;  // Add node -> the fused conv step that runs in its place
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (skip[i]) continue;
    const Node& n = g.nodes[i];
    const LayerInfo* l = ex_.layer_of(n);
    const IntConv* c = l && l->kind == LayerKind::Conv ? rt_.int_conv(l->index) : nullptr;
    if (c && !c->asymmetric && !n.outputs.empty()) {
      Step s;
      s.node = i;
      s.fused = true;
      s.layer = l->index;
      const int r = single_reader(n.outputs[0]);
      const Node* rn = r >= 0 ? &g.nodes[static_cast<size_t>(r)] : nullptr;
      if (rn && relu_like(*rn, &s.clip_max)) {
        if (auto cs = carried_codes(rn->outputs[0])) {
          s.tail = {static_cast<size_t>(r)};
          s.output = rn->outputs[0];
          s.out = *cs;
          skip[static_cast<size_t>(r)] = true;
          steps_.push_back(s);
          continue;
        }
      } else if (rn && rn->op_type == "Add" && rn->inputs.size() == 2 && !deferred.count(static_cast<size_t>(r))) {
        // (An Add of two convolutions' outputs — ResNet-8's projection shortcut — fuses only the first of them; the
        // other runs on its own before the Add, so the shortcut exists when the fused step runs.)
        const std::string& shortcut = rn->inputs[0] == n.outputs[0] ? rn->inputs[1] : rn->inputs[0];
        const int rr = single_reader(rn->outputs[0]);
        const Node* relu = rr >= 0 ? &g.nodes[static_cast<size_t>(rr)] : nullptr;
        if (shortcut != n.outputs[0] && !g.is_constant(shortcut) && relu && relu_like(*relu, &s.clip_max)) {
          if (auto cs = carried_codes(relu->outputs[0])) {
            s.tail = {static_cast<size_t>(r), static_cast<size_t>(rr)};
            s.residual = shortcut;
            s.output = relu->outputs[0];
            s.out = *cs;
            skip[static_cast<size_t>(r)] = skip[static_cast<size_t>(rr)] = true;
            deferred[static_cast<size_t>(r)] = s;  // runs where the Add was: the shortcut exists by then
            continue;
          }
        }
      }
    }
    Step s;
    s.node = i;
    // A classifier Gemm (y = x·Wᵀ + b) on the integer GEMM: its input quantized by the layer's static quantizer inside
    // the call, as the simulation quantizes it.
    if (l && l->kind == LayerKind::Linear && n.op_type == "Gemm" && rt_.int_linear(l->index) &&
        n.attr_int("transB", 0) == 1 && n.attr_int("transA", 0) == 0 && n.attr_float("alpha", 1.f) == 1.f &&
        n.attr_float("beta", 1.f) == 1.f && (n.inputs.size() < 3 || n.inputs[2].empty() || g.is_constant(n.inputs[2])))
      s.linear = l->index;
    steps_.push_back(s);
  }
  // Place the deferred steps at their Add positions (steps_ is in node order).
  auto position = [](const Step& s) { return s.tail.size() == 2 ? s.tail[0] : s.node; };
  for (auto& [pos, s] : deferred) steps_.push_back(s);
  std::stable_sort(steps_.begin(), steps_.end(), [&](const Step& a, const Step& b) { return position(a) < position(b); });
  // Values read by each step (a fused step reads the conv's inputs, the shortcut and what its tail reads), and the
  // step after which each is dead.
  std::map<std::string, size_t> last;
  for (size_t k = 0; k < steps_.size(); ++k) {
    const Step& s = steps_[k];
    std::vector<size_t> nodes = {s.node};
    nodes.insert(nodes.end(), s.tail.begin(), s.tail.end());
    for (size_t i : nodes)
      for (const auto& v : g.nodes[i].inputs)
        if (!v.empty() && !g.is_constant(v)) last[v] = k;
  }
  dead_after_.assign(steps_.size(), {});
  for (const auto& [v, k] : last)
    if (!outputs.count(v)) dead_after_[k].push_back(v);
}

int64_t IntegerCnn::fused_convs() const {
  int64_t n = 0;
  for (const Step& s : steps_) n += s.fused;
  return n;
}

int64_t IntegerCnn::residual_convs() const {
  int64_t n = 0;
  for (const Step& s : steps_) n += s.fused && !s.residual.empty();
  return n;
}

const at::Tensor& IntegerCnn::fp_of(Value& v) const {
  if (!v.fp.defined()) {
    CATQ_CHECK(v.codes.defined(), Internal, "integer CNN: a value with neither float data nor codes");
    v.fp = (v.codes.to(at::kFloat) - static_cast<float>(v.cs.zero)) * v.cs.scale;
  }
  return v.fp;
}

void IntegerCnn::run_generic(size_t node, Env& env) const {
  const Graph& g = ex_.graph();
  const Node& n = g.nodes[node];
  ValueMap m;
  for (const auto& v : n.inputs)
    if (!v.empty() && !g.is_constant(v)) {
      auto it = env.find(v);
      CATQ_CHECK(it != env.end(), Internal, "integer CNN: node '{}' reads '{}' before it is computed", n.name, v);
      m[v] = fp_of(it->second);
    }
  ex_.run_nodes(node, node + 1, m, const_cast<IntegerRuntime*>(&rt_), true);
  for (const auto& o : n.outputs)
    if (!o.empty()) env[o] = Value{m.at(o), {}, {}};
}

bool IntegerCnn::run_codes_node(size_t node, Env& env) const {
  const Graph& g = ex_.graph();
  const Node& n = g.nodes[node];
  if ((n.op_type != "Slice" && n.op_type != "Pad") || n.inputs.empty() || n.outputs.size() != 1) return false;
  auto it = env.find(n.inputs[0]);
  if (it == env.end() || !it->second.codes.defined()) return false;
  const Value& x = it->second;
  std::vector<at::Tensor> args = {x.codes};
  for (size_t k = 1; k < n.inputs.size(); ++k) {
    const std::string& v = n.inputs[k];
    if (v.empty()) { args.emplace_back(); continue; }
    if (!g.is_constant(v)) return false;
    args.push_back(g.initializers.at(v));
  }
  if (n.op_type == "Pad") {
    // Constant padding by 0.0 is padding by the zero-point in code space.
    if (n.attr_string("mode", "constant") != "constant" || ex_.graph().opset < 11) return false;
    if (args.size() > 2 && args[2].defined() && args[2].numel() && args[2].reshape({-1})[0].item<double>() != 0.0)
      return false;
    if (args.size() < 3) args.resize(3);
    args[2] = at::full({1}, static_cast<double>(x.cs.zero), at::kDouble);
  }
  std::vector<at::Tensor> out = run_node(n, args, g.opset);
  env[n.outputs[0]] = Value{{}, out.at(0), x.cs};
  return true;
}

void IntegerCnn::run_fused(const Step& s, Env& env) {
  const Graph& g = ex_.graph();
  const Node& n = g.nodes[s.node];
  const IntConv& c = *rt_.int_conv(s.layer);
  auto unfused = [&] {
    ++fallback_calls_;
    run_generic(s.node, env);
    for (size_t t : s.tail) run_generic(t, env);
  };
  Value& x = env.at(n.inputs[0]);
  const ConvGeometry geo = conv_geometry(n, x.codes.defined() ? x.codes.sizes() : x.fp.sizes(), c.codes.sizes());
  const Value* r = s.residual.empty() ? nullptr : &env.at(s.residual);
  const int64_t in_ch = x.codes.defined() ? x.codes.size(1) : x.fp.size(1);
  if (!geo.symmetric() || in_ch != geo.group * c.codes.size(1) || geo.strides.size() != 2 || (r && !r->codes.defined()))
    return unfused();
  // The input's codes: held already in this layer's code space, or quantized now by this layer's quantizer (then
  // kept when this layer owns the value, so that shortcuts reading it use them).
  at::Tensor xq;
  if (x.codes.defined() && x.cs == c.input_codes()) {
    xq = x.codes.contiguous(at::MemoryFormat::ChannelsLast);
  } else {
    xq = c.quantize_codes(fp_of(x));
    if (ex_.shared_owner(n.inputs[0]) == s.layer) {
      x.codes = xq;
      x.cs = c.input_codes();
    }
  }
  const at::Tensor bias = n.inputs.size() > 2 && !n.inputs[2].empty() ? g.initializers.at(n.inputs[2]) : at::Tensor();
  const std::vector<int64_t> pads = geo.begin_pads();
  if (r) {
    const int64_t oh = (xq.size(2) + 2 * pads[0] - geo.dilations[0] * (c.codes.size(2) - 1) - 1) / geo.strides[0] + 1;
    const int64_t ow = (xq.size(3) + 2 * pads[1] - geo.dilations[1] * (c.codes.size(3) - 1) - 1) / geo.strides[1] + 1;
    if (r->codes.sizes().vec() != std::vector<int64_t>{xq.size(0), c.codes.size(0), oh, ow}) return unfused();
  }
  at::Tensor y = c.forward_codes(xq, bias, geo.strides, pads, geo.dilations, s.out, true,
                                 r ? r->codes : at::Tensor(), r ? r->cs : CodeSpace{}, s.clip_max);
  ++fused_calls_;
  env[s.output] = Value{{}, y, s.out};
}

void IntegerCnn::run_linear(const Step& s, Env& env) {
  const Graph& g = ex_.graph();
  const Node& n = g.nodes[s.node];
  const at::Tensor& x = fp_of(env.at(n.inputs[0]));
  if (x.dim() != 2) return run_generic(s.node, env);
  at::Tensor y = rt_.int_linear(s.linear)->forward(x.contiguous());
  if (n.inputs.size() > 2 && !n.inputs[2].empty()) y = y + g.initializers.at(n.inputs[2]);
  ++linear_calls_;
  env[n.outputs[0]] = Value{y, {}, {}};
}

at::Tensor IntegerCnn::forward(const at::Tensor& x) {
  at::NoGradGuard ng;
  const Graph& g = ex_.graph();
  CATQ_CHECK(g.inputs.size() == 1, Usage, "{}: the integer CNN runtime takes models with one input, this one has {}",
             g.source, g.inputs.size());
  const ValueInfo& vi = g.inputs[0];
  ex_.check_input(0, x);
  // oneDNN primitives cannot be created for an empty batch.
  CATQ_CHECK(x.dim() >= 1 && x.size(0) > 0, Data, "{}: input '{}' is an empty batch (shape [{}]); expected at least "
             "one image", g.source, vi.name, fmt::join(x.sizes(), ","));
  rt_.bind(ex_.layers());
  Env env;
  env[vi.name] = Value{x, {}, {}};
  for (size_t k = 0; k < steps_.size(); ++k) {
    const Step& s = steps_[k];
    if (s.fused) run_fused(s, env);
    else if (s.linear >= 0) run_linear(s, env);
    else if (!run_codes_node(s.node, env)) run_generic(s.node, env);
    for (const auto& v : dead_after_[k]) env.erase(v);
  }
  const std::string& out = g.outputs.at(0).name;
  if (g.is_constant(out)) return g.initializers.at(out);
  auto it = env.find(out);
  CATQ_CHECK(it != env.end(), Internal, "{}: output '{}' was not computed", g.source, out);
  return fp_of(it->second);
}

}  // namespace catq

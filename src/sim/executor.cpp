#include "sim/executor.h"

#include <set>
#include <unordered_map>

#include "core/error.h"

namespace catq {

GraphExecutor::GraphExecutor(Graph g) : g_(std::move(g)) { refresh(); }

void GraphExecutor::refresh() {
  layers_.clear();
  layer_of_node_.clear();
  weight_names_.clear();
  layer_node_.clear();
  shared_act_owner_.clear();
  last_use_.clear();
  producer_.clear();
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    const Node& n = g_.nodes[i];
    for (const auto& v : n.inputs) if (!v.empty()) last_use_[v] = i;
    for (const auto& v : n.outputs) if (!v.empty()) producer_[v] = static_cast<int>(i);
    if (n.inputs.size() < 2 || !g_.is_constant(n.inputs[1])) continue;
    const at::Tensor& w = g_.initializers.at(n.inputs[1]);
    if (!at::isFloatingType(w.scalar_type())) continue;
    LayerInfo l;
    l.name = n.name;
    if (n.op_type == "Conv" && w.dim() >= 3) {
      l.kind = LayerKind::Conv;
      l.weight_shape = w.sizes().vec();
    } else if ((n.op_type == "Gemm" || n.op_type == "MatMul") && w.dim() == 2) {
      if (n.op_type == "Gemm" && n.attr_int("transA", 0)) continue;
      l.kind = LayerKind::Linear;
      bool tb = n.op_type == "Gemm" && n.attr_int("transB", 0);
      l.weight_shape = tb ? w.sizes().vec() : std::vector<int64_t>{w.size(1), w.size(0)};
      l.macs_per_sample = w.numel();
    } else {
      continue;
    }
    // A weight with NaN / Inf values (a corrupt file, a diverged model) can be neither quantized nor evaluated: said
    // here, naming the file and the layer, rather than by whatever calibration statistic meets the NaN first.
    if (const int64_t bad = (~at::isfinite(w)).sum().item<int64_t>(); bad > 0)
      fail(ErrorKind::Format, "{}: layer '{}': weight {} holds {} NaN / Inf value{} (expected finite weights: a corrupt "
           "file or a diverged model)", g_.source, n.name, n.inputs[1], bad, bad == 1 ? "" : "s");
    l.index = static_cast<int>(layers_.size());
    layer_of_node_[n.name] = l.index;
    weight_names_[n.name] = n.inputs[1];
    layer_node_.push_back(i);
    layers_.push_back(l);
  }
  if (!layers_.empty()) {
    layers_.front().is_first = true;
    layers_.back().is_last = true;
  }
  // Activation values a layer quantizes that other (non-layer) nodes read as well.
  std::map<std::string, int> first_reader;
  for (const LayerInfo& l : layers_) first_reader.emplace(g_.nodes[layer_node_[l.index]].inputs[0], l.index);
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    const Node& n = g_.nodes[i];
    auto li = layer_of_node_.find(n.name);
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (li != layer_of_node_.end() && k == 0) continue;
      auto fr = first_reader.find(n.inputs[k]);
      if (fr != first_reader.end()) shared_act_owner_[fr->first] = fr->second;
    }
  }
}

at::Tensor GraphExecutor::layer_weight(const LayerInfo& l) const {
  const Node& n = g_.nodes.at(layer_node_.at(l.index));
  const at::Tensor& w = g_.initializers.at(n.inputs[1]);
  if (l.kind == LayerKind::Conv || (n.op_type == "Gemm" && n.attr_int("transB", 0))) return w;
  return w.t();
}

int GraphExecutor::producer_index(const std::string& v) const {
  auto it = producer_.find(v);
  return it == producer_.end() ? -1 : it->second;
}

std::vector<std::string> GraphExecutor::live_at(size_t i) const {
  std::set<std::string> live;
  auto available = [&](const std::string& v) { int p = producer_index(v); return p >= 0 ? static_cast<size_t>(p) < i : !g_.is_constant(v); };
  for (const auto& [v, last] : last_use_)
    if (last >= i && available(v)) live.insert(v);
  for (const auto& o : g_.outputs)
    if (available(o.name) && !g_.is_constant(o.name)) live.insert(o.name);
  return {live.begin(), live.end()};
}

void GraphExecutor::run_nodes(size_t begin, size_t end, ValueMap& env, QuantContext* ctx, bool keep_all) const {
  CATQ_CHECK(begin <= end && end <= g_.nodes.size(), Internal, "run_nodes: range [{}, {}) outside 0..{}", begin, end,
             g_.nodes.size());
  std::set<std::string> keep;
  for (const auto& o : g_.outputs) keep.insert(o.name);
  // Shared activation values quantized during this call (see the header: one quantized tensor per value).
  std::unordered_map<std::string, at::Tensor> quantized;
  auto shared_quantized = [&](const std::string& v, int owner, const at::Tensor& x) {
    auto it = quantized.find(v);
    if (it != quantized.end()) return it->second;
    at::Tensor q = ctx->input(layers_[owner], x);
    quantized.emplace(v, q);
    return q;
  };
  std::vector<at::Tensor> args;
  for (size_t i = begin; i < end; ++i) {
    const Node& n = g_.nodes[i];
    auto li = layer_of_node_.find(n.name);
    const LayerInfo* layer = li == layer_of_node_.end() ? nullptr : &layers_[li->second];
    args.clear();
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const std::string& v = n.inputs[k];
      if (v.empty()) { args.emplace_back(); continue; }
      auto it = env.find(v);
      if (it == env.end()) {
        auto c = g_.initializers.find(v);
        CATQ_CHECK(c != g_.initializers.end(), Internal, "node '{}' reads '{}' which has no value", n.name, v);
        args.push_back(c->second);
        continue;
      }
      at::Tensor x = it->second;
      if (ctx) {
        auto owner = shared_act_owner_.find(v);
        bool shared = owner != shared_act_owner_.end();
        if (layer && k == 0) x = shared && owner->second == layer->index ? shared_quantized(v, owner->second, x) : ctx->input(*layer, x);
        else if (shared) x = shared_quantized(v, owner->second, x);
      }
      args.push_back(x);
    }
    std::vector<at::Tensor> outs = run_node(n, args, g_.opset, ctx, layer);
    if (layer && on_layer_output && !outs.empty()) on_layer_output(*layer, outs[0]);
    for (size_t k = 0; k < n.outputs.size() && k < outs.size(); ++k)
      if (!n.outputs[k].empty()) env[n.outputs[k]] = outs[k];
    if (!keep_all)
      for (const auto& v : n.inputs) {
        auto lu = last_use_.find(v);
        if (lu != last_use_.end() && lu->second == i && !keep.count(v)) env.erase(v);
      }
  }
}

void GraphExecutor::check_input(size_t i, const at::Tensor& x) const {
  CATQ_CHECK(i < g_.inputs.size(), Internal, "{}: input index {} of {}", g_.source, i, g_.inputs.size());
  const ValueInfo& vi = g_.inputs[i];
  CATQ_CHECK(x.defined(), Data, "{}: input '{}' was not given", g_.source, vi.name);
  if (!vi.has_shape) return;
  bool ok = static_cast<int64_t>(vi.shape.size()) == x.dim();
  for (size_t d = 0; ok && d < vi.shape.size(); ++d) ok = vi.shape[d] < 0 || vi.shape[d] == x.size(static_cast<int64_t>(d));
  CATQ_CHECK(ok, Data, "{}: input '{}' expects shape [{}] (-1 = any), got [{}]", g_.source, vi.name,
             fmt::join(vi.shape, ","), fmt::join(x.sizes(), ","));
}

std::vector<at::Tensor> GraphExecutor::run(const std::vector<at::Tensor>& inputs, QuantContext* ctx,
                                           ValueMap* record) const {
  CATQ_CHECK(inputs.size() == g_.inputs.size(), Data, "{}: model has {} inputs, got {}", g_.source, g_.inputs.size(),
             inputs.size());
  ValueMap env;
  for (size_t i = 0; i < inputs.size(); ++i) {
    check_input(i, inputs[i]);
    env[g_.inputs[i].name] = inputs[i];
  }
  if (ctx) ctx->bind(layers_);
  run_nodes(0, g_.nodes.size(), env, ctx, record != nullptr);
  if (record)
    for (const auto& [k, v] : env) (*record)[k] = v;
  std::vector<at::Tensor> result;
  for (const auto& o : g_.outputs) {
    auto it = env.find(o.name);
    if (it != env.end()) result.push_back(it->second);
    else if (g_.is_constant(o.name)) result.push_back(g_.initializers.at(o.name));
    else fail(ErrorKind::Internal, "{}: output '{}' was not computed", g_.source, o.name);
  }
  return result;
}

at::Tensor GraphExecutor::forward(const at::Tensor& x, QuantContext* ctx) const { return run({x}, ctx)[0]; }

std::vector<at::Tensor> GraphExecutor::parameters() const {
  std::set<std::string> names;
  for (const auto& n : g_.nodes) {
    if (n.op_type == "Conv" || n.op_type == "Gemm" || n.op_type == "MatMul" || n.op_type == "BatchNormalization") {
      for (size_t i = 1; i < n.inputs.size(); ++i) {
        if (n.op_type == "BatchNormalization" && i >= 3) break;  // running stats are not trained
        if (g_.is_constant(n.inputs[i])) names.insert(n.inputs[i]);
      }
    }
  }
  std::vector<at::Tensor> p;
  for (const auto& name : names) {
    const at::Tensor& t = g_.initializers.at(name);
    if (at::isFloatingType(t.scalar_type())) p.push_back(t);
  }
  return p;
}

}  // namespace catq

#include "sim/executor.h"

#include <set>

#include "core/error.h"

namespace catq {

GraphExecutor::GraphExecutor(Graph g) : g_(std::move(g)) { refresh(); }

void GraphExecutor::refresh() {
  layers_.clear();
  layer_of_node_.clear();
  weight_names_.clear();
  for (const auto& n : g_.nodes) {
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
    l.index = static_cast<int>(layers_.size());
    layer_of_node_[n.name] = l.index;
    weight_names_[n.name] = n.inputs[1];
    layers_.push_back(l);
  }
  if (!layers_.empty()) {
    layers_.front().is_first = true;
    layers_.back().is_last = true;
  }
}

std::vector<at::Tensor> GraphExecutor::run(const std::vector<at::Tensor>& inputs, QuantContext* ctx,
                                           ValueMap* record) const {
  CATQ_CHECK(inputs.size() == g_.inputs.size(), Data, "{}: model has {} inputs, got {}", g_.source, g_.inputs.size(),
             inputs.size());
  // Last use of each value, so intermediate tensors are freed early (matters for big batches).
  std::map<std::string, size_t> last_use;
  for (size_t i = 0; i < g_.nodes.size(); ++i)
    for (const auto& v : g_.nodes[i].inputs) last_use[v] = i;
  std::set<std::string> keep;
  for (const auto& o : g_.outputs) keep.insert(o.name);

  std::unordered_map<std::string, at::Tensor> env;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const ValueInfo& vi = g_.inputs[i];
    if (vi.has_shape) {
      bool ok = static_cast<int64_t>(vi.shape.size()) == inputs[i].dim();
      for (size_t d = 0; ok && d < vi.shape.size(); ++d) ok = vi.shape[d] < 0 || vi.shape[d] == inputs[i].size(d);
      CATQ_CHECK(ok, Data, "{}: input '{}' expects shape [{}] (-1 = any), got [{}]", g_.source, vi.name,
                 fmt::join(vi.shape, ","), fmt::join(inputs[i].sizes(), ","));
    }
    env[vi.name] = inputs[i];
  }
  if (ctx) ctx->bind(layers_);
  std::vector<at::Tensor> args;
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    const Node& n = g_.nodes[i];
    args.clear();
    for (const auto& v : n.inputs) {
      if (v.empty()) { args.emplace_back(); continue; }
      auto it = env.find(v);
      if (it != env.end()) { args.push_back(it->second); continue; }
      auto c = g_.initializers.find(v);
      CATQ_CHECK(c != g_.initializers.end(), Internal, "node '{}' reads '{}' which has no value", n.name, v);
      args.push_back(c->second);
    }
    auto li = layer_of_node_.find(n.name);
    const LayerInfo* layer = li == layer_of_node_.end() ? nullptr : &layers_[li->second];
    std::vector<at::Tensor> outs = run_node(n, args, g_.opset, ctx, layer);
    if (layer && on_layer_output && !outs.empty()) on_layer_output(*layer, outs[0]);
    for (size_t k = 0; k < n.outputs.size() && k < outs.size(); ++k) {
      if (n.outputs[k].empty()) continue;
      env[n.outputs[k]] = outs[k];
      if (record) (*record)[n.outputs[k]] = outs[k];
    }
    if (!record)
      for (const auto& v : n.inputs) {
        auto lu = last_use.find(v);
        if (lu != last_use.end() && lu->second == i && !keep.count(v)) env.erase(v);
      }
  }
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

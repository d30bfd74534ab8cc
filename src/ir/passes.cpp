#include "ir/passes.h"

#include <set>

#include "core/error.h"
#include "sim/executor.h"

namespace catq {

namespace {

// Ops that are pure functions of their inputs (everything we support is; listed to be explicit).
bool is_foldable(const Node& n) { return n.domain.empty() && is_supported_op(n.op_type); }

int fold_pure_constants(Graph& g) {
  int folded = 0;
  std::vector<Node> kept;
  for (auto& n : g.nodes) {
    bool all_const = is_foldable(n);
    for (const auto& v : n.inputs) all_const = all_const && (v.empty() || g.is_constant(v));
    if (!all_const) { kept.push_back(std::move(n)); continue; }
    std::vector<at::Tensor> args;
    for (const auto& v : n.inputs) args.push_back(v.empty() ? at::Tensor() : g.initializers.at(v));
    std::vector<at::Tensor> outs;
    {
      at::NoGradGuard ng;
      outs = run_node(n, args, g.opset);
    }
    for (size_t k = 0; k < n.outputs.size() && k < outs.size(); ++k)
      if (!n.outputs[k].empty()) g.initializers[n.outputs[k]] = outs[k].contiguous().clone();
    ++folded;
  }
  g.nodes = std::move(kept);
  return folded;
}

int fold_shape_subgraphs(Graph& g) {
  // Static input shapes (apart from the batch dimension) are required to probe.
  for (const auto& in : g.inputs) {
    if (!in.has_shape || in.shape.empty()) return 0;
    for (size_t d = 1; d < in.shape.size(); ++d) if (in.shape[d] < 0) return 0;
  }
  std::set<std::string> derived;  // values computed from activations only through Shape
  std::vector<size_t> candidates;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    bool is_derived = n.op_type == "Shape";
    if (!is_derived) {
      bool any = false, all = true;
      for (const auto& v : n.inputs) {
        if (v.empty() || g.is_constant(v)) continue;
        if (derived.count(v)) any = true; else all = false;
      }
      is_derived = any && all;
    }
    if (!is_derived) continue;
    candidates.push_back(i);
    for (const auto& o : n.outputs) derived.insert(o);
  }
  if (candidates.empty()) return 0;

  GraphExecutor probe(g);
  ValueMap rec[2];
  const int64_t batch[2] = {2, 3};
  at::NoGradGuard ng;
  for (int r = 0; r < 2; ++r) {
    std::vector<at::Tensor> inputs;
    for (const auto& in : g.inputs) {
      auto shape = in.shape;
      if (shape[0] < 0) shape[0] = batch[r];
      inputs.push_back(at::zeros(shape, at::TensorOptions().dtype(in.dtype)));
    }
    probe.run(inputs, nullptr, &rec[r]);
  }
  std::set<size_t> fold;
  for (size_t i : candidates) {
    bool same = true;
    for (const auto& o : g.nodes[i].outputs) {
      if (o.empty()) continue;
      const at::Tensor &a = rec[0][o], &b = rec[1][o];
      same = same && a.defined() && b.defined() && a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
             at::equal(a, b);
    }
    if (same) fold.insert(i);
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!fold.count(i)) { kept.push_back(std::move(g.nodes[i])); continue; }
    for (const auto& o : g.nodes[i].outputs)
      if (!o.empty()) g.initializers[o] = rec[0][o].contiguous().clone();
  }
  g.nodes = std::move(kept);
  return static_cast<int>(fold.size());
}

}  // namespace

int remove_dead_nodes(Graph& g) {
  std::set<std::string> live;
  for (const auto& o : g.outputs) live.insert(o.name);
  std::vector<bool> keep(g.nodes.size(), false);
  for (size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    bool used = false;
    for (const auto& o : n.outputs) used = used || (!o.empty() && live.count(o));
    if (!used) continue;
    keep[i] = true;
    for (const auto& v : n.inputs) if (!v.empty()) live.insert(v);
  }
  std::vector<Node> kept;
  int removed = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (keep[i]) kept.push_back(std::move(g.nodes[i]));
    else ++removed;
  }
  g.nodes = std::move(kept);
  for (auto it = g.initializers.begin(); it != g.initializers.end();)
    it = live.count(it->first) ? std::next(it) : g.initializers.erase(it);
  return removed;
}

FoldStats fold_constants(Graph& g) {
  FoldStats s;
  s.constant_nodes = fold_pure_constants(g);
  s.shape_nodes = fold_shape_subgraphs(g);
  if (s.shape_nodes) s.constant_nodes += fold_pure_constants(g);
  s.dead_nodes = remove_dead_nodes(g);
  return s;
}

int fold_batchnorm(Graph& g) {
  int folded = 0;
  std::set<size_t> drop;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& bn = g.nodes[i];
    if (bn.op_type != "BatchNormalization" || bn.attr_int("training_mode", 0)) continue;
    bool params_const = bn.inputs.size() >= 5;
    for (size_t k = 1; params_const && k < 5; ++k) params_const = g.is_constant(bn.inputs[k]);
    if (!params_const) continue;
    // Find the producing Conv and make sure nothing else reads its output.
    size_t ci = g.nodes.size();
    for (size_t j = 0; j < i; ++j)
      if (g.nodes[j].outputs.size() && g.nodes[j].outputs[0] == bn.inputs[0]) ci = j;
    if (ci == g.nodes.size() || g.nodes[ci].op_type != "Conv") continue;
    Node& conv = g.nodes[ci];
    if (g.consumers(bn.inputs[0]).size() != 1 || !g.is_constant(conv.inputs[1])) continue;
    bool is_output = false;
    for (const auto& o : g.outputs) is_output = is_output || o.name == bn.inputs[0];
    if (is_output) continue;
    if (conv.inputs.size() > 2 && !conv.inputs[2].empty() && !g.is_constant(conv.inputs[2])) continue;

    at::Tensor W = g.initializers.at(conv.inputs[1]);
    at::Tensor gamma = g.initializers.at(bn.inputs[1]), beta = g.initializers.at(bn.inputs[2]);
    at::Tensor mean = g.initializers.at(bn.inputs[3]), var = g.initializers.at(bn.inputs[4]);
    double eps = bn.attr_float("epsilon", 1e-5f);
    at::NoGradGuard ng;
    at::Tensor k = gamma / at::sqrt(var + eps);
    std::vector<int64_t> shape(W.dim(), 1);
    shape[0] = W.size(0);
    at::Tensor b = conv.inputs.size() > 2 && !conv.inputs[2].empty() ? g.initializers.at(conv.inputs[2])
                                                                        : at::zeros({W.size(0)}, W.options());
    std::string wname = conv.name + ".weight_bnfolded", bname = conv.name + ".bias_bnfolded";
    g.initializers[wname] = (W * k.reshape(shape)).contiguous();
    g.initializers[bname] = ((b - mean) * k + beta).contiguous();
    conv.inputs.resize(3);
    conv.inputs[1] = wname;
    conv.inputs[2] = bname;
    conv.outputs[0] = bn.outputs[0];
    drop.insert(i);
    ++folded;
  }
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i) if (!drop.count(i)) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
  remove_dead_nodes(g);
  return folded;
}

}  // namespace catq

#include "sim/fold_constants.h"

#include <set>

#include "core/error.h"
#include "ir/passes.h"
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

FoldStats fold_constants(Graph& g) {
  FoldStats s;
  s.constant_nodes = fold_pure_constants(g);
  s.shape_nodes = fold_shape_subgraphs(g);
  if (s.shape_nodes) s.constant_nodes += fold_pure_constants(g);
  s.dead_nodes = remove_dead_nodes(g);
  return s;
}

}  // namespace catq

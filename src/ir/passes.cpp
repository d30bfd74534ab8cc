#include "ir/passes.h"

#include <set>

#include "core/error.h"

namespace catq {

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

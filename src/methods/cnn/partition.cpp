#include "methods/cnn/partition.h"

#include <algorithm>
#include <set>

#include "core/error.h"

namespace catq {

const char* to_string(ReconGranularity g) { return g == ReconGranularity::Layer ? "layer" : "block"; }

namespace {

bool is_elementwise_activation(const std::string& op) {
  static const std::set<std::string> ops = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh"};
  return ops.count(op) != 0;
}

std::vector<int> layers_in(const GraphExecutor& ex, size_t begin, size_t end) {
  std::vector<int> out;
  for (const LayerInfo& l : ex.layers()) {
    size_t i = ex.node_index(l);
    if (i >= begin && i < end) out.push_back(l.index);
  }
  return out;
}

// Values live at `end` that the range [begin, end) produced.
std::vector<std::string> produced_live(const GraphExecutor& ex, size_t begin, size_t end) {
  std::vector<std::string> out;
  for (const auto& v : ex.live_at(end)) {
    int p = ex.producer_index(v);
    if (p >= static_cast<int>(begin) && p < static_cast<int>(end)) out.push_back(v);
  }
  return out;
}

}  // namespace

std::vector<ReconUnit> partition(const GraphExecutor& ex, ReconGranularity g) {
  const Graph& graph = ex.graph();
  const size_t n = graph.nodes.size();
  CATQ_CHECK(!ex.layers().empty(), Unsupported, "{}: the graph has no conv / linear layer to reconstruct", graph.source);
  std::vector<std::pair<size_t, size_t>> ranges;
  if (g == ReconGranularity::Block) {
    std::vector<size_t> cuts = {0};
    for (size_t i = 1; i < n; ++i)
      if (ex.live_at(i).size() == 1) cuts.push_back(i);
    cuts.push_back(n);
    // Cuts come in runs (after a residual Add and again after its ReLU). A range without layers that holds only
    // elementwise activations ends the previous block (so a block hands on its post-ReLU output, the value the
    // next block reads); any other range without layers (pooling, flatten) joins the next one.
    auto only_activations = [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i)
        if (!is_elementwise_activation(graph.nodes[i].op_type)) return false;
      return true;
    };
    size_t pending = 0;  // start of a layer-less range waiting for the next range
    bool has_pending = false;
    for (size_t k = 0; k + 1 < cuts.size(); ++k) {
      size_t b = cuts[k], e = cuts[k + 1];
      if (b == e) continue;
      if (layers_in(ex, b, e).empty()) {
        if (!ranges.empty() && !has_pending && only_activations(b, e)) {
          ranges.back().second = e;
        } else if (!has_pending) {
          pending = b;
          has_pending = true;
        }
        continue;
      }
      ranges.emplace_back(has_pending ? pending : b, e);
      has_pending = false;
    }
    if (has_pending && !ranges.empty()) ranges.back().second = n;
  } else {
    const auto& layers = ex.layers();
    for (size_t k = 0; k < layers.size(); ++k) {
      size_t b = k == 0 ? 0 : ex.node_index(layers[k]);
      size_t e = k + 1 < layers.size() ? ex.node_index(layers[k + 1]) : n;
      ranges.emplace_back(b, e);
    }
  }

  std::vector<ReconUnit> units;
  for (auto [b, e] : ranges) {
    ReconUnit u;
    u.begin = b;
    u.end = e;
    u.layers = layers_in(ex, b, e);
    u.inputs = ex.live_at(b);
    std::vector<std::string> names;
    for (int li : u.layers) names.push_back(ex.layers()[li].name);
    if (g == ReconGranularity::Block) {
      u.targets = produced_live(ex, b, e);
      u.name = fmt::format("block {}: {}", units.size(), fmt::join(names, ", "));
    } else {
      // The layer's output, through the elementwise activations it alone feeds inside the unit.
      const LayerInfo& l = ex.layers()[u.layers.at(0)];
      std::string v = graph.nodes[ex.node_index(l)].outputs.at(0);
      for (;;) {
        bool is_output = std::any_of(graph.outputs.begin(), graph.outputs.end(),
                                     [&](const ValueInfo& o) { return o.name == v; });
        auto readers = graph.consumers(v);
        if (is_output || readers.size() != 1 || readers[0] >= e ||
            !is_elementwise_activation(graph.nodes[readers[0]].op_type))
          break;
        v = graph.nodes[readers[0]].outputs.at(0);
      }
      u.targets = {v};
      u.name = fmt::format("layer {}", l.name);
    }
    CATQ_CHECK(!u.targets.empty(), Internal, "partition: unit '{}' hands on no value", u.name);
    units.push_back(std::move(u));
  }
  return units;
}

}  // namespace catq

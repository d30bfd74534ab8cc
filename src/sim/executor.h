// Executes a Graph with libtorch: FP32, or with a QuantContext attached to every conv/linear weight
// and input activation. Autograd flows through (initializers are plain tensors that can require grad).
//
// Where activations are quantized: a layer's input value is quantized by that layer's input quantizer
// (QuantContext::input). When the same value also feeds nodes that are not layers (a residual shortcut,
// an option-A Slice/Pad shortcut), those nodes read the *same quantized tensor* — the quantizer of the
// first layer (in execution order) that consumes the value — as an integer runtime that stores the
// activation once would. So a ResNet's residual stream is quantized at block boundaries, as in the
// academic PTQ setting (BRECQ / QDrop / PD-Quant quantize each block's output). Within one run the
// quantized tensor is computed once per value. Two layers reading one value each apply their own quantizer.
//
// run() executes the whole graph; run_nodes() a contiguous range of nodes on a caller-held environment
// (block reconstruction walks the graph segment by segment with it).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "quant/quant_context.h"

namespace catq {

using ValueMap = std::map<std::string, at::Tensor>;

// Evaluates one node on already computed inputs (exposed for constant folding and tests).
// `opset` selects between attribute- and input-based forms of ops that changed over time.
std::vector<at::Tensor> run_node(const Node& n, const std::vector<at::Tensor>& inputs, int64_t opset,
                                 QuantContext* ctx = nullptr, const LayerInfo* layer = nullptr);

// A Conv node's geometry for an input of the given sizes: strides, dilations, group, and the spatial pads
// [begin..., end...] with auto_pad resolved (what op_conv uses).
struct ConvGeometry {
  std::vector<int64_t> strides, dilations, pads;
  int64_t group = 1;
  bool symmetric() const;                // begin pads equal end pads
  std::vector<int64_t> begin_pads() const;  // the first half of pads
};
ConvGeometry conv_geometry(const Node& n, at::IntArrayRef x_sizes, at::IntArrayRef w_sizes);

class GraphExecutor {
 public:
  explicit GraphExecutor(Graph g);

  const Graph& graph() const { return g_; }
  Graph& graph() { return g_; }
  // Quantizable layers (Conv with constant weight; Gemm/MatMul with constant 2-D weight), in execution order.
  const std::vector<LayerInfo>& layers() const { return layers_; }
  // Re-derive layers after the graph was edited (e.g. BN folding).
  void refresh();

  // Runs the graph on inputs given in graph-input order; returns graph outputs in order.
  // If `record` is given, every computed value is stored there too.
  std::vector<at::Tensor> run(const std::vector<at::Tensor>& inputs, QuantContext* ctx = nullptr,
                              ValueMap* record = nullptr) const;
  // Checks a tensor given for graph input i against its declared shape (-1 = any size); a clear Data error.
  void check_input(size_t i, const at::Tensor& x) const;
  // Convenience for single-input models: first output.
  at::Tensor forward(const at::Tensor& x, QuantContext* ctx = nullptr) const;

  // Runs nodes [begin, end) reading values from `env` (graph inputs and values computed by earlier nodes;
  // initializers come from the graph) and adding every output to `env`. Values not needed after `end`
  // (live_after(end)) are erased unless `keep_all`. Does not call ctx->bind(): bind the context first (a
  // run() does it, or ctx->bind(layers())).
  void run_nodes(size_t begin, size_t end, ValueMap& env, QuantContext* ctx, bool keep_all = false) const;
  // Values that nodes at index >= i read, or graph outputs, and that are computed before i (graph inputs
  // or outputs of nodes < i): the state the graph carries across position i. Sorted by name.
  std::vector<std::string> live_at(size_t i) const;
  // Index of the node that produces value v (graph inputs and initializers: -1).
  int producer_index(const std::string& v) const;
  // The layer whose input quantizer a shared activation value uses (see the header comment): a value read by a
  // layer and by other nodes. -1 for any other value.
  int shared_owner(const std::string& v) const {
    auto it = shared_act_owner_.find(v);
    return it == shared_act_owner_.end() ? -1 : it->second;
  }
  // The layer a node computes (nullptr for other nodes).
  const LayerInfo* layer_of(const Node& n) const {
    auto it = layer_of_node_.find(n.name);
    return it == layer_of_node_.end() ? nullptr : &layers_[static_cast<size_t>(it->second)];
  }
  // Index in graph().nodes of a layer's node.
  size_t node_index(const LayerInfo& l) const { return layer_node_.at(l.index); }

  // Called after each quantizable layer computes its output (before any following op).
  std::function<void(const LayerInfo&, const at::Tensor&)> on_layer_output;

  // Floating-point initializers used as weights/biases/BN parameters (for training).
  std::vector<at::Tensor> parameters() const;
  // The weight initializer name of a layer.
  const std::string& weight_name(const LayerInfo& l) const { return weight_names_.at(l.name); }
  // The layer's weight as the QuantContext sees it: conv [O, I/g, kh, kw]; linear [out, in] (a view of the
  // initializer, transposed for Gemm without transB and for MatMul).
  at::Tensor layer_weight(const LayerInfo& l) const;

 private:
  Graph g_;
  std::vector<LayerInfo> layers_;
  std::map<std::string, int> layer_of_node_;  // node name -> index in layers_
  std::map<std::string, std::string> weight_names_;
  std::vector<size_t> layer_node_;                   // layer index -> node index
  std::map<std::string, int> shared_act_owner_;      // value read by a layer and by other nodes -> first layer
  std::map<std::string, size_t> last_use_;           // value -> last node index reading it
  std::map<std::string, int> producer_;              // value -> node index
};

}  // namespace catq

// Executes a Graph with libtorch: FP32, or with a QuantContext attached to every conv/linear weight
// and input activation. Autograd flows through (initializers are plain tensors that can require grad).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "sim/quant_context.h"

namespace catq {

using ValueMap = std::map<std::string, at::Tensor>;

// Evaluates one node on already computed inputs (exposed for constant folding and tests).
// `opset` selects between attribute- and input-based forms of ops that changed over time.
std::vector<at::Tensor> run_node(const Node& n, const std::vector<at::Tensor>& inputs, int64_t opset,
                                 QuantContext* ctx = nullptr, const LayerInfo* layer = nullptr);

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
  // Convenience for single-input models: first output.
  at::Tensor forward(const at::Tensor& x, QuantContext* ctx = nullptr) const;

  // Called after each quantizable layer computes its output (before any following op).
  std::function<void(const LayerInfo&, const at::Tensor&)> on_layer_output;

  // Floating-point initializers used as weights/biases/BN parameters (for training).
  std::vector<at::Tensor> parameters() const;
  // The weight initializer name of a layer.
  const std::string& weight_name(const LayerInfo& l) const { return weight_names_.at(l.name); }

 private:
  Graph g_;
  std::vector<LayerInfo> layers_;
  std::map<std::string, int> layer_of_node_;  // node name -> index in layers_
  std::map<std::string, std::string> weight_names_;
};

}  // namespace catq

#include "ir/graph.h"

#include <algorithm>

namespace catq {

int64_t Node::attr_int(const std::string& a, int64_t def) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? def : it->second.i;
}
float Node::attr_float(const std::string& a, float def) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? def : it->second.f;
}
std::string Node::attr_string(const std::string& a, const std::string& def) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? def : it->second.s;
}
std::vector<int64_t> Node::attr_ints(const std::string& a, const std::vector<int64_t>& def) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? def : it->second.ints;
}
std::vector<float> Node::attr_floats(const std::string& a, const std::vector<float>& def) const {
  auto it = attrs.find(a);
  return it == attrs.end() ? def : it->second.floats;
}
size_t Node::num_inputs() const {
  size_t n = inputs.size();
  while (n > 0 && inputs[n - 1].empty()) --n;
  return n;
}

const Node* Graph::producer(const std::string& v) const {
  for (const auto& n : nodes)
    for (const auto& o : n.outputs)
      if (o == v) return &n;
  return nullptr;
}

std::vector<size_t> Graph::consumers(const std::string& v) const {
  std::vector<size_t> r;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (std::find(nodes[i].inputs.begin(), nodes[i].inputs.end(), v) != nodes[i].inputs.end()) r.push_back(i);
  return r;
}

int64_t Graph::parameter_count() const {
  int64_t n = 0;
  for (const auto& [k, t] : initializers) n += t.numel();
  return n;
}

std::map<std::string, int> Graph::op_histogram() const {
  std::map<std::string, int> h;
  for (const auto& n : nodes) h[n.op_type]++;
  return h;
}

const std::vector<std::string>& supported_ops() {
  static const std::vector<std::string> ops = {
      "Conv", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish",
      "Tanh", "Add", "Sub", "Mul", "Div", "MatMul", "Gemm", "MaxPool", "AveragePool", "GlobalAveragePool",
      "Flatten", "Reshape", "Transpose", "Concat", "Split", "Slice", "Pad", "Shape", "Gather", "Unsqueeze",
      "Squeeze", "Cast", "ConstantOfShape", "Constant", "Identity", "Softmax", "ReduceMean", "QuantizeLinear",
      "DequantizeLinear", "ArgMin", "ArgMax"};
  return ops;
}

bool is_supported_op(const std::string& op) {
  const auto& s = supported_ops();
  return std::find(s.begin(), s.end(), op) != s.end();
}

}  // namespace catq

#include "ir/builder.h"

#include <cmath>

namespace catq {

Attribute attr_int(int64_t v) {
  Attribute a;
  a.type = Attribute::Type::Int;
  a.i = v;
  return a;
}
Attribute attr_ints(std::vector<int64_t> v) {
  Attribute a;
  a.type = Attribute::Type::Ints;
  a.ints = std::move(v);
  return a;
}

GraphBuilder::GraphBuilder(std::string name, int64_t opset) {
  g_.name = name;
  g_.source = name;
  g_.opset = opset;
}

std::string GraphBuilder::fresh(const std::string& base) { return fmt::format("{}_{}", base, counter_++); }

std::string GraphBuilder::input(const std::string& name, std::vector<int64_t> shape) {
  ValueInfo v;
  v.name = name;
  v.shape = std::move(shape);
  v.has_shape = true;
  g_.inputs.push_back(v);
  return name;
}

void GraphBuilder::output(const std::string& value) {
  ValueInfo v;
  v.name = value;
  g_.outputs.push_back(v);
}

std::string GraphBuilder::constant(const std::string& name, const at::Tensor& t) {
  g_.initializers[name] = t;
  return name;
}

std::string GraphBuilder::op(const std::string& op_type, std::vector<std::string> inputs,
                             std::map<std::string, Attribute> attrs) {
  Node n;
  n.op_type = op_type;
  n.name = fresh(op_type);
  n.inputs = std::move(inputs);
  n.outputs = {n.name + ".out"};
  n.attrs = std::move(attrs);
  g_.nodes.push_back(n);
  return n.outputs[0];
}

// Kaiming-uniform weights and small uniform biases (PyTorch's default layer init).
std::string GraphBuilder::conv(const std::string& x, int64_t in_ch, int64_t out_ch, int64_t k, int64_t stride,
                               int64_t pad, const std::string& name) {
  double bound = 1.0 / std::sqrt(static_cast<double>(in_ch * k * k));
  std::string w = constant(name + ".weight", at::empty({out_ch, in_ch, k, k}).uniform_(-bound, bound));
  std::string b = constant(name + ".bias", at::empty({out_ch}).uniform_(-bound, bound));
  Node n;
  n.op_type = "Conv";
  n.name = name;
  n.inputs = {x, w, b};
  n.outputs = {name + ".out"};
  n.attrs = {{"kernel_shape", attr_ints({k, k})}, {"strides", attr_ints({stride, stride})},
             {"pads", attr_ints({pad, pad, pad, pad})}};
  g_.nodes.push_back(n);
  return n.outputs[0];
}

std::string GraphBuilder::linear(const std::string& x, int64_t in, int64_t out, const std::string& name) {
  double bound = 1.0 / std::sqrt(static_cast<double>(in));
  std::string w = constant(name + ".weight", at::empty({out, in}).uniform_(-bound, bound));
  std::string b = constant(name + ".bias", at::empty({out}).uniform_(-bound, bound));
  Node n;
  n.op_type = "Gemm";
  n.name = name;
  n.inputs = {x, w, b};
  n.outputs = {name + ".out"};
  n.attrs = {{"transB", attr_int(1)}};
  g_.nodes.push_back(n);
  return n.outputs[0];
}

std::string GraphBuilder::relu(const std::string& x) { return op("Relu", {x}); }
std::string GraphBuilder::max_pool(const std::string& x, int64_t k, int64_t stride) {
  return op("MaxPool", {x}, {{"kernel_shape", attr_ints({k, k})}, {"strides", attr_ints({stride, stride})}});
}
std::string GraphBuilder::flatten(const std::string& x) { return op("Flatten", {x}, {{"axis", attr_int(1)}}); }

}  // namespace catq

// The model IR: an ONNX-like dataflow graph. Values are named strings; a value is either a graph
// input, an initializer (constant tensor) or the output of exactly one node. Nodes are kept in
// topological order (readers and passes maintain it).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace catq {

struct Attribute {
  enum class Type { Int, Float, String, Ints, Floats, Strings, Tensor, Graph, Unknown };
  Type type = Type::Unknown;
  int64_t i = 0;
  float f = 0.f;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::vector<std::string> strings;
  at::Tensor t;
};

struct Node {
  std::string name;     // unique; readers invent "<op>_<index>" when the file has none
  std::string op_type;  // ONNX op type, e.g. "Conv"
  std::string domain;   // "" = ai.onnx
  std::vector<std::string> inputs;   // "" = omitted optional input
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attrs;

  bool has(const std::string& a) const { return attrs.count(a) != 0; }
  int64_t attr_int(const std::string& a, int64_t def) const;
  float attr_float(const std::string& a, float def) const;
  std::string attr_string(const std::string& a, const std::string& def) const;
  std::vector<int64_t> attr_ints(const std::string& a, const std::vector<int64_t>& def = {}) const;
  std::vector<float> attr_floats(const std::string& a, const std::vector<float>& def = {}) const;
  // Number of present (non-empty) inputs counted from the front, i.e. index of last present + 1.
  size_t num_inputs() const;
  bool has_input(size_t i) const { return i < inputs.size() && !inputs[i].empty(); }
};

struct ValueInfo {
  std::string name;
  at::ScalarType dtype = at::kFloat;
  std::vector<int64_t> shape;  // -1 = unknown / symbolic dimension
  bool has_shape = false;
};

struct Graph {
  std::string name;
  std::string source;  // file it was read from (for error messages)
  int64_t opset = 13;  // ai.onnx opset version
  std::vector<ValueInfo> inputs;   // real inputs only (initializers removed)
  std::vector<ValueInfo> outputs;
  std::map<std::string, at::Tensor> initializers;
  std::vector<Node> nodes;

  bool is_constant(const std::string& v) const { return initializers.count(v) != 0; }
  const Node* producer(const std::string& v) const;
  // Consumers of value v (node indices).
  std::vector<size_t> consumers(const std::string& v) const;
  int64_t parameter_count() const;
  std::map<std::string, int> op_histogram() const;
};

// Ops the executor implements (ai.onnx domain). Readers reject anything else by name.
const std::vector<std::string>& supported_ops();
bool is_supported_op(const std::string& op_type);

}  // namespace catq

// Programmatic graph construction (models catq trains itself, tests). Produces the same IR the ONNX
// reader does, so everything downstream (executor, quantization, evaluation) treats it identically.
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"

namespace catq {

class GraphBuilder {
 public:
  explicit GraphBuilder(std::string name, int64_t opset = 13);
  // Declares a float input; -1 = dynamic dimension.
  std::string input(const std::string& name, std::vector<int64_t> shape);
  void output(const std::string& value);
  std::string constant(const std::string& name, const at::Tensor& t);

  // Ops return the name of their output value.
  std::string conv(const std::string& x, int64_t in_ch, int64_t out_ch, int64_t k, int64_t stride, int64_t pad,
                   const std::string& name);
  std::string linear(const std::string& x, int64_t in, int64_t out, const std::string& name);  // Gemm, transB=1
  std::string relu(const std::string& x);
  std::string max_pool(const std::string& x, int64_t k, int64_t stride);
  std::string flatten(const std::string& x);
  std::string op(const std::string& op_type, std::vector<std::string> inputs, std::map<std::string, Attribute> attrs = {});

  Graph build() { return std::move(g_); }

 private:
  std::string fresh(const std::string& base);
  Graph g_;
  int counter_ = 0;
};

Attribute attr_int(int64_t v);
Attribute attr_ints(std::vector<int64_t> v);

}  // namespace catq

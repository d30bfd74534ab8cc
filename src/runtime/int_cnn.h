// Integer execution of a quantized CNN graph (issue 5): activations travel between convolutions as u8 codes.
//
//   IntegerCnn net(*q.ex, *q.sq);   // prepare once: int8 weights, the plan of fused steps
//   at::Tensor logits = net.forward(images);
//
// IntegerRuntime alone (the QuantContext path) runs each convolution on oneDNN int8 but returns float outputs, so
// every ReLU, residual add and the next layer's input quantization are separate passes over float tensors. Here a
// convolution whose output only feeds
//   Relu                       or   Add(·, shortcut) → Relu
// (Relu may be Clip(0, M), ReLU6: the clip's upper bound joins the code range; the convolution may be grouped —
// depthwise — with symmetric weights)
// and whose ReLU output is read by integer convolutions that share one input quantizer (plus any non-layer nodes,
// which see that quantizer's x̂ as in the simulation) writes that quantizer's u8 codes directly: oneDNN's output scale,
// the bias and zero-points folded into its bias, a `sum` post-op adding the shortcut's codes and one clip post-op
// (IntConv::forward_codes). Slice / Pad of a value held as codes (an option-A shortcut) stay codes, padded with the
// zero-point. Every other node runs through the graph executor on float values (codes dequantized to the x̂ the
// simulation would hold), with IntegerRuntime as its QuantContext — so a graph without the pattern still runs, only
// unfused. A classifier Gemm (x·Wᵀ + b) runs on the integer GEMM (IntLinear: its input quantized by the layer's
// static quantizer inside the call). Pooling before the classifier runs on float values: the simulation quantizes
// the pooled value (the classifier's input), not the last convolution's output, so pooling codes would change the
// arithmetic. Results match the simulation up to float rounding at the requantization (ties can round differently).
#pragma once
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "runtime/int_runtime.h"
#include "sim/executor.h"

namespace catq {

class IntegerCnn {
 public:
  // `ex` and `sim` (a loaded quantized CNN in Mode::Quantize) must outlive this object.
  IntegerCnn(const GraphExecutor& ex, SimQuant& sim);

  // The graph's first output for input x (float, NCHW), without autograd.
  at::Tensor forward(const at::Tensor& x);

  const IntegerRuntime& runtime() const { return rt_; }
  int64_t fused_convs() const;     // planned convolutions that write codes
  int64_t residual_convs() const;  // of which with the shortcut added in the primitive
  // Executions so far: fused convolutions, and fused steps that fell back to float at run time (a shortcut not held
  // as codes, asymmetric padding, a shape the plan did not expect).
  int64_t fused_calls() const { return fused_calls_; }
  int64_t linear_calls() const { return linear_calls_; }  // classifier Gemms run on the integer GEMM
  int64_t fallback_calls() const { return fallback_calls_; }

 private:
  struct Step {
    size_t node = 0;             // the graph node this step executes (for a fused step: the conv)
    bool fused = false;
    int layer = -1;              // fused: the conv's layer index
    std::vector<size_t> tail;    // fused: the Add (if any) and Relu it replaces, run generically on a fallback
    std::string residual;        // fused: the shortcut value ("" = none)
    std::string output;          // fused: the Relu's output value
    CodeSpace out;               // fused: its readers' input quantizer
    float clip_max = std::numeric_limits<float>::infinity();  // fused: Clip(0, M) instead of Relu (ReLU6)
    int linear = -1;             // a classifier Gemm on the integer GEMM: its layer index
  };
  struct Value {
    at::Tensor fp;     // float (the simulation's value), or undefined while only codes exist
    at::Tensor codes;  // u8 codes (NCHW sizes, any strides) with `cs`, or undefined
    CodeSpace cs;
  };
  using Env = std::map<std::string, Value>;

  const at::Tensor& fp_of(Value& v) const;
  void run_generic(size_t node, Env& env) const;
  bool run_codes_node(size_t node, Env& env) const;  // Slice / Pad on codes; false when not applicable
  void run_fused(const Step& s, Env& env);
  void run_linear(const Step& s, Env& env);

  const GraphExecutor& ex_;
  IntegerRuntime rt_;
  std::vector<Step> steps_;
  std::vector<std::vector<std::string>> dead_after_;  // per step: values last read there
  int64_t fused_calls_ = 0, fallback_calls_ = 0, linear_calls_ = 0;
};

}  // namespace catq

// The seam between models and quantization: every model (ONNX graph executor, Llama forward) calls
// a QuantContext for each conv/linear weight and each conv/linear input activation. A null context
// means plain FP32. Implementations decide whether to observe (calibration), fake-quantize, or both.
#pragma once
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace catq {

enum class LayerKind { Conv, Linear };

// One quantizable layer, in execution order.
struct LayerInfo {
  std::string name;                   // stable name: ONNX node name, or "blk.3.attn_q" for Llama
  LayerKind kind = LayerKind::Linear;
  std::vector<int64_t> weight_shape;  // conv [O, I/groups, kh, kw]; linear [out, in] (nn.Linear layout)
  int64_t macs_per_sample = 0;        // multiply-accumulates per sample (image / token), 0 if unknown
  int index = 0;                      // position in execution order
  bool is_first = false, is_last = false;
};

class QuantContext {
 public:
  virtual ~QuantContext() = default;
  // The model announces all of its quantizable layers once, before the first forward.
  virtual void bind(const std::vector<LayerInfo>& layers) {}
  // Returns the weight to use for this layer (fake-quantized or unchanged). w: conv [O,I,kh,kw] or
  // linear [out,in]. Must keep autograd flowing to w.
  virtual at::Tensor weight(const LayerInfo& layer, const at::Tensor& w) = 0;
  // Returns the input activation to use. x: conv [N,C,H,W]; linear [..., in] (a "token" is one row).
  virtual at::Tensor input(const LayerInfo& layer, const at::Tensor& x) = 0;
  // Executes a linear layer: y = input(x) · weight(w)ᵀ by default. A context may run the layer itself instead
  // (runtime/int_runtime.h executes it with integer kernels). x: [..., in]; w: [out, in]. Linear layers only.
  virtual at::Tensor linear(const LayerInfo& layer, const at::Tensor& x, const at::Tensor& w) {
    return at::linear(input(layer, x), weight(layer, w));
  }
  // Executes a 2-D/N-D convolution layer (symmetric padding already resolved): by default libtorch's convolution on
  // input(x) — already applied by the graph executor, which quantizes shared activations once — and weight(w).
  // x is the executor's (quantized) input; channels-last for 4-D inputs (oneDNN's fast layout on CPU).
  virtual at::Tensor conv(const LayerInfo& layer, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                          at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
    at::Tensor W = weight(layer, w), X = x;
    if (X.dim() == 4) {
      X = X.contiguous(at::MemoryFormat::ChannelsLast);
      W = W.contiguous(at::MemoryFormat::ChannelsLast);
    }
    return at::convolution(X, W, bias, stride, padding, dilation, false, std::vector<int64_t>(stride.size(), 0), groups);
  }
  // Token-embedding rows gathered by a Llama forward, [..., dim] (one row per token). Default: unchanged.
  virtual at::Tensor embedding(const at::Tensor& rows) { return rows; }
  // Keys (after RoPE) or values of attention block `block` before they enter the KV cache, [B, heads, T, hd].
  // Default: unchanged.
  virtual at::Tensor kv_cache(int64_t block, bool is_value, const at::Tensor& t) { return t; }
};

}  // namespace catq

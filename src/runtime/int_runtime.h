// Integer runtime for quantized layers (issue 5): executes a model quantized by a SimQuant with real low-bit
// arithmetic instead of fake quantization.
//
//   IntegerRuntime rt(model, sq);          // prepare once: pack every quantized layer's integer codes
//   model.forward(tokens, &rt);            // quantized layers run on the kernels, the rest through `sq`
//
// Linear layers run as IntLinear (runtime/int_linear.h: integer, weight-only or codebook kernels), conv layers as
// IntConv (runtime/int_conv.h: oneDNN int8); a layer neither can take runs simulated — the SimQuant's
// fake-quantized op, named with the reason in report().
// Online transforms (rotations) are applied by the model before the layer; KV-cache quantization stays simulated.
// The runtime reproduces the simulation: the same integer codes, the same activation quantizer, products summed
// exactly in integers (the float order differs only in the per-group scaling).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "quant/quant_context.h"
#include "runtime/int_conv.h"
#include "runtime/int_linear.h"
#include "sim/sim_quant.h"

namespace catq {

class LlamaModel;

class IntegerRuntime : public QuantContext {
 public:
  // Prepares every linear layer of `model` that `sim` quantizes (sim must be in Mode::Quantize, with weight params:
  // a loaded .catq model, or a SimQuant after one quantized forward). `sim` must outlive the runtime.
  IntegerRuntime(const LlamaModel& model, SimQuant& sim);
  // Every layer bound in `sim` (a loaded quantized CNN: conv layers with installed integer codes and calibrated
  // inputs run on oneDNN int8; linear layers on the integer GEMM).
  explicit IntegerRuntime(SimQuant& sim);

  void bind(const std::vector<LayerInfo>& layers) override { sim_.bind(layers); }
  at::Tensor weight(const LayerInfo& layer, const at::Tensor& w) override { return sim_.weight(layer, w); }
  // Conv layers it runs: the simulation's quantized input computed in one pass, keeping the codes for conv().
  at::Tensor input(const LayerInfo& layer, const at::Tensor& x) override;
  at::Tensor embedding(const at::Tensor& rows) override { return sim_.embedding(rows); }  // simulated
  at::Tensor kv_cache(int64_t block, bool is_value, const at::Tensor& t) override {
    return sim_.kv_cache(block, is_value, t);
  }
  at::Tensor linear(const LayerInfo& layer, const at::Tensor& x, const at::Tensor& w) override;
  at::Tensor conv(const LayerInfo& layer, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                  at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) override;

  struct LayerEntry {
    std::string name;
    std::string how;  // IntLinear::str(), or "simulated: <reason>"
    bool integer = false, weight_only = false;
  };
  const std::vector<LayerEntry>& report() const { return entries_; }
  // The prepared integer convolution of a layer (nullptr when it runs simulated).
  const IntConv* int_conv(int layer_index) const {
    const size_t i = static_cast<size_t>(layer_index);
    return i < convs_.size() ? convs_[i].get() : nullptr;
  }
  // The prepared linear layer of a layer (nullptr when it runs simulated).
  const IntLinear* int_linear(int layer_index) const {
    const size_t i = static_cast<size_t>(layer_index);
    return i < layers_.size() ? layers_[i].get() : nullptr;
  }
  SimQuant& simulation() const { return sim_; }
  int64_t num_integer() const;      // layers on the integer GEMM
  int64_t num_weight_only() const;  // layers on the weight-only kernels
  uint64_t packed_bytes() const;    // code bytes + scales of the prepared layers
  // Convolutions executed so far on oneDNN int8 / simulated (a conv layer runs integer only when its input came
  // through input() without autograd: under at::NoGradGuard).
  int64_t integer_conv_calls() const { return integer_conv_calls_; }
  int64_t simulated_conv_calls() const { return simulated_conv_calls_; }

 private:
  SimQuant& sim_;
  void prepare(const std::vector<LayerInfo>& infos, const std::function<at::Tensor(const LayerInfo&)>& weight_of);
  std::vector<std::unique_ptr<IntLinear>> layers_;  // by LayerInfo::index; null = simulated
  std::vector<std::unique_ptr<IntConv>> convs_;     // by LayerInfo::index
  std::vector<std::pair<int, IntConv::Input>> pending_;
  int64_t integer_conv_calls_ = 0, simulated_conv_calls_ = 0;  // inputs quantized by input(), awaiting their conv()
  std::vector<LayerEntry> entries_;
};

}  // namespace catq

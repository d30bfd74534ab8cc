// Integer runtime for quantized linear layers (issue 5): executes a model quantized by a SimQuant with real
// low-bit arithmetic instead of fake quantization.
//
//   IntegerRuntime rt(model, sq);          // prepare once: pack every quantized layer's integer codes
//   model.forward(tokens, &rt);            // quantized layers run on the kernels, the rest through `sq`
//
// Per layer (IntLinear):
//   integer   — uniform weights (per channel / per group / per tensor, ≤ 8 bits, stored in 2/4/8-bit containers)
//               and 8-bit-or-less activations quantized per token (dynamic) or per tensor (static, calibrated):
//               runtime/int_gemm.h (W8A8, W4A8, W4A4, ...), the activation quantization fused into the call;
//   weight-only — same weights, floating-point activations: runtime/kernels.h gemm_packed (W8A16, W4A16, W2A16);
//   simulated — anything else (floating-point weights, codebook / binary schemes, stochastic rounding,
//               per-channel activations): the SimQuant's fake-quantized linear, named with the reason in report().
// Online transforms (rotations) are applied by the model before the layer; KV-cache quantization stays simulated.
// The runtime reproduces the simulation: the same integer codes, the same activation quantizer, products summed
// exactly in integers (the float order differs only in the per-group scaling).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "runtime/int_gemm.h"
#include "runtime/packed.h"
#include "sim/quant_context.h"
#include "sim/sim_quant.h"

namespace catq {

class LlamaModel;

struct IntLinear {
  enum class Kind { Integer, WeightOnly };
  Kind kind = Kind::Integer;
  IntWeights weights;  // Integer: codes + integer zero-points; WeightOnly uses weights.w only
  ActQuant act;        // Integer only
  int weight_bits = 0, act_bits = 0;  // as quantized (the container may be wider: 3-bit codes live in 4 bits)

  // y = x·Ŵᵀ for x [..., in] float32 (CPU). Error(Data) for a shape mismatch or non-finite activations.
  at::Tensor forward(const at::Tensor& x) const;
  std::string str() const;  // e.g. "W4A8 int (4-bit codes, per channel, per-token act)"
};

// Prepares layer `l` (bound in a SimQuant, weight params computed) with weight tensor w [out, in]: the codes are the
// layer's installed codes, or quantize(w, params). Returns nullptr and sets *why when the layer cannot run on the
// kernels.
std::unique_ptr<IntLinear> prepare_int_linear(const SimQuant::Layer& l, const at::Tensor& w, std::string* why);

class IntegerRuntime : public QuantContext {
 public:
  // Prepares every linear layer of `model` that `sim` quantizes (sim must be in Mode::Quantize, with weight params:
  // a loaded .catq model, or a SimQuant after one quantized forward). `sim` must outlive the runtime.
  IntegerRuntime(const LlamaModel& model, SimQuant& sim);

  void bind(const std::vector<LayerInfo>& layers) override { sim_.bind(layers); }
  at::Tensor weight(const LayerInfo& layer, const at::Tensor& w) override { return sim_.weight(layer, w); }
  at::Tensor input(const LayerInfo& layer, const at::Tensor& x) override { return sim_.input(layer, x); }
  at::Tensor kv_cache(int64_t block, bool is_value, const at::Tensor& t) override {
    return sim_.kv_cache(block, is_value, t);
  }
  at::Tensor linear(const LayerInfo& layer, const at::Tensor& x, const at::Tensor& w) override;

  struct LayerEntry {
    std::string name;
    std::string how;  // IntLinear::str(), or "simulated: <reason>"
    bool integer = false, weight_only = false;
  };
  const std::vector<LayerEntry>& report() const { return entries_; }
  int64_t num_integer() const;      // layers on the integer GEMM
  int64_t num_weight_only() const;  // layers on the weight-only kernels
  uint64_t packed_bytes() const;    // code bytes + scales of the prepared layers

 private:
  SimQuant& sim_;
  std::vector<std::unique_ptr<IntLinear>> layers_;  // by LayerInfo::index; null = simulated
  std::vector<LayerEntry> entries_;
};

}  // namespace catq

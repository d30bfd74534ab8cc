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
//   weight-only — same weights, floating-point activations: runtime/kernels.h gemv_packed_i16 / gemv_packed (W8A16,
//               W4A16, W2A16; decode on int16 activations where AVX-512 VNNI allows, prefill on an fp32 GEMM);
//   codebook  — k-means weights of ≤ 3 bits (a codebook per output row or one per tensor) with floating-point
//               activations: runtime/kernels.h gemv_codebook (codewords looked up in registers);
//   simulated — anything else (floating-point weights, binary / ternary schemes, stochastic rounding,
//               per-channel activations): the SimQuant's fake-quantized linear, named with the reason in report().
// Online transforms (rotations) are applied by the model before the layer; KV-cache quantization stays simulated.
// The runtime reproduces the simulation: the same integer codes, the same activation quantizer, products summed
// exactly in integers (the float order differs only in the per-group scaling).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/int_gemm.h"
#include "runtime/kernels.h"
#include "runtime/packed.h"
#include "sim/quant_context.h"
#include "sim/sim_quant.h"

namespace catq {

class LlamaModel;

struct IntLinear {
  enum class Kind { Integer, WeightOnly, Codebook };
  Kind kind = Kind::Integer;
  IntWeights weights;  // Integer: codes + integer zero-points; WeightOnly uses weights.w only
  PackedCodebook codebook;  // Codebook: k-means indices (≤ 3 bits) and codewords, float activations
  ActQuant act;        // Integer only
  int weight_bits = 0, act_bits = 0;  // as quantized (the container may be wider: 3-bit codes live in 4 bits)

  // y = x·Ŵᵀ for x [..., in] float32 (CPU). Error(Data) for a shape mismatch or non-finite activations.
  at::Tensor forward(const at::Tensor& x) const;
  // WeightOnly decode (fewer than 16 rows) runs gemv_packed_i16 (activations as int16 per group, runtime/kernels.h)
  // when the CPU has AVX-512 VNNI, the layout suits it and CATQ_ISA does not cap the ISA below avx512.
  bool int16_activations() const {
    return kind == Kind::WeightOnly && best_isa() == KernelIsa::Avx512 && i16_simd() && i16_supported(weights.w);
  }
  std::string str() const;  // e.g. "W4A8 int (4-bit codes, per channel, per-token act)"

 private:
  at::Tensor forward_codebook(const at::Tensor& x) const;
};

// Prepares layer `l` (bound in a SimQuant, weight params computed) with weight tensor w [out, in]: the codes are the
// layer's installed codes, or quantize(w, params). Returns nullptr and sets *why when the layer cannot run on the
// kernels.
std::unique_ptr<IntLinear> prepare_int_linear(const SimQuant::Layer& l, const at::Tensor& w, std::string* why);

// A 2-D convolution on oneDNN's int8 primitive (AVX-512 VNNI / AMX where the CPU has them): weights as s8 codes
// (≤ 8 bits; unsigned 8-bit codes shifted by −128), activations as u8 codes with a zero-point (static per-tensor
// params; signed codes shifted by +128), int32 accumulation, per-output-channel f32 output scale s_x·s_w[o]. oneDNN
// has no weight zero-points: with asymmetric weights the runtime subtracts s_x·s_w[o]·z_w[o]·Σ_window(q − z_x),
// the window sums from a one-output-channel convolution of the codes. The bias is added after.
// Weights of ≤ 7 bits are recentred (q − z_w fits int8), which removes the correction. input() quantizes a conv
// layer's input once — the simulation's x̂ for the graph (a shared value's other readers see it) and the codes for
// conv(). The primitive is created once per input shape.
// An activation quantizer in u8 code space: x̂ = scale·(code − zero), code ∈ [lo, hi].
struct CodeSpace {
  float scale = 1;
  int32_t zero = 0, lo = 0, hi = 255;
  bool operator==(const CodeSpace& o) const { return scale == o.scale && zero == o.zero && lo == o.lo && hi == o.hi; }
};

struct IntConv {
  at::Tensor codes;              // [O, C, kh, kw] int8
  std::vector<float> out_scale;  // O
  std::vector<float> zero_term;  // O: s_x·s_w[o]·z_w[o] (z_w in the shifted int8 code space)
  bool asymmetric = false;       // some z_w ≠ 0
  float x_scale = 1;
  int32_t x_zero = 0;            // in u8 code space
  int x_shift = 0;               // +128 for signed activation codes
  int32_t x_qmin = 0, x_qmax = 255;  // activation code range before the shift
  int weight_bits = 0, act_bits = 0;
  struct Primitive;              // oneDNN objects (int_runtime.cpp)
  mutable std::vector<std::shared_ptr<Primitive>> cache;

  // An input quantized once: x̂ (what the simulation's quantizer returns, channels-last), the u8 codes (NHWC) and
  // the per-pixel channel sums Σ_c (q − z_x) (for asymmetric 8-bit weights).
  struct Input {
    at::Tensor xhat, codes, csum;
  };
  Input quantize_input(const at::Tensor& x) const;  // Error(Data) for a wrong shape or NaN / Inf
  at::Tensor quantize_codes(const at::Tensor& x) const;  // the u8 codes alone (NHWC), same arithmetic
  at::Tensor forward(const Input& in, const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                     at::IntArrayRef dilation) const;

  using Codes = CodeSpace;
  Codes input_codes() const { return {x_scale, x_zero, x_qmin + x_shift, x_qmax + x_shift}; }
  // The output requantized inside the primitive (integer graph execution, runtime/int_cnn.h): the codes of
  // `out` for relu?(conv(x̂) + bias [+ residual x̂_r]), the residual given as codes of its own quantizer with the
  // output's shape. oneDNN post-ops: per-channel output scale s_x·s_w[o] / s_out, the constant terms (bias, zero-
  // points) folded into the bias, `sum` for the residual, one clip to the code range (ReLU is the lower bound).
  // Needs symmetric int8 weights (asymmetric() false): the weight zero-point correction has no post-op.
  at::Tensor forward_codes(const at::Tensor& codes, const at::Tensor& bias, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, const Codes& out, bool relu,
                           const at::Tensor& residual = {}, const Codes& residual_codes = {}) const;
  std::string str() const;

 private:
  std::shared_ptr<Primitive> primitive(at::IntArrayRef in_shape, at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef dilation, const Codes* out, bool relu, bool sum,
                                       float sum_scale) const;
};
std::unique_ptr<IntConv> prepare_int_conv(const SimQuant::Layer& l, std::string* why);

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

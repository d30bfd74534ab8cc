// Quantization-aware training (methods.md §1 STE, §5 ParetoQ quantizers): learnable weight and activation
// quantizers, and QatQuant, the QuantContext that applies them while a model trains.
//
// Weight quantizers (learnable step per param row — per channel or per group, as the layer's spec says):
//   lsq   x̂ = s·(clamp(round(x/s) + z, qmin, qmax) − z), s learned (fake_quant.h: gradient, grad scale)
//   seq   2-bit ParetoQ "stretched elastic": k = 2^(b−1), u = clamp(x/α, −1, 1),
//         x̂ = α/k · (clamp(round(u·k − 0.5), −k, k−1) + 0.5)   — levels ±(j + ½)·α/k, no level at zero
//   sign  1-bit: x̂ = α·sign(x) (sign(0) = +1), α learned (init mean|x|)
// Gradients (straight-through through the rounding, clipped outside the range):
//   seq   ∂x̂/∂x = 1 for |x| ≤ α, else 0;   ∂x̂/∂α = (q + ½)/k − x/α inside, ±1 outside (sign of x)
//   sign  ∂x̂/∂x = 1 for |x| ≤ α, else 0;   ∂x̂/∂α = sign(x)
//   times the LSQ grad-scale g = 1/sqrt(numel·levels/2) on α (scale-invariant steps, as LSQ).
// Activation quantizers (static, per tensor):
//   lsq   learned step, zero-point fixed at its calibrated value
//   pact  (Choi et al. 2018) y = clamp(x, 0, α), x̂ = s·round(y/s) with s = α/(2^b − 1) (unsigned, z = 0);
//         ∂x̂/∂x = 1 on (0, α];  ∂x̂/∂α = 1 where x ≥ α, else 0 (the clip's gradient only, as the paper)
//   ste   the calibrated params, fixed; clipped STE
// Dynamic (per-token) activations are quantized as SimQuant does (clipped STE, nothing learned).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "sim/sim_quant.h"

namespace catq {

enum class WeightQat { Auto, Lsq, Seq, Sign, Ste };  // Auto: sign at 1 bit, seq at 2 bits, lsq at 3+ (ParetoQ)
enum class ActQat { Lsq, Pact, Ste };

WeightQat parse_weight_qat(const std::string& s);  // "auto" | "lsq" | "seq" | "sign" | "ste"; else Error(Usage)
ActQat parse_act_qat(const std::string& s);        // "lsq" | "pact" | "ste"; else Error(Usage)
const char* to_string(WeightQat q);
const char* to_string(ActQat q);

// The differentiable quantizers. alpha broadcasts against x (0-dim, or per channel like QuantParams::scale);
// grad_scale 0 = the default 1/sqrt(numel·levels/2). bits 2..8 for seq and pact.
at::Tensor seq_fake_quant(const at::Tensor& x, const at::Tensor& alpha, int bits, double grad_scale = 0.0);
at::Tensor sign_fake_quant(const at::Tensor& x, const at::Tensor& alpha, double grad_scale = 0.0);
at::Tensor pact_fake_quant(const at::Tensor& x, const at::Tensor& alpha, int bits);

// The α per row of `rows` [R, M] minimising Σ (x − seq(x, α))² over α = r·max|x|, r ∈ {0.30, 0.31, ..., 1.00}.
at::Tensor seq_init_alpha(const at::Tensor& rows, int bits);

struct QatOptions {
  WeightQat weight = WeightQat::Auto;
  ActQat act = ActQat::Lsq;
};

// A QuantContext for QAT built from a SimQuant whose static inputs are calibrated (the starting point). Layers
// keep the base's specs; their learnable quantizer state is created from the base's params on construction.
// Gradients reach the model's weights (STE) and parameters(). commit() writes the result back into the base as
// integer weights and fixed activation params, so the base then runs and saves the QAT model like a PTQ result.
class QatQuant : public QuantContext {
 public:
  // weight_of: the layer's current FP weight (QuantContext layout), used to initialise seq / sign scales and the
  // weight params the base has not computed yet. Error(Config) when a quantizer cannot serve a layer's spec
  // (seq needs 2..8 bits, sign 1 bit or an explicit choice, lsq a uniform scheme).
  QatQuant(SimQuant& base, const std::function<at::Tensor(const LayerInfo&)>& weight_of, QatOptions o);

  void bind(const std::vector<LayerInfo>& layers) override;
  at::Tensor weight(const LayerInfo& layer, const at::Tensor& w) override;
  at::Tensor input(const LayerInfo& layer, const at::Tensor& x) override;
  at::Tensor kv_cache(int64_t block, bool is_value, const at::Tensor& t) override;

  // Learnable quantizer parameters (weight steps / α, activation steps / α), leaves with requires_grad.
  std::vector<at::Tensor> parameters() const;
  // Installs hard integer weights (from weight_of) with the learned params, and the learned activation params,
  // into the base; leaves the base in Quantize mode. lsq → uniform params; seq → a per-row codebook
  // α/k·(j + ½) (kmeans scheme); sign → binary params.
  void commit(const std::function<at::Tensor(const LayerInfo&)>& weight_of);
  // "lsq" / "seq" / "sign" / "ste" / "fp" for a layer's weight, and for its input.
  std::string weight_quantizer(const std::string& layer) const;
  std::string input_quantizer(const std::string& layer) const;

 private:
  struct LayerState {
    WeightQat wq = WeightQat::Ste;  // Ste here also means "not quantized" when the spec is disabled
    bool w_enabled = false;
    QuantParams wp;                 // lsq: zero-point, range, granularity; seq/sign: granularity and axis
    at::Tensor w_scale;             // lsq: s; seq / sign: α — shaped like wp.scale
    bool a_learned = false;
    ActQat aq = ActQat::Ste;
    QuantParams ap;                 // calibrated input params (per tensor)
    double a_zero = 0;              // ap's zero-point (read on every forward)
    at::Tensor a_scale;             // lsq: s (0-dim); pact: α (0-dim)
  };
  LayerState& state(const LayerInfo& l);
  at::Tensor weight_fq(const LayerState& s, const at::Tensor& w) const;

  SimQuant& base_;
  QatOptions opts_;
  std::map<std::string, LayerState> layers_;
};

}  // namespace catq

// Learnable parameterisations of one layer's quantized weight, optimised by the reconstruction engine (recon.h).
//
//   AdaRoundWeight       Ŵ = s·(clamp(⌊W/s⌋ + h(V) + z, qmin, qmax) − z), h(V) = clamp(σ(V)(ζ−γ) + γ, 0, 1),
//                        ζ = 1.1, γ = −0.1; V starts where h(V) = W/s − ⌊W/s⌋ (hard rounding = nearest).
//                        Regulariser Σ(1 − |2h(V) − 1|^β). Hard: h = [V ≥ 0].
//   ClusterAffineWeight  seed 000's weight-cluster affine: the values of W are k-means clustered (1-D, K
//                        clusters per tensor); cluster m gets (α_m, β_m) and w' = α_m·w + β_m is quantized with the
//                        layer's uniform quantizer, ŵ = s·(clamp(round(w'/s) + z, qmin, qmax) − z), clipped STE
//                        through the rounding. The transform is baked into the codes: inference dequantizes with
//                        the plain per-channel s, z (seed 000, "inference stage"), so nothing extra is stored.
//                        α = exp(a / L) (L = half the code range) and β = b · mean step keep the learned a, b in
//                        units of the quantization step; α stays positive; starts at α = 1, β = 0, i.e. at RTN.
//
// Both install their hard result into a SimQuant (SimQuant::set_quantized_weight).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "quant/quantizer.h"
#include "sim/sim_quant.h"

namespace catq {

class WeightParam {
 public:
  virtual ~WeightParam() = default;
  // The quantized weight in the layer's weight shape; differentiable in parameters() unless `hard`.
  virtual at::Tensor weight(bool hard) const = 0;
  virtual std::vector<at::Tensor> parameters() const = 0;
  // Extra loss term (AdaRound's rounding regulariser at exponent beta); undefined when none.
  virtual at::Tensor regularizer(double beta) const { return {}; }
  // Installs the hard result as the layer's integer weights.
  virtual void commit(SimQuant& sq, const std::string& layer) const = 0;
};

// w: the layer's FP weight (QuantContext layout); p: its uniform weight params (scale fixed from here on).
std::unique_ptr<WeightParam> make_adaround_weight(const at::Tensor& w, const QuantParams& p);
std::unique_ptr<WeightParam> make_cluster_affine_weight(const at::Tensor& w, const QuantParams& p, int64_t clusters);

}  // namespace catq

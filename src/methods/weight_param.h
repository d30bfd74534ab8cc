// Learnable parameterisations of one layer's quantized weight, optimised by the reconstruction engine (recon.h).
//
//   AdaRoundWeight       Ŵ = s·(clamp(⌊W/s⌋ + h(V) + z, qmin, qmax) − z), h(V) = clamp(σ(V)(ζ−γ) + γ, 0, 1),
//                        ζ = 1.1, γ = −0.1; V starts where h(V) = W/s − ⌊W/s⌋ (hard rounding = nearest).
//                        Regulariser Σ(1 − |2h(V) − 1|^β). Hard: h = [V ≥ 0].
//   ClusterAffineWeight  seed 000's weight-cluster affine: the values of W are k-means clustered (1-D, K
//                        clusters per tensor); cluster m gets (α_m, β_m), w' = α_m·w + β_m is quantized with the
//                        layer's uniform quantizer (clipped STE through rounding) and mapped back,
//                        ŵ = (s·(q − z) − β_m) / α_m. α = exp(a) keeps it positive; starts at α = 1, β = 0 (RTN).
//                        Stored: the codes q, a cluster index per weight (⌈log2 K⌉ bits) and K (α, β) pairs.
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
std::unique_ptr<WeightParam> make_cluster_affine_weight(const at::Tensor& w, const QuantParams& p, int64_t clusters,
                                                        uint64_t seed);

// ŵ of the weight-cluster affine method from stored data: codes q (int), params p, cluster index per weight
// (int, same shape), alpha and beta [K]. Error(Format) for inconsistent shapes or indices.
at::Tensor dequantize_cluster_affine(const at::Tensor& q, const QuantParams& p, const at::Tensor& clusters,
                                     const at::Tensor& alpha, const at::Tensor& beta, const std::string& where);

}  // namespace catq

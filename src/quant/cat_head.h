// The CAT logit head (cluster-based affine transformation of a quantized classifier's logits; methods.md §3): the
// data a .catq file stores and its inference. Fitting and selection are methods/cnn/cat.h.
//
// Inference: project z_LQ, pick the nearest centroid k*, z̃ = (1 − α)·z_LQ + α·(γ_k* ⊙ z_LQ + β_k*).
// K = 1 is "plain affine" (one per-class linear regression for all samples). α = 0 is no correction.
//
// Layout (all float32, row-major): pca_mean [C], pca_basis [C, d] (columns = components; d = C and the identity
// when PCA is off), centroids [K, d], gamma [K, C], beta [K, C].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace catq {

struct CatHead {
  int64_t k = 1, classes = 0, dims = 0;  // dims = projected dimension d
  double alpha = 0.4;
  bool pca = false;
  at::Tensor pca_mean, pca_basis, centroids, gamma, beta;
  std::vector<int64_t> cluster_sizes;  // fitting points per cluster (reporting only)

  // [N, C] logits -> cluster index per row (int64 [N]).
  at::Tensor assign(const at::Tensor& z_lq) const;
  // [N, C] logits -> corrected logits. Error(Data) when C differs from the head's classes.
  at::Tensor apply(const at::Tensor& z_lq) const;
  at::Tensor apply(const at::Tensor& z_lq, double alpha) const;
  // Stored numbers: K·C γ + K·C β + K·d centroids + PCA mean and basis when PCA is on.
  int64_t extra_params() const;
  // Multiply-adds per image at inference: projection C·d (PCA), distances K·d, correction 2·C.
  int64_t macs_per_image() const;
  // Error(Format) naming `where` when shapes are inconsistent (used by the file reader).
  void validate(const std::string& where) const;
};

}  // namespace catq

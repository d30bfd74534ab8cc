// CAT — cluster-based affine transformation of a quantized classifier's logits (methods.md §3, arXiv 2509.26277).
//
// Fitting (closed form, no gradients), from N fitting points (one per image):
//   1. Z_LQ, Z_FP ∈ R^{N×C}: logits of the low-bit and the FP model on the same images.
//   2. Optional PCA of Z_LQ to d dims (used only to cluster).
//   3. k-means (k-means++ init, Euclidean, seeded) of the projected Z_LQ into K clusters.
//   4. Per cluster k and class c, ordinary least squares of z_FP,c on z_LQ,c over the cluster's points:
//        γ_kc = Cov(z_LQ,c, z_FP,c) / max(Var(z_LQ,c), 1e-8),  β_kc = mean(z_FP,c) − γ_kc · mean(z_LQ,c)
//      (population moments); an empty cluster keeps γ = 1, β = 0.
// The head itself (data, inference, layout) is quant/cat_head.h; this file fits and selects it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "quant/cat_head.h"

namespace catq {

struct CatFitOptions {
  int64_t k = 64;           // clusters (paper: 64); K > N is an error
  double alpha = 0.4;       // blend (paper default)
  int64_t pca_dims = 0;     // 0 = no PCA; otherwise 1..C (paper: 50 of 1000 ImageNet classes)
  int kmeans_iters = 100;   // Lloyd iterations (stops early when assignments settle)
  uint64_t seed = 0;        // k-means++ seeding
};

// Error(Data) for mismatched shapes, non-finite logits, or fewer points than clusters; Error(Config) for bad options.
CatHead fit_cat(const at::Tensor& z_lq, const at::Tensor& z_fp, const CatFitOptions& o);

// ---- Selection of K and α on fitting data only (never the evaluation split) ------------------------------------
// Cross-validation: points are split into `folds` folds by their group (the source image, so augmented copies of
// one image stay together); for every K in ks the head is fitted on the other folds and every α in alphas is
// scored on the held-out fold. Score "accuracy": top-1 against labels (ties broken by lower KL);
// "kl": KL(softmax(z_FP) ‖ softmax(z̃)) (lower is better). α = 0 (no correction) is always a candidate, so the
// selection can decline CAT. The refit on all points is the caller's (fit_cat with the chosen K, α).
struct CatSelectOptions {
  std::vector<int64_t> ks = {1, 4, 8, 16, 32, 64};
  std::vector<double> alphas = {0.0, 0.2, 0.4, 0.6, 0.8, 1.0};
  int folds = 5;
  std::string metric = "accuracy";  // or "kl"
  int64_t pca_dims = 0;
  uint64_t seed = 0;
};
struct CatCandidate {
  int64_t k = 0;
  double alpha = 0;
  double accuracy = 0, kl = 0;  // held-out, pooled over folds
};
struct CatSelection {
  int64_t k = 1;
  double alpha = 0;
  std::vector<CatCandidate> table;  // every (K, α) scored
};
// groups: int64 [N] source id per point (or undefined: every point its own group); labels: int64 [N].
CatSelection select_cat(const at::Tensor& z_lq, const at::Tensor& z_fp, const at::Tensor& labels,
                        const at::Tensor& groups, const CatSelectOptions& o);

}  // namespace catq

// k-means (Lloyd's algorithm), the one implementation every method uses, in its two shapes:
//   kmeans_rows  1-D per row, weighted, quantile initialisation, centres kept sorted (nearest centre by the
//                midpoints): the codebooks of k-means weight quantization, one per row or per tensor, batched.
//   kmeans_pp    multivariate rows of x [N, D], k-means++ seeding, double precision: CAT's logit clusters.
// Both stop early when an iteration changes nothing.
#pragma once
#include <cstdint>

#include <ATen/ATen.h>

namespace catq {

// ‖x_i − c_k‖² for x [N, D], c [K, D] -> [N, K] (clamped at 0).
at::Tensor squared_distances(const at::Tensor& x, const at::Tensor& c);
// Weighted 1-D k-means per row: data/importance [R, M] → sorted centers [R, K]. Error(Config) for bad input.
at::Tensor kmeans_rows(const at::Tensor& data, int64_t k, int iters, const at::Tensor& importance = {});
// k-means with k-means++ seeding on rows of x [N, D]; returns centroids [K, D] (float) and fills `assign`
// (int64 [N]). Error(Data) when k is not in 1..N.
at::Tensor kmeans_pp(const at::Tensor& x, int64_t k, int iters, uint64_t seed, at::Tensor* assign = nullptr);

}  // namespace catq

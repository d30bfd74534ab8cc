#include "quant/kmeans.h"

#include <algorithm>

#include "core/error.h"
#include "quant/quantizer.h"

namespace catq {

at::Tensor squared_distances(const at::Tensor& x, const at::Tensor& c) {
  // ‖x_i − c_k‖² for x [N, D], c [K, D] -> [N, K]
  return (x.square().sum(1, true) - 2 * at::matmul(x, c.t()) + c.square().sum(1).unsqueeze(0)).clamp_min(0);
}

at::Tensor kmeans_rows(const at::Tensor& data_in, int64_t k, int iters, const at::Tensor& importance) {
  at::NoGradGuard ng;
  at::Tensor data = data_in.to(at::kFloat).contiguous();
  CATQ_CHECK(data.dim() == 2 && data.size(1) > 0, Config, "kmeans: expected non-empty [rows, values] data");
  CATQ_CHECK(k >= 1, Config, "kmeans: need at least one cluster");
  at::Tensor w = importance.defined() ? importance.to(at::kFloat).reshape(data.sizes()).contiguous()
                                      : at::ones_like(data);
  CATQ_CHECK(!importance.defined() || (w.ge(0).all().item<bool>() && at::isfinite(w).all().item<bool>()), Config,
             "kmeans: importance weights must be finite and >= 0");
  const int64_t m = data.size(1);
  // Quantile initialisation: deterministic and already close to Lloyd-Max for unimodal data.
  at::Tensor sorted = std::get<0>(data.sort(1));
  at::Tensor pos = ((at::arange(k, data.options()) + 0.5) * (static_cast<double>(m) / k)).floor().clamp(0, m - 1);
  at::Tensor centers = sorted.index_select(1, pos.to(at::kLong)).contiguous();
  for (int it = 0; it < iters && k > 1; ++it) {
    at::Tensor mid = ((centers.slice(1, 1) + centers.slice(1, 0, k - 1)) * 0.5).contiguous();
    at::Tensor idx = at::searchsorted(mid, data);
    at::Tensor sum = at::zeros_like(centers).scatter_add_(1, idx, w * data);
    at::Tensor cnt = at::zeros_like(centers).scatter_add_(1, idx, w);
    at::Tensor next = at::where(cnt > 0, sum / cnt.clamp_min(1e-30), centers);
    next = std::get<0>(next.sort(1)).contiguous();
    bool done = at::equal(next, centers);
    centers = next;
    if (done) break;
  }
  return centers;
}

at::Tensor kmeans_pp(const at::Tensor& x_in, int64_t k, int iters, uint64_t seed, at::Tensor* assign_out) {
  at::Tensor x = x_in.to(at::kDouble).contiguous();
  const int64_t n = x.size(0);
  CATQ_CHECK(k >= 1 && k <= n, Data, "k-means: {} clusters need at least as many points, got {}", k, n);
  at::Generator gen = make_generator(seed);
  // k-means++: first centre uniform, then proportional to the squared distance to the nearest chosen centre.
  std::vector<int64_t> chosen;
  chosen.push_back(at::randint(n, {1}, gen, at::TensorOptions().dtype(at::kLong)).item<int64_t>());
  at::Tensor d2 = squared_distances(x, x.index_select(0, at::tensor(chosen))).squeeze(1);
  for (int64_t c = 1; c < k; ++c) {
    const double total = d2.sum().item<double>();
    int64_t pick;
    if (total <= 0) {
      pick = at::randint(n, {1}, gen, at::TensorOptions().dtype(at::kLong)).item<int64_t>();
    } else {
      const double u = at::rand({1}, gen, at::TensorOptions().dtype(at::kDouble)).item<double>() * total;
      at::Tensor cum = d2.cumsum(0);
      pick = std::min<int64_t>(at::searchsorted(cum, at::tensor({u}, at::kDouble), false, true).item<int64_t>(), n - 1);
    }
    chosen.push_back(pick);
    d2 = at::minimum(d2, squared_distances(x, x.index_select(0, at::tensor({pick}))).squeeze(1));
  }
  at::Tensor centers = x.index_select(0, at::tensor(chosen)).clone();
  at::Tensor assign = squared_distances(x, centers).argmin(1);
  for (int it = 0; it < iters; ++it) {
    at::Tensor sums = at::zeros({k, x.size(1)}, x.options()).index_add_(0, assign, x);
    at::Tensor counts = at::zeros({k}, x.options()).index_add_(0, assign, at::ones({n}, x.options()));
    at::Tensor nonempty = counts > 0;
    centers = at::where(nonempty.unsqueeze(1), sums / counts.clamp_min(1).unsqueeze(1), centers);
    at::Tensor next = squared_distances(x, centers).argmin(1);
    const bool settled = next.equal(assign);
    assign = next;
    if (settled) break;
  }
  if (assign_out) *assign_out = assign;
  return centers.to(at::kFloat);
}

}  // namespace catq

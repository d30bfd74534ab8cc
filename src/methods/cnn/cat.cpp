#include "methods/cnn/cat.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "eval/classification.h"
#include "data/dataset.h"
#include "quant/kmeans.h"
#include "quant/quantizer.h"

namespace catq {

namespace {

void check_logits(const at::Tensor& z_lq, const at::Tensor& z_fp) {
  CATQ_CHECK(z_lq.defined() && z_fp.defined() && z_lq.dim() == 2 && z_lq.sizes() == z_fp.sizes(), Data,
             "CAT: LQ and FP logits must both be [N, C] with the same shape, got [{}] and [{}]",
             z_lq.defined() ? fmt::format("{}", fmt::join(z_lq.sizes(), ",")) : "none",
             z_fp.defined() ? fmt::format("{}", fmt::join(z_fp.sizes(), ",")) : "none");
  CATQ_CHECK(at::isfinite(z_lq).all().item<bool>() && at::isfinite(z_fp).all().item<bool>(), Data,
             "CAT: fitting logits contain NaN or Inf");
}

}  // namespace

CatHead fit_cat(const at::Tensor& z_lq_in, const at::Tensor& z_fp_in, const CatFitOptions& o) {
  check_logits(z_lq_in, z_fp_in);
  const int64_t n = z_lq_in.size(0), c = z_lq_in.size(1);
  CATQ_CHECK(o.k >= 1, Config, "CAT: K must be >= 1, got {}", o.k);
  CATQ_CHECK(o.k <= n, Data, "CAT: {} clusters need at least {} fitting images, got {}", o.k, o.k, n);
  CATQ_CHECK(o.alpha >= 0 && o.alpha <= 1, Config, "CAT: alpha {} is outside [0, 1]", o.alpha);
  CATQ_CHECK(o.pca_dims >= 0 && o.pca_dims <= c, Config, "CAT: PCA dims {} outside 0..{} (the number of classes)",
             o.pca_dims, c);
  at::Tensor z_lq = z_lq_in.to(at::kDouble), z_fp = z_fp_in.to(at::kDouble);
  CatHead h;
  h.k = o.k;
  h.classes = c;
  h.alpha = o.alpha;
  h.pca = o.pca_dims > 0;
  h.pca_mean = z_lq.mean(0);
  if (h.pca) {
    at::Tensor centred = z_lq - h.pca_mean;
    at::Tensor cov = at::matmul(centred.t(), centred) / static_cast<double>(std::max<int64_t>(n - 1, 1));
    auto [evals, evecs] = at::linalg_eigh(cov);  // ascending
    h.pca_basis = evecs.flip({1}).slice(1, 0, o.pca_dims).contiguous();
    h.dims = o.pca_dims;
  } else {
    h.pca_mean = at::zeros({c}, z_lq.options());
    h.pca_basis = at::eye(c, z_lq.options());
    h.dims = c;
  }
  at::Tensor proj = at::matmul(z_lq - h.pca_mean, h.pca_basis);
  at::Tensor assign;
  h.centroids = kmeans_pp(proj, o.k, o.kmeans_iters, o.seed, &assign);
  h.gamma = at::ones({o.k, c}, at::kDouble);
  h.beta = at::zeros({o.k, c}, at::kDouble);
  h.cluster_sizes.assign(o.k, 0);
  for (int64_t j = 0; j < o.k; ++j) {
    at::Tensor idx = (assign == j).nonzero().squeeze(1);
    h.cluster_sizes[j] = idx.numel();
    if (idx.numel() == 0) continue;
    at::Tensor a = z_lq.index_select(0, idx), b = z_fp.index_select(0, idx);
    at::Tensor ma = a.mean(0), mb = b.mean(0);
    at::Tensor cov = ((a - ma) * (b - mb)).mean(0), var = (a - ma).square().mean(0).clamp_min(1e-8);
    at::Tensor g = cov / var;
    h.gamma[j] = g;
    h.beta[j] = mb - g * ma;
  }
  h.pca_mean = h.pca_mean.to(at::kFloat);
  h.pca_basis = h.pca_basis.to(at::kFloat);
  h.gamma = h.gamma.to(at::kFloat);
  h.beta = h.beta.to(at::kFloat);
  return h;
}

CatSelection select_cat(const at::Tensor& z_lq, const at::Tensor& z_fp, const at::Tensor& labels,
                        const at::Tensor& groups_in, const CatSelectOptions& o) {
  check_logits(z_lq, z_fp);
  const int64_t n = z_lq.size(0);
  CATQ_CHECK(labels.defined() && labels.numel() == n, Data, "CAT selection: {} labels for {} points", 
             labels.defined() ? labels.numel() : 0, n);
  CATQ_CHECK(o.folds >= 2, Config, "CAT selection: need at least 2 folds, got {}", o.folds);
  CATQ_CHECK(o.metric == "accuracy" || o.metric == "kl", Config, "CAT selection: metric '{}', expected accuracy or kl",
             o.metric);
  CATQ_CHECK(!o.ks.empty() && !o.alphas.empty(), Config, "CAT selection: empty K or alpha grid");
  at::Tensor groups = groups_in.defined() ? groups_in.to(at::kLong) : at::arange(n, at::kLong);
  // Fold of each group: a seeded permutation of the distinct groups, dealt round-robin.
  at::Tensor uniq = std::get<0>(at::_unique(groups, /*sorted=*/true));
  const int64_t ng = uniq.numel();
  CATQ_CHECK(ng >= o.folds, Data, "CAT selection: {} source images are fewer than {} folds", ng, o.folds);
  std::vector<int64_t> perm = seeded_permutation(ng, o.seed + 7);
  at::Tensor fold_of_group = at::empty({ng}, at::kLong);
  for (int64_t i = 0; i < ng; ++i) fold_of_group[perm[i]] = i % o.folds;
  at::Tensor fold = fold_of_group.index_select(0, at::searchsorted(uniq, groups));

  std::vector<double> alphas = o.alphas;
  if (std::find(alphas.begin(), alphas.end(), 0.0) == alphas.end()) alphas.insert(alphas.begin(), 0.0);
  CatSelection sel;
  for (int64_t k : o.ks) {
    std::vector<int64_t> correct(alphas.size(), 0);
    std::vector<double> kl(alphas.size(), 0.0);
    bool feasible = true;
    for (int f = 0; f < o.folds && feasible; ++f) {
      at::Tensor tr = (fold != f).nonzero().squeeze(1), te = (fold == f).nonzero().squeeze(1);
      if (tr.numel() < k) { feasible = false; break; }
      CatFitOptions fo;
      fo.k = k;
      fo.pca_dims = o.pca_dims;
      fo.seed = o.seed;
      CatHead h = fit_cat(z_lq.index_select(0, tr), z_fp.index_select(0, tr), fo);
      at::Tensor zq = z_lq.index_select(0, te), zf = z_fp.index_select(0, te), y = labels.index_select(0, te);
      for (size_t ai = 0; ai < alphas.size(); ++ai) {
        at::Tensor zc = h.apply(zq, alphas[ai]);
        correct[ai] += topk_correct(zc, y, 1);
        kl[ai] += kl_divergence(zf, zc) * static_cast<double>(te.numel());
      }
    }
    if (!feasible) continue;
    for (size_t ai = 0; ai < alphas.size(); ++ai)
      sel.table.push_back({k, alphas[ai], static_cast<double>(correct[ai]) / n, kl[ai] / n});
  }
  CATQ_CHECK(!sel.table.empty(), Data, "CAT selection: every K in the grid exceeds the {} points of a training fold", n);
  const CatCandidate* best = nullptr;
  for (const auto& c : sel.table) {
    if (!best) { best = &c; continue; }
    bool better = o.metric == "kl" ? c.kl < best->kl
                                   : (c.accuracy > best->accuracy || (c.accuracy == best->accuracy && c.kl < best->kl));
    if (better) best = &c;
  }
  sel.k = best->k;
  sel.alpha = best->alpha;
  return sel;
}

}  // namespace catq

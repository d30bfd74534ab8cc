#include "methods/cat.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "eval/classification.h"
#include "io/dataset.h"
#include "quant/quantizer.h"

namespace catq {

namespace {

at::Tensor sq_dist(const at::Tensor& x, const at::Tensor& c) {
  // ‖x_i − c_k‖² for x [N, D], c [K, D] -> [N, K]
  return (x.square().sum(1, true) - 2 * at::matmul(x, c.t()) + c.square().sum(1).unsqueeze(0)).clamp_min(0);
}

void check_logits(const at::Tensor& z_lq, const at::Tensor& z_fp) {
  CATQ_CHECK(z_lq.defined() && z_fp.defined() && z_lq.dim() == 2 && z_lq.sizes() == z_fp.sizes(), Data,
             "CAT: LQ and FP logits must both be [N, C] with the same shape, got [{}] and [{}]",
             z_lq.defined() ? fmt::format("{}", fmt::join(z_lq.sizes(), ",")) : "none",
             z_fp.defined() ? fmt::format("{}", fmt::join(z_fp.sizes(), ",")) : "none");
  CATQ_CHECK(at::isfinite(z_lq).all().item<bool>() && at::isfinite(z_fp).all().item<bool>(), Data,
             "CAT: fitting logits contain NaN or Inf");
}

}  // namespace

at::Tensor kmeans_pp(const at::Tensor& x_in, int64_t k, int iters, uint64_t seed, at::Tensor* assign_out) {
  at::Tensor x = x_in.to(at::kDouble).contiguous();
  const int64_t n = x.size(0);
  CATQ_CHECK(k >= 1 && k <= n, Data, "k-means: {} clusters need at least as many points, got {}", k, n);
  at::Generator gen = make_generator(seed);
  // k-means++: first centre uniform, then proportional to the squared distance to the nearest chosen centre.
  std::vector<int64_t> chosen;
  chosen.push_back(at::randint(n, {1}, gen, at::TensorOptions().dtype(at::kLong)).item<int64_t>());
  at::Tensor d2 = sq_dist(x, x.index_select(0, at::tensor(chosen))).squeeze(1);
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
    d2 = at::minimum(d2, sq_dist(x, x.index_select(0, at::tensor({pick}))).squeeze(1));
  }
  at::Tensor centers = x.index_select(0, at::tensor(chosen)).clone();
  at::Tensor assign = sq_dist(x, centers).argmin(1);
  for (int it = 0; it < iters; ++it) {
    at::Tensor sums = at::zeros({k, x.size(1)}, x.options()).index_add_(0, assign, x);
    at::Tensor counts = at::zeros({k}, x.options()).index_add_(0, assign, at::ones({n}, x.options()));
    at::Tensor nonempty = counts > 0;
    centers = at::where(nonempty.unsqueeze(1), sums / counts.clamp_min(1).unsqueeze(1), centers);
    at::Tensor next = sq_dist(x, centers).argmin(1);
    const bool settled = next.equal(assign);
    assign = next;
    if (settled) break;
  }
  if (assign_out) *assign_out = assign;
  return centers.to(at::kFloat);
}

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

at::Tensor CatHead::assign(const at::Tensor& z) const {
  at::Tensor proj = at::matmul(z.to(at::kFloat) - pca_mean, pca_basis);
  return sq_dist(proj, centroids).argmin(1);
}

at::Tensor CatHead::apply(const at::Tensor& z) const { return apply(z, alpha); }

at::Tensor CatHead::apply(const at::Tensor& z, double a) const {
  CATQ_CHECK(z.dim() == 2 && z.size(1) == classes, Data, "CAT head: logits [{}] do not match the head's {} classes",
             fmt::join(z.sizes(), ","), classes);
  if (a == 0) return z;
  at::Tensor zf = z.to(at::kFloat);
  at::Tensor k = assign(zf);
  at::Tensor corrected = gamma.index_select(0, k) * zf + beta.index_select(0, k);
  return (1 - a) * zf + a * corrected;
}

int64_t CatHead::extra_params() const { return 2 * k * classes + k * dims + (pca ? classes + classes * dims : 0); }

int64_t CatHead::macs_per_image() const { return (pca ? classes * dims : 0) + k * dims + 2 * classes; }

void CatHead::validate(const std::string& where) const {
  auto shape_is = [](const at::Tensor& t, std::vector<int64_t> s) { return t.defined() && t.sizes().vec() == s; };
  CATQ_CHECK(k >= 1 && classes >= 1 && dims >= 1 && dims <= classes, Format,
             "{}: CAT head has K={}, classes={}, dims={}; expected K >= 1 and 1 <= dims <= classes", where, k, classes, dims);
  CATQ_CHECK(alpha >= 0 && alpha <= 1, Format, "{}: CAT head alpha {} outside [0, 1]", where, alpha);
  CATQ_CHECK(shape_is(pca_mean, {classes}) && shape_is(pca_basis, {classes, dims}) && shape_is(centroids, {k, dims}) &&
                 shape_is(gamma, {k, classes}) && shape_is(beta, {k, classes}),
             Format, "{}: CAT head tensors have inconsistent shapes for K={}, classes={}, dims={}", where, k, classes, dims);
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

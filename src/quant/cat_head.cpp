#include "quant/cat_head.h"

#include "core/error.h"
#include "quant/kmeans.h"

namespace catq {

at::Tensor CatHead::assign(const at::Tensor& z) const {
  at::Tensor proj = at::matmul(z.to(at::kFloat) - pca_mean, pca_basis);
  return squared_distances(proj, centroids).argmin(1);
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

}  // namespace catq

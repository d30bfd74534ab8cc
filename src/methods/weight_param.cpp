#include "methods/weight_param.h"

#include <cmath>

#include "core/error.h"
#include "methods/cat.h"

namespace catq {

namespace {

constexpr double kZeta = 1.1, kGamma = -0.1;

at::Tensor rectified_sigmoid(const at::Tensor& v) { return (at::sigmoid(v) * (kZeta - kGamma) + kGamma).clamp(0, 1); }

class AdaRoundWeight : public WeightParam {
 public:
  AdaRoundWeight(const at::Tensor& w, const QuantParams& p) : p_(p), shape_(w.sizes().vec()) {
    CATQ_CHECK(p.scheme == Scheme::Uniform, Config, "AdaRound: needs a uniform weight quantizer, got {}",
               to_string(p.scheme));
    at::NoGradGuard ng;
    at::Tensor ratio = group_view(w.contiguous().to(at::kFloat), p) / p.scale;
    floor_ = at::floor(ratio);
    at::Tensor rest = (ratio - floor_).clamp(1e-4, 1 - 1e-4);
    v_ = (-at::log((kZeta - kGamma) / (rest - kGamma) - 1)).detach().requires_grad_(true);
    z_ = p.zero_point.to(at::kFloat);
  }
  at::Tensor codes(const at::Tensor& h) const {
    return (floor_ + h + z_).clamp(static_cast<double>(p_.qmin), static_cast<double>(p_.qmax));
  }
  at::Tensor weight(bool hard) const override {
    at::Tensor h = hard ? (v_ >= 0).to(at::kFloat) : rectified_sigmoid(v_);
    return ((codes(h) - z_) * p_.scale).reshape(shape_);
  }
  std::vector<at::Tensor> parameters() const override { return {v_}; }
  at::Tensor regularizer(double beta) const override {
    return (1 - (2 * rectified_sigmoid(v_) - 1).abs().pow(beta)).sum();
  }
  void commit(SimQuant& sq, const std::string& layer) const override {
    at::NoGradGuard ng;
    sq.set_quantized_weight(layer, codes((v_ >= 0).to(at::kFloat)).reshape(shape_).to(at::kInt), p_);
  }

 private:
  QuantParams p_;
  std::vector<int64_t> shape_;
  at::Tensor floor_, v_, z_;
};

class ClusterAffineWeight : public WeightParam {
 public:
  ClusterAffineWeight(const at::Tensor& w, const QuantParams& p, int64_t k, uint64_t seed) : p_(p), shape_(w.sizes().vec()) {
    CATQ_CHECK(p.scheme == Scheme::Uniform, Config, "weight-cluster affine: needs a uniform weight quantizer, got {}",
               to_string(p.scheme));
    CATQ_CHECK(k >= 1 && k <= 256, Config, "weight-cluster affine: clusters {} outside 1..256", k);
    at::NoGradGuard ng;
    w_ = w.detach().contiguous().to(at::kFloat);
    const int64_t n = w_.numel();
    CATQ_CHECK(n >= k, Data, "weight-cluster affine: a weight of {} values cannot hold {} clusters", n, k);
    // 1-D k-means of the values: sorted quantile init is deterministic and good in one dimension.
    at::Tensor rows = w_.reshape({1, -1});
    at::Tensor centers = kmeans_rows(rows, k, 50).reshape({k});
    clusters_ = (w_.reshape({-1, 1}) - centers.reshape({1, k})).abs().argmin(1).reshape(shape_);
    log_alpha_ = at::zeros({k}).requires_grad_(true);
    beta_ = at::zeros({k}).requires_grad_(true);
    k_ = k;
    (void)seed;
  }
  // Codes (float, differentiable through a clipped STE) of w' = α_m w + β_m, and the α, β per element.
  at::Tensor forward_codes(at::Tensor* a_el, at::Tensor* b_el) const {
    at::Tensor alpha = log_alpha_.exp();
    *a_el = alpha.index_select(0, clusters_.reshape({-1})).reshape(shape_);
    *b_el = beta_.index_select(0, clusters_.reshape({-1})).reshape(shape_);
    at::Tensor wt = group_view(*a_el * w_ + *b_el, p_);
    at::Tensor v = wt / p_.scale;
    at::Tensor z = p_.zero_point.to(at::kFloat);
    return (v + (at::round(v) - v).detach() + z).clamp(static_cast<double>(p_.qmin), static_cast<double>(p_.qmax));
  }
  at::Tensor weight(bool hard) const override {
    at::Tensor a, b;
    at::Tensor q = forward_codes(&a, &b);
    if (hard) q = q.detach();
    at::Tensor deq = ((q - p_.zero_point.to(at::kFloat)) * p_.scale).reshape(shape_);
    return (deq - b) / a;
  }
  std::vector<at::Tensor> parameters() const override { return {log_alpha_, beta_}; }
  void commit(SimQuant& sq, const std::string& layer) const override {
    at::NoGradGuard ng;
    at::Tensor a, b;
    at::Tensor q = forward_codes(&a, &b).round().reshape(shape_).to(at::kInt);
    at::Tensor alpha = log_alpha_.exp().detach().clone(), beta = beta_.detach().clone();
    at::Tensor deq = dequantize_cluster_affine(q, p_, clusters_, alpha, beta, layer);
    WeightTransform t;
    t.kind = "cluster_affine";
    t.tensors = {{"clusters", clusters_.to(at::kInt)}, {"alpha", alpha}, {"beta", beta}};
    int64_t index_bits = 0;
    while ((int64_t{1} << index_bits) < k_) ++index_bits;
    t.extra_bits = static_cast<uint64_t>(w_.numel()) * static_cast<uint64_t>(index_bits) + 64ull * static_cast<uint64_t>(k_);
    sq.set_quantized_weight(layer, q, p_, deq, std::move(t));
  }

 private:
  QuantParams p_;
  std::vector<int64_t> shape_;
  at::Tensor w_, clusters_, log_alpha_, beta_;
  int64_t k_ = 1;
};

}  // namespace

std::unique_ptr<WeightParam> make_adaround_weight(const at::Tensor& w, const QuantParams& p) {
  return std::make_unique<AdaRoundWeight>(w, p);
}

std::unique_ptr<WeightParam> make_cluster_affine_weight(const at::Tensor& w, const QuantParams& p, int64_t clusters,
                                                        uint64_t seed) {
  return std::make_unique<ClusterAffineWeight>(w, p, clusters, seed);
}

at::Tensor dequantize_cluster_affine(const at::Tensor& q, const QuantParams& p, const at::Tensor& clusters,
                                     const at::Tensor& alpha, const at::Tensor& beta, const std::string& where) {
  CATQ_CHECK(clusters.defined() && clusters.sizes() == q.sizes(), Format,
             "{}: cluster indices must have the weight's shape [{}]", where, fmt::join(q.sizes(), ","));
  CATQ_CHECK(alpha.defined() && beta.defined() && alpha.dim() == 1 && alpha.sizes() == beta.sizes() && alpha.numel() > 0,
             Format, "{}: cluster alpha / beta must be two vectors of the same length", where);
  const int64_t k = alpha.numel();
  at::Tensor c = clusters.to(at::kLong).reshape({-1});
  CATQ_CHECK(c.numel() == 0 || (c.min().item<int64_t>() >= 0 && c.max().item<int64_t>() < k), Format,
             "{}: cluster index outside 0..{}", where, k - 1);
  CATQ_CHECK((alpha > 0).all().item<bool>() && at::isfinite(alpha).all().item<bool>() &&
                 at::isfinite(beta).all().item<bool>(),
             Format, "{}: cluster alpha must be positive and finite", where);
  at::Tensor deq = dequantize(q, p);
  at::Tensor a = alpha.to(at::kFloat).index_select(0, c).reshape(q.sizes());
  at::Tensor b = beta.to(at::kFloat).index_select(0, c).reshape(q.sizes());
  return (deq - b) / a;
}

}  // namespace catq

#include "methods/cnn/weight_param.h"

#include <cmath>

#include "core/error.h"
#include "quant/kmeans.h"

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
  ClusterAffineWeight(const at::Tensor& w, const QuantParams& p, int64_t k) : p_(p), shape_(w.sizes().vec()) {
    CATQ_CHECK(p.scheme == Scheme::Uniform, Config, "weight-cluster affine: needs a uniform weight quantizer, got {}",
               to_string(p.scheme));
    CATQ_CHECK(k >= 1 && k <= 256, Config, "weight-cluster affine: clusters {} outside 1..256", k);
    at::NoGradGuard ng;
    w_ = w.detach().contiguous().to(at::kFloat);
    CATQ_CHECK(w_.numel() >= k, Data, "weight-cluster affine: a weight of {} values cannot hold {} clusters", w_.numel(), k);
    // 1-D k-means of the values (quantile init: deterministic, and good in one dimension).
    at::Tensor centers = kmeans_rows(w_.reshape({1, -1}), k, 50).reshape({k});
    clusters_ = (w_.reshape({-1, 1}) - centers.reshape({1, k})).abs().argmin(1);
    log_alpha_ = at::zeros({k}).requires_grad_(true);
    beta_ = at::zeros({k}).requires_grad_(true);
    z_ = p.zero_point.to(at::kFloat);
    // Parameters are in units of the quantization step, so one optimiser step moves a weight by about the same
    // fraction of a step at any bit width: α = exp(a / L) with L = half the code range (|w| reaches ~L steps),
    // β = b · mean step.
    levels_ = std::max<double>(1.0, static_cast<double>(p.qmax - p.qmin + 1) / 2.0);
    mean_step_ = p.scale.mean().item<double>();
  }
  // Codes of w' = α_m w + β_m (float, clipped STE through the rounding), in the group view.
  at::Tensor codes() const {
    at::Tensor a = (log_alpha_ / levels_).exp().index_select(0, clusters_).reshape(shape_);
    at::Tensor b = (beta_ * mean_step_).index_select(0, clusters_).reshape(shape_);
    at::Tensor v = group_view(a * w_ + b, p_) / p_.scale;
    return (v + (at::round(v) - v).detach() + z_).clamp(static_cast<double>(p_.qmin), static_cast<double>(p_.qmax));
  }
  at::Tensor weight(bool hard) const override {
    at::Tensor q = hard ? codes().detach() : codes();
    return ((q - z_) * p_.scale).reshape(shape_);
  }
  std::vector<at::Tensor> parameters() const override { return {log_alpha_, beta_}; }
  void commit(SimQuant& sq, const std::string& layer) const override {
    at::NoGradGuard ng;
    sq.set_quantized_weight(layer, codes().round().reshape(shape_).to(at::kInt), p_);
  }

 private:
  QuantParams p_;
  std::vector<int64_t> shape_;
  at::Tensor w_, clusters_, log_alpha_, beta_, z_;
  double levels_ = 1, mean_step_ = 1;
};

}  // namespace

std::unique_ptr<WeightParam> make_adaround_weight(const at::Tensor& w, const QuantParams& p) {
  return std::make_unique<AdaRoundWeight>(w, p);
}

std::unique_ptr<WeightParam> make_cluster_affine_weight(const at::Tensor& w, const QuantParams& p, int64_t clusters) {
  return std::make_unique<ClusterAffineWeight>(w, p, clusters);
}

}  // namespace catq

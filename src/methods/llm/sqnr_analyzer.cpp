#include "methods/llm/sqnr_analyzer.h"

#include <cmath>

#include "core/error.h"
#include "core/progress.h"

namespace catq {

namespace {

// Range r of each row of a [rows, d] matrix under a spec, and the interval count N.
at::Tensor row_range(const at::Tensor& x, const QuantSpec& s) {
  if (s.symmetric) return 2 * x.abs().amax(1);
  return x.amax(1) - x.amin(1);
}
double intervals(const QuantSpec& s) {
  return s.symmetric ? 2.0 * static_cast<double>(s.qmax()) : static_cast<double>(s.qmax() - s.qmin());
}

// Records up to `cap` input rows per linear layer.
class InputRecorder : public QuantContext {
 public:
  InputRecorder(size_t layers, int64_t cap, int64_t stride) : rows_(layers), cap_(cap), stride_(stride) {}
  at::Tensor weight(const LayerInfo&, const at::Tensor& w) override { return w; }
  at::Tensor input(const LayerInfo& l, const at::Tensor& x) override {
    at::Tensor r = x.detach().reshape({-1, x.size(-1)});
    if (stride_ > 1) r = r.slice(0, 0, r.size(0), stride_);
    auto& v = rows_.at(l.index);
    int64_t have = 0;
    for (const auto& t : v) have += t.size(0);
    if (have < cap_) v.push_back(r.slice(0, 0, cap_ - have).to(at::kFloat).clone());
    return x;
  }
  at::Tensor rows(size_t i) const { return rows_[i].empty() ? at::Tensor() : at::cat(rows_[i], 0); }

 private:
  std::vector<std::vector<at::Tensor>> rows_;
  int64_t cap_, stride_;
};

}  // namespace

QuantSpec sqnr_act_spec(int bits, bool symmetric) {
  QuantSpec s;
  s.bits = bits;
  s.granularity = Granularity::PerToken;
  s.symmetric = symmetric;
  s.is_signed = symmetric;
  return s;
}

QuantSpec sqnr_weight_spec(int bits, bool symmetric) {
  QuantSpec s;
  s.bits = bits;
  s.granularity = Granularity::PerChannel;
  s.axis = 0;
  s.symmetric = symmetric;
  s.is_signed = true;
  return s;
}

SqnrStats linear_sqnr(const at::Tensor& x_in, const at::Tensor& w_in, const QuantSpec& act, const QuantSpec& weight) {
  CATQ_CHECK(act.granularity == Granularity::PerToken && act.scheme == Scheme::Uniform, Config,
             "SQNR analysis: activations must be per-token uniform");
  CATQ_CHECK(weight.granularity == Granularity::PerChannel && weight.scheme == Scheme::Uniform, Config,
             "SQNR analysis: weights must be per-channel uniform");
  CATQ_CHECK(x_in.dim() == 2 && w_in.dim() == 2 && x_in.size(1) == w_in.size(1), Data,
             "SQNR analysis: inputs [{}] do not match weight [{}]", fmt::join(x_in.sizes(), ","), fmt::join(w_in.sizes(), ","));
  at::Tensor x = x_in.to(at::kDouble), w = w_in.to(at::kDouble);
  const double ex2 = x.square().sum(1).mean().item<double>();
  CATQ_CHECK(ex2 > 0, Data, "SQNR analysis: the inputs are all zero");
  SqnrStats s;
  s.tokens = x.size(0);
  at::Tensor y = at::matmul(x, w.t());
  const double signal = y.square().sum(1).mean().item<double>();
  const double wf2 = w.square().sum().item<double>();
  at::Tensor xq = fake_quantize(x_in.to(at::kFloat), compute_params(act, x_in.to(at::kFloat))).to(at::kDouble);
  QuantSpec ws = weight;
  ws.axis = 0;
  at::Tensor wq = fake_quantize(w_in.to(at::kFloat), compute_params(ws, w_in.to(at::kFloat))).to(at::kDouble);
  const double noise = (y - at::matmul(xq, wq.t())).square().sum(1).mean().item<double>();
  s.measured_db = noise > 0 ? to_db(signal / noise) : INFINITY;
  s.alignment = signal / (wf2 * ex2);
  s.act_concentration = ex2 / row_range(x, act).square().mean().item<double>();
  s.weight_concentration = wf2 / row_range(w, weight).square().sum().item<double>();
  // The two noises add: SQNR ≈ 12·A·(N_x²·C(x) ∥ N_w²·C(W)); with N_x = N_w this is the spec's 12·N²·(C(x) ∥ C(W))·A.
  const double nx = intervals(act), nw = intervals(weight);
  const double par = 1.0 / (1.0 / (nx * nx * s.act_concentration) + 1.0 / (nw * nw * s.weight_concentration));
  s.predicted_db = to_db(12.0 * par * s.alignment);
  // Best reachable alignment: singular values of W Σ_x^{1/2}.
  at::Tensor sigma = at::matmul(x.t(), x) / static_cast<double>(x.size(0));
  auto [evals, evecs] = at::linalg_eigh(sigma);
  at::Tensor root = at::matmul(evecs * evals.clamp_min(0).sqrt().unsqueeze(0), evecs.t());
  at::Tensor sv = at::linalg_svdvals(at::matmul(w, root));
  const double s1 = sv.sum().item<double>(), s2 = sv.square().sum().item<double>();
  s.best_alignment = s1 > 0 ? s2 / (s1 * s1) : 0;
  return s;
}

std::vector<SqnrStats> analyze_llama_sqnr(const LlamaModel& m, const at::Tensor& tokens, const QuantSpec& act,
                                          const QuantSpec& weight, int64_t max_tokens, int64_t batch) {
  CATQ_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.numel() > 0, Data, "SQNR analysis: no token windows");
  const auto infos = m.layer_infos();
  const int64_t total = tokens.numel();
  const int64_t stride = std::max<int64_t>(1, total / std::max<int64_t>(max_tokens, 1));
  InputRecorder rec(infos.size(), max_tokens, stride);
  m.bind(&rec);
  {
    at::NoGradGuard ng;
    for (int64_t i = 0; i < tokens.size(0); i += batch) m.forward(tokens.slice(0, i, i + batch), &rec);
  }
  std::vector<SqnrStats> out;
  Progress bar("SQNR", static_cast<int64_t>(infos.size()));
  for (size_t i = 0; i < infos.size(); ++i) {
    SqnrStats s = linear_sqnr(rec.rows(i), m.layer_weight(static_cast<int64_t>(i)), act, weight);
    s.layer = infos[i].name;
    out.push_back(s);
    bar.step();
  }
  bar.finish();
  return out;
}

}  // namespace catq

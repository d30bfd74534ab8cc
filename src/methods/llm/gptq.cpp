#include "methods/llm/gptq.h"

#include <cmath>

#include "core/error.h"

namespace catq {

namespace {

// Params of column j (original index) as [out] vectors.
struct ColumnParams {
  at::Tensor scale, zero;  // double [out, ncols_params]
  int64_t group = 0;       // 0 = per channel
  at::Tensor col(int64_t j, const at::Tensor& t) const { return t.select(1, group > 0 ? j / group : 0); }
};

// tr((W − Ŵ) H (W − Ŵ)ᵀ), a report figure: the [rows, in] x [in, in] product in fp32 (in double it cost as much as
// GPTQ itself on a 1B model's ffn_down and LM head), the sum in double.
double proxy(const at::Tensor& w, const at::Tensor& wq, const at::Tensor& h32) {
  const at::Tensor d = (w - wq).to(at::kFloat);
  return (at::matmul(d, h32) * d).sum(at::kDouble).item<double>();
}

}  // namespace

GptqResult gptq_quantize(const at::Tensor& w_in, const at::Tensor& h_in, const QuantSpec& spec_in, const GptqOptions& o) {
  CATQ_CHECK(w_in.dim() == 2 && h_in.dim() == 2 && h_in.size(0) == w_in.size(1) && h_in.size(1) == w_in.size(1), Data,
             "GPTQ: weight [{}] and Hessian [{}] do not fit", fmt::join(w_in.sizes(), ","), fmt::join(h_in.sizes(), ","));
  CATQ_CHECK(spec_in.enabled && spec_in.scheme == Scheme::Uniform &&
                 (spec_in.granularity == Granularity::PerChannel || spec_in.granularity == Granularity::PerGroup),
             Config, "GPTQ: needs a uniform per-channel or per-group weight quantizer, got {}", spec_in.str());
  CATQ_CHECK(o.damp >= 0 && o.block >= 1 && o.row_slice >= 1, Config,
             "GPTQ: damping must be >= 0, the block and the row slice >= 1");
  CATQ_CHECK(at::isfinite(h_in).all().item<bool>(), Data, "GPTQ: the Hessian has NaN or Inf entries");
  QuantSpec spec = spec_in;
  spec.axis = spec.granularity == Granularity::PerChannel ? 0 : 1;
  const int64_t out = w_in.size(0), in = w_in.size(1);
  if (spec.granularity == Granularity::PerGroup)
    CATQ_CHECK(in % spec.group_size == 0, Config, "GPTQ: group size {} does not divide {} columns", spec.group_size, in);

  at::Tensor h = h_in.to(at::kDouble).clone();
  const at::Tensor dead = h.diagonal() == 0;
  const bool any_dead = dead.any().item<bool>();
  if (any_dead) h.diagonal().masked_fill_(dead, 1.0);
  // The weight whose params are computed: dead inputs' columns zeroed (they are never seen).
  at::Tensor w32 = w_in.to(at::kFloat);
  if (any_dead) {
    w32 = w32.clone();
    w32.index_put_({at::indexing::Slice(), dead}, 0.0f);
  }
  GptqResult r;
  r.params = compute_params(spec, w32);
  const double qmin = static_cast<double>(r.params.qmin), qmax = static_cast<double>(r.params.qmax);
  const int64_t group = spec.granularity == Granularity::PerGroup ? spec.group_size : 0;
  const at::Tensor scale_all = r.params.scale.to(at::kDouble).reshape({out, -1});
  const at::Tensor zero_all = r.params.zero_point.to(at::kDouble).reshape({out, -1});

  at::Tensor perm = o.act_order ? at::argsort(h.diagonal(), 0, /*descending=*/true) : at::arange(in, at::kLong);
  const at::Tensor hp = h.index_select(0, perm).index_select(1, perm);
  const double mean_diag = hp.diagonal().mean().item<double>();
  at::Tensor u;
  double damp = o.damp;
  for (int attempt = 0;; ++attempt) {
    at::Tensor hd = hp + damp * mean_diag * at::eye(in, hp.options());
    auto [l, info] = at::linalg_cholesky_ex(hd);
    if (info.item<int>() == 0) {
      at::Tensor hinv = at::cholesky_inverse(l);
      auto [u2, info2] = at::linalg_cholesky_ex(hinv, /*upper=*/true);
      if (info2.item<int>() == 0) {
        u = u2;
        break;
      }
    }
    CATQ_CHECK(attempt < 3, Data, "GPTQ: the Hessian is not positive definite even with damping {} (too little or "
               "degenerate calibration data)", damp);
    damp = damp > 0 ? damp * 10 : 1e-4;
  }
  const std::vector<int64_t> order(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + in);
  const at::Tensor h32 = h.to(at::kFloat);
  const at::Tensor inv = at::argsort(perm);

  // Rows are independent given U: a big weight goes a slice of rows at a time (bounded double working set).
  r.codes = at::empty({out, in}, at::kInt);
  if (o.keep_dequantized) r.dequantized = at::empty({out, in}, at::kFloat);
  const int64_t rows_per = std::max<int64_t>(1, o.row_slice / std::max<int64_t>(in, 1));
  for (int64_t r0 = 0; r0 < out; r0 += rows_per) {
    const int64_t n = std::min(rows_per, out - r0);
    const at::Tensor w = w32.narrow(0, r0, n).to(at::kDouble);
    const at::Tensor sc = scale_all.narrow(0, r0, n), zc = zero_all.narrow(0, r0, n);
    auto quant_col = [&](const at::Tensor& col, int64_t j, at::Tensor* deq) {
      const at::Tensor s = sc.select(1, group > 0 ? j / group : 0), z = zc.select(1, group > 0 ? j / group : 0);
      at::Tensor q = (at::round(col / s) + z).clamp(qmin, qmax);
      *deq = s * (q - z);
      return q;
    };
    // Round-to-nearest with the same params, for the report.
    {
      at::Tensor rtn = at::empty_like(w);
      for (int64_t j = 0; j < in; ++j) {
        at::Tensor d;
        quant_col(w.select(1, j), j, &d);
        rtn.select(1, j).copy_(d);
      }
      r.proxy_rtn += proxy(w, rtn, h32);
    }
    at::Tensor wp = w.index_select(1, perm);
    at::Tensor q = at::empty({n, in}, at::kDouble), deq = at::empty({n, in}, at::kDouble);
    for (int64_t i1 = 0; i1 < in; i1 += o.block) {
      const int64_t i2 = std::min(i1 + o.block, in), cnt = i2 - i1;
      at::Tensor w1 = wp.slice(1, i1, i2).clone();
      at::Tensor err1 = at::zeros({n, cnt}, w1.options());
      at::Tensor u1 = u.slice(0, i1, i2).slice(1, i1, i2);
      for (int64_t i = 0; i < cnt; ++i) {
        at::Tensor col = w1.select(1, i), d;
        at::Tensor qc = quant_col(col, order[i1 + i], &d);
        q.select(1, i1 + i).copy_(qc);
        deq.select(1, i1 + i).copy_(d);
        at::Tensor e = (col - d) / u1[i][i];
        if (i + 1 < cnt) w1.slice(1, i + 1).sub_(at::outer(e, u1[i].slice(0, i + 1)));
        err1.select(1, i).copy_(e);
      }
      if (i2 < in) wp.slice(1, i2).sub_(at::matmul(err1, u.slice(0, i1, i2).slice(1, i2)));
    }
    r.codes.narrow(0, r0, n).copy_(q.index_select(1, inv).round());
    const at::Tensor d = deq.index_select(1, inv);
    r.proxy_gptq += proxy(w, d.to(at::kFloat).to(at::kDouble), h32);
    if (o.keep_dequantized) r.dequantized.narrow(0, r0, n).copy_(d);
  }
  return r;
}

}  // namespace catq

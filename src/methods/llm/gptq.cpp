#include "methods/llm/gptq.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <tuple>

#include "core/error.h"
#include "quant/gptq_kernel.h"

namespace catq {

namespace {

// isfinite(m).all() a block of rows at a time: at::isfinite of a whole [in, in] matrix allocates |m| in float and two
// bool masks (1.7 matrices at a time, measured), the largest transient of the factor.
bool all_finite(const at::Tensor& m) {
  for (int64_t r = 0; r < m.size(0); r += 256)
    if (!at::isfinite(m.slice(0, r, std::min(m.size(0), r + 256))).all().item<bool>()) return false;
  return true;
}


// tr((W − Ŵ) H (W − Ŵ)ᵀ), a report figure: the [rows, in] x [in, in] product in fp32, the sum in double.
double proxy(const at::Tensor& w, const at::Tensor& wq, const at::Tensor& h32) {
  const at::Tensor d = w - wq;
  return (at::matmul(d, h32) * d).sum(at::kDouble).item<double>();
}

// Rows per task of the row-parallel loops (each row of a batch costs ~cnt² / 2 multiply-adds).
constexpr int64_t kRowGrain = 8;

// GPTQ's column loop over the rows of wp ([n, in] fp32, columns in the quantization order, updated in place): lazy
// batches of `block` columns; batch(a, b, i1, cnt, err) runs rows [a, b) of the columns [i1, i1 + cnt) through a
// fused row kernel (quant/gptq_kernel.h), writing their errors into err [n, cnt]; then the later columns get the
// batch's update at once (a GEMM).
template <class Batch>
void gptq_columns(at::Tensor& wp, const GptqFactor& f, int64_t block, const Batch& batch) {
  const int64_t n = wp.size(0), in = wp.size(1);
  for (int64_t i1 = 0; i1 < in; i1 += block) {
    const int64_t i2 = std::min(i1 + block, in), cnt = i2 - i1;
    at::Tensor err = at::empty({n, cnt}, at::kFloat);
    float* ep = err.data_ptr<float>();
    at::parallel_for(0, n, kRowGrain, [&](int64_t a, int64_t b) { batch(a, b, i1, cnt, ep); });
    if (i2 < in) wp.narrow(1, i2, in - i2).addmm_(err, f.u.narrow(0, i1, cnt).narrow(1, i2, in - i2), 1.0, -1.0);
  }
}

// The weight GPTQ quantizes: fp32, finite, dead inputs' columns zeroed (they are never seen).
at::Tensor gptq_weight_f32(const at::Tensor& w_in, const GptqFactor& f) {
  at::Tensor w32 = w_in.to(at::kFloat).contiguous();
  CATQ_CHECK(all_finite(w32), Data, "GPTQ: the weight has NaN or Inf entries");
  if (f.any_dead) {
    w32 = w32.clone();
    w32.index_put_({at::indexing::Slice(), f.dead}, 0.0f);
  }
  return w32;
}

}  // namespace

GptqFactor gptq_factor(const at::Tensor& h_in, const GptqOptions& o) {
  CATQ_CHECK(h_in.dim() == 2 && h_in.size(0) == h_in.size(1), Data, "GPTQ: the Hessian [{}] is not square",
             fmt::join(h_in.sizes(), ","));
  CATQ_CHECK(o.damp >= 0, Config, "GPTQ: damping must be >= 0");
  CATQ_CHECK(all_finite(h_in), Data, "GPTQ: the Hessian has NaN or Inf entries");
  GptqFactor f;
  f.in = h_in.size(0);
  at::Tensor h = h_in.to(at::kFloat);  // no copy of an fp32 H (only read, unless inputs are dead)
  f.dead = h.diagonal() == 0;
  f.any_dead = f.dead.any().item<bool>();
  if (f.any_dead) {
    h = h.clone();
    h.diagonal().masked_fill_(f.dead, 1.0f);
  }
  f.perm = o.act_order ? at::argsort(h.diagonal(), 0, /*descending=*/true) : at::arange(f.in, at::kLong);
  f.inv = at::argsort(f.perm);
  f.order.assign(f.perm.data_ptr<int64_t>(), f.perm.data_ptr<int64_t>() + f.in);
  const double mean_diag = h.diagonal().mean().item<double>();  // a permutation keeps the diagonal's mean
  double damp = o.damp;
  // At most three [in, in] fp32 matrices live at once besides thin column blocks (h, J Hp J then L, U): the 8B
  // shape's 14336-wide ffn_down input sets a streamed GPTQ run's peak here (bench/gptq_memory.cpp measures it).
  for (int attempt = 0;; ++attempt) {
    // Reverse-order Cholesky: J Hd J = L Lᵀ  =>  Hd = R Rᵀ with R = J L J upper, and U = R⁻¹ satisfies UᵀU = Hd⁻¹.
    at::Tensor l, info;
    {
      at::Tensor hdj = o.act_order ? h.index_select(0, f.perm.flip({0})).index_select(1, f.perm.flip({0}))
                                   : h.flip({0, 1});  // J Hp J, Hp = H in the quantization order
      hdj.diagonal().add_(damp * mean_diag);
      // In place: hdj is symmetric, so its transpose is the same matrix in the column-major layout LAPACK factors
      // in; the factor overwrites it (no second [in, in] buffer). l = that memory read as the lower factor L.
      at::Tensor a = hdj.mT();
      info = at::empty({}, at::kInt);
      at::linalg_cholesky_ex_out(a, info, a);
      l = a;
    }
    if (info.item<int>() == 0) {
      // U = R⁻¹ = J L⁻¹ J, solved a block of L⁻¹'s columns at a time (no identity, no flipped copy of L).
      const int64_t n = f.in, bs = 512;
      at::Tensor u = at::empty({n, n}, h.options());
      for (int64_t c0 = 0; c0 < n; c0 += bs) {
        const int64_t c1 = std::min(n, c0 + bs);
        at::Tensor e = at::zeros({n, c1 - c0}, h.options());
        e.slice(0, c0, c1).diagonal().fill_(1.0f);
        // L⁻¹E as (Eᵀ L⁻ᵀ)ᵀ: Lᵀ is hdj's own row-major memory, which the solver takes without a copy.
        const at::Tensor x = at::linalg_solve_triangular(l.mT(), e.mT(), /*upper=*/true, /*left=*/false).mT();
        u.slice(1, n - c1, n - c0).copy_(x.flip({0, 1}));
      }
      l = at::Tensor();
      if (all_finite(u) && (u.diagonal() > 0).all().item<bool>()) {
        f.u = u.contiguous();
        break;
      }
    }
    CATQ_CHECK(attempt < 3, Data, "GPTQ: the Hessian is not positive definite even with damping {} (too little or "
               "degenerate calibration data)", damp);
    damp = damp > 0 ? damp * 10 : 1e-4;
  }
  f.damp = damp;
  f.h32 = h;
  return f;
}

GptqResult gptq_quantize(const at::Tensor& w_in, const at::Tensor& h, const QuantSpec& spec, const GptqOptions& o) {
  CATQ_CHECK(w_in.dim() == 2 && h.dim() == 2 && h.size(0) == w_in.size(1) && h.size(1) == w_in.size(1), Data,
             "GPTQ: weight [{}] and Hessian [{}] do not fit", fmt::join(w_in.sizes(), ","), fmt::join(h.sizes(), ","));
  return gptq_quantize(w_in, gptq_factor(h, o), spec, o);
}

GptqResult gptq_quantize(const at::Tensor& w_in, const GptqFactor& f, const QuantSpec& spec_in, const GptqOptions& o) {
  CATQ_CHECK(w_in.dim() == 2 && w_in.size(1) == f.in, Data, "GPTQ: weight [{}] and Hessian [{},{}] do not fit",
             fmt::join(w_in.sizes(), ","), f.in, f.in);
  CATQ_CHECK(spec_in.enabled && spec_in.scheme == Scheme::Uniform &&
                 (spec_in.granularity == Granularity::PerChannel || spec_in.granularity == Granularity::PerGroup),
             Config, "GPTQ: needs a uniform per-channel or per-group weight quantizer, got {}", spec_in.str());
  CATQ_CHECK(o.block >= 1 && o.row_slice >= 1, Config, "GPTQ: the block and the row slice must be >= 1");
  QuantSpec spec = spec_in;
  spec.axis = spec.granularity == Granularity::PerChannel ? 0 : 1;
  const int64_t out = w_in.size(0), in = w_in.size(1);
  const int64_t group = spec.granularity == Granularity::PerGroup ? spec.group_size : 0;
  if (group) CATQ_CHECK(in % group == 0, Config, "GPTQ: group size {} does not divide {} columns", group, in);

  const at::Tensor w32 = gptq_weight_f32(w_in, f);  // the weight whose params are computed
  GptqResult r;
  r.params = compute_params(spec, w32);
  const float qmin = static_cast<float>(r.params.qmin), qmax = static_cast<float>(r.params.qmax);
  const int64_t ng = group ? in / group : 1;
  const at::Tensor scale_all = r.params.scale.to(at::kFloat).reshape({out, ng}).contiguous();
  const at::Tensor zero_all = r.params.zero_point.to(at::kInt).reshape({out, ng}).contiguous();
  const at::Tensor zero_f = zero_all.to(at::kFloat);
  std::vector<int64_t> gidx(in);  // params column of each position of the quantization order
  for (int64_t j = 0; j < in; ++j) gidx[j] = group ? f.order[j] / group : 0;
  const bool permuted = !at::equal(f.perm, at::arange(in, at::kLong));
  const RangeIsa isa = range_best_isa();
  const float* ubase = f.u.data_ptr<float>();

  // Rows are independent given U: a big weight goes a slice of rows at a time (bounded working set).
  r.codes = at::empty({out, in}, at::kInt);
  if (o.keep_dequantized) r.dequantized = at::empty({out, in}, at::kFloat);
  const int64_t rows_per = std::max<int64_t>(1, o.row_slice / std::max<int64_t>(in, 1));
  for (int64_t r0 = 0; r0 < out; r0 += rows_per) {
    const int64_t n = std::min(rows_per, out - r0);
    const at::Tensor w = w32.narrow(0, r0, n);
    const float* sc = scale_all.data_ptr<float>() + r0 * ng;
    const float* zc = zero_f.data_ptr<float>() + r0 * ng;
    // Round-to-nearest with the same params, for the report.
    {
      at::Tensor rtn = at::empty_like(w);
      RunLayout L;
      L.outer = n, L.channels = ng, L.inner = in / ng, L.p_outer = ng, L.p_channel = 1;
      at::parallel_for(0, n * ng, std::max<int64_t>(1, 4096 / L.inner), [&](int64_t u0, int64_t u1) {
        rtn_runs(L, u0, u1, w.data_ptr<float>(), scale_all.data_ptr<float>() + r0 * ng,
                 zero_all.data_ptr<int32_t>() + r0 * ng, r.params.qmin, r.params.qmax, nullptr, rtn.data_ptr<float>(),
                 isa);
      });
      r.proxy_rtn += proxy(w, rtn, f.h32);
    }
    at::Tensor wp = permuted ? w.index_select(1, f.perm) : w.clone();
    at::Tensor q = permuted ? at::empty({n, in}, at::kInt) : r.codes.narrow(0, r0, n);
    at::Tensor deq = at::empty({n, in}, at::kFloat);
    float* wpp = wp.data_ptr<float>();
    int32_t* qp = q.data_ptr<int32_t>();
    float* dp = deq.data_ptr<float>();
    std::vector<float> s(static_cast<size_t>(n * std::min(o.block, in))), z(s.size());  // a batch's params
    gptq_columns(wp, f, o.block, [&](int64_t a, int64_t b, int64_t i1, int64_t cnt, float* ep) {
      float *sp = s.data(), *zp = z.data();
      for (int64_t row = a; row < b; ++row)
        for (int64_t i = 0; i < cnt; ++i) {
          sp[row * cnt + i] = sc[row * ng + gidx[i1 + i]];
          zp[row * cnt + i] = zc[row * ng + gidx[i1 + i]];
        }
      gptq_batch_rows(b - a, cnt, wpp + a * in + i1, in, ubase + i1 * in + i1, in, sp + a * cnt, zp + a * cnt, qmin,
                      qmax, qp + a * in + i1, dp + a * in + i1, in, ep + a * cnt, isa);
    });
    const at::Tensor d = permuted ? deq.index_select(1, f.inv) : deq;
    if (permuted) r.codes.narrow(0, r0, n).copy_(q.index_select(1, f.inv));
    r.proxy_gptq += proxy(w, d, f.h32);
    if (o.keep_dequantized) r.dequantized.narrow(0, r0, n).copy_(d);
  }
  return r;
}

GptqGridResult gptq_quantize_grid(const at::Tensor& w_in, const GptqFactor& f, const GptqGrid& g, const GptqOptions& o) {
  const int64_t out = w_in.size(0), in = w_in.size(1);
  CATQ_CHECK(w_in.dim() == 2 && in == f.in && g.scale.sizes() == w_in.sizes() && g.offset.sizes() == w_in.sizes(),
             Data, "GPTQ: weight [{}], Hessian [{},{}] and grid [{}] do not fit", fmt::join(w_in.sizes(), ","), f.in,
             f.in, fmt::join(g.scale.sizes(), ","));
  CATQ_CHECK(g.levels >= 2 && g.levels <= 256 && (g.level_values.empty() || static_cast<int>(g.level_values.size()) == g.levels),
             Internal, "GPTQ grid: {} levels, {} level values", g.levels, g.level_values.size());
  CATQ_CHECK(o.block >= 1 && o.row_slice >= 1, Config, "GPTQ: the block and the row slice must be >= 1");
  const at::Tensor w32 = gptq_weight_f32(w_in, f);
  const bool permuted = !at::equal(f.perm, at::arange(in, at::kLong));
  const float* ubase = f.u.data_ptr<float>();
  const float* lv = g.level_values.empty() ? nullptr : g.level_values.data();
  GptqGridResult r;
  r.codes = at::empty({out, in}, at::kByte);
  if (o.keep_dequantized) r.dequantized = at::empty({out, in}, at::kFloat);
  const int64_t rows_per = std::max<int64_t>(1, o.row_slice / std::max<int64_t>(in, 1));
  for (int64_t r0 = 0; r0 < out; r0 += rows_per) {
    const int64_t n = std::min(rows_per, out - r0);
    const at::Tensor w = w32.narrow(0, r0, n);
    auto order = [&](const at::Tensor& t) {  // [n, in] in the quantization order, fp32, contiguous
      const at::Tensor x = t.narrow(0, r0, n).to(at::kFloat);
      return (permuted ? x.index_select(1, f.perm) : x.clone()).contiguous();
    };
    at::Tensor wp = permuted ? w.index_select(1, f.perm) : w.clone();
    const at::Tensor scale = order(g.scale), offset = order(g.offset);
    at::Tensor q = at::empty({n, in}, at::kByte), deq = at::empty({n, in}, at::kFloat);
    float* wpp = wp.data_ptr<float>();
    const float *scp = scale.data_ptr<float>(), *ofp = offset.data_ptr<float>();
    uint8_t* qp = q.data_ptr<uint8_t>();
    float* dp = deq.data_ptr<float>();
    std::vector<float> s(static_cast<size_t>(n * std::min(o.block, in))), m(s.size());  // a batch's grid
    gptq_columns(wp, f, o.block, [&](int64_t a, int64_t b, int64_t i1, int64_t cnt, float* ep) {
      float *sp = s.data(), *mp = m.data();
      for (int64_t row = a; row < b; ++row)
        for (int64_t i = 0; i < cnt; ++i) {
          sp[row * cnt + i] = scp[row * in + i1 + i];
          mp[row * cnt + i] = ofp[row * in + i1 + i];
        }
      gptq_batch_rows_grid(b - a, cnt, wpp + a * in + i1, in, ubase + i1 * in + i1, in, sp + a * cnt, mp + a * cnt,
                           g.levels, lv, qp + a * in + i1, dp + a * in + i1, in, ep + a * cnt);
    });
    const at::Tensor d = permuted ? deq.index_select(1, f.inv) : deq;
    r.codes.narrow(0, r0, n).copy_(permuted ? q.index_select(1, f.inv) : q);
    r.proxy += proxy(w, d, f.h32);
    if (o.keep_dequantized) r.dequantized.narrow(0, r0, n).copy_(d);
  }
  return r;
}

}  // namespace catq

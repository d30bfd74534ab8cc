#include "quant/observer.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "quant/range_search.h"

namespace catq {

namespace {

// Row-parallel driver for the range_search kernels: rows are independent, so any split gives the same result.
// `cost` ≈ work per row (elements × passes) sets the grain so small tensors stay on one thread.
void for_rows(int64_t rows, int64_t cost, const std::function<void(int64_t, int64_t)>& f) {
  const int64_t grain = std::max<int64_t>(16, (int64_t{1} << 20) / std::max<int64_t>(cost, 1));
  at::parallel_for(0, rows, grain, f);
}

bool cpu_float_rows(const at::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == 2 && t.is_contiguous();
}

}  // namespace

// ---- Base ---------------------------------------------------------------------------------------------------

void Observer::observe(const at::Tensor& x_in) {
  at::NoGradGuard ng;
  CATQ_CHECK(x_in.defined() && x_in.numel() > 0, Data, "{}: cannot observe an empty tensor", name_);
  at::Tensor x = x_in.detach().to(at::kFloat);
  if (batches_ == 0) {
    try {
      axis_ = spec_.resolved_axis(x.dim());
    } catch (const Error& e) {
      fail(ErrorKind::Config, "{}: {}", name_, e.what());
    }
  }
  at::Tensor rows = to_rows(x, spec_.granularity, axis_, spec_.group_size);
  if (rows.device().is_cpu()) rows = rows.contiguous();
  CATQ_CHECK(rows_ < 0 || rows.size(0) == rows_, Data,
             "{}: observed tensor of shape [{}] gives {} {} parameters, earlier batches gave {}", name_,
             fmt::join(x.sizes(), ","), rows.size(0), to_string(spec_.granularity), rows_);
  rows_ = rows.size(0);
  at::Tensor bmin, bmax;
  if (cpu_float_rows(rows)) {
    // One pass of our own kernel instead of torch's min(1) / max(1) (which also compute indices).
    const int64_t r = rows.size(0), m = rows.size(1);
    bmin = at::empty({r}, at::kFloat);
    bmax = at::empty({r}, at::kFloat);
    const float* xp = rows.data_ptr<float>();
    float *lo = bmin.data_ptr<float>(), *hi = bmax.data_ptr<float>();
    const RangeIsa isa = range_best_isa();
    for_rows(r, m, [&](int64_t b, int64_t e) { row_minmax(xp + b * m, e - b, m, m, lo + b, hi + b, isa); });
  } else {
    bmin = std::get<0>(rows.min(1)).cpu();
    bmax = std::get<0>(rows.max(1)).cpu();
  }
  min_ = batches_ == 0 ? bmin : at::minimum(min_, bmin);
  max_ = batches_ == 0 ? bmax : at::maximum(max_, bmax);
  accumulate(rows, bmin, bmax);
  shape_ = x.sizes().vec();
  ++batches_;
}

QuantParams Observer::compute() const {
  at::NoGradGuard ng;
  CATQ_CHECK(batches_ > 0, Data, "{}: nothing was observed; run calibration first", name_);
  CATQ_CHECK(at::isfinite(min_).all().item<bool>() && at::isfinite(max_).all().item<bool>(), Data,
             "{}: the observed values contain NaN or Inf", name_);
  auto [lo, hi] = range();
  auto pshape = param_shape(shape_, spec_.granularity, axis_, spec_.group_size);
  return params_from_range(spec_, lo.reshape(pshape), hi.reshape(pshape), axis_);
}

void Observer::reset() {
  shape_.clear();
  rows_ = -1;
  batches_ = 0;
  min_ = max_ = at::Tensor();
  clear();
}

namespace {

// ---- Min-max and EMA ------------------------------------------------------------------------------------------

class MinMaxObserver : public Observer {
 public:
  using Observer::Observer;

 protected:
  void accumulate(const at::Tensor&, const at::Tensor&, const at::Tensor&) override {}
  std::pair<at::Tensor, at::Tensor> range() const override {
    return {min_ * spec_.clip_ratio, max_ * spec_.clip_ratio};
  }
};

class EmaObserver : public Observer {
 public:
  using Observer::Observer;

 protected:
  void accumulate(const at::Tensor&, const at::Tensor& bmin, const at::Tensor& bmax) override {
    const double m = spec_.momentum;
    if (!lo_.defined()) {
      lo_ = bmin.clone();
      hi_ = bmax.clone();
    } else {
      lo_ = lo_ * m + bmin * (1.0 - m);
      hi_ = hi_ * m + bmax * (1.0 - m);
    }
  }
  std::pair<at::Tensor, at::Tensor> range() const override {
    return {lo_ * spec_.clip_ratio, hi_ * spec_.clip_ratio};
  }
  void clear() override { lo_ = hi_ = at::Tensor(); }

 private:
  at::Tensor lo_, hi_;
};

// ---- Sample-based observers -------------------------------------------------------------------------------------

// Keeps a per-row uniform subsample of columns across batches (see the header).
class SampleObserver : public Observer {
 public:
  SampleObserver(const QuantSpec& spec, std::string name) : Observer(spec, std::move(name)), gen_(make_generator(0x5eed)) {}

 protected:
  void accumulate(const at::Tensor& rows, const at::Tensor&, const at::Tensor&) override {
    const int64_t r = rows.size(0), n = rows.size(1);
    const int64_t cap = std::max<int64_t>(spec_.max_samples / r, 4096);
    const int64_t have = buf_.defined() ? buf_.size(1) : 0;
    const int64_t total = seen_ + n;
    if (have + n <= cap) {
      at::Tensor add = rows.cpu().contiguous();
      buf_ = have ? at::cat({buf_, add}, 1) : add;
    } else {
      // A uniform sample of `cap` columns out of `total` holds about cap·seen/total old ones.
      int64_t keep_old = std::min<int64_t>(have, std::llround(static_cast<double>(cap) * seen_ / total));
      int64_t take_new = std::min<int64_t>(n, cap - keep_old);
      at::Tensor old_idx = at::randperm(have, gen_, at::kLong).slice(0, 0, keep_old);
      // Columns of a huge batch are drawn with replacement (cheap; duplicates are rare at these sizes).
      at::Tensor new_idx = n <= 4 * cap ? at::randperm(n, gen_, at::kLong).slice(0, 0, take_new)
                                        : at::randint(n, {take_new}, gen_, at::kLong);
      at::Tensor add = rows.index_select(1, new_idx.to(rows.device())).cpu();
      buf_ = have ? at::cat({buf_.index_select(1, old_idx), add}, 1).contiguous() : add.contiguous();
    }
    seen_ = total;
  }
  void clear() override {
    buf_ = at::Tensor();
    seen_ = 0;
    gen_ = make_generator(0x5eed);
  }

  at::Tensor buf_;  // [R, m] float32 CPU
  int64_t seen_ = 0;
  at::Generator gen_;
};

// Linear-interpolated quantile q ∈ [0,1] of each row of a [R, M] tensor → [R] (of |x| when `abs`), as torch's
// sort + interpolation did; nth_element per row (range_search.h).
at::Tensor row_quantile(const at::Tensor& t_in, double q, bool abs) {
  at::Tensor t = t_in.contiguous();
  const int64_t r = t.size(0), m = t.size(1);
  at::Tensor out = at::empty({r}, at::kFloat);
  const float* xp = t.data_ptr<float>();
  float* op = out.data_ptr<float>();
  for_rows(r, 4 * m, [&](int64_t b, int64_t e) {
    std::vector<float> scratch(static_cast<size_t>(m));
    row_percentile(xp + b * m, e - b, m, m, q, abs, op + b, scratch.data());
  });
  return out;
}

class PercentileObserver : public SampleObserver {
 public:
  using SampleObserver::SampleObserver;

 protected:
  std::pair<at::Tensor, at::Tensor> range() const override {
    const double q = spec_.percentile / 100.0;
    if (q >= 1.0) return {min_, max_};
    if (spec_.symmetric) {
      at::Tensor amax = row_quantile(buf_, q, true);
      return {-amax, amax};
    }
    return {at::maximum(row_quantile(buf_, 1.0 - q, false), min_), at::minimum(row_quantile(buf_, q, false), max_)};
  }
};

class MseObserver : public SampleObserver {
 public:
  using SampleObserver::SampleObserver;

 protected:
  std::pair<at::Tensor, at::Tensor> range() const override {
    const int64_t r = buf_.size(0);
    // The grid search evaluates a random subset of the kept samples (≤ 2^18 in all, ≥ 4096 per row): plenty to
    // rank clipping ratios, and 100 candidates × 1M samples would take many seconds.
    at::Tensor data = buf_;
    const int64_t keep = std::max<int64_t>((int64_t{1} << 18) / r, 4096);
    if (data.size(1) > keep) {
      auto gen = make_generator(0x3e5);
      data = data.index_select(1, at::randperm(data.size(1), gen, at::kLong).slice(0, 0, keep)).contiguous();
    }
    // The grid search itself: range_search.h (the candidates, params and strict comparison of the libtorch loop it
    // replaced, which made ~10 tensor passes per candidate: ~36 s for one [5632, 2048] weight at g32).
    data = data.contiguous();
    at::Tensor mn = min_.contiguous(), mx = max_.contiguous();
    at::Tensor lo = at::empty({r}, at::kFloat), hi = at::empty({r}, at::kFloat);
    MseSearch ms;
    ms.grid = {spec_.qmin(), spec_.qmax(), spec_.symmetric, spec_.is_signed};
    ms.p = spec_.mse_p;
    ms.candidates = spec_.mse_grid;
    const int64_t m = data.size(1);
    const float* xp = data.data_ptr<float>();
    const float *mnp = mn.data_ptr<float>(), *mxp = mx.data_ptr<float>();
    float *lop = lo.data_ptr<float>(), *hip = hi.data_ptr<float>();
    const RangeIsa isa = range_best_isa();
    for_rows(r, m * ms.candidates * (ms.p == 2.0 ? 1 : 8), [&](int64_t b, int64_t e) {
      mse_search(ms, xp + b * m, e - b, m, m, mnp + b, mxp + b, lop + b, hip + b, isa);
    });
    return {lo, hi};
  }
};

class KlObserver : public SampleObserver {
 public:
  using SampleObserver::SampleObserver;

 protected:
  std::pair<at::Tensor, at::Tensor> range() const override {
    const int64_t r = buf_.size(0);
    at::Tensor lo = min_.clone(), hi = max_.clone();
    auto lo_a = lo.accessor<float, 1>();
    auto hi_a = hi.accessor<float, 1>();
    for (int64_t i = 0; i < r; ++i) {
      const double amax = std::max(std::fabs(lo_a[i]), std::fabs(hi_a[i]));
      if (!(amax > 0)) continue;
      // Exact zeros (half of a ReLU output) are represented exactly at any threshold: leave them out, or
      // merging their spike into wider quantized bins dominates the KL and forces heavy clipping.
      at::Tensor a = buf_[i].abs();
      a = a.masked_select(a > 0);
      if (a.numel() == 0) continue;
      at::Tensor h = at::histc(a, spec_.kl_bins, 0.0, amax).to(at::kDouble).contiguous();
      std::vector<double> hist(h.data_ptr<double>(), h.data_ptr<double>() + h.numel());
      const bool one_sided = lo_a[i] >= 0 && !(spec_.symmetric && spec_.is_signed);
      const int64_t nq = int64_t{1} << (one_sided ? spec_.bits : spec_.bits - 1);
      const double t = kl_threshold(hist, amax / spec_.kl_bins, nq);
      lo_a[i] = static_cast<float>(std::max<double>(lo_a[i], -t));
      hi_a[i] = static_cast<float>(std::min<double>(hi_a[i], t));
    }
    return {lo, hi};
  }
};

}  // namespace

double kl_threshold(const std::vector<double>& hist, double bin_width, int64_t nq) {
  const int64_t n = static_cast<int64_t>(hist.size());
  if (nq >= n || n == 0) return static_cast<double>(n) * bin_width;
  // Prefix sums of mass and of non-empty bins make each merged bin O(1).
  std::vector<double> cum(n + 1, 0.0), nz(n + 1, 0.0);
  for (int64_t k = 0; k < n; ++k) {
    cum[k + 1] = cum[k] + hist[k];
    nz[k + 1] = nz[k] + (hist[k] != 0 ? 1.0 : 0.0);
  }
  const double total = cum[n];
  if (!(total > 0)) return static_cast<double>(n) * bin_width;
  double best_kl = std::numeric_limits<double>::infinity();
  int64_t best_i = n;
  // At most ~256 candidate thresholds (stride 7 bins for 2048 bins / 128 levels; the last bin is always tried).
  const int64_t first = std::max<int64_t>(nq, 1), stride = std::max<int64_t>(1, (n - first) / 256);
  for (int64_t i = first; i <= n; i = (i < n && i + stride > n) ? n : i + stride) {
    const double sum_q = cum[i];
    if (!(sum_q > 0)) continue;
    const double outliers = total - cum[i];
    double kl = 0.0;
    for (int64_t j = 0; j < nq; ++j) {
      const int64_t start = j * i / nq, end = (j + 1) * i / nq;
      if (end <= start) continue;
      const double chunk = cum[end] - cum[start], chunk_nz = nz[end] - nz[start];
      for (int64_t k = start; k < end; ++k) {
        double pk = hist[k] + (k == i - 1 ? outliers : 0.0);
        if (pk <= 0) continue;
        double qk = hist[k] != 0 ? chunk / chunk_nz : 0.0;
        double pn = pk / total, qn = std::max(qk / sum_q, 1e-12);
        kl += pn * std::log(pn / qn);
      }
    }
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return static_cast<double>(best_i) * bin_width;
}

std::unique_ptr<Observer> Observer::create(const QuantSpec& spec, const std::string& name) {
  spec.validate(name);
  CATQ_CHECK(spec.enabled, Config, "{}: an observer needs an enabled quantizer spec", name);
  CATQ_CHECK(spec.scheme == Scheme::Uniform, Config, "{}: scheme: observers compute uniform params, not {}", name,
             to_string(spec.scheme));
  CATQ_CHECK(spec.granularity != Granularity::PerToken, Config,
             "{}: granularity: per-token quantization is dynamic and has no observer", name);
  switch (spec.observer) {
    case ObserverKind::MinMax: return std::unique_ptr<Observer>(new MinMaxObserver(spec, name));
    case ObserverKind::EmaMinMax: return std::unique_ptr<Observer>(new EmaObserver(spec, name));
    case ObserverKind::Percentile: return std::unique_ptr<Observer>(new PercentileObserver(spec, name));
    case ObserverKind::Mse: return std::unique_ptr<Observer>(new MseObserver(spec, name));
    case ObserverKind::Kl: return std::unique_ptr<Observer>(new KlObserver(spec, name));
  }
  fail(ErrorKind::Internal, "{}: unknown observer kind", name);
}

}  // namespace catq

#include "quant/quantizer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "quant/kmeans.h"
#include "quant/observer.h"
#include "quant/range_search.h"

namespace catq {

// ---- Names --------------------------------------------------------------------------------------------------

const char* to_string(Granularity g) {
  switch (g) {
    case Granularity::PerTensor: return "tensor";
    case Granularity::PerChannel: return "channel";
    case Granularity::PerGroup: return "group";
    case Granularity::PerToken: return "token";
  }
  return "?";
}
const char* to_string(ObserverKind o) {
  switch (o) {
    case ObserverKind::MinMax: return "minmax";
    case ObserverKind::EmaMinMax: return "ema";
    case ObserverKind::Percentile: return "percentile";
    case ObserverKind::Mse: return "mse";
    case ObserverKind::Kl: return "kl";
  }
  return "?";
}
const char* to_string(Rounding r) { return r == Rounding::Nearest ? "nearest" : "stochastic"; }
const char* to_string(Scheme s) {
  switch (s) {
    case Scheme::Uniform: return "uniform";
    case Scheme::KMeans: return "kmeans";
    case Scheme::Binary: return "binary";
    case Scheme::Ternary: return "ternary";
  }
  return "?";
}

std::optional<Granularity> parse_granularity(const std::string& s) {
  for (auto g : {Granularity::PerTensor, Granularity::PerChannel, Granularity::PerGroup, Granularity::PerToken})
    if (s == to_string(g)) return g;
  return std::nullopt;
}
std::optional<ObserverKind> parse_observer(const std::string& s) {
  for (auto o : {ObserverKind::MinMax, ObserverKind::EmaMinMax, ObserverKind::Percentile, ObserverKind::Mse,
                 ObserverKind::Kl})
    if (s == to_string(o)) return o;
  return std::nullopt;
}
std::optional<Rounding> parse_rounding(const std::string& s) {
  for (auto r : {Rounding::Nearest, Rounding::Stochastic})
    if (s == to_string(r)) return r;
  return std::nullopt;
}
std::optional<Scheme> parse_scheme(const std::string& s) {
  for (auto x : {Scheme::Uniform, Scheme::KMeans, Scheme::Binary, Scheme::Ternary})
    if (s == to_string(x)) return x;
  return std::nullopt;
}

// ---- QuantSpec ----------------------------------------------------------------------------------------------

// Shifts use the bit width clamped to [1, 30] so an unvalidated spec cannot trigger undefined behaviour.
static int safe_bits(int b) { return std::clamp(b, 1, 30); }

int QuantSpec::levels() const { return 1 << safe_bits(bits); }

int64_t QuantSpec::qmin() const {
  if (scheme == Scheme::Binary || scheme == Scheme::Ternary) return -1;
  if (scheme == Scheme::KMeans || !is_signed) return 0;
  int64_t half = int64_t{1} << (safe_bits(bits) - 1);
  return (restricted && symmetric) ? -(half - 1) : -half;
}

int64_t QuantSpec::qmax() const {
  if (scheme == Scheme::Binary || scheme == Scheme::Ternary) return 1;
  if (scheme == Scheme::KMeans || !is_signed) return (int64_t{1} << safe_bits(bits)) - 1;
  return (int64_t{1} << (safe_bits(bits) - 1)) - 1;
}

int QuantSpec::resolved_axis(int64_t ndim) const {
  if (granularity != Granularity::PerChannel && granularity != Granularity::PerGroup) return 0;
  int64_t a = axis ? *axis : (granularity == Granularity::PerGroup && ndim >= 2 ? 1 : 0);
  if (a < 0) a += ndim;
  if (a < 0 || a >= std::max<int64_t>(ndim, 1))
    fail(ErrorKind::Config, "axis: {} is out of range for a tensor with {} dimensions", axis ? *axis : a, ndim);
  return static_cast<int>(a);
}

void QuantSpec::validate(const std::string& where) const {
  if (!enabled) return;
  auto bad = [&](const char* field, const std::string& msg) {
    fail(ErrorKind::Config, "{}: {}: {}", where, field, msg);
  };
  if (!((bits >= 1 && bits <= 8) || bits == 16))
    bad("bits", fmt::format("{} is not supported, expected 1..8 or 16 (32 or enabled=false means floating point)",
                            bits));
  if (scheme == Scheme::Binary && bits != 1) bad("bits", fmt::format("scheme binary needs bits 1, got {}", bits));
  if (scheme == Scheme::Ternary && bits != 2) bad("bits", fmt::format("scheme ternary needs bits 2, got {}", bits));
  if (scheme == Scheme::Uniform && symmetric && is_signed && bits == 1)
    bad("bits", "1-bit symmetric signed uniform has no positive level; use scheme binary, asymmetric or unsigned");
  if (restricted && !(symmetric && is_signed)) bad("restricted", "only applies to symmetric signed quantizers");
  if (restricted && bits < 2) bad("restricted", "needs bits >= 2");
  if (granularity == Granularity::PerGroup && group_size <= 0)
    bad("group_size", fmt::format("granularity group needs group_size > 0, got {}", group_size));
  if (granularity != Granularity::PerGroup && group_size != 0)
    bad("group_size", fmt::format("{} is set but granularity is {}, expected granularity group",
                                  group_size, to_string(granularity)));
  if (granularity == Granularity::PerToken && scheme != Scheme::Uniform)
    bad("scheme", fmt::format("{} cannot be per-token (dynamic); expected uniform", to_string(scheme)));
  if (granularity == Granularity::PerToken && axis) bad("axis", "per-token quantization always uses the last dim");
  if (scheme != Scheme::Uniform && rounding != Rounding::Nearest)
    bad("rounding", fmt::format("stochastic rounding only applies to the uniform scheme, not {}", to_string(scheme)));
  if (!(percentile > 50.0 && percentile <= 100.0))
    bad("percentile", fmt::format("{} is out of range, expected 50 < percentile <= 100", percentile));
  if (!(momentum >= 0.0 && momentum < 1.0))
    bad("momentum", fmt::format("{} is out of range, expected 0 <= momentum < 1", momentum));
  if (!(mse_p > 0.0 && mse_p <= 16.0)) bad("mse_p", fmt::format("{} is out of range, expected 0 < p <= 16", mse_p));
  if (mse_grid < 1 || mse_grid > 10000)
    bad("mse_grid", fmt::format("{} is out of range, expected 1..10000", mse_grid));
  if (kl_bins < 16 || kl_bins > 65536) bad("kl_bins", fmt::format("{} is out of range, expected 16..65536", kl_bins));
  if (max_samples < 1024 || max_samples > (int64_t{1} << 28))
    bad("max_samples", fmt::format("{} is out of range, expected 1024..2^28", max_samples));
  if (!(clip_ratio > 0.0 && clip_ratio <= 1.0))
    bad("clip_ratio", fmt::format("{} is out of range, expected 0 < clip_ratio <= 1", clip_ratio));
  if (kmeans_iters < 1 || kmeans_iters > 1000)
    bad("kmeans_iters", fmt::format("{} is out of range, expected 1..1000", kmeans_iters));
}

std::string QuantSpec::str() const {
  if (!enabled) return "fp";
  std::string s;
  switch (scheme) {
    case Scheme::Uniform:
      s = fmt::format("{}{} {}", is_signed ? "int" : "uint", bits, symmetric ? (restricted ? "sym-r" : "sym") : "asym");
      break;
    case Scheme::KMeans: s = fmt::format("kmeans{}", bits); break;
    case Scheme::Binary: s = "binary"; break;
    case Scheme::Ternary: s = "ternary"; break;
  }
  s += fmt::format(" {}", to_string(granularity));
  if (granularity == Granularity::PerChannel && axis) s += fmt::format("({})", *axis);
  if (granularity == Granularity::PerGroup) s += fmt::format("{}", group_size);
  if (scheme == Scheme::Uniform && granularity != Granularity::PerToken) s += fmt::format(" {}", to_string(observer));
  if (rounding == Rounding::Stochastic) s += " stochastic";
  return s;
}

int64_t QuantParams::num_scales() const {
  if (codebook.defined()) return codebook.size(0);
  return scale.defined() ? scale.numel() : 0;
}

// ---- Shapes -------------------------------------------------------------------------------------------------

namespace {

int64_t prod(at::IntArrayRef s, size_t from, size_t to) {
  int64_t n = 1;
  for (size_t i = from; i < to; ++i) n *= s[i];
  return n;
}

void check_group(at::IntArrayRef shape, int axis, int64_t group) {
  CATQ_CHECK(axis >= 0 && axis < static_cast<int>(shape.size()), Config, "axis: {} is out of range for shape {}",
             axis, fmt::format("{}", fmt::join(shape, "x")));
  CATQ_CHECK(group > 0 && shape[axis] % group == 0, Config,
             "group_size: {} does not divide dim {} (size {}) of shape {}", group, axis, shape[axis],
             fmt::format("{}", fmt::join(shape, "x")));
}

}  // namespace

std::vector<int64_t> param_shape(at::IntArrayRef shape, Granularity g, int axis, int64_t group_size) {
  const size_t nd = shape.size();
  switch (g) {
    case Granularity::PerTensor: return {};
    case Granularity::PerChannel: {
      CATQ_CHECK(axis >= 0 && axis < static_cast<int>(nd), Config, "axis: {} is out of range for a {}-d tensor", axis,
                 nd);
      std::vector<int64_t> s(nd, 1);
      s[axis] = shape[axis];
      return s;
    }
    case Granularity::PerGroup: {
      check_group(shape, axis, group_size);
      std::vector<int64_t> s(shape.begin(), shape.begin() + axis);
      s.push_back(shape[axis] / group_size);
      s.push_back(1);
      for (size_t i = axis + 1; i < nd; ++i) s.push_back(1);
      return s;
    }
    case Granularity::PerToken: {
      CATQ_CHECK(nd >= 1, Config, "granularity: per-token needs a tensor with at least 1 dimension");
      std::vector<int64_t> s(shape.begin(), shape.end());
      s.back() = 1;
      return s;
    }
  }
  return {};
}

at::Tensor group_view(const at::Tensor& x, const QuantParams& p) {
  if (p.granularity != Granularity::PerGroup) return x;
  auto shape = x.sizes();
  check_group(shape, p.axis, p.group_size);
  std::vector<int64_t> v(shape.begin(), shape.begin() + p.axis);
  v.push_back(shape[p.axis] / p.group_size);
  v.push_back(p.group_size);
  v.insert(v.end(), shape.begin() + p.axis + 1, shape.end());
  return x.reshape(v);
}

at::Tensor to_rows(const at::Tensor& x, Granularity g, int axis, int64_t group_size) {
  auto shape = x.sizes();
  switch (g) {
    case Granularity::PerTensor: return x.reshape({1, -1});
    case Granularity::PerChannel:
      CATQ_CHECK(axis >= 0 && axis < x.dim(), Config, "axis: {} is out of range for a {}-d tensor", axis, x.dim());
      return x.movedim(axis, 0).reshape({shape[axis], -1});
    case Granularity::PerGroup: {
      check_group(shape, axis, group_size);
      // Memory order is [prefix, n/G, G, suffix]: rows (prefix, block), columns (G, suffix).
      int64_t rows = prod(shape, 0, axis) * (shape[axis] / group_size);
      return x.reshape({rows, group_size * prod(shape, axis + 1, shape.size())});
    }
    case Granularity::PerToken: return x.reshape({-1, shape.back()});
  }
  return x;
}

at::Tensor from_rows(const at::Tensor& rows, at::IntArrayRef shape, Granularity g, int axis, int64_t group_size) {
  if (g != Granularity::PerChannel) return rows.reshape(shape);
  std::vector<int64_t> moved{shape[axis]};
  for (size_t i = 0; i < shape.size(); ++i)
    if (static_cast<int>(i) != axis) moved.push_back(shape[i]);
  return rows.reshape(moved).movedim(0, axis);
}

// ---- Params -------------------------------------------------------------------------------------------------

QuantParams params_from_range(const QuantSpec& spec, const at::Tensor& xmin_in, const at::Tensor& xmax_in, int axis) {
  QuantParams p;
  p.scheme = Scheme::Uniform;
  p.granularity = spec.granularity;
  p.axis = axis;
  p.group_size = spec.group_size;
  p.bits = spec.bits;
  p.qmin = spec.qmin();
  p.qmax = spec.qmax();
  at::Tensor xmin = xmin_in.to(at::kFloat), xmax = xmax_in.to(at::kFloat);
  at::Tensor s, z;
  if (spec.symmetric) {
    // Unsigned symmetric (z = 0, range [0, qmax]) only represents the positive side.
    at::Tensor amax = spec.is_signed ? at::maximum(xmin.abs(), xmax.abs()) : xmax.clamp_min(0);
    s = amax / static_cast<double>(p.qmax);
    s = at::where(s > 1e-30, s, at::ones_like(s));  // zero range: any scale is exact, pick 1
    z = at::zeros_like(s);
  } else {
    at::Tensor lo = xmin.clamp_max(0), hi = xmax.clamp_min(0);  // the range must contain 0.0
    s = (hi - lo) / static_cast<double>(p.qmax - p.qmin);
    s = at::where(s > 1e-30, s, at::ones_like(s));
    z = (static_cast<double>(p.qmin) - at::round(lo / s)).clamp(p.qmin, p.qmax);
  }
  CATQ_CHECK(at::isfinite(s).all().item<bool>(), Data,
             "quantization range is not finite (NaN or Inf in the observed values)");
  p.scale = s.contiguous();
  p.zero_point = z.to(at::kInt).contiguous();
  return p;
}

namespace {

QuantParams base_params(const QuantSpec& spec, at::IntArrayRef shape) {
  QuantParams p;
  p.scheme = spec.scheme;
  p.granularity = spec.granularity;
  p.axis = spec.resolved_axis(static_cast<int64_t>(shape.size()));
  p.group_size = spec.group_size;
  p.bits = spec.bits;
  p.qmin = spec.qmin();
  p.qmax = spec.qmax();
  return p;
}

}  // namespace

QuantParams compute_params(const QuantSpec& spec, const at::Tensor& x_in, const at::Tensor& importance) {
  at::NoGradGuard ng;
  spec.validate("quantizer");
  CATQ_CHECK(spec.enabled, Config, "quantizer: compute_params called with a disabled (floating-point) spec");
  CATQ_CHECK(x_in.numel() > 0, Data, "quantizer: cannot compute quantization params of an empty tensor");
  at::Tensor x = x_in.detach().to(at::kFloat);
  QuantParams p = base_params(spec, x.sizes());
  auto pshape = param_shape(x.sizes(), p.granularity, p.axis, p.group_size);

  if (spec.granularity == Granularity::PerToken) {
    at::Tensor lo = std::get<0>(x.min(-1, true)) * spec.clip_ratio, hi = std::get<0>(x.max(-1, true)) * spec.clip_ratio;
    return params_from_range(spec, lo, hi, p.axis);
  }
  switch (spec.scheme) {
    case Scheme::Uniform: {
      auto obs = Observer::create(spec);
      obs->observe(x);
      return obs->compute();
    }
    case Scheme::KMeans: {
      at::Tensor rows = to_rows(x, p.granularity, p.axis, p.group_size);
      at::Tensor imp;
      if (importance.defined()) {
        CATQ_CHECK(importance.sizes() == x.sizes(), Config, "kmeans: importance shape does not match the tensor");
        imp = to_rows(importance.detach().to(at::kFloat), p.granularity, p.axis, p.group_size);
      }
      p.codebook = kmeans_rows(rows, spec.levels(), spec.kmeans_iters, imp);
      p.qmin = 0;
      p.qmax = spec.levels() - 1;
      return p;
    }
    case Scheme::Binary: {
      at::Tensor rows = to_rows(x, p.granularity, p.axis, p.group_size);
      p.scale = rows.abs().mean(1).reshape(pshape).contiguous();
      p.zero_point = at::zeros_like(p.scale, at::kInt);
      return p;
    }
    case Scheme::Ternary: {
      at::Tensor a = to_rows(x, p.granularity, p.axis, p.group_size).abs();
      at::Tensor delta = a.mean(1, true) * 0.7;
      at::Tensor keep = (a > delta).to(at::kFloat);
      at::Tensor alpha = (a * keep).sum(1) / keep.sum(1).clamp_min(1.0);
      p.scale = alpha.reshape(pshape).contiguous();
      p.threshold = delta.reshape(pshape).contiguous();
      p.zero_point = at::zeros_like(p.scale, at::kInt);
      return p;
    }
  }
  return p;
}

// ---- Rounding and application --------------------------------------------------------------------------------

at::Generator make_generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

at::Tensor round_values(const at::Tensor& v, Rounding r, std::optional<at::Generator> gen) {
  if (r == Rounding::Nearest) return at::round(v);  // half to even
  c10::optional<at::Generator> g;
  if (gen) g = *gen;
  at::Tensor u = at::rand(v.sizes(), g, v.options().device(at::kCPU).dtype(at::kFloat)).to(v.device(), v.scalar_type());
  return at::floor(v + u);
}

namespace {

at::Tensor on(const at::Tensor& t, const at::Tensor& like) {
  return t.device() == like.device() ? t : t.to(like.device());
}

void check_params(const at::Tensor& x, const QuantParams& p) {
  CATQ_CHECK(p.defined(), Internal, "quantizer: params are not defined (not calibrated?)");
  if (p.scheme == Scheme::KMeans) return;
  auto want = param_shape(x.sizes(), p.granularity, p.axis, p.group_size);
  if (p.granularity == Granularity::PerTensor) {
    CATQ_CHECK(p.scale.numel() == 1, Data, "quantizer: per-tensor params hold {} scales", p.scale.numel());
  } else {
    CATQ_CHECK(p.scale.sizes().vec() == want, Data,
               "quantizer: params of shape [{}] do not fit a tensor of shape [{}] ({} granularity)",
               fmt::join(p.scale.sizes(), ","), fmt::join(x.sizes(), ","), to_string(p.granularity));
  }
}

// Codeword index of every element (kmeans), returned in rows layout [R, M].
at::Tensor kmeans_index_rows(const at::Tensor& x, const QuantParams& p) {
  at::Tensor rows = to_rows(x.to(at::kFloat), p.granularity, p.axis, p.group_size).contiguous();
  at::Tensor cb = on(p.codebook, x);
  CATQ_CHECK(cb.dim() == 2 && cb.size(0) == rows.size(0), Data,
             "quantizer: codebook has {} rows, the tensor needs {}", cb.dim() == 2 ? cb.size(0) : -1, rows.size(0));
  const int64_t k = cb.size(1);
  if (k == 1) return at::zeros(rows.sizes(), rows.options().dtype(at::kLong));
  at::Tensor mid = ((cb.slice(1, 1) + cb.slice(1, 0, k - 1)) * 0.5).contiguous();
  return at::searchsorted(mid, rows);
}

// Uniform round-to-nearest on the CPU with our kernel (rtn_runs: the same IEEE operations as the tensor
// expression, bit-identical) instead of ~6 libtorch passes. Returns false (nothing written) when it does not apply:
// another device, stochastic rounding, per-token params, or params not float / int32 on the CPU.
bool rtn_fast(const at::Tensor& xf, const QuantParams& p, Rounding r, at::Tensor* codes, at::Tensor* deq) {
  if (p.scheme != Scheme::Uniform || r != Rounding::Nearest || !xf.device().is_cpu() || xf.numel() == 0) return false;
  if (p.granularity == Granularity::PerToken) return false;
  if (!p.scale.device().is_cpu() || p.scale.scalar_type() != at::kFloat || !p.zero_point.defined() ||
      !p.zero_point.device().is_cpu() || p.zero_point.scalar_type() != at::kInt || p.zero_point.numel() != p.scale.numel())
    return false;
  const at::Tensor x = xf.contiguous(), s = p.scale.contiguous(), z = p.zero_point.contiguous();
  const auto shape = x.sizes();
  RunLayout L;
  if (p.granularity == Granularity::PerTensor) {
    L.inner = x.numel();  // split into chunks below
  } else {
    const int a = p.axis;
    L.outer = prod(shape, 0, a);
    L.channels = p.granularity == Granularity::PerGroup ? shape[a] / p.group_size : shape[a];
    L.inner = x.numel() / (L.outer * L.channels);
    L.p_outer = p.granularity == Granularity::PerGroup ? L.channels : 0;
    L.p_channel = 1;
  }
  if (codes) *codes = at::empty(shape, x.options().dtype(at::kInt));
  if (deq) *deq = at::empty(shape, x.options());
  const float* xp = x.data_ptr<float>();
  int32_t* cp = codes ? codes->data_ptr<int32_t>() : nullptr;
  float* dp = deq ? deq->data_ptr<float>() : nullptr;
  const float* sp = s.data_ptr<float>();
  const int32_t* zp = z.data_ptr<int32_t>();
  const RangeIsa isa = range_best_isa();
  if (p.granularity == Granularity::PerTensor) {
    // One run: split its elements instead (each chunk is its own run of the same params).
    at::parallel_for(0, x.numel(), 1 << 16, [&](int64_t b, int64_t e) {
      RunLayout c;
      c.inner = e - b;
      rtn_runs(c, 0, 1, xp + b, sp, zp, p.qmin, p.qmax, cp ? cp + b : nullptr, dp ? dp + b : nullptr, isa);
    });
  } else {
    const int64_t runs = L.outer * L.channels;
    at::parallel_for(0, runs, std::max<int64_t>(1, (1 << 16) / L.inner),
                     [&](int64_t b, int64_t e) { rtn_runs(L, b, e, xp, sp, zp, p.qmin, p.qmax, cp, dp, isa); });
  }
  return true;
}

}  // namespace

at::Tensor quantize(const at::Tensor& x_in, const QuantParams& p, Rounding r, std::optional<at::Generator> gen) {
  at::NoGradGuard ng;
  at::Tensor x = x_in.detach();
  check_params(x, p);
  switch (p.scheme) {
    case Scheme::Uniform: {
      at::Tensor codes;
      if (rtn_fast(x.to(at::kFloat), p, r, &codes, nullptr)) return codes;
      at::Tensor xv = group_view(x.to(at::kFloat), p);
      at::Tensor s = on(p.scale, x), z = on(p.zero_point, x).to(at::kFloat);
      at::Tensor q = (round_values(xv / s, r, gen) + z).clamp(p.qmin, p.qmax);
      return q.reshape(x.sizes()).to(at::kInt);
    }
    case Scheme::KMeans:
      return from_rows(kmeans_index_rows(x, p), x.sizes(), p.granularity, p.axis, p.group_size).to(at::kInt);
    case Scheme::Binary: return at::where(x >= 0, 1, -1).to(at::kInt);
    case Scheme::Ternary: {
      at::Tensor xv = group_view(x.to(at::kFloat), p);
      at::Tensor d = on(p.threshold, x);
      return ((xv > d).to(at::kInt) - (xv < -d).to(at::kInt)).reshape(x.sizes());
    }
  }
  return {};
}

at::Tensor dequantize(const at::Tensor& q, const QuantParams& p) {
  at::NoGradGuard ng;
  check_params(q, p);
  if (p.scheme == Scheme::KMeans) {
    at::Tensor idx = to_rows(q.to(at::kLong), p.granularity, p.axis, p.group_size);
    CATQ_CHECK(idx.numel() == 0 || (idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < p.codebook.size(1)),
               Data, "dequantize: codebook index out of range [0, {})", p.codebook.size(1));
    at::Tensor vals = on(p.codebook, q).gather(1, idx);
    return from_rows(vals, q.sizes(), p.granularity, p.axis, p.group_size);
  }
  at::Tensor qv = group_view(q.to(at::kFloat), p);
  at::Tensor out = (qv - on(p.zero_point, q).to(at::kFloat)) * on(p.scale, q);
  return out.reshape(q.sizes());
}

at::Tensor fake_quantize(const at::Tensor& x_in, const QuantParams& p, Rounding r, std::optional<at::Generator> gen) {
  at::NoGradGuard ng;
  at::Tensor x = x_in.detach();
  check_params(x, p);
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor out;
  switch (p.scheme) {
    case Scheme::Uniform: {
      if (rtn_fast(xf, p, r, nullptr, &out)) break;
      at::Tensor xv = group_view(xf, p);
      at::Tensor s = on(p.scale, x), z = on(p.zero_point, x).to(at::kFloat);
      at::Tensor q = (round_values(xv / s, r, gen) + z).clamp(p.qmin, p.qmax);
      out = ((q - z) * s).reshape(x.sizes());
      break;
    }
    case Scheme::KMeans: {
      at::Tensor vals = on(p.codebook, x).gather(1, kmeans_index_rows(xf, p));
      out = from_rows(vals, x.sizes(), p.granularity, p.axis, p.group_size);
      break;
    }
    case Scheme::Binary: {
      at::Tensor xv = group_view(xf, p);
      out = (at::where(xv >= 0, 1.0f, -1.0f) * on(p.scale, x)).reshape(x.sizes());
      break;
    }
    case Scheme::Ternary: {
      at::Tensor xv = group_view(xf, p);
      at::Tensor d = on(p.threshold, x);
      out = (((xv > d).to(at::kFloat) - (xv < -d).to(at::kFloat)) * on(p.scale, x)).reshape(x.sizes());
      break;
    }
  }
  return out.to(x.scalar_type());
}

uint64_t storage_bits(at::IntArrayRef shape, const QuantSpec& spec) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  if (!spec.enabled) return 32 * n;
  CATQ_CHECK(spec.granularity != Granularity::PerToken, Config,
             "storage_bits: per-token params are dynamic; a stored tensor has no per-token cost");
  int axis = spec.resolved_axis(static_cast<int64_t>(shape.size()));
  uint64_t r = 1;
  for (int64_t d : param_shape(shape, spec.granularity, axis, spec.group_size)) r *= static_cast<uint64_t>(d);
  switch (spec.scheme) {
    case Scheme::Uniform: return n * spec.bits + r * 32 + (spec.symmetric ? 0 : r * spec.bits);
    case Scheme::KMeans: return n * spec.bits + r * 32 * static_cast<uint64_t>(spec.levels());
    case Scheme::Binary: return n + r * 32;
    case Scheme::Ternary: return 2 * n + r * 32;
  }
  return 32 * n;
}

}  // namespace catq

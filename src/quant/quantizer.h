// Quantization fundamentals (methods.md §1): the QuantSpec value object that describes a quantizer, the
// QuantParams it produces for one tensor, and the functions quantize / dequantize / fake_quantize.
//
// Uniform affine scheme (integers):
//   q  = clamp(round(x / s) + z, qmin, qmax)        x̂ = s · (q − z)
//   symmetric:  z = 0, s = max|x| / qmax
//   asymmetric: the range is widened to contain 0, s = (xmax − xmin) / (qmax − qmin),
//               z = qmin − round(xmin / s)  (so 0.0 is represented exactly)
//   A zero range (all-zero tensor) gets s = 1, z as above: no division by zero, no NaN.
// Rounding "nearest" is round-half-to-even (std::nearbyint / torch::round, like PyTorch's fake_quantize);
// "stochastic" is floor(v + u), u ~ U[0,1), which is unbiased: E[q] = v.
//
// Granularity (which elements share one scale / zero-point):
//   tensor  — one pair for the whole tensor; scale is a 0-dim tensor.
//   channel — one pair per index along `axis`; scale has x's rank with size C at `axis`, 1 elsewhere.
//   group   — blocks of `group_size` consecutive indices along `axis` (the reduction axis: dim 1 of both
//             linear [out,in] and conv [O,I,kh,kw] weights). Elements share a pair when they agree on every
//             index before `axis` and on the block index; all indices after `axis` share it too (a conv
//             group is G input channels × kh × kw). scale has shape x.shape[:axis] + [n/G, 1] + [1]*(rest)
//             and broadcasts against x viewed as x.shape[:axis] + [n/G, G] + x.shape[axis+1:] (group_view()).
//   token   — dynamic: one pair per row over the last dim, computed at run time; scale shape x.shape[:-1]+[1].
//
// Other schemes (weights): kmeans (a sorted per-row codebook, q = index of the nearest codeword), binary
// (x̂ = α·sign(x), α = mean|x| per row, q ∈ {−1,+1}), ternary (Δ = 0.7·mean|x|, α = mean of |x| over |x| > Δ,
// q ∈ {−1,0,+1}). Binary/ternary keep α in `scale` (zero_point 0) so dequantize is the affine formula.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace catq {

enum class Granularity { PerTensor, PerChannel, PerGroup, PerToken };
enum class ObserverKind { MinMax, EmaMinMax, Percentile, Mse, Kl };
enum class Rounding { Nearest, Stochastic };
enum class Scheme { Uniform, KMeans, Binary, Ternary };

// Names used in configs and reports ("tensor", "minmax", "nearest", "kmeans", ...).
const char* to_string(Granularity g);
const char* to_string(ObserverKind o);
const char* to_string(Rounding r);
const char* to_string(Scheme s);
// Parse a name; std::nullopt when unknown.
std::optional<Granularity> parse_granularity(const std::string& s);
std::optional<ObserverKind> parse_observer(const std::string& s);
std::optional<Rounding> parse_rounding(const std::string& s);
std::optional<Scheme> parse_scheme(const std::string& s);

// What a quantizer does. A plain value object: copy it, tweak fields, compare it.
struct QuantSpec {
  bool enabled = true;          // false = floating point (no quantization)
  int bits = 8;                 // 1..8, or 16 (accumulators / bias)
  bool is_signed = true;        // signed range [−2^(b−1), 2^(b−1)−1], unsigned [0, 2^b−1]
  bool symmetric = true;        // z = 0
  bool restricted = false;      // symmetric signed range ±(2^(b−1)−1) (drops −2^(b−1))
  Granularity granularity = Granularity::PerTensor;
  std::optional<int> axis;      // channel axis (default 0) or group axis (default 1; 0 for 1-D tensors)
  int64_t group_size = 0;       // per-group only, > 0
  ObserverKind observer = ObserverKind::MinMax;
  double percentile = 99.99;    // percentile observer: keep this % of the mass (per side when asymmetric)
  double momentum = 0.9;        // EMA observer: range = momentum·range + (1 − momentum)·batch_range
  double mse_p = 2.0;           // MSE observer: L_p norm of the error (2.4 as in BRECQ/QDrop code)
  int mse_grid = 100;           // MSE observer: clipping ratios k/grid, k = 1..grid
  int kl_bins = 2048;           // KL observer: histogram bins over [0, max|x|]
  int64_t max_samples = 1 << 20;  // percentile/MSE/KL keep a uniform subsample of at most this many values
  double clip_ratio = 1.0;      // shrink min-max ranges by this factor (e.g. 0.9 for per-token activations)
  Rounding rounding = Rounding::Nearest;
  Scheme scheme = Scheme::Uniform;
  int kmeans_iters = 25;        // Lloyd iterations for the kmeans scheme

  int64_t qmin() const;         // integer range for the uniform scheme
  int64_t qmax() const;
  int levels() const;            // 2^bits (codebook size for kmeans)
  // The concrete axis for a tensor of rank `ndim` (resolves the default, wraps negatives). Throws Error(Config).
  int resolved_axis(int64_t ndim) const;
  // Throws Error(Config) "<where>: <field>: problem, expected ..." for impossible combinations.
  void validate(const std::string& where) const;
  // Short human-readable form, e.g. "int4 sym channel(0) minmax" or "fp".
  std::string str() const;
  bool operator==(const QuantSpec&) const = default;

  static QuantSpec fp() { QuantSpec s; s.enabled = false; return s; }
};

// Parameters of one quantizer for one tensor (see the header comment for the tensor shapes).
// All tensors live on the CPU unless moved; fake_quantize moves them to x's device on the fly.
struct QuantParams {
  Scheme scheme = Scheme::Uniform;
  Granularity granularity = Granularity::PerTensor;
  int axis = 0;               // resolved channel / group axis (unused for tensor / token)
  int64_t group_size = 0;
  int bits = 8;
  int64_t qmin = 0, qmax = 0;  // integer range of q
  at::Tensor scale;           // float32; binary/ternary: α
  at::Tensor zero_point;      // int32, same shape as scale (zeros when symmetric)
  at::Tensor codebook;        // kmeans: float32 [R, K] ascending per row; R = 1 (tensor), C (channel), #groups
  at::Tensor threshold;       // ternary: Δ, same shape as scale

  bool defined() const { return scale.defined() || codebook.defined(); }
  int64_t num_scales() const;  // number of (scale, zero-point) pairs or codebook rows
};

// ---- Shapes -------------------------------------------------------------------------------------------------
// Broadcast shape of scale / zero_point for a tensor of shape `shape` (see header comment).
std::vector<int64_t> param_shape(at::IntArrayRef shape, Granularity g, int axis, int64_t group_size);
// x viewed so that the params broadcast against it (identity except for per-group).
at::Tensor group_view(const at::Tensor& x, const QuantParams& p);
// 2-D view/copy [R, M]: row r holds every element that shares param r (row order = params in memory order).
at::Tensor to_rows(const at::Tensor& x, Granularity g, int axis, int64_t group_size);
at::Tensor from_rows(const at::Tensor& rows, at::IntArrayRef shape, Granularity g, int axis, int64_t group_size);

// ---- Computing params ----------------------------------------------------------------------------------------
// Uniform params from a range. xmin/xmax: float tensors already shaped by param_shape (or 0-dim).
QuantParams params_from_range(const QuantSpec& spec, const at::Tensor& xmin, const at::Tensor& xmax, int axis = 0);
// One-shot params for tensor x: uniform via spec.observer (a single observation), kmeans/binary/ternary from
// their own rules; per-token = dynamic min-max per row. `importance` (kmeans only, same shape as x, ≥ 0)
// weights the k-means objective. Throws Error(Config) for invalid spec/shape combinations.
QuantParams compute_params(const QuantSpec& spec, const at::Tensor& x, const at::Tensor& importance = {});

// ---- Applying params -----------------------------------------------------------------------------------------
// Seeded generator for stochastic rounding (CPU; results are moved to the tensor's device).
at::Generator make_generator(uint64_t seed);
// Rounds v (float) to integers-as-float: nearest-even or stochastic.
at::Tensor round_values(const at::Tensor& v, Rounding r, std::optional<at::Generator> gen = std::nullopt);
// Integer tensor q (int32, same shape as x). kmeans: codeword index; binary: ±1; ternary: −1/0/+1.
at::Tensor quantize(const at::Tensor& x, const QuantParams& p, Rounding r = Rounding::Nearest,
                    std::optional<at::Generator> gen = std::nullopt);
// Float32 tensor x̂ from q.
at::Tensor dequantize(const at::Tensor& q, const QuantParams& p);
// dequantize(quantize(x)) in x's dtype without the integer round trip. No autograd (see fake_quant.h).
at::Tensor fake_quantize(const at::Tensor& x, const QuantParams& p, Rounding r = Rounding::Nearest,
                         std::optional<at::Generator> gen = std::nullopt);

// Storage cost in bits of a tensor of shape `shape` stored with `spec`: codes at `bits` bits each (ternary: 2),
// plus one float32 scale per param (α for binary/ternary), one `bits`-bit zero-point per param when asymmetric,
// and K float32 codewords per codebook row for kmeans. Disabled spec: 32 bits per element.
uint64_t storage_bits(at::IntArrayRef shape, const QuantSpec& spec);

}  // namespace catq

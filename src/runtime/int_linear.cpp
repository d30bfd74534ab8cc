// IntLinear (runtime/int_linear.h): preparation of a quantized linear layer for the integer, weight-only and
// codebook kernels, and its forward pass.
#include "runtime/int_linear.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <utility>
#include <vector>

#include "core/error.h"
#include "quant/quantizer.h"

namespace catq {

namespace {

// k-means weights: indices of ≤ 3 bits in the 2- or 3-bit codebook layout (1-bit indices use the 2-bit one, the
// codebook padded), a codebook per output row or one per tensor; activations must be floating-point.
std::unique_ptr<IntLinear> prepare_codebook_linear(const SimQuant::Layer& l, const at::Tensor& w, std::string* why) {
  auto no = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return std::unique_ptr<IntLinear>();
  };
  const QuantParams& p = *l.weight_params;
  if (p.bits > 3) return no(fmt::format("{}-bit k-means indices (the codebook kernel takes ≤ 3)", p.bits));
  const QuantSpec& as = l.input_spec;
  if (as.enabled && as.bits <= 8) return no("k-means weights with quantized activations (no kernel)");
  CATQ_CHECK(w.dim() == 2, Data, "layer '{}': linear weight of rank {}, expected [out, in]", l.info.name, w.dim());
  const int64_t rows = w.size(0), cols = w.size(1);
  if (cols % 8 != 0) return no(fmt::format("{} input columns (the codebook layout needs a multiple of 8)", cols));
  const at::Tensor cb = p.codebook.to(at::kFloat).contiguous();
  int64_t books = 0;
  if (p.granularity == Granularity::PerTensor) books = 1;
  else if (p.granularity == Granularity::PerChannel && p.axis == 0) books = rows;
  else return no(fmt::format("k-means codebooks per {}", to_string(p.granularity)));
  CATQ_CHECK(cb.dim() == 2 && cb.size(0) == books && cb.size(1) == (int64_t{1} << p.bits), Data,
             "layer '{}': codebook of shape {}, expected [{}, {}]", l.info.name, fmt::join(cb.sizes(), "x"), books,
             int64_t{1} << p.bits);
  const int cbits = p.bits <= 2 ? 2 : 3;
  const int64_t K = int64_t{1} << cbits;
  std::vector<float> book(static_cast<size_t>(books * K), 0.f);
  for (int64_t b = 0; b < books; ++b)
    for (int64_t i = 0; i < cb.size(1); ++i) book[static_cast<size_t>(b * K + i)] = cb[b][i].item<float>();
  const at::Tensor q = (l.weight_codes.defined() ? l.weight_codes : quantize(w.detach(), p)).to(at::kInt).contiguous();
  CATQ_CHECK(q.sizes() == w.sizes(), Data, "layer '{}': codes of shape {} for a weight of shape {}", l.info.name,
             fmt::join(q.sizes(), "x"), fmt::join(w.sizes(), "x"));
  auto lin = std::make_unique<IntLinear>();
  lin->kind = IntLinear::Kind::Codebook;
  lin->weight_bits = p.bits;
  lin->codebook = pack_codebook(q.data_ptr<int32_t>(), rows, cols, cbits, book.data(), books);
  return lin;
}

}  // namespace

std::unique_ptr<IntLinear> prepare_int_linear(const SimQuant::Layer& l, const at::Tensor& w, std::string* why) {
  auto no = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return std::unique_ptr<IntLinear>();
  };
  const QuantSpec& ws = l.weight_spec;
  if (l.info.kind != LayerKind::Linear) return no("not a linear layer");
  if (!ws.enabled) return no("floating-point weights");
  if (ws.scheme != Scheme::Uniform && ws.scheme != Scheme::KMeans)
    return no(fmt::format("{} weights (no kernel)", to_string(ws.scheme)));
  if (!l.weight_params) return no("weight params not computed");
  const QuantParams& p = *l.weight_params;
  if (p.bits > 8) return no(fmt::format("{}-bit weights", p.bits));
  if (ws.scheme == Scheme::KMeans) return prepare_codebook_linear(l, w, why);
  if (!l.weight_codes.defined() && ws.rounding != Rounding::Nearest) return no("stochastic weight rounding");
  CATQ_CHECK(w.dim() == 2, Data, "layer '{}': linear weight of rank {}, expected [out, in]", l.info.name, w.dim());
  // The layer's QuantizedWeight (installed codes, else the weight quantized with its params) in the kernels' layout.
  const QuantizedWeight qw = make_quantized_weight(
      l.weight_codes.defined() ? l.weight_codes : quantize(w.detach(), p), p);
  CATQ_CHECK(qw.shape == w.sizes().vec(), Data, "layer '{}': codes of shape [{}] for a weight of shape [{}]",
             l.info.name, fmt::join(qw.shape, ","), fmt::join(w.sizes(), ","));
  if (qw.bits > 8) return no(fmt::format("code range [{}, {}]", p.qmin, p.qmax));
  std::string reason;
  const std::optional<AffineRowGroups> groups = affine_row_groups(qw, &reason);
  if (!groups) return no(reason);
  const int cbits = qw.bits <= 2 ? 2 : qw.bits <= 4 ? 4 : 8;
  if (groups->group % (8 / cbits) != 0) return no(fmt::format("group of {} columns", groups->group));

  auto lin = std::make_unique<IntLinear>();
  lin->weight_bits = p.bits;
  const QuantSpec& as = l.input_spec;
  if (!as.enabled || as.bits > 8) {
    lin->kind = IntLinear::Kind::WeightOnly;
  } else {
    if (as.rounding != Rounding::Nearest) return no("stochastic activation rounding");
    if (as.scheme != Scheme::Uniform) return no("non-uniform activations");
    ActQuant& a = lin->act;
    a.qmin = as.qmin();
    a.qmax = as.qmax();
    a.symmetric = as.symmetric;
    a.is_signed = as.is_signed;
    a.clip_ratio = static_cast<float>(as.clip_ratio);
    if (as.granularity == Granularity::PerTensor) {
      if (!l.input_params) return no("input not calibrated");
      a.dynamic = false;
      a.scale = l.input_params->scale.item<float>();
      a.zero = l.input_params->zero_point.item<int32_t>();
    } else if (as.granularity != Granularity::PerToken) {
      return no(fmt::format("{} activations", to_string(as.granularity)));
    }
    lin->act_bits = as.bits;
  }

  PackedWeights pw = pack_for_kernels(qw, "layer '" + l.info.name + "'");
  lin->weights = prepare_int_weights(std::move(pw));
  return lin;
}

// Rows from which the weight-only path dequantizes for one fp32 GEMM instead of running the batched GEMV.
constexpr int64_t kDequantizeRows = 16;

namespace {
// A linear layer's input as contiguous float32 [..., cols]: its row count m and the output shape [..., rows].
struct LinearInput {
  at::Tensor x;
  int64_t m = 0;
  std::vector<int64_t> out_shape;
};
LinearInput linear_input(const at::Tensor& x_in, int64_t cols, int64_t rows) {
  CATQ_CHECK(x_in.dim() >= 1 && x_in.size(-1) == cols, Data, "integer linear: input of width {}, expected {}",
             x_in.dim() >= 1 ? x_in.size(-1) : 0, cols);
  LinearInput in;
  in.x = x_in.detach().to(at::kFloat).contiguous();
  in.m = in.x.numel() / cols;
  in.out_shape = in.x.sizes().vec();
  in.out_shape.back() = rows;
  return in;
}
}  // namespace

at::Tensor IntLinear::forward(const at::Tensor& x_in) const {
  if (kind == Kind::Codebook) return forward_codebook(x_in);
  const PackedWeights& w = weights.w;
  at::NoGradGuard ng;
  const LinearInput in = linear_input(x_in, w.cols, w.rows);
  const at::Tensor& x = in.x;
  const int64_t m = in.m;
  at::Tensor y = at::empty(in.out_shape, x.options());
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  if (kind == Kind::Integer) {
    gemm_qact(weights, xp, m, act, yp);
  } else if (m >= kDequantizeRows) {
    // Prefill: with many rows the product is compute-bound and the batched GEMV is far slower than an fp32 GEMM, so
    // the codes are dequantized once for the call (a K×N float buffer, freed after it) and multiplied by libtorch's
    // GEMM — the same approach llama.cpp takes for prompt processing.
    at::Tensor wt = at::empty({w.rows, w.cols}, at::kFloat);
    dequantize_rows(w, wt.data_ptr<float>());
    y.view({m, w.rows}).copy_(at::linear(x.view({m, w.cols}), wt));
  } else {
    // Decode: the int16-activation GEMV where the CPU and layout allow it (≈ 2× the float GEMV's rate), else the
    // float one.
    const bool i16 = int16_activations();
    at::parallel_for(0, m, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        i16 ? gemv_packed_i16(w, xp + i * w.cols, yp + i * w.rows) : gemv_packed(w, xp + i * w.cols, yp + i * w.rows);
    });
  }
  return y;
}

at::Tensor IntLinear::forward_codebook(const at::Tensor& x_in) const {
  const PackedCodebook& w = codebook;
  at::NoGradGuard ng;
  const LinearInput in = linear_input(x_in, w.cols, w.rows);
  const at::Tensor& x = in.x;
  const int64_t m = in.m;
  const std::vector<int64_t>& shape = in.out_shape;
  if (m >= kDequantizeRows) {  // prefill: one fp32 GEMM on the looked-up weights
    std::vector<float> u = unpack_codebook(w);
    const at::Tensor wt = at::from_blob(u.data(), {w.rows, w.cols}, at::kFloat);
    return at::linear(x.view({m, w.cols}), wt).view(shape);
  }
  at::Tensor y = at::empty(shape, x.options());
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  for (int64_t i = 0; i < m; ++i) gemv_codebook(w, xp + i * w.cols, yp + i * w.rows);
  return y;
}

std::string IntLinear::str() const {
  if (kind == Kind::Codebook)
    return fmt::format("W{}A16 codebook ({}-bit indices, {} codebook{}, {})", weight_bits, codebook.bits,
                       codebook.books == 1 ? "one" : "per-row", codebook.books == 1 ? "" : "s", to_string(best_isa()));
  const PackedWeights& w = weights.w;
  const std::string gran = w.group == w.cols ? "per channel" : fmt::format("group {}", w.group);
  if (kind == Kind::WeightOnly)
    return fmt::format("W{}A16 weight-only ({}-bit codes, {}, {}{})", weight_bits, w.bits, gran, to_string(best_isa()),
                       int16_activations() ? ", int16 activations in the GEMV" : "");
  return fmt::format("W{}A{} integer ({}-bit codes, {}, {} act, {})", weight_bits, act_bits, w.bits, gran,
                     act.dynamic ? "per-token" : "static", to_string(best_isa()));
}

}  // namespace catq

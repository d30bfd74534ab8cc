#include "runtime/int_runtime.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <atomic>
#include <optional>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <oneapi/dnnl/dnnl.hpp>

#include "core/error.h"

// GCC 12's _mm512_reduce_add_epi32 reads an uninitialised temporary inside its own header (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "llm/llama.h"
#include "quant/quantizer.h"

namespace catq {

namespace {

// Per-(row, group) values of a weight param tensor (scale or zero-point) as floats, row-major [rows, groups].
std::vector<float> per_group(const at::Tensor& t, Granularity g, int64_t rows, int64_t groups) {
  at::Tensor v = t.to(at::kFloat).contiguous().reshape({-1});
  if (g == Granularity::PerTensor) v = v.expand({rows * groups}).contiguous();
  else if (g == Granularity::PerChannel) v = v.reshape({rows, 1}).expand({rows, groups}).contiguous().reshape({-1});
  CATQ_CHECK(v.numel() == rows * groups, Internal, "integer runtime: {} weight params for {} × {} groups", v.numel(),
             rows, groups);
  return std::vector<float>(v.data_ptr<float>(), v.data_ptr<float>() + v.numel());
}

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
  const int64_t rows = w.size(0), cols = w.size(1);
  const int cbits = p.bits <= 2 ? 2 : p.bits <= 4 ? 4 : 8;
  if (p.qmax - p.qmin > (int64_t{1} << cbits) - 1) return no(fmt::format("code range [{}, {}]", p.qmin, p.qmax));
  int64_t group = cols;
  if (p.granularity == Granularity::PerGroup) {
    if (p.axis != 1) return no("groups along the output axis");
    group = p.group_size;
  } else if (p.granularity == Granularity::PerChannel) {
    if (p.axis != 0) return no("channels along the input axis");
  } else if (p.granularity != Granularity::PerTensor) {
    return no(fmt::format("{} weight granularity", to_string(p.granularity)));
  }
  if (group % (8 / cbits) != 0 || cols % group != 0) return no(fmt::format("group of {} columns", group));

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

  const at::Tensor q = (l.weight_codes.defined() ? l.weight_codes : quantize(w.detach(), p)).to(at::kInt).contiguous();
  CATQ_CHECK(q.sizes() == w.sizes(), Data, "layer '{}': codes of shape {} for a weight of shape {}", l.info.name,
             fmt::join(q.sizes(), "x"), fmt::join(w.sizes(), "x"));
  PackedWeights pw;
  pw.bits = cbits;
  pw.rows = rows;
  pw.cols = cols;
  pw.group = group;
  pw.symmetric = ws.symmetric;
  const int64_t G = cols / group;
  pw.scale = per_group(p.scale, p.granularity, rows, G);
  pw.zero = per_group(p.zero_point, p.granularity, rows, G);
  for (float& z : pw.zero) z -= static_cast<float>(p.qmin);  // unsigned codes u = q − qmin
  pw.q.assign(static_cast<size_t>(rows * pw.row_bytes()), 0);
  const int32_t* qd = q.data_ptr<int32_t>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t u = qd[r * cols + j] - p.qmin;
      CATQ_CHECK(u >= 0 && u < (int64_t{1} << cbits), Data, "layer '{}': code {} outside [{}, {}]", l.info.name,
                 qd[r * cols + j], p.qmin, p.qmax);
      pw.set_code(r, j, static_cast<int>(u));
    }
  lin->weights = prepare_int_weights(std::move(pw));
  return lin;
}


// ---- IntConv -------------------------------------------------------------------------------------------------

std::unique_ptr<IntConv> prepare_int_conv(const SimQuant::Layer& l, std::string* why) {
  auto no = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return std::unique_ptr<IntConv>();
  };
  const QuantSpec& ws = l.weight_spec;
  const QuantSpec& as = l.input_spec;
  if (!ws.enabled) return no("floating-point weights");
  if (ws.scheme != Scheme::Uniform) return no(fmt::format("{} weights (no kernel)", to_string(ws.scheme)));
  if (!l.weight_codes.defined() || !l.weight_params) return no("no integer codes installed");
  const QuantParams& p = *l.weight_params;
  const int w_shift = p.qmax > 127 ? 128 : 0;  // unsigned 8-bit codes move to int8 (with their zero-points)
  if (p.qmin - w_shift < -128 || p.qmax - w_shift > 127)
    return no(fmt::format("weight code range [{}, {}] does not fit int8", p.qmin, p.qmax));
  if (p.granularity != Granularity::PerChannel && p.granularity != Granularity::PerTensor)
    return no(fmt::format("{} weights", to_string(p.granularity)));
  if (p.granularity == Granularity::PerChannel && p.axis != 0) return no("channels along the input axis");
  if (!as.enabled || as.bits > 8) return no("floating-point activations");
  if (as.granularity != Granularity::PerTensor || !l.input_params) return no("no static per-tensor input params");
  if (as.rounding != Rounding::Nearest) return no("stochastic activation rounding");
  if (l.weight_codes.dim() != 4) return no(fmt::format("{}-D convolution", l.weight_codes.dim() - 2));
  auto c = std::make_unique<IntConv>();
  const int64_t O = l.weight_codes.size(0);
  const at::Tensor sw = p.scale.to(at::kFloat).reshape({-1}).expand({p.granularity == Granularity::PerTensor ? O : -1});
  const at::Tensor zw = p.zero_point.to(at::kInt).reshape({-1}).expand({p.granularity == Granularity::PerTensor ? O : -1});
  const at::Tensor q = l.weight_codes.to(at::kInt);
  // Codes minus their zero-point fit int8 for ≤ 7-bit weights: then the weights are symmetric for oneDNN and no
  // correction is needed. 8-bit asymmetric codes keep the zero-point, moved into the int8 range.
  const at::Tensor centred = q - zw.reshape({O, 1, 1, 1});
  const bool recentre = centred.min().item<int>() >= -128 && centred.max().item<int>() <= 127;
  c->codes = (recentre ? centred : q - w_shift).to(at::kChar).contiguous();
  c->x_scale = l.input_params->scale.item<float>();
  c->x_shift = as.qmin() < 0 ? 128 : 0;
  c->x_zero = l.input_params->zero_point.item<int32_t>() + c->x_shift;
  c->x_qmin = static_cast<int32_t>(as.qmin());
  c->x_qmax = static_cast<int32_t>(as.qmax());
  c->out_scale.resize(static_cast<size_t>(O));
  c->zero_term.resize(static_cast<size_t>(O));
  for (int64_t o = 0; o < O; ++o) {
    c->out_scale[static_cast<size_t>(o)] = c->x_scale * sw[o].item<float>();
    const int32_t z = recentre ? 0 : zw[o].item<int32_t>() - w_shift;
    c->zero_term[static_cast<size_t>(o)] = c->out_scale[static_cast<size_t>(o)] * static_cast<float>(z);
    c->asymmetric = c->asymmetric || z != 0;
  }
  c->weight_bits = p.bits;
  c->act_bits = as.bits;
  return c;
}

struct IntConv::Primitive {
  std::vector<int64_t> in_shape, stride, padding, dilation;
  bool u8_out = false, relu = false, sum = false;  // forward_codes: u8 output of `out`, ReLU, residual sum
  Codes out;
  float sum_scale = 0;
  dnnl::convolution_forward conv;
  dnnl::memory weights;  // in the primitive's preferred layout
  dnnl::memory::desc src_md, dst_md;
  std::vector<int64_t> out_shape;
  std::string impl;
};

namespace {
dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
}  // namespace

#if defined(__x86_64__)
// Pixels [p0, p1) of C channels (C % 16 == 0): u8 codes, and where hp / sp are given x̂ and Σ_c (code − zero).
// False when a value is not finite.
static __attribute__((target("avx512f,avx512bw"))) bool quantize_pixels_avx512(const float* xp, int64_t p0, int64_t p1,
                                                                         int64_t C, float s, float z, float lo,
                                                                         float hi, int32_t shift, int32_t zero,
                                                                         float* hp, uint8_t* qp, float* sp) {
  const __m512 sv = _mm512_set1_ps(s), zv = _mm512_set1_ps(z), lov = _mm512_set1_ps(lo), hiv = _mm512_set1_ps(hi);
  const __m512i off = _mm512_set1_epi32(shift - zero), sh = _mm512_set1_epi32(shift);
  __mmask16 finite = 0xFFFF;
  for (int64_t p = p0; p < p1; ++p) {
    __m512i acc = _mm512_setzero_si512();
    for (int64_t c = 0; c < C; c += 16) {
      const __m512 v = _mm512_loadu_ps(xp + p * C + c);
      finite &= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_EQ_OQ);
      __m512 q = _mm512_roundscale_ps(_mm512_div_ps(v, sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, zv), lov), hiv);
      if (hp) _mm512_storeu_ps(hp + p * C + c, _mm512_mul_ps(_mm512_sub_ps(q, zv), sv));
      const __m512i qi = _mm512_cvtps_epi32(q);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qp + p * C + c), _mm512_cvtepi32_epi8(_mm512_add_epi32(qi, sh)));
      acc = _mm512_add_epi32(acc, _mm512_add_epi32(qi, off));
    }
    if (sp) sp[p] = static_cast<float>(_mm512_reduce_add_epi32(acc));
  }
  return finite == 0xFFFF;
}
#endif

namespace {
// The simulation's fake quantizer, element for element: q = clamp(round(x / s) + z), x̂ = (q − z)·s (AVX-512 for
// 16-channel multiples: the same IEEE division, round-half-even and clamp). x NHWC float; codes always written,
// x̂ and the per-pixel sums Σ_c (code − zero) where hp / sp are given.
void quantize_nhwc(const IntConv& c, const float* xp, int64_t npix, int64_t C, uint8_t* qp, float* hp, float* sp) {
  const float s = c.x_scale, z = static_cast<float>(c.x_zero - c.x_shift);
  const float lo = static_cast<float>(c.x_qmin), hi = static_cast<float>(c.x_qmax);
  std::atomic<bool> finite{true};
  const bool simd = C % 16 == 0 && isa_supported(KernelIsa::Avx512) && best_isa() == KernelIsa::Avx512;
  at::parallel_for(0, npix, 256, [&](int64_t p0, int64_t p1) {
    bool ok = true;
#if defined(__x86_64__)
    if (simd) {
      ok = quantize_pixels_avx512(xp, p0, p1, C, s, z, lo, hi, c.x_shift, c.x_zero, hp, qp, sp);
    } else
#endif
    for (int64_t p = p0; p < p1; ++p) {
      int32_t sum = 0;
      for (int64_t k = 0; k < C; ++k) {
        const float v = xp[p * C + k];
        ok &= std::isfinite(v);
        const float qf = std::clamp(std::nearbyint(v / s) + z, lo, hi);
        if (hp) hp[p * C + k] = (qf - z) * s;
        const int32_t code = static_cast<int32_t>(qf) + c.x_shift;
        qp[p * C + k] = static_cast<uint8_t>(code);
        sum += code - c.x_zero;
      }
      if (sp) sp[p] = static_cast<float>(sum);
    }
    if (!ok) finite = false;
  });
  CATQ_CHECK(finite, Data, "integer conv: input holds NaN or Inf");
}
}  // namespace

IntConv::Input IntConv::quantize_input(const at::Tensor& x_in) const {
  const std::vector<int64_t> shape = x_in.sizes().vec();
  CATQ_CHECK(shape.size() == 4 && shape[1] == codes.size(1), Data, "integer conv: input of shape {}, expected [N, {}, H, W]",
             fmt::join(shape, "x"), codes.size(1));
  const at::Tensor x = x_in.detach().to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
  const auto cl = at::TensorOptions().memory_format(at::MemoryFormat::ChannelsLast);
  Input in;
  in.xhat = at::empty(shape, cl.dtype(at::kFloat));
  in.codes = at::empty(shape, cl.dtype(at::kByte));
  in.csum = at::empty({shape[0], 1, shape[2], shape[3]}, at::kFloat);
  quantize_nhwc(*this, x.data_ptr<float>(), shape[0] * shape[2] * shape[3], shape[1], in.codes.data_ptr<uint8_t>(),
                in.xhat.data_ptr<float>(), in.csum.data_ptr<float>());
  return in;
}

at::Tensor IntConv::quantize_codes(const at::Tensor& x_in) const {
  const std::vector<int64_t> shape = x_in.sizes().vec();
  CATQ_CHECK(shape.size() == 4 && shape[1] == codes.size(1), Data, "integer conv: input of shape {}, expected [N, {}, H, W]",
             fmt::join(shape, "x"), codes.size(1));
  const at::Tensor x = x_in.detach().to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor q = at::empty(shape, at::TensorOptions().dtype(at::kByte).memory_format(at::MemoryFormat::ChannelsLast));
  quantize_nhwc(*this, x.data_ptr<float>(), shape[0] * shape[2] * shape[3], shape[1], q.data_ptr<uint8_t>(), nullptr,
                nullptr);
  return q;
}

std::shared_ptr<IntConv::Primitive> IntConv::primitive(at::IntArrayRef in_shape, at::IntArrayRef stride,
                                                       at::IntArrayRef padding, at::IntArrayRef dilation,
                                                       const Codes* out, bool relu, bool sum, float sum_scale) const {
  using dnnl::memory;
  const std::vector<int64_t> shape = in_shape.vec();
  for (const auto& c : cache)
    if (c->in_shape == shape && c->stride == stride.vec() && c->padding == padding.vec() &&
        c->dilation == dilation.vec() && c->u8_out == (out != nullptr) && (!out || (c->out == *out && c->relu == relu &&
        c->sum == sum && c->sum_scale == sum_scale)))
      return c;
  auto P = std::make_shared<Primitive>();
  P->in_shape = shape;
  P->stride = stride.vec();
  P->padding = padding.vec();
  P->dilation = dilation.vec();
  P->u8_out = out != nullptr;
  if (out) P->out = *out;
  P->relu = relu;
  P->sum = sum;
  P->sum_scale = sum_scale;
  const int64_t O = codes.size(0), kh = codes.size(2), kw = codes.size(3);
  const int64_t oh = (shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  const int64_t ow = (shape[3] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  P->out_shape = {shape[0], O, oh, ow};
  P->src_md = memory::desc(shape, memory::data_type::u8, memory::format_tag::nhwc);
  P->dst_md = memory::desc(P->out_shape, out ? memory::data_type::u8 : memory::data_type::f32, memory::format_tag::nhwc);
  const memory::desc wany(codes.sizes().vec(), memory::data_type::s8, memory::format_tag::any);
  const memory::dims st(stride.begin(), stride.end()), pd(padding.begin(), padding.end());
  const memory::dims dl = {dilation[0] - 1, dilation[1] - 1};  // oneDNN counts dilation from 0
  dnnl::primitive_attr attr;
  std::vector<float> scales = out_scale;
  std::optional<dnnl::convolution_forward::desc> d;
  if (out) {
    for (float& v : scales) v /= out->scale;
    const memory::desc bias_md({O}, memory::data_type::f32, memory::format_tag::a);
    d.emplace(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, P->src_md, wany, bias_md,
              P->dst_md, st, dl, pd, pd);
    dnnl::post_ops ops;
    if (sum) ops.append_sum(sum_scale);
    const float lo = static_cast<float>(relu ? std::max(out->lo, out->zero) : out->lo);
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, lo, static_cast<float>(out->hi));
    attr.set_post_ops(ops);
  } else {
    d.emplace(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, P->src_md, wany, P->dst_md, st,
              dl, pd, pd);
  }
  attr.set_output_scales(1 << 1, scales);  // one per output channel
  if (x_zero != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {x_zero});
  dnnl::convolution_forward::primitive_desc pdesc(*d, attr, cpu_engine());
  P->impl = pdesc.impl_info_str();
  P->conv = dnnl::convolution_forward(pdesc);
  memory plain({codes.sizes().vec(), memory::data_type::s8, memory::format_tag::oihw}, cpu_engine(), codes.data_ptr());
  P->weights = memory(pdesc.weights_desc(), cpu_engine());
  dnnl::stream strm(cpu_engine());
  dnnl::reorder(plain, P->weights).execute(strm, plain, P->weights);
  strm.wait();
  cache.push_back(P);
  return P;
}

at::Tensor IntConv::forward_codes(const at::Tensor& xq, const at::Tensor& bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, const Codes& out, bool relu,
                                  const at::Tensor& residual, const Codes& rc) const {
  using dnnl::memory;
  CATQ_CHECK(!asymmetric, Internal, "integer conv: requantized output needs symmetric int8 weights");
  CATQ_CHECK(xq.dim() == 4 && xq.scalar_type() == at::kByte && xq.size(1) == codes.size(1), Internal,
             "integer conv: codes of shape {}, expected u8 [N, {}, H, W]", fmt::join(xq.sizes(), "x"), codes.size(1));
  at::NoGradGuard ng;
  const bool sum = residual.defined();
  const float sum_scale = sum ? rc.scale / out.scale : 0.f;
  const std::shared_ptr<Primitive> P = primitive(xq.sizes(), stride, padding, dilation, &out, relu, sum, sum_scale);
  const auto cl = at::TensorOptions().dtype(at::kByte).memory_format(at::MemoryFormat::ChannelsLast);
  at::Tensor y;
  if (sum) {
    CATQ_CHECK(residual.sizes().vec() == P->out_shape && residual.scalar_type() == at::kByte, Internal,
               "integer conv: residual codes of shape {}, expected {}", fmt::join(residual.sizes(), "x"),
               fmt::join(P->out_shape, "x"));
    y = residual.clone(at::MemoryFormat::ChannelsLast);  // the sum post-op reads the destination's contents
  } else {
    y = at::empty(P->out_shape, cl);
  }
  // Code = clip(round(h / s_out) + z_out) for h = s_x·s_w[o]·acc + b[o] + s_r·(c_r − z_r): oneDNN computes
  // oscale[o]·(acc + bias[o]) + (s_r / s_out)·c_r, so bias[o] = ((b[o] − s_r·z_r) / s_out + z_out) / oscale[o].
  const int64_t O = codes.size(0);
  const at::Tensor b = bias.defined() ? bias.to(at::kFloat).contiguous() : at::zeros({O}, at::kFloat);
  at::Tensor bq = at::empty({O}, at::kFloat);
  const float* bp = b.data_ptr<float>();
  float* qp = bq.data_ptr<float>();
  const float r0 = sum ? rc.scale * static_cast<float>(rc.zero) : 0.f;
  for (int64_t o = 0; o < O; ++o) {
    const float oscale = out_scale[static_cast<size_t>(o)] / out.scale;
    qp[o] = ((bp[o] - r0) / out.scale + static_cast<float>(out.zero)) / oscale;
  }
  memory src(P->src_md, cpu_engine(), xq.data_ptr()), dst(P->dst_md, cpu_engine(), y.data_ptr());
  memory bm({{O}, memory::data_type::f32, memory::format_tag::a}, cpu_engine(), bq.data_ptr());
  dnnl::stream strm(cpu_engine());
  P->conv.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, P->weights}, {DNNL_ARG_BIAS, bm}, {DNNL_ARG_DST, dst}});
  strm.wait();
  return y;
}

at::Tensor IntConv::forward(const Input& in, const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                            at::IntArrayRef dilation) const {
  using dnnl::memory;
  at::NoGradGuard ng;
  const std::shared_ptr<Primitive> P = primitive(in.codes.sizes(), stride, padding, dilation, nullptr, false, false, 0.f);
  at::Tensor y = at::empty(P->out_shape, at::TensorOptions().dtype(at::kFloat).memory_format(at::MemoryFormat::ChannelsLast));
  memory src(P->src_md, cpu_engine(), in.codes.data_ptr()), dst(P->dst_md, cpu_engine(), y.data_ptr());
  dnnl::stream s(cpu_engine());
  P->conv.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, P->weights}, {DNNL_ARG_DST, dst}});
  s.wait();
  // One pass over the output: bias, and for asymmetric 8-bit weights (oneDNN has no weight zero-points)
  // − s_x·s_w[o]·z_w[o]·Σ_window(q − z_x), the window sums a kh × kw box sum of the per-pixel channel sums.
  const int64_t O = P->out_shape[1], npix = P->out_shape[0] * P->out_shape[2] * P->out_shape[3];
  at::Tensor window;
  if (asymmetric) {
    const at::Tensor ones = at::ones({1, 1, codes.size(2), codes.size(3)}, at::kFloat);
    window = at::convolution(in.csum, ones, {}, stride, padding, dilation, false, {0, 0}, 1).contiguous();
  }
  const at::Tensor b = bias.defined() ? bias.to(at::kFloat).contiguous() : at::zeros({O}, at::kFloat);
  const float* bp = b.data_ptr<float>();
  const float* wp = asymmetric ? window.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, npix, 256, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float* row = yp + p * O;
      if (wp) {
        const float wv = wp[p];
        for (int64_t o = 0; o < O; ++o) row[o] += bp[o] - zero_term[static_cast<size_t>(o)] * wv;
      } else {
        for (int64_t o = 0; o < O; ++o) row[o] += bp[o];
      }
    }
  });
  return y;
}

std::string IntConv::str() const {
  return fmt::format("W{}A{} int8 conv (oneDNN{})", weight_bits, act_bits,
                     cache.empty() ? "" : ", " + cache.front()->impl);
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

IntegerRuntime::IntegerRuntime(const LlamaModel& model, SimQuant& sim) : sim_(sim) {
  CATQ_CHECK(sim.mode() == SimQuant::Mode::Quantize, Usage, "integer runtime: the SimQuant must be in Quantize mode");
  model.bind(&sim);
  prepare(model.layer_infos(), [&](const LayerInfo& info) { return model.layer_weight(info.index); });
}

IntegerRuntime::IntegerRuntime(SimQuant& sim) : sim_(sim) {
  CATQ_CHECK(sim.mode() == SimQuant::Mode::Quantize, Usage, "integer runtime: the SimQuant must be in Quantize mode");
  std::vector<LayerInfo> infos;
  for (const auto& l : sim.layers()) infos.push_back(l.info);
  prepare(infos, {});
}

void IntegerRuntime::prepare(const std::vector<LayerInfo>& infos,
                             const std::function<at::Tensor(const LayerInfo&)>& weight_of) {
  int max_index = -1;
  for (const LayerInfo& info : infos) max_index = std::max(max_index, info.index);
  layers_.resize(static_cast<size_t>(max_index + 1));
  convs_.resize(static_cast<size_t>(max_index + 1));
  for (const LayerInfo& info : infos) {
    const SimQuant::Layer& l = sim_.layer(info.name);
    LayerEntry e;
    e.name = info.name;
    std::string why;
    if (info.kind == LayerKind::Conv) {
      auto c = prepare_int_conv(l, &why);
      if (c) {
        e.how = c->str();
        e.integer = true;
      } else {
        e.how = "simulated: " + why;
      }
      convs_[static_cast<size_t>(info.index)] = std::move(c);
      entries_.push_back(e);
      continue;
    }
    if (!weight_of) {  // a CNN graph: its Gemm / MatMul nodes multiply in the executor, not through linear()
      e.how = "simulated: graph Gemm / MatMul node";
      entries_.push_back(e);
      continue;
    }
    at::Tensor w = l.weight_codes.defined() ? at::Tensor() : weight_of(info);
    if (l.weight_spec.enabled && !l.weight_params && !l.weight_codes.defined() && w.defined()) {
      at::NoGradGuard ng;
      sim_.weight(info, w);  // computes the layer's weight params (RTN) as a quantized forward would
    }
    if (!w.defined() && !l.weight_codes.defined()) {
      e.how = "simulated: no integer codes installed";
      entries_.push_back(e);
      continue;
    }
    const at::Tensor shape_of = w.defined() ? w : l.weight_codes;
    layers_[static_cast<size_t>(info.index)] = prepare_int_linear(sim_.layer(info.name), shape_of, &why);
    if (const IntLinear* lin = layers_[static_cast<size_t>(info.index)].get()) {
      e.how = lin->str();
      e.integer = lin->kind == IntLinear::Kind::Integer;  // WeightOnly and Codebook count as weight-only
      e.weight_only = !e.integer;
    } else {
      e.how = "simulated: " + why;
    }
    entries_.push_back(e);
  }
}

at::Tensor IntegerRuntime::input(const LayerInfo& layer, const at::Tensor& x) {
  const size_t i = static_cast<size_t>(layer.index);
  if (i >= convs_.size() || !convs_[i] || x.dim() != 4 || at::GradMode::is_enabled()) return sim_.input(layer, x);
  // The simulation's quantized input, computed in one pass that also keeps the codes for conv().
  IntConv::Input in = convs_[i]->quantize_input(x);
  at::Tensor xhat = in.xhat;
  pending_.push_back({layer.index, std::move(in)});
  if (pending_.size() > 8) pending_.erase(pending_.begin());  // inputs never consumed (a graph that pads first)
  return xhat;
}

at::Tensor IntegerRuntime::conv(const LayerInfo& layer, const at::Tensor& x, const at::Tensor& w,
                                const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                                at::IntArrayRef dilation, int64_t groups) {
  const size_t i = static_cast<size_t>(layer.index);
  if (i < convs_.size() && convs_[i] && groups == 1 && x.dim() == 4) {
    // Codes kept by input() for this very tensor and layer; anything else (a value quantized by another layer's
    // params, an input padded after quantization) runs simulated, which is always correct.
    for (auto it = pending_.begin(); it != pending_.end(); ++it)
      if (it->first == layer.index && it->second.xhat.data_ptr() == x.data_ptr() && it->second.xhat.sizes() == x.sizes()) {
        IntConv::Input in = std::move(it->second);
        pending_.erase(it);
        ++integer_conv_calls_;
        return convs_[i]->forward(in, bias, stride, padding, dilation);
      }
  }
  ++simulated_conv_calls_;
  return QuantContext::conv(layer, x, w, bias, stride, padding, dilation, groups);
}

at::Tensor IntegerRuntime::linear(const LayerInfo& layer, const at::Tensor& x, const at::Tensor& w) {
  const size_t i = static_cast<size_t>(layer.index);
  if (i < layers_.size() && layers_[i]) return layers_[i]->forward(x);
  return QuantContext::linear(layer, x, w);
}

int64_t IntegerRuntime::num_integer() const {
  int64_t n = 0;
  for (const auto& e : entries_) n += e.integer;
  return n;
}

int64_t IntegerRuntime::num_weight_only() const {
  int64_t n = 0;
  for (const auto& e : entries_) n += e.weight_only;
  return n;
}

uint64_t IntegerRuntime::packed_bytes() const {
  uint64_t b = 0;
  for (const auto& l : layers_)
    if (l) b += l->weights.w.q.size() + 4 * (l->weights.w.scale.size() + l->weights.w.zero.size()) +
                l->codebook.lo.size() + l->codebook.hi.size() + 4 * l->codebook.codebook.size();
  return b;
}

}  // namespace catq

// IntConv (runtime/int_conv.h): preparation of a quantized conv layer for oneDNN's int8 convolution, the cached
// oneDNN primitives, input quantization (runtime/act_quant.h) and the forward passes (float or requantized output).
#include "runtime/int_conv.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include <oneapi/dnnl/dnnl.hpp>

#include "core/error.h"
#include "quant/quantizer.h"
#include "runtime/act_quant.h"

namespace catq {

bool onednn_int8_conv_exact() {
#if defined(__x86_64__)
  static const bool v = __builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni");
  return v;
#else
  return false;
#endif
}

std::unique_ptr<IntConv> prepare_int_conv(const SimQuant::Layer& l, std::string* why) {
  auto no = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return std::unique_ptr<IntConv>();
  };
  const QuantSpec& ws = l.weight_spec;
  const QuantSpec& as = l.input_spec;
  if (!ws.enabled) return no("floating-point weights");
  if (!onednn_int8_conv_exact())
    return no("this CPU has no VNNI: oneDNN's int8 convolution would halve the weights (int16 saturation guard)");
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
  float sum_scale = 0, clip_max = 0;
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

// The layer's static input quantizer, for the NHWC activation quantizer (runtime/act_quant.h).
NhwcQuant nhwc_quant(const IntConv& c) { return {c.x_scale, c.x_zero, c.x_shift, c.x_qmin, c.x_qmax}; }
}  // namespace

IntConv::Input IntConv::quantize_input(const at::Tensor& x_in) const {
  const std::vector<int64_t> shape = x_in.sizes().vec();
  CATQ_CHECK(shape.size() == 4 && shape[1] % codes.size(1) == 0 && shape[1] > 0, Data,
             "integer conv: input of shape {}, expected [N, a multiple of {}, H, W]", fmt::join(shape, "x"), codes.size(1));
  const at::Tensor x = x_in.detach().to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
  const auto cl = at::TensorOptions().memory_format(at::MemoryFormat::ChannelsLast);
  Input in;
  in.xhat = at::empty(shape, cl.dtype(at::kFloat));
  in.codes = at::empty(shape, cl.dtype(at::kByte));
  in.csum = at::empty({shape[0], 1, shape[2], shape[3]}, at::kFloat);
  quantize_nhwc(nhwc_quant(*this), x.data_ptr<float>(), shape[0] * shape[2] * shape[3], shape[1],
                in.codes.data_ptr<uint8_t>(), in.xhat.data_ptr<float>(), in.csum.data_ptr<float>());
  return in;
}

at::Tensor IntConv::quantize_codes(const at::Tensor& x_in) const {
  const std::vector<int64_t> shape = x_in.sizes().vec();
  CATQ_CHECK(shape.size() == 4 && shape[1] % codes.size(1) == 0 && shape[1] > 0, Data,
             "integer conv: input of shape {}, expected [N, a multiple of {}, H, W]", fmt::join(shape, "x"), codes.size(1));
  const at::Tensor x = x_in.detach().to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
  at::Tensor q = at::empty(shape, at::TensorOptions().dtype(at::kByte).memory_format(at::MemoryFormat::ChannelsLast));
  quantize_nhwc(nhwc_quant(*this), x.data_ptr<float>(), shape[0] * shape[2] * shape[3], shape[1], q.data_ptr<uint8_t>(),
                nullptr, nullptr);
  return q;
}

std::shared_ptr<IntConv::Primitive> IntConv::primitive(at::IntArrayRef in_shape, at::IntArrayRef stride,
                                                       at::IntArrayRef padding, at::IntArrayRef dilation,
                                                       const Codes* out, bool relu, bool sum, float sum_scale,
                                                       float clip_max) const {
  using dnnl::memory;
  const std::vector<int64_t> shape = in_shape.vec();
  for (const auto& c : cache)
    if (c->in_shape == shape && c->stride == stride.vec() && c->padding == padding.vec() &&
        c->dilation == dilation.vec() && c->u8_out == (out != nullptr) && (!out || (c->out == *out && c->relu == relu &&
        c->sum == sum && c->sum_scale == sum_scale && c->clip_max == clip_max)))
      return c;
  const int64_t G = groups_for(shape[1]);
  CATQ_CHECK(G >= 1 && G * codes.size(1) == shape[1] && codes.size(0) % G == 0 && (G == 1 || !asymmetric), Internal,
             "integer conv: {} input channels for weights [{}]{}", shape[1], fmt::join(codes.sizes(), ","),
             asymmetric ? " (asymmetric weights: no groups)" : "");
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
  P->clip_max = clip_max;
  const int64_t O = codes.size(0), kh = codes.size(2), kw = codes.size(3);
  const int64_t oh = (shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  const int64_t ow = (shape[3] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  P->out_shape = {shape[0], O, oh, ow};
  P->src_md = memory::desc(shape, memory::data_type::u8, memory::format_tag::nhwc);
  P->dst_md = memory::desc(P->out_shape, out ? memory::data_type::u8 : memory::data_type::f32, memory::format_tag::nhwc);
  // Grouped weights: [G, O/G, I/G, kh, kw], which is the [O, I/G, kh, kw] codes' own memory (goihw).
  const memory::dims wdims = G == 1 ? memory::dims(codes.sizes().vec())
                                    : memory::dims{G, O / G, codes.size(1), kh, kw};
  const memory::desc wany(wdims, memory::data_type::s8, memory::format_tag::any);
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
    float hi = static_cast<float>(out->hi);
    if (std::isfinite(clip_max))  // Clip(0, M) before the quantizer: round(min(y, M) / s) = min(round(y / s), round(M / s))
      hi = std::min(hi, static_cast<float>(out->zero) + std::nearbyint(clip_max / out->scale));
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_clip, lo, hi);
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
  memory plain({wdims, memory::data_type::s8, G == 1 ? memory::format_tag::oihw : memory::format_tag::goihw}, cpu_engine(),
               codes.data_ptr());
  P->weights = memory(pdesc.weights_desc(), cpu_engine());
  dnnl::stream strm(cpu_engine());
  dnnl::reorder(plain, P->weights).execute(strm, plain, P->weights);
  strm.wait();
  cache.push_back(P);
  return P;
}

at::Tensor IntConv::forward_codes(const at::Tensor& xq, const at::Tensor& bias, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, const Codes& out, bool relu,
                                  const at::Tensor& residual, const Codes& rc, float clip_max) const {
  using dnnl::memory;
  CATQ_CHECK(!asymmetric, Internal, "integer conv: requantized output needs symmetric int8 weights");
  CATQ_CHECK(xq.dim() == 4 && xq.scalar_type() == at::kByte && xq.size(1) % codes.size(1) == 0, Internal,
             "integer conv: codes of shape {}, expected u8 [N, k·{}, H, W]", fmt::join(xq.sizes(), "x"), codes.size(1));
  at::NoGradGuard ng;
  const bool sum = residual.defined();
  const float sum_scale = sum ? rc.scale / out.scale : 0.f;
  const std::shared_ptr<Primitive> P =
      primitive(xq.sizes(), stride, padding, dilation, &out, relu, sum, sum_scale, clip_max);
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
  const std::shared_ptr<Primitive> P =
      primitive(in.codes.sizes(), stride, padding, dilation, nullptr, false, false, 0.f, 0.f);
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

}  // namespace catq

#include "runtime/tflite_int8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <ATen/Parallel.h>

#include "core/error.h"
#include "quant/requant.h"

namespace catq {

namespace {

// Σ a[i]·b[i] over int16 (the activation minus its zero-point, the weight minus its zero-point): the compiler turns
// this loop into vpmaddwd.
inline int32_t dot16(const int16_t* a, const int16_t* b, int64_t n) {
  int32_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<int32_t>(a[i]) * b[i];
  return s;
}

inline int32_t round_div(int32_t acc, int32_t count) {  // TFLite's average: ties away from zero
  return acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
}

std::pair<int64_t, int64_t> pad_begin(int64_t in, int64_t k, int64_t stride, int64_t dil, int8_t padding) {
  if (padding == tfl::VALID) return {0, (in - ((k - 1) * dil + 1) + stride) / stride};
  const int64_t out = (in + stride - 1) / stride;
  const int64_t total = std::max<int64_t>((out - 1) * stride + (k - 1) * dil + 1 - in, 0);
  return {total / 2, out};
}

}  // namespace

struct TfliteInt8Executor::Impl {
  TfliteModel m;
  bool drop_softmax = true;
  int32_t result = 0;  // the tensor forward() returns

  struct Step {
    int32_t code = 0;
    size_t op = 0;
    std::vector<int32_t> in, out;
    // geometry (NHWC, batch 1)
    int64_t H = 0, W = 0, C = 0, OH = 0, OW = 0, OC = 0, kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1, pt = 0, pl = 0;
    int64_t group = 1, mult_depth = 1;
    std::vector<int16_t> w;  // weights minus their zero-point: conv [O][kh][kw][I/g], depthwise [kh][kw][C·M], fc [O][I]
    std::vector<int32_t> bias;
    std::vector<FixedPointMultiplier> mult;  // per output channel (or one)
    int32_t zin = 0, zin2 = 0, zout = 0, act_min = -128, act_max = 127;
    FixedPointMultiplier m1, m2;  // ADD: the inputs' multipliers (mult[0]: the output's)
    float sin = 1.f, sout = 1.f, beta = 1.f;
    std::vector<int64_t> pads;  // PAD: [rank][2]
    std::vector<int64_t> in_shape;
  };
  std::vector<Step> steps;

  const TfliteTensor& T(int32_t i) const { return m.tensor(i); }
  std::string where(size_t k) const {
    const TfliteOp& op = m.ops[k];
    return fmt::format("{}: operator {} ({})", m.path, k, op.name());
  }
  float scale(int32_t i, size_t k) const {
    CATQ_CHECK(T(i).quant.present(), Unsupported, "{}: tensor '{}' has no quantization parameters", where(k), T(i).name);
    return T(i).quant.scale[0];
  }
  int32_t zp(int32_t i) const { return T(i).quant.present() ? static_cast<int32_t>(T(i).quant.zero_point[0]) : 0; }
  void need_int8(int32_t i, size_t k) const {
    CATQ_CHECK(T(i).type == TfliteType::Int8, Unsupported, "{}: tensor '{}' is {}; the integer executor runs int8 "
               "activations", where(k), T(i).name, tflite_type_name(static_cast<int>(T(i).type)));
    CATQ_CHECK(T(i).quant.present() && !T(i).quant.per_channel(), Unsupported,
               "{}: activation '{}' needs one scale and zero-point", where(k), T(i).name);
  }
  // The fused activation's range in the output's codes (TFLite's CalculateActivationRangeQuantized).
  void act_range(Step& s, int8_t act, int32_t out, size_t k) const {
    const float sc = T(out).quant.scale[0];
    const int32_t z = zp(out);
    auto q = [&](float f) { return z + static_cast<int32_t>(std::round(f / sc)); };
    s.act_min = -128;
    s.act_max = 127;
    switch (act) {
      case tfl::ACT_NONE: break;
      case tfl::ACT_RELU: s.act_min = std::max(s.act_min, q(0.f)); break;
      case tfl::ACT_RELU6: s.act_min = std::max(s.act_min, q(0.f)); s.act_max = std::min(s.act_max, q(6.f)); break;
      case tfl::ACT_RELU_N1_TO_1: s.act_min = std::max(s.act_min, q(-1.f)); s.act_max = std::min(s.act_max, q(1.f)); break;
      default: fail(ErrorKind::Unsupported, "{}: fused activation {} in an integer model", where(k), static_cast<int>(act));
    }
  }
  static FixedPointMultiplier multiplier(double real, const std::string& where) {
    try {
      return FixedPointMultiplier::from_real(real);
    } catch (const Error& e) {
      fail(ErrorKind::Unsupported, "{}: {}", where, e.what());
    }
  }

  void prepare_conv(Step& s, const TfliteOp& op, size_t k, bool depthwise) {
    const int32_t x = op.inputs.at(0), w = op.inputs.at(1), y = op.outputs.at(0);
    need_int8(x, k);
    need_int8(y, k);
    const TfliteTensor& wt = T(w);
    CATQ_CHECK(wt.is_constant() && wt.type == TfliteType::Int8 && wt.quant.present() && wt.shape.size() == 4, Unsupported,
               "{}: the filter must be a constant int8 4-D tensor with quantization parameters", where(k));
    CATQ_CHECK(T(x).shape.size() == 4 && T(y).shape.size() == 4 && T(x).shape[0] == 1, Unsupported,
               "{}: expected 4-D input and output with batch 1", where(k));
    const TfliteOptions& o = op.options;
    s.H = T(x).shape[1], s.W = T(x).shape[2], s.C = T(x).shape[3];
    s.OH = T(y).shape[1], s.OW = T(y).shape[2], s.OC = T(y).shape[3];
    s.kh = wt.shape[1], s.kw = wt.shape[2];
    s.sh = o.stride_h, s.sw = o.stride_w, s.dh = o.dilation_h, s.dw = o.dilation_w;
    CATQ_CHECK(s.sh >= 1 && s.sw >= 1 && s.dh >= 1 && s.dw >= 1, Format, "{}: strides / dilations must be >= 1", where(k));
    auto [pt, oh] = pad_begin(s.H, s.kh, s.sh, s.dh, o.padding);
    auto [pl, ow] = pad_begin(s.W, s.kw, s.sw, s.dw, o.padding);
    CATQ_CHECK(oh == s.OH && ow == s.OW, Data, "{}: output [{}] does not match the convolution's {}x{}", where(k),
               fmt::join(T(y).shape, ","), oh, ow);
    s.pt = pt, s.pl = pl;
    const int axis = depthwise ? 3 : 0;
    CATQ_CHECK(wt.shape[axis] == s.OC, Data, "{}: filter [{}] for {} output channels", where(k), fmt::join(wt.shape, ","), s.OC);
    if (depthwise) {
      CATQ_CHECK(wt.shape[0] == 1 && s.C > 0 && s.OC % s.C == 0, Data, "{}: depthwise filter [{}] for {} input channels",
                 where(k), fmt::join(wt.shape, ","), s.C);
      s.mult_depth = s.OC / s.C;
    } else {
      CATQ_CHECK(wt.shape[3] > 0 && s.C % wt.shape[3] == 0 && s.OC % (s.C / wt.shape[3]) == 0, Data,
                 "{}: filter [{}] for {} input channels", where(k), fmt::join(wt.shape, ","), s.C);
      s.group = s.C / wt.shape[3];
    }
    const auto* wd = reinterpret_cast<const int8_t*>(wt.data.data());
    const int64_t n = wt.numel();
    s.w.resize(static_cast<size_t>(n));
    const bool pc = wt.quant.per_channel();
    CATQ_CHECK(!pc || wt.quant.axis == axis, Unsupported, "{}: filter quantized along dimension {}, expected {}", where(k),
               wt.quant.axis, axis);
    const int64_t inner = depthwise ? 1 : n / s.OC;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t oc = depthwise ? i % s.OC : i / inner;
      s.w[i] = static_cast<int16_t>(wd[i] - wt.quant.zero_point[pc ? oc : 0]);
    }
    prepare_requant(s, op, k, x, w, y, s.OC);
    s.zin = zp(x), s.zout = zp(y);
    act_range(s, o.activation, y, k);
  }
  // Bias and the per-channel multipliers s_in · s_w[o] / s_out.
  void prepare_requant(Step& s, const TfliteOp& op, size_t k, int32_t x, int32_t w, int32_t y, int64_t channels) {
    const TfliteTensor& wt = T(w);
    s.bias.assign(static_cast<size_t>(channels), 0);
    if (op.inputs.size() > 2 && op.inputs[2] >= 0) {
      const TfliteTensor& b = T(op.inputs[2]);
      CATQ_CHECK(b.is_constant() && b.type == TfliteType::Int32 && b.numel() == channels, Unsupported,
                 "{}: the bias must be a constant int32 tensor of {} values", where(k), channels);
      std::memcpy(s.bias.data(), b.data.data(), 4 * static_cast<size_t>(channels));
    }
    const double sx = scale(x, k), sy = scale(y, k);
    for (int64_t c = 0; c < channels; ++c) {
      const double sw = wt.quant.scale[wt.quant.per_channel() ? c : 0];
      s.mult.push_back(multiplier(sx * sw / sy, where(k)));
    }
  }

  void prepare(size_t k) {
    const TfliteOp& op = m.ops[k];
    Step s;
    s.code = op.code;
    s.op = k;
    s.in = op.inputs;
    s.out = op.outputs;
    CATQ_CHECK(!op.outputs.empty() && !op.inputs.empty(), Format, "{}: no inputs or outputs", where(k));
    const int32_t x = op.inputs[0], y = op.outputs[0];
    switch (op.code) {
      case tfl::CONV_2D: prepare_conv(s, op, k, false); break;
      case tfl::DEPTHWISE_CONV_2D: prepare_conv(s, op, k, true); break;
      case tfl::FULLY_CONNECTED: {
        const int32_t w = op.inputs.at(1);
        need_int8(x, k);
        need_int8(y, k);
        const TfliteTensor& wt = T(w);
        CATQ_CHECK(wt.is_constant() && wt.type == TfliteType::Int8 && wt.shape.size() == 2 && wt.quant.present() &&
                       op.options.weights_format == 0,
                   Unsupported, "{}: weights must be a constant int8 [O, I] tensor", where(k));
        s.OC = wt.shape[0];
        s.C = wt.shape[1];
        CATQ_CHECK(T(x).numel() == s.C && T(y).numel() == s.OC, Unsupported,
                   "{}: input of {} values and output of {} for weights [{}] (batch 1 only)", where(k), T(x).numel(),
                   T(y).numel(), fmt::join(wt.shape, ","));
        const auto* wd = reinterpret_cast<const int8_t*>(wt.data.data());
        s.w.resize(static_cast<size_t>(wt.numel()));
        for (int64_t i = 0; i < wt.numel(); ++i)
          s.w[i] = static_cast<int16_t>(wd[i] - wt.quant.zero_point[wt.quant.per_channel() ? i / s.C : 0]);
        prepare_requant(s, op, k, x, w, y, s.OC);
        s.zin = zp(x), s.zout = zp(y);
        act_range(s, op.options.activation, y, k);
        break;
      }
      case tfl::ADD: {
        const int32_t b = op.inputs.at(1);
        need_int8(x, k);
        need_int8(b, k);
        need_int8(y, k);
        CATQ_CHECK(T(x).shape == T(b).shape && T(x).shape == T(y).shape, Unsupported,
                   "{}: ADD of shapes [{}] and [{}] (broadcasting is not supported)", where(k), fmt::join(T(x).shape, ","),
                   fmt::join(T(b).shape, ","));
        CATQ_CHECK(!T(x).is_constant() && !T(b).is_constant(), Unsupported, "{}: ADD of a constant", where(k));
        // TFLite's int8 ADD: inputs scaled to twice the larger input scale, with 20 bits of headroom.
        const double s1 = scale(x, k), s2 = scale(b, k), so = scale(y, k);
        const double twice_max = 2 * std::max(s1, s2);
        s.m1 = multiplier(s1 / twice_max, where(k));
        s.m2 = multiplier(s2 / twice_max, where(k));
        s.mult = {multiplier(twice_max / ((1 << 20) * so), where(k))};
        s.zin = zp(x), s.zin2 = zp(b), s.zout = zp(y);
        act_range(s, op.options.activation, y, k);
        break;
      }
      case tfl::AVERAGE_POOL_2D: case tfl::MAX_POOL_2D: {
        need_int8(x, k);
        need_int8(y, k);
        CATQ_CHECK(T(x).shape.size() == 4 && T(y).shape.size() == 4 && T(x).shape[0] == 1, Unsupported,
                   "{}: expected 4-D input and output with batch 1", where(k));
        CATQ_CHECK(scale(x, k) == scale(y, k) && zp(x) == zp(y), Unsupported,
                   "{}: pooling with different input and output quantization", where(k));
        const TfliteOptions& o = op.options;
        s.H = T(x).shape[1], s.W = T(x).shape[2], s.C = T(x).shape[3];
        s.OH = T(y).shape[1], s.OW = T(y).shape[2];
        s.kh = o.filter_h, s.kw = o.filter_w, s.sh = o.stride_h, s.sw = o.stride_w;
        CATQ_CHECK(s.kh >= 1 && s.kw >= 1 && s.sh >= 1 && s.sw >= 1, Format, "{}: filter / strides must be >= 1", where(k));
        auto [pt, oh] = pad_begin(s.H, s.kh, s.sh, 1, o.padding);
        auto [pl, ow] = pad_begin(s.W, s.kw, s.sw, 1, o.padding);
        CATQ_CHECK(oh == s.OH && ow == s.OW && T(y).shape[3] == s.C, Data, "{}: output [{}] does not match the pooling",
                   where(k), fmt::join(T(y).shape, ","));
        s.pt = pt, s.pl = pl;
        act_range(s, o.activation, y, k);
        break;
      }
      case tfl::MEAN: {
        need_int8(x, k);
        need_int8(y, k);
        std::vector<int64_t> axes;
        const TfliteTensor& at = T(op.inputs.at(1));
        CATQ_CHECK(at.is_constant(), Unsupported, "{}: MEAN axes must be constant", where(k));
        at::Tensor a = at.to_tensor(m.path).to(at::kLong).reshape({-1});
        for (int64_t i = 0; i < a.numel(); ++i) axes.push_back((a[i].item<int64_t>() + 4) % 4);
        std::sort(axes.begin(), axes.end());
        CATQ_CHECK(T(x).shape.size() == 4 && axes == std::vector<int64_t>({1, 2}) && T(y).numel() == T(x).shape[3],
                   Unsupported, "{}: MEAN over axes other than height and width of a 4-D tensor", where(k));
        s.H = T(x).shape[1], s.W = T(x).shape[2], s.C = T(x).shape[3];
        s.mult = {multiplier(static_cast<double>(scale(x, k)) / scale(y, k), where(k))};
        s.zin = zp(x), s.zout = zp(y);
        break;
      }
      case tfl::PAD: {
        need_int8(x, k);
        need_int8(y, k);
        CATQ_CHECK(scale(x, k) == scale(y, k) && zp(x) == zp(y), Unsupported,
                   "{}: PAD with different input and output quantization", where(k));
        const TfliteTensor& p = T(op.inputs.at(1));
        CATQ_CHECK(p.is_constant(), Unsupported, "{}: paddings must be constant", where(k));
        at::Tensor pv = p.to_tensor(m.path).to(at::kLong).reshape({-1});
        CATQ_CHECK(pv.numel() == 2 * static_cast<int64_t>(T(x).shape.size()), Data, "{}: {} padding values for rank {}",
                   where(k), pv.numel(), T(x).shape.size());
        for (int64_t i = 0; i < pv.numel(); ++i) {
          s.pads.push_back(pv[i].item<int64_t>());
          CATQ_CHECK(s.pads.back() >= 0, Unsupported, "{}: negative padding", where(k));
        }
        s.in_shape.assign(T(x).shape.begin(), T(x).shape.end());
        s.zout = zp(y);
        break;
      }
      case tfl::RESHAPE: case tfl::SQUEEZE:
        need_int8(x, k);
        need_int8(y, k);
        CATQ_CHECK(T(x).numel() == T(y).numel() && scale(x, k) == scale(y, k) && zp(x) == zp(y), Unsupported,
                   "{}: reshape changes the size or the quantization", where(k));
        break;
      case tfl::RELU: case tfl::RELU6: {
        need_int8(x, k);
        need_int8(y, k);
        s.mult = {multiplier(static_cast<double>(scale(x, k)) / scale(y, k), where(k))};
        s.zin = zp(x), s.zout = zp(y);
        act_range(s, op.code == tfl::RELU ? tfl::ACT_RELU : tfl::ACT_RELU6, y, k);
        break;
      }
      case tfl::SOFTMAX:
        need_int8(x, k);
        need_int8(y, k);
        s.sin = scale(x, k), s.sout = scale(y, k), s.zin = zp(x), s.zout = zp(y), s.beta = op.options.beta;
        break;
      case tfl::QUANTIZE:
        need_int8(y, k);
        CATQ_CHECK(T(x).type == TfliteType::Float32 || T(x).type == TfliteType::Int8, Unsupported,
                   "{}: QUANTIZE from {}", where(k), tflite_type_name(static_cast<int>(T(x).type)));
        s.sout = scale(y, k), s.zout = zp(y);
        if (T(x).type == TfliteType::Int8) {
          s.mult = {multiplier(static_cast<double>(scale(x, k)) / s.sout, where(k))};
          s.zin = zp(x);
        }
        break;
      case tfl::DEQUANTIZE:
        need_int8(x, k);
        CATQ_CHECK(T(y).type == TfliteType::Float32, Unsupported, "{}: DEQUANTIZE to {}", where(k),
                   tflite_type_name(static_cast<int>(T(y).type)));
        s.sin = scale(x, k), s.zin = zp(x);
        break;
      default:
        fail(ErrorKind::Unsupported, "{}: operator {} is not supported by the integer TFLite executor", where(k),
             op.name());
    }
    steps.push_back(std::move(s));
  }

  // ---- execution (one image; buffers indexed by tensor) ----
  struct Buffers {
    std::vector<std::vector<int8_t>> q;
    std::vector<std::vector<float>> f;
    std::vector<int16_t> xs;  // the current layer's input minus its zero-point
    std::vector<int32_t> acc;
  };

  void run_step(const Step& s, Buffers& b) const {
    auto& q = b.q;
    auto out = [&](int32_t t) -> std::vector<int8_t>& {
      q[t].resize(static_cast<size_t>(T(t).numel()));
      return q[t];
    };
    auto clampq = [&](int32_t v) { return static_cast<int8_t>(std::clamp(v, s.act_min, s.act_max)); };
    switch (s.code) {
      case tfl::CONV_2D: case tfl::DEPTHWISE_CONV_2D: {
        const std::vector<int8_t>& x = q[s.in[0]];
        std::vector<int8_t>& y = out(s.out[0]);
        b.xs.resize(x.size());
        for (size_t i = 0; i < x.size(); ++i) b.xs[i] = static_cast<int16_t>(x[i] - s.zin);
        const int16_t* xs = b.xs.data();
        if (s.code == tfl::CONV_2D) {
          const int64_t cig = s.C / s.group, cog = s.OC / s.group;
          for (int64_t oy = 0; oy < s.OH; ++oy)
            for (int64_t ox = 0; ox < s.OW; ++ox)
              for (int64_t oc = 0; oc < s.OC; ++oc) {
                const int64_t g = oc / cog;
                int32_t acc = s.bias[oc];
                for (int64_t ky = 0; ky < s.kh; ++ky) {
                  const int64_t iy = oy * s.sh - s.pt + ky * s.dh;
                  if (iy < 0 || iy >= s.H) continue;
                  for (int64_t kx = 0; kx < s.kw; ++kx) {
                    const int64_t ix = ox * s.sw - s.pl + kx * s.dw;
                    if (ix < 0 || ix >= s.W) continue;
                    acc += dot16(xs + (iy * s.W + ix) * s.C + g * cig, s.w.data() + ((oc * s.kh + ky) * s.kw + kx) * cig, cig);
                  }
                }
                y[(oy * s.OW + ox) * s.OC + oc] = clampq(s.mult[oc].apply_tflite(acc) + s.zout);
              }
        } else {
          b.acc.resize(static_cast<size_t>(s.OC));
          int32_t* acc = b.acc.data();
          const int64_t M = s.mult_depth;
          for (int64_t oy = 0; oy < s.OH; ++oy)
            for (int64_t ox = 0; ox < s.OW; ++ox) {
              std::copy(s.bias.begin(), s.bias.end(), acc);
              for (int64_t ky = 0; ky < s.kh; ++ky) {
                const int64_t iy = oy * s.sh - s.pt + ky * s.dh;
                if (iy < 0 || iy >= s.H) continue;
                for (int64_t kx = 0; kx < s.kw; ++kx) {
                  const int64_t ix = ox * s.sw - s.pl + kx * s.dw;
                  if (ix < 0 || ix >= s.W) continue;
                  const int16_t* xp = xs + (iy * s.W + ix) * s.C;
                  const int16_t* wp = s.w.data() + (ky * s.kw + kx) * s.OC;
                  if (M == 1) {
                    for (int64_t c = 0; c < s.OC; ++c) acc[c] += static_cast<int32_t>(xp[c]) * wp[c];
                  } else {
                    for (int64_t c = 0; c < s.OC; ++c) acc[c] += static_cast<int32_t>(xp[c / M]) * wp[c];
                  }
                }
              }
              int8_t* yp = y.data() + (oy * s.OW + ox) * s.OC;
              for (int64_t c = 0; c < s.OC; ++c) yp[c] = clampq(s.mult[c].apply_tflite(acc[c]) + s.zout);
            }
        }
        break;
      }
      case tfl::FULLY_CONNECTED: {
        const std::vector<int8_t>& x = q[s.in[0]];
        std::vector<int8_t>& y = out(s.out[0]);
        b.xs.resize(x.size());
        for (size_t i = 0; i < x.size(); ++i) b.xs[i] = static_cast<int16_t>(x[i] - s.zin);
        for (int64_t o = 0; o < s.OC; ++o) {
          const int32_t acc = s.bias[o] + dot16(b.xs.data(), s.w.data() + o * s.C, s.C);
          y[o] = clampq(s.mult[s.mult.size() > 1 ? o : 0].apply_tflite(acc) + s.zout);
        }
        break;
      }
      case tfl::ADD: {
        const std::vector<int8_t>& a = q[s.in[0]];
        const std::vector<int8_t>& c = q[s.in[1]];
        std::vector<int8_t>& y = out(s.out[0]);
        for (size_t i = 0; i < y.size(); ++i) {
          const int32_t x1 = s.m1.apply_tflite((a[i] - s.zin) * (1 << 20));
          const int32_t x2 = s.m2.apply_tflite((c[i] - s.zin2) * (1 << 20));
          y[i] = clampq(s.mult[0].apply_tflite(x1 + x2) + s.zout);
        }
        break;
      }
      case tfl::AVERAGE_POOL_2D: case tfl::MAX_POOL_2D: {
        const std::vector<int8_t>& x = q[s.in[0]];
        std::vector<int8_t>& y = out(s.out[0]);
        const bool is_max = s.code == tfl::MAX_POOL_2D;
        for (int64_t oy = 0; oy < s.OH; ++oy)
          for (int64_t ox = 0; ox < s.OW; ++ox) {
            const int64_t y0 = oy * s.sh - s.pt, x0 = ox * s.sw - s.pl;
            const int64_t ky0 = std::max<int64_t>(0, -y0), ky1 = std::min(s.kh, s.H - y0);
            const int64_t kx0 = std::max<int64_t>(0, -x0), kx1 = std::min(s.kw, s.W - x0);
            const int32_t count = static_cast<int32_t>((ky1 - ky0) * (kx1 - kx0));
            for (int64_t c = 0; c < s.C; ++c) {
              int32_t acc = is_max ? -128 : 0;
              for (int64_t ky = ky0; ky < ky1; ++ky)
                for (int64_t kx = kx0; kx < kx1; ++kx) {
                  const int32_t v = x[((y0 + ky) * s.W + x0 + kx) * s.C + c];
                  acc = is_max ? std::max(acc, v) : acc + v;
                }
              if (!is_max) acc = count > 0 ? round_div(acc, count) : 0;
              y[(oy * s.OW + ox) * s.C + c] = clampq(acc);
            }
          }
        break;
      }
      case tfl::MEAN: {
        const std::vector<int8_t>& x = q[s.in[0]];
        std::vector<int8_t>& y = out(s.out[0]);
        const int32_t n = static_cast<int32_t>(s.H * s.W);
        for (int64_t c = 0; c < s.C; ++c) {
          int32_t acc = 0;
          for (int64_t p = 0; p < s.H * s.W; ++p) acc += x[p * s.C + c] - s.zin;
          acc = round_div(s.mult[0].apply_tflite(acc), n) + s.zout;
          y[c] = static_cast<int8_t>(std::clamp(acc, -128, 127));
        }
        break;
      }
      case tfl::PAD: {
        const std::vector<int8_t>& x = q[s.in[0]];
        std::vector<int8_t>& y = out(s.out[0]);
        std::fill(y.begin(), y.end(), static_cast<int8_t>(s.zout));
        const size_t r = s.in_shape.size();
        std::vector<int64_t> oshape(r), idx(r, 0);
        for (size_t d = 0; d < r; ++d) oshape[d] = s.in_shape[d] + s.pads[2 * d] + s.pads[2 * d + 1];
        for (size_t i = 0; i < x.size(); ++i) {
          int64_t o = 0;
          for (size_t d = 0; d < r; ++d) o = o * oshape[d] + idx[d] + s.pads[2 * d];
          y[o] = x[i];
          for (size_t d = r; d-- > 0;) {
            if (++idx[d] < s.in_shape[d]) break;
            idx[d] = 0;
          }
        }
        break;
      }
      case tfl::RESHAPE: case tfl::SQUEEZE: out(s.out[0]) = q[s.in[0]]; break;
      case tfl::RELU: case tfl::RELU6: {
        const std::vector<int8_t>& x = q[s.in[0]];
        std::vector<int8_t>& y = out(s.out[0]);
        for (size_t i = 0; i < y.size(); ++i) y[i] = clampq(s.mult[0].apply_tflite(x[i] - s.zin) + s.zout);
        break;
      }
      case tfl::SOFTMAX: {
        const std::vector<int8_t>& x = q[s.in[0]];
        std::vector<int8_t>& y = out(s.out[0]);
        const int64_t depth = T(s.in[0]).shape.back();
        for (size_t r0 = 0; r0 < x.size(); r0 += static_cast<size_t>(depth)) {
          float mx = -std::numeric_limits<float>::infinity();
          for (int64_t i = 0; i < depth; ++i) mx = std::max(mx, s.sin * (x[r0 + i] - s.zin));
          double sum = 0;
          std::vector<double> e(static_cast<size_t>(depth));
          for (int64_t i = 0; i < depth; ++i) sum += e[i] = std::exp(s.beta * (s.sin * (x[r0 + i] - s.zin) - mx));
          for (int64_t i = 0; i < depth; ++i)
            y[r0 + i] = static_cast<int8_t>(std::clamp<int64_t>(std::llround(e[i] / sum / s.sout) + s.zout, -128, 127));
        }
        break;
      }
      case tfl::QUANTIZE: {
        std::vector<int8_t>& y = out(s.out[0]);
        if (T(s.in[0]).type == TfliteType::Float32) {
          const std::vector<float>& x = b.f[s.in[0]];
          for (size_t i = 0; i < y.size(); ++i)
            y[i] = static_cast<int8_t>(std::clamp<int64_t>(static_cast<int64_t>(std::round(x[i] / s.sout)) + s.zout, -128, 127));
        } else {
          const std::vector<int8_t>& x = q[s.in[0]];
          for (size_t i = 0; i < y.size(); ++i)
            y[i] = static_cast<int8_t>(std::clamp(s.mult[0].apply_tflite(x[i] - s.zin) + s.zout, -128, 127));
        }
        break;
      }
      case tfl::DEQUANTIZE: {
        const std::vector<int8_t>& x = q[s.in[0]];
        std::vector<float>& y = b.f[s.out[0]];
        y.resize(x.size());
        for (size_t i = 0; i < x.size(); ++i) y[i] = s.sin * (x[i] - s.zin);
        break;
      }
      default: fail(ErrorKind::Internal, "tflite int8: step {} not implemented", s.code);
    }
  }
};

TfliteInt8Executor::TfliteInt8Executor(TfliteModel m, bool drop_final_softmax) : impl_(std::make_unique<Impl>()) {
  Impl& I = *impl_;
  I.m = std::move(m);
  I.drop_softmax = drop_final_softmax;
  const TfliteModel& M = I.m;
  CATQ_CHECK(M.inputs.size() == 1 && M.outputs.size() == 1, Unsupported,
             "{}: the integer executor runs models with one input and one output (this one has {} and {})", M.path,
             M.inputs.size(), M.outputs.size());
  size_t n_ops = M.ops.size();
  I.result = M.outputs[0];
  // A final SOFTMAX (possibly followed by DEQUANTIZE) is dropped: the logits are its input.
  if (drop_final_softmax && n_ops >= 1) {
    size_t last = n_ops - 1;
    if (M.ops[last].code == tfl::DEQUANTIZE && last >= 1 && M.ops[last - 1].code == tfl::SOFTMAX) --last;
    if (M.ops[last].code == tfl::SOFTMAX && !M.ops[last].inputs.empty()) {
      I.result = M.ops[last].inputs[0];
      n_ops = last;
    }
  }
  for (size_t k = 0; k < n_ops; ++k) I.prepare(k);
  const TfliteTensor& in = M.tensor(M.inputs[0]);
  CATQ_CHECK((in.type == TfliteType::Int8 && in.quant.present()) || in.type == TfliteType::Float32, Unsupported,
             "{}: input '{}' is {}; expected int8 (or float32 followed by QUANTIZE)", M.path, in.name,
             tflite_type_name(static_cast<int>(in.type)));
  CATQ_CHECK(!in.shape.empty() && in.shape[0] == 1, Unsupported, "{}: input shape [{}], expected batch 1", M.path,
             fmt::join(in.shape, ","));
  const TfliteTensor& r = M.tensor(I.result);
  CATQ_CHECK((r.type == TfliteType::Int8 && r.quant.present()) || r.type == TfliteType::Float32, Unsupported,
             "{}: output '{}' is {}", M.path, r.name, tflite_type_name(static_cast<int>(r.type)));
}

TfliteInt8Executor::~TfliteInt8Executor() = default;

const TfliteModel& TfliteInt8Executor::model() const { return impl_->m; }

std::vector<int8_t> TfliteInt8Executor::run_codes(const std::vector<int8_t>& input) const {
  return trace(input).at(impl_->result);
}

std::map<int32_t, std::vector<int8_t>> TfliteInt8Executor::trace(const std::vector<int8_t>& input) const {
  const Impl& I = *impl_;
  const int32_t in = I.m.inputs[0];
  CATQ_CHECK(I.m.tensor(in).type == TfliteType::Int8, Unsupported, "{}: run_codes needs an int8 input", I.m.path);
  CATQ_CHECK(static_cast<int64_t>(input.size()) == I.m.tensor(in).numel(), Data, "{}: {} input codes, the input tensor "
             "holds {}", I.m.path, input.size(), I.m.tensor(in).numel());
  Impl::Buffers b;
  b.q.resize(I.m.tensors.size());
  b.f.resize(I.m.tensors.size());
  b.q[in] = input;
  for (const auto& s : I.steps) I.run_step(s, b);
  CATQ_CHECK(I.m.tensor(I.result).type == TfliteType::Int8, Unsupported, "{}: the output is not int8", I.m.path);
  std::map<int32_t, std::vector<int8_t>> out;
  for (size_t t = 0; t < b.q.size(); ++t)
    if (!b.q[t].empty()) out[static_cast<int32_t>(t)] = std::move(b.q[t]);
  return out;
}

at::Tensor TfliteInt8Executor::forward(const at::Tensor& x_in) const {
  const Impl& I = *impl_;
  const int32_t in = I.m.inputs[0];
  const TfliteTensor& it = I.m.tensor(in);
  const TfliteTensor& rt = I.m.tensor(I.result);
  at::Tensor x = x_in.to(at::kFloat);
  if (it.shape.size() == 4 && x.dim() == 4) x = x.permute({0, 2, 3, 1});  // NCHW → NHWC
  x = x.contiguous();
  const int64_t n = x.size(0), per = it.numel();
  CATQ_CHECK(x.numel() == n * per, Data, "{}: images of [{}] do not fit the input '{}' [{}]", I.m.path,
             fmt::join(x_in.sizes().slice(1), ","), it.name, fmt::join(it.shape, ","));
  const int64_t outn = rt.numel();
  at::Tensor y = at::empty({n, outn}, at::kFloat);
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, n, 1, [&](int64_t b0, int64_t b1) {
    Impl::Buffers b;
    b.q.resize(I.m.tensors.size());
    b.f.resize(I.m.tensors.size());
    for (int64_t img = b0; img < b1; ++img) {
      const float* src = xp + img * per;
      if (it.type == TfliteType::Int8) {
        const float s = it.quant.scale[0];
        const int64_t z = it.quant.zero_point[0];
        auto& q = b.q[in];
        q.resize(static_cast<size_t>(per));
        for (int64_t i = 0; i < per; ++i)
          q[i] = static_cast<int8_t>(std::clamp<int64_t>(static_cast<int64_t>(std::round(src[i] / s)) + z, -128, 127));
      } else {
        b.f[in].assign(src, src + per);
      }
      for (const auto& s : I.steps) I.run_step(s, b);
      float* dst = yp + img * outn;
      if (rt.type == TfliteType::Int8) {
        const float s = rt.quant.scale[0];
        const int32_t z = static_cast<int32_t>(rt.quant.zero_point[0]);
        for (int64_t i = 0; i < outn; ++i) dst[i] = s * (b.q[I.result][i] - z);
      } else {
        std::copy(b.f[I.result].begin(), b.f[I.result].end(), dst);
      }
    }
  });
  const std::vector<int64_t> rs(rt.shape.begin(), rt.shape.end());
  if (rs.size() >= 2) {
    std::vector<int64_t> shape = rs;
    shape[0] = n;
    return y.reshape(shape);
  }
  return y;
}

}  // namespace catq

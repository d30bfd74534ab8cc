// Small TFLite models built in code (float and full-integer int8) and a plain NHWC float reference of their
// operators, shared by the TFLite tests. The reference is written from the operators' definitions (TF SAME padding,
// depthwise channel c·M + m reading input channel c, averages over the window's real elements, NHWC flattening),
// independently of the importer.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include "io/tflite.h"

namespace catq::test_tflite {

inline std::vector<uint8_t> bytes_of(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  std::vector<uint8_t> b(static_cast<size_t>(c.nbytes()));
  std::memcpy(b.data(), c.data_ptr(), b.size());
  return b;
}

struct Builder {
  TfliteModel m;
  int32_t tensor(const std::string& name, std::vector<int32_t> shape, TfliteType type = TfliteType::Float32,
                 std::vector<uint8_t> data = {}) {
    TfliteTensor t;
    t.name = name;
    t.shape = std::move(shape);
    t.type = type;
    t.data = std::move(data);
    m.tensors.push_back(std::move(t));
    return static_cast<int32_t>(m.tensors.size() - 1);
  }
  int32_t constant(const std::string& name, const at::Tensor& v) {
    std::vector<int32_t> shape(v.sizes().begin(), v.sizes().end());
    TfliteType type = v.scalar_type() == at::kFloat ? TfliteType::Float32
                      : v.scalar_type() == at::kInt ? TfliteType::Int32
                      : v.scalar_type() == at::kChar ? TfliteType::Int8
                                                     : TfliteType::Int64;
    return tensor(name, shape, type, bytes_of(v));
  }
  TfliteOp& op(int32_t code, std::vector<int32_t> in, std::vector<int32_t> out) {
    TfliteOp o;
    o.code = code;
    o.inputs = std::move(in);
    o.outputs = std::move(out);
    m.ops.push_back(std::move(o));
    return m.ops.back();
  }
};

// input [1,7,7,3] → PAD (top 1, right 1) → CONV_2D 3x3 SAME RELU6 [1,8,8,4] → DEPTHWISE 3x3 stride 2 SAME, M = 2, RELU
// [1,4,4,8] → AVERAGE_POOL 2x2 stride 2 [1,2,2,8] → CONV_2D 1x1 [1,2,2,8] → ADD (with the pool output) →
// RESHAPE [1,32] (or, with use_mean, MEAN over height and width [1,8]) → FULLY_CONNECTED 5 → SOFTMAX.
inline TfliteModel tiny_float(uint64_t seed = 0, bool use_mean = false) {
  torch::manual_seed(seed);
  Builder b;
  b.m.path = "tiny_float.tflite";
  auto T = [&](const char* n, std::vector<int32_t> s) { return b.tensor(n, s); };
  const int32_t x = T("input", {1, 7, 7, 3});
  const int32_t pads = b.constant("pads", torch::tensor({0, 0, 1, 0, 0, 1, 0, 0}, torch::kInt).reshape({4, 2}));
  const int32_t xp = T("padded", {1, 8, 8, 3});
  b.op(tfl::PAD, {x, pads}, {xp});
  const int32_t w1 = b.constant("conv1/w", torch::randn({4, 3, 3, 3}) * 0.4);
  const int32_t b1 = b.constant("conv1/b", torch::randn({4}) * 0.1);
  const int32_t c1 = T("conv1", {1, 8, 8, 4});
  auto& o1 = b.op(tfl::CONV_2D, {xp, w1, b1}, {c1});
  o1.options.activation = tfl::ACT_RELU6;
  const int32_t w2 = b.constant("dw/w", torch::randn({1, 3, 3, 8}) * 0.5);
  const int32_t b2 = b.constant("dw/b", torch::randn({8}) * 0.1);
  const int32_t c2 = T("dw", {1, 4, 4, 8});
  auto& o2 = b.op(tfl::DEPTHWISE_CONV_2D, {c1, w2, b2}, {c2});
  o2.options.stride_h = o2.options.stride_w = 2;
  o2.options.depth_multiplier = 2;
  o2.options.activation = tfl::ACT_RELU;
  const int32_t p = T("pool", {1, 2, 2, 8});
  auto& o3 = b.op(tfl::AVERAGE_POOL_2D, {c2}, {p});
  o3.options.filter_h = o3.options.filter_w = 2;
  o3.options.stride_h = o3.options.stride_w = 2;
  o3.options.padding = tfl::VALID;
  const int32_t w4 = b.constant("pw/w", torch::randn({8, 1, 1, 8}) * 0.3);
  const int32_t b4 = b.constant("pw/b", torch::randn({8}) * 0.1);
  const int32_t c4 = T("pw", {1, 2, 2, 8});
  b.op(tfl::CONV_2D, {p, w4, b4}, {c4});
  const int32_t s = T("sum", {1, 2, 2, 8});
  b.op(tfl::ADD, {p, c4}, {s});
  int32_t flat;
  int64_t features;
  if (use_mean) {
    const int32_t axes = b.constant("axes", torch::tensor({1, 2}, torch::kInt));
    flat = T("mean", {1, 8});
    b.op(tfl::MEAN, {s, axes}, {flat});
    features = 8;
  } else {
    const int32_t shape = b.constant("shape", torch::tensor({1, 32}, torch::kInt));
    flat = T("flat", {1, 32});
    b.op(tfl::RESHAPE, {s, shape}, {flat});
    features = 32;
  }
  const int32_t w5 = b.constant("fc/w", torch::randn({5, features}) * 0.5);
  const int32_t b5 = b.constant("fc/b", torch::randn({5}) * 0.1);
  const int32_t logits = T("logits", {1, 5});
  b.op(tfl::FULLY_CONNECTED, {flat, w5, b5}, {logits});
  const int32_t prob = T("prob", {1, 5});
  b.op(tfl::SOFTMAX, {logits}, {prob}).options.beta = 1.f;
  b.m.inputs = {x};
  b.m.outputs = {prob};
  return b.m;
}

// ---- float NHWC reference of the operators (one image, batch 1) ----

inline at::Tensor constant_of(const TfliteModel& m, int32_t i) { return m.tensor(i).to_tensor(m.path).to(at::kFloat); }

inline int64_t same_pad_before(int64_t in, int64_t k, int64_t s, int8_t padding) {
  if (padding == tfl::VALID) return 0;
  const int64_t out = (in + s - 1) / s;
  return std::max<int64_t>((out - 1) * s + k - in, 0) / 2;
}

inline at::Tensor act(const at::Tensor& x, int8_t a) {
  if (a == tfl::ACT_RELU) return x.clamp_min(0);
  if (a == tfl::ACT_RELU6) return x.clamp(0, 6);
  return x;
}

// Runs the float model on one NHWC image [H, W, C] (as the model's input without the batch) with plain loops;
// returns every tensor (index → value, batch dimension dropped).
inline std::map<int32_t, at::Tensor> reference_run(const TfliteModel& m, const at::Tensor& image) {
  std::map<int32_t, at::Tensor> v;
  v[m.inputs[0]] = image.to(at::kFloat);
  auto in = [&](int32_t i) { return m.tensor(i).is_constant() ? constant_of(m, i) : v.at(i); };
  for (const TfliteOp& op : m.ops) {
    const auto& o = op.options;
    const int32_t y = op.outputs[0];
    const auto& ys = m.tensor(y).shape;
    switch (op.code) {
      case tfl::PAD: {
        at::Tensor x = in(op.inputs[0]);
        at::Tensor p = m.tensor(op.inputs[1]).to_tensor(m.path).to(at::kLong);
        at::Tensor r = torch::zeros({ys[1], ys[2], ys[3]});
        r.slice(0, p[1][0].item<int64_t>(), p[1][0].item<int64_t>() + x.size(0))
            .slice(1, p[2][0].item<int64_t>(), p[2][0].item<int64_t>() + x.size(1))
            .copy_(x);
        v[y] = r;
        break;
      }
      case tfl::CONV_2D: case tfl::DEPTHWISE_CONV_2D: {
        const bool dw = op.code == tfl::DEPTHWISE_CONV_2D;
        at::Tensor x = in(op.inputs[0]), w = constant_of(m, op.inputs[1]);
        at::Tensor bias = op.inputs.size() > 2 && op.inputs[2] >= 0 ? constant_of(m, op.inputs[2]) : torch::zeros({ys[3]});
        const int64_t H = x.size(0), W = x.size(1), C = x.size(2), kh = w.size(1), kw = w.size(2);
        const int64_t pt = same_pad_before(H, kh, o.stride_h, o.padding), pl = same_pad_before(W, kw, o.stride_w, o.padding);
        at::Tensor r = torch::zeros({ys[1], ys[2], ys[3]});
        auto X = x.accessor<float, 3>();
        auto Wt = w.accessor<float, 4>();
        auto R = r.accessor<float, 3>();
        const int64_t M = dw ? ys[3] / C : 1;
        for (int64_t oy = 0; oy < ys[1]; ++oy)
          for (int64_t ox = 0; ox < ys[2]; ++ox)
            for (int64_t oc = 0; oc < ys[3]; ++oc) {
              double acc = bias[oc].item<float>();
              for (int64_t ky = 0; ky < kh; ++ky)
                for (int64_t kx = 0; kx < kw; ++kx) {
                  const int64_t iy = oy * o.stride_h - pt + ky, ix = ox * o.stride_w - pl + kx;
                  if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                  if (dw) acc += X[iy][ix][oc / M] * Wt[0][ky][kx][oc];
                  else
                    for (int64_t ic = 0; ic < C; ++ic) acc += X[iy][ix][ic] * Wt[oc][ky][kx][ic];
                }
              R[oy][ox][oc] = static_cast<float>(acc);
            }
        v[y] = act(r, o.activation);
        break;
      }
      case tfl::AVERAGE_POOL_2D: {
        at::Tensor x = in(op.inputs[0]);
        const int64_t H = x.size(0), W = x.size(1);
        const int64_t pt = same_pad_before(H, o.filter_h, o.stride_h, o.padding);
        const int64_t pl = same_pad_before(W, o.filter_w, o.stride_w, o.padding);
        at::Tensor r = torch::zeros({ys[1], ys[2], ys[3]});
        for (int64_t oy = 0; oy < ys[1]; ++oy)
          for (int64_t ox = 0; ox < ys[2]; ++ox) {
            at::Tensor acc = torch::zeros({ys[3]});
            int n = 0;
            for (int64_t ky = 0; ky < o.filter_h; ++ky)
              for (int64_t kx = 0; kx < o.filter_w; ++kx) {
                const int64_t iy = oy * o.stride_h - pt + ky, ix = ox * o.stride_w - pl + kx;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                acc += x[iy][ix];
                ++n;
              }
            r[oy][ox] = acc / n;
          }
        v[y] = act(r, o.activation);
        break;
      }
      case tfl::ADD: v[y] = act(in(op.inputs[0]) + in(op.inputs[1]), o.activation); break;
      case tfl::MEAN: v[y] = in(op.inputs[0]).mean(std::vector<int64_t>{0, 1}); break;
      case tfl::RESHAPE: v[y] = in(op.inputs[0]).reshape({-1}); break;  // NHWC order
      case tfl::FULLY_CONNECTED: {
        at::Tensor r = torch::matmul(constant_of(m, op.inputs[1]), in(op.inputs[0]).reshape({-1})) +
                       constant_of(m, op.inputs[2]);
        v[y] = act(r, o.activation);
        break;
      }
      case tfl::SOFTMAX: v[y] = torch::softmax(in(op.inputs[0]) * o.beta, -1); break;
      default: throw std::runtime_error("reference: operator not in the test models");
    }
  }
  return v;
}

// A full-integer int8 version of a float model (what the TFLite converter makes): per-channel symmetric int8 weights,
// int32 biases of scale s_in · s_w[o], activations per tensor asymmetric from their ranges on `calib` images
// (NHWC [N, H, W, C]); a final SOFTMAX output with scale 1/256, zero-point −128; pooling / reshape outputs share
// their input's parameters.
inline TfliteModel quantize_int8(const TfliteModel& fm, const at::Tensor& calib) {
  std::map<int32_t, std::pair<float, float>> range;
  for (int64_t n = 0; n < calib.size(0); ++n)
    for (auto& [i, t] : reference_run(fm, calib[n])) {
      if (fm.tensor(i).is_constant()) continue;
      auto& r = range.try_emplace(i, 0.f, 0.f).first->second;
      r.first = std::min(r.first, t.min().item<float>());
      r.second = std::max(r.second, t.max().item<float>());
    }
  TfliteModel m = fm;
  m.path = "tiny_int8.tflite";
  auto set_act = [&](int32_t i, float lo, float hi) {
    TfliteTensor& t = m.tensors[i];
    const float s = std::max(hi - lo, 1e-6f) / 255.f;
    t.type = TfliteType::Int8;
    t.quant.scale = {s};
    t.quant.zero_point = {std::clamp<int64_t>(std::llround(-128 - lo / s), -128, 127)};
  };
  for (auto& [i, r] : range) set_act(i, r.first, r.second);
  for (const TfliteOp& op : fm.ops) {  // outputs that share their input's parameters
    if (op.code == tfl::AVERAGE_POOL_2D || op.code == tfl::RESHAPE || op.code == tfl::PAD)
      m.tensors[op.outputs[0]].quant = m.tensors[op.inputs[0]].quant;
    if (op.code == tfl::SOFTMAX) {
      m.tensors[op.outputs[0]].quant.scale = {1.f / 256};
      m.tensors[op.outputs[0]].quant.zero_point = {-128};
    }
  }
  for (const TfliteOp& op : fm.ops) {
    if (op.code != tfl::CONV_2D && op.code != tfl::DEPTHWISE_CONV_2D && op.code != tfl::FULLY_CONNECTED) continue;
    const int axis = op.code == tfl::DEPTHWISE_CONV_2D ? 3 : 0;
    TfliteTensor& w = m.tensors[op.inputs[1]];
    at::Tensor wf = constant_of(fm, op.inputs[1]);
    at::Tensor mx = wf.abs().movedim(axis, 0).reshape({wf.size(axis), -1}).amax(1).clamp_min(1e-8);
    at::Tensor sw = mx / 127;
    std::vector<int64_t> bshape(static_cast<size_t>(wf.dim()), 1);
    bshape[axis] = wf.size(axis);
    w.data = bytes_of(torch::round(wf / sw.reshape(bshape)).clamp(-127, 127).to(at::kChar));
    w.type = TfliteType::Int8;
    w.quant.scale.assign(sw.data_ptr<float>(), sw.data_ptr<float>() + sw.numel());
    w.quant.zero_point.assign(static_cast<size_t>(sw.numel()), 0);
    w.quant.axis = axis;
    if (op.inputs.size() > 2 && op.inputs[2] >= 0) {
      TfliteTensor& b = m.tensors[op.inputs[2]];
      const float sx = m.tensors[op.inputs[0]].quant.scale[0];
      at::Tensor bs = sw * sx;
      b.data = bytes_of(torch::round(constant_of(fm, op.inputs[2]) / bs).to(at::kInt));
      b.type = TfliteType::Int32;
      b.quant.scale.assign(bs.data_ptr<float>(), bs.data_ptr<float>() + bs.numel());
      b.quant.zero_point.assign(static_cast<size_t>(bs.numel()), 0);
    }
  }
  return m;
}

}  // namespace catq::test_tflite

#include "runtime/int_runtime.h"

#include <ATen/Parallel.h>
#include <fmt/format.h>

#include "core/error.h"
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

}  // namespace

std::unique_ptr<IntLinear> prepare_int_linear(const SimQuant::Layer& l, const at::Tensor& w, std::string* why) {
  auto no = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return std::unique_ptr<IntLinear>();
  };
  const QuantSpec& ws = l.weight_spec;
  if (l.info.kind != LayerKind::Linear) return no("not a linear layer");
  if (!ws.enabled) return no("floating-point weights");
  if (ws.scheme != Scheme::Uniform) return no(fmt::format("{} weights (no kernel)", to_string(ws.scheme)));
  if (!l.weight_params) return no("weight params not computed");
  const QuantParams& p = *l.weight_params;
  if (p.bits > 8) return no(fmt::format("{}-bit weights", p.bits));
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
  const int per_byte = 8 / cbits;
  const int32_t* qd = q.data_ptr<int32_t>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t u = qd[r * cols + j] - p.qmin;
      CATQ_CHECK(u >= 0 && u < (int64_t{1} << cbits), Data, "layer '{}': code {} outside [{}, {}]", l.info.name,
                 qd[r * cols + j], p.qmin, p.qmax);
      pw.q[static_cast<size_t>(r * pw.row_bytes() + j / per_byte)] |= static_cast<uint8_t>(u << ((j % per_byte) * cbits));
    }
  lin->weights = prepare_int_weights(std::move(pw));
  return lin;
}

// Rows from which the weight-only path dequantizes for one fp32 GEMM instead of running the batched GEMV.
constexpr int64_t kDequantizeRows = 16;

at::Tensor IntLinear::forward(const at::Tensor& x_in) const {
  const PackedWeights& w = weights.w;
  CATQ_CHECK(x_in.dim() >= 1 && x_in.size(-1) == w.cols, Data, "integer linear: input of width {}, expected {}",
             x_in.dim() >= 1 ? x_in.size(-1) : 0, w.cols);
  at::NoGradGuard ng;
  at::Tensor x = x_in.detach().to(at::kFloat).contiguous();
  const int64_t m = x.numel() / w.cols;
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = w.rows;
  at::Tensor y = at::empty(shape, x.options());
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  if (kind == Kind::Integer) {
    gemm_qact(weights, xp, m, act, yp);
  } else if (m >= kDequantizeRows) {
    // Prefill: with many rows the product is compute-bound and the batched GEMV is far slower than an fp32 GEMM, so
    // the codes are dequantized once for the call (a K×N float buffer, freed after it) and multiplied by libtorch's
    // GEMM — the same approach llama.cpp takes for prompt processing.
    const std::vector<float> wd = unpack_weights(w);
    at::Tensor wt = at::from_blob(const_cast<float*>(wd.data()), {w.rows, w.cols}, at::kFloat);
    y.view({m, w.rows}).copy_(at::linear(x.view({m, w.cols}), wt));
  } else {
    at::parallel_for(0, m, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) gemv_packed(w, xp + i * w.cols, yp + i * w.rows);
    });
  }
  return y;
}

std::string IntLinear::str() const {
  const PackedWeights& w = weights.w;
  const std::string gran = w.group == w.cols ? "per channel" : fmt::format("group {}", w.group);
  if (kind == Kind::WeightOnly)
    return fmt::format("W{}A16 weight-only ({}-bit codes, {}, {})", weight_bits, w.bits, gran, to_string(best_isa()));
  return fmt::format("W{}A{} integer ({}-bit codes, {}, {} act, {})", weight_bits, act_bits, w.bits, gran,
                     act.dynamic ? "per-token" : "static", to_string(best_isa()));
}

IntegerRuntime::IntegerRuntime(const LlamaModel& model, SimQuant& sim) : sim_(sim) {
  CATQ_CHECK(sim.mode() == SimQuant::Mode::Quantize, Usage, "integer runtime: the SimQuant must be in Quantize mode");
  model.bind(&sim);
  const std::vector<LayerInfo> infos = model.layer_infos();
  layers_.resize(infos.size());
  for (const LayerInfo& info : infos) {
    const at::Tensor& w = model.layer_weight(info.index);
    const SimQuant::Layer& l = sim.layer(info.name);
    if (l.weight_spec.enabled && !l.weight_params && !l.weight_codes.defined()) {
      at::NoGradGuard ng;
      sim.weight(info, w);  // computes the layer's weight params (RTN) as a quantized forward would
    }
    std::string why;
    LayerEntry e;
    e.name = info.name;
    layers_[static_cast<size_t>(info.index)] = prepare_int_linear(sim.layer(info.name), w, &why);
    if (const IntLinear* lin = layers_[static_cast<size_t>(info.index)].get()) {
      e.how = lin->str();
      e.integer = lin->kind == IntLinear::Kind::Integer;
      e.weight_only = !e.integer;
    } else {
      e.how = "simulated: " + why;
    }
    entries_.push_back(e);
  }
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
    if (l) b += l->weights.w.q.size() + 4 * (l->weights.w.scale.size() + l->weights.w.zero.size());
  return b;
}

}  // namespace catq

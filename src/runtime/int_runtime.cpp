// IntegerRuntime (runtime/int_runtime.h): the QuantContext that runs prepared layers on the integer kernels —
// linear layers on IntLinear (runtime/int_linear.h), conv layers on IntConv (runtime/int_conv.h) — and every other
// call through the SimQuant.
#include "runtime/int_runtime.h"

#include <algorithm>
#include <utility>

#include "core/error.h"
#include "llm/llama.h"

namespace catq {

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
    if (!weight_of) {
      // A CNN graph: its Gemm / MatMul nodes multiply in the graph executor, not through linear(); IntegerCnn runs a
      // classifier Gemm on the prepared layer (int_linear()).
      if (l.weight_codes.defined()) layers_[static_cast<size_t>(info.index)] = prepare_int_linear(l, l.weight_codes, &why);
      else why = "no integer codes installed";
      if (const IntLinear* lin = layers_[static_cast<size_t>(info.index)].get()) {
        e.how = lin->str() + " (IntegerCnn; the graph executor's Gemm node runs it simulated)";
        e.integer = lin->kind == IntLinear::Kind::Integer;
        e.weight_only = !e.integer;
      } else {
        e.how = "simulated: " + why;
      }
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
  // Grouped (depthwise) convolutions run integer with symmetric weights (the zero-point correction of 8-bit
  // asymmetric weights sums over all input channels).
  if (i < convs_.size() && convs_[i] && (groups == 1 || !convs_[i]->asymmetric) && x.dim() == 4 &&
      x.size(1) == convs_[i]->codes.size(1) * groups) {
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

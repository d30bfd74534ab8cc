#include "sim/sim_quant.h"

#include "core/error.h"
#include "quant/fake_quant.h"

namespace catq {

namespace {

int64_t version_of(const at::Tensor& t) { return t.is_inference() ? 0 : t._version(); }

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ",")); }

}  // namespace

SimQuant::SimQuant(QuantConfig config, Mode mode)
    : config_(std::move(config)), mode_(mode), gen_(make_generator(config_.seed)) {}

SimQuant::Layer SimQuant::make_layer(const LayerInfo& info) const {
  Layer l;
  l.info = info;
  LayerSpecs s = config_.resolve(info);
  const std::string where = fmt::format("{}: layer '{}'", config_.source, info.name);
  const auto& shape = info.weight_shape;
  if (s.weight.enabled) {
    s.weight.validate(where + ": weight");
    CATQ_CHECK(s.weight.granularity != Granularity::PerToken, Config,
               "{}: weight.granularity: per-token is for activations, expected tensor, channel or group", where);
    if (!shape.empty()) {
      try {
        s.weight.axis = s.weight.resolved_axis(static_cast<int64_t>(shape.size()));
      } catch (const Error& e) {
        fail(ErrorKind::Config, "{}: weight.{} (weight shape {})", where, e.what(), shape_str(shape));
      }
      if (s.weight.granularity == Granularity::PerGroup) {
        const int a = *s.weight.axis;
        CATQ_CHECK(shape[a] % s.weight.group_size == 0, Config,
                   "{}: weight.group_size: {} does not divide dim {} (size {}) of the weight shape {}", where,
                   s.weight.group_size, a, shape[a], shape_str(shape));
      }
    }
  }
  if (s.input.enabled) {
    s.input.validate(where + ": input");
    CATQ_CHECK(s.input.scheme == Scheme::Uniform, Config,
               "{}: input.scheme: {} is for weights, expected uniform for activations", where,
               to_string(s.input.scheme));
    CATQ_CHECK(s.input.granularity != Granularity::PerGroup, Config,
               "{}: input.granularity: static per-group activations are not supported, expected tensor, channel "
               "or token",
               where);
    // Channels of an activation: dim 1 of a conv input [N,C,H,W], the last dim of a linear input [..., in].
    if (s.input.granularity == Granularity::PerChannel && !s.input.axis)
      s.input.axis = info.kind == LayerKind::Conv ? 1 : -1;
    if (s.input.granularity != Granularity::PerToken)
      l.input_observer = std::shared_ptr<Observer>(Observer::create(s.input, info.name + " input"));
  }
  l.weight_spec = s.weight;
  l.input_spec = s.input;
  return l;
}

void SimQuant::bind(const std::vector<LayerInfo>& infos) {
  std::vector<Layer> next;
  next.reserve(infos.size());
  for (const LayerInfo& info : infos) {
    Layer fresh = make_layer(info);
    auto it = index_.find(info.name);
    if (it != index_.end()) {
      Layer& old = layers_[it->second];
      if (old.weight_spec == fresh.weight_spec && old.input_spec == fresh.input_spec &&
          old.info.weight_shape == info.weight_shape) {
        old.info = info;
        next.push_back(std::move(old));
        continue;
      }
    }
    next.push_back(std::move(fresh));
  }
  layers_ = std::move(next);
  index_.clear();
  for (size_t i = 0; i < layers_.size(); ++i) {
    CATQ_CHECK(index_.emplace(layers_[i].info.name, i).second, Internal,
               "SimQuant::bind: two layers are named '{}'", layers_[i].info.name);
  }
}

SimQuant::Layer& SimQuant::find(const LayerInfo& info) {
  if (info.index >= 0 && static_cast<size_t>(info.index) < layers_.size() && layers_[info.index].info.name == info.name)
    return layers_[info.index];
  auto it = index_.find(info.name);
  if (it != index_.end()) return layers_[it->second];
  // A layer the model did not announce: add it (its first / last flags come with the LayerInfo).
  layers_.push_back(make_layer(info));
  index_[info.name] = layers_.size() - 1;
  return layers_.back();
}

SimQuant::Layer& SimQuant::find(const std::string& name) {
  auto it = index_.find(name);
  CATQ_CHECK(it != index_.end(), Usage, "no quantized layer named '{}' (bind() announced {} layers)", name,
             layers_.size());
  return layers_[it->second];
}

const SimQuant::Layer& SimQuant::layer(const std::string& name) const {
  return const_cast<SimQuant*>(this)->find(name);
}

const QuantParams& SimQuant::weight_params_for(Layer& l, const at::Tensor& w) {
  if (l.weight_params &&
      (l.weight_frozen || (l.w_data == w.data_ptr() && l.w_version == version_of(w) && l.w_shape == w.sizes().vec())))
    return *l.weight_params;
  if (!(l.weight_params && l.w_adopt)) {
    try {
      l.weight_params = compute_params(l.weight_spec, w.detach());
    } catch (const Error& e) {
      fail(e.kind(), "{}: layer '{}' weight: {}", config_.source, l.info.name, e.what());
    }
  }
  l.w_adopt = false;
  l.w_data = w.data_ptr();
  l.w_version = version_of(w);
  l.w_shape = w.sizes().vec();
  return *l.weight_params;
}

at::Tensor SimQuant::weight(const LayerInfo& info, const at::Tensor& w) {
  if (mode_ != Mode::Quantize) return w;
  Layer& l = find(info);
  if (!l.weight_spec.enabled) return w;
  if (l.fixed_weight.defined()) return l.fixed_weight;
  const QuantParams& p = weight_params_for(l, w);
  std::optional<at::Generator> g;
  if (l.weight_spec.rounding == Rounding::Stochastic) g = gen_;
  return fake_quant_ste(w, p, l.weight_spec.rounding, g);
}

at::Tensor SimQuant::input(const LayerInfo& info, const at::Tensor& x) {
  if (mode_ == Mode::Off) return x;
  Layer& l = find(info);
  const QuantSpec& spec = l.input_spec;
  if (!spec.enabled) return x;
  if (mode_ == Mode::Calibrate) {
    if (l.input_observer) l.input_observer->observe(x);
    return x;
  }
  std::optional<at::Generator> g;
  if (spec.rounding == Rounding::Stochastic) g = gen_;
  if (spec.granularity == Granularity::PerToken) return fake_quant_ste(x, compute_params(spec, x.detach()), spec.rounding, g);
  if (!l.input_params) {
    CATQ_CHECK(l.input_observer && l.input_observer->batches() > 0, Usage,
               "layer '{}': input activations are not calibrated; run the model in Mode::Calibrate and call "
               "finalize_calibration() first",
               l.info.name);
    l.input_params = l.input_observer->compute();
  }
  return fake_quant_ste(x, *l.input_params, spec.rounding, g);
}

at::Tensor SimQuant::embedding(const at::Tensor& rows) {
  if (mode_ != Mode::Quantize || !config_.embedding.enabled) return rows;
  const at::Tensor r2 = rows.reshape({-1, rows.size(-1)});
  std::optional<at::Generator> g;
  if (config_.embedding.rounding == Rounding::Stochastic) g = gen_;
  return fake_quant_ste(r2, compute_params(config_.embedding, r2.detach()), config_.embedding.rounding, g)
      .reshape(rows.sizes());
}

at::Tensor SimQuant::kv_cache(int64_t block, bool is_value, const at::Tensor& t) {
  if (mode_ != Mode::Quantize || !config_.kv_cache.enabled) return t;
  return fake_quant_ste(t, compute_params(config_.kv_cache, t.detach()), Rounding::Nearest);
}

void SimQuant::finalize_calibration() {
  std::vector<std::string> missing;
  for (Layer& l : layers_) {
    if (!l.input_spec.enabled || !l.input_observer) continue;
    if (l.input_observer->batches() == 0) {
      missing.push_back(l.info.name);
      continue;
    }
    l.input_params = l.input_observer->compute();
  }
  CATQ_CHECK(missing.empty(), Data, "calibration saw no input for {} layer(s): {} (did the calibration forward run in "
             "Mode::Calibrate?)", missing.size(), fmt::join(missing, ", "));
}

void SimQuant::reset_calibration() {
  for (Layer& l : layers_) {
    if (l.input_observer) l.input_observer->reset();
    l.input_params.reset();
    if (!l.weight_frozen) l.weight_params.reset();
  }
}

const QuantParams* SimQuant::weight_params(const std::string& name) const {
  const Layer& l = layer(name);
  return l.weight_spec.enabled && l.weight_params ? &*l.weight_params : nullptr;
}

const QuantParams* SimQuant::input_params(const std::string& name) const {
  const Layer& l = layer(name);
  return l.input_spec.enabled && l.input_params ? &*l.input_params : nullptr;
}

void SimQuant::set_weight_params(const std::string& name, QuantParams p, bool freeze) {
  Layer& l = find(name);
  CATQ_CHECK(l.weight_spec.enabled, Usage, "layer '{}': its weight is not quantized by the config", name);
  l.weight_params = std::move(p);
  l.weight_frozen = freeze;
  l.w_adopt = !freeze;
  l.w_data = nullptr;
}

void SimQuant::set_quantized_weight(const std::string& name, const at::Tensor& q, QuantParams p) {
  Layer& l = find(name);
  CATQ_CHECK(l.weight_spec.enabled, Usage, "layer '{}': its weight is not quantized by the config", name);
  CATQ_CHECK(q.sizes().vec() == l.info.weight_shape, Data, "layer '{}': integer weight has shape {}, expected {}", name,
             shape_str(q.sizes().vec()), shape_str(l.info.weight_shape));
  at::Tensor qi = q.to(at::kInt).contiguous();
  if (p.scheme == Scheme::Uniform && qi.numel() > 0) {
    const int64_t lo = qi.min().item<int>(), hi = qi.max().item<int>();
    CATQ_CHECK(lo >= p.qmin && hi <= p.qmax, Data, "layer '{}': integer weights span [{}, {}], outside the {}-bit range "
               "[{}, {}]", name, lo, hi, p.bits, p.qmin, p.qmax);
  }
  l.fixed_weight = dequantize(qi, p);
  l.weight_codes = qi;
  l.weight_params = std::move(p);
  l.weight_frozen = true;
  l.w_adopt = false;
}

void SimQuant::set_quantized_weight(const std::string& name, const QuantizedWeight& w) {
  CATQ_CHECK(!w.is_ggml(), Usage, "layer '{}': a {} weight has no codes a SimQuant installs (dequantize it instead)",
             name, w.traits().name);
  set_quantized_weight(name, weight_codes(w), w.params);
}

QuantizedWeight SimQuant::quantized_weight(const std::string& name, const at::Tensor& w) const {
  const Layer& l = layer(name);
  CATQ_CHECK(l.weight_spec.enabled, Usage, "layer '{}': its weight is not quantized by the config", name);
  CATQ_CHECK(l.weight_params.has_value(), Internal, "layer '{}' has no weight params (run a quantized forward first)",
             name);
  if (l.weight_codes.defined()) return make_quantized_weight(l.weight_codes, *l.weight_params);
  CATQ_CHECK(w.defined(), Internal, "layer '{}': no installed codes and no weight to quantize", name);
  return make_quantized_weight(quantize(w.detach(), *l.weight_params), *l.weight_params);
}

void SimQuant::set_input_params(const std::string& name, QuantParams p) {
  Layer& l = find(name);
  CATQ_CHECK(l.input_spec.enabled, Usage, "layer '{}': its input is not quantized by the config", name);
  l.input_params = std::move(p);
}

std::vector<SimQuant::LayerReport> SimQuant::report() const {
  std::vector<LayerReport> out;
  for (const Layer& l : layers_) {
    LayerReport r;
    r.name = l.info.name;
    r.weight = l.weight_spec.str();
    r.input = l.input_spec.str();
    r.weight_bits = l.weight_spec.enabled ? l.weight_spec.bits : 32;
    r.input_bits = l.input_spec.enabled ? l.input_spec.bits : 32;
    r.weight_numel = 1;
    for (int64_t d : l.info.weight_shape) r.weight_numel *= d;
    if (l.info.weight_shape.empty()) r.weight_numel = 0;
    r.weight_bytes = l.info.weight_shape.empty() ? 0 : (storage_bits(l.info.weight_shape, l.weight_spec) + 7) / 8;
    if (!l.weight_spec.enabled) r.weight_observer = "-";
    else if (l.weight_spec.scheme != Scheme::Uniform) r.weight_observer = to_string(l.weight_spec.scheme);
    else r.weight_observer = to_string(l.weight_spec.observer);
    if (!l.input_spec.enabled) r.input_observer = "-";
    else if (l.input_spec.granularity == Granularity::PerToken) r.input_observer = "dynamic";
    else r.input_observer = to_string(l.input_spec.observer);
    out.push_back(std::move(r));
  }
  return out;
}

uint64_t SimQuant::total_weight_bytes() const {
  uint64_t t = 0;
  for (const LayerReport& r : report()) t += r.weight_bytes;
  return t;
}

std::string SimQuant::report_table() const {
  auto rows = report();
  size_t w = 5;
  for (const auto& r : rows) w = std::max(w, r.name.size());
  std::string s = fmt::format("{:<{}}  {:>5} {:>5}  {:>12}  {:<10} {:<10}  {}\n", "layer", w, "W", "A", "weight bytes",
                              "w-observer", "a-observer", "weight spec | input spec");
  uint64_t total = 0, fp = 0;
  for (const auto& r : rows) {
    total += r.weight_bytes;
    fp += static_cast<uint64_t>(r.weight_numel) * 4;
    s += fmt::format("{:<{}}  {:>5} {:>5}  {:>12}  {:<10} {:<10}  {} | {}\n", r.name, w,
                     r.weight_bits == 32 ? "fp" : std::to_string(r.weight_bits),
                     r.input_bits == 32 ? "fp" : std::to_string(r.input_bits), r.weight_bytes, r.weight_observer,
                     r.input_observer, r.weight, r.input);
  }
  s += fmt::format("total: {} layers, {} weight bytes ({:.2f}x smaller than fp32 {})\n", rows.size(), total,
                   total ? static_cast<double>(fp) / static_cast<double>(total) : 0.0, fp);
  return s;
}

}  // namespace catq

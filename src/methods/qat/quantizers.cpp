#include "methods/qat/quantizers.h"

#include <cmath>

#include "core/error.h"
#include "quant/fake_quant.h"

namespace catq {

WeightQat parse_weight_qat(const std::string& s) {
  for (auto q : {WeightQat::Auto, WeightQat::Lsq, WeightQat::Seq, WeightQat::Sign, WeightQat::Ste})
    if (s == to_string(q)) return q;
  fail(ErrorKind::Usage, "weight quantizer '{}': expected auto, lsq, seq, sign or ste", s);
}

ActQat parse_act_qat(const std::string& s) {
  for (auto q : {ActQat::Lsq, ActQat::Pact, ActQat::Ste})
    if (s == to_string(q)) return q;
  fail(ErrorKind::Usage, "activation quantizer '{}': expected lsq, pact or ste", s);
}

const char* to_string(WeightQat q) {
  switch (q) {
    case WeightQat::Auto: return "auto";
    case WeightQat::Lsq: return "lsq";
    case WeightQat::Seq: return "seq";
    case WeightQat::Sign: return "sign";
    case WeightQat::Ste: return "ste";
  }
  return "?";
}

const char* to_string(ActQat q) {
  switch (q) {
    case ActQat::Lsq: return "lsq";
    case ActQat::Pact: return "pact";
    case ActQat::Ste: return "ste";
  }
  return "?";
}

namespace {

// Value of t, gradient scaled by g (the LSQ trick: t·g + (t − t·g) without gradient).
at::Tensor grad_scaled(const at::Tensor& t, double g) { return t * g + (t - t * g).detach(); }

// Straight-through rounding: the value of round(v) clamped to [lo, hi], the gradient of v.
at::Tensor round_ste(const at::Tensor& v, double lo, double hi) {
  return v + (at::round(v).clamp(lo, hi) - v).detach();
}

}  // namespace

at::Tensor seq_fake_quant(const at::Tensor& x, const at::Tensor& alpha, int bits, double grad_scale) {
  CATQ_CHECK(bits >= 2 && bits <= 8, Config, "seq quantizer: bits {} outside 2..8", bits);
  const double k = std::ldexp(1.0, bits - 1);
  const double g = grad_scale > 0 ? grad_scale : 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(x.numel(), 1)) * k);
  at::Tensor a = grad_scaled(alpha, g);
  at::Tensor u = at::clamp(x / a, -1.0, 1.0);
  at::Tensor q = round_ste(u * k - 0.5, -k, k - 1);
  return a / k * (q + 0.5);
}

at::Tensor sign_fake_quant(const at::Tensor& x, const at::Tensor& alpha, double grad_scale) {
  const double g = grad_scale > 0 ? grad_scale : 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(x.numel(), 1)));
  at::Tensor a = grad_scaled(alpha, g);
  at::Tensor sgn = at::where(x.detach() >= 0, 1.0, -1.0).to(x.scalar_type());
  at::Tensor ad = alpha.detach().abs();
  at::Tensor xc = at::clamp(x, -ad, ad);  // the clipped identity carries ∂/∂x = 1 on [−α, α]
  return a * sgn + (xc - xc.detach());
}

at::Tensor pact_fake_quant(const at::Tensor& x, const at::Tensor& alpha, int bits) {
  CATQ_CHECK(bits >= 2 && bits <= 8, Config, "pact quantizer: bits {} outside 2..8", bits);
  const double n = std::ldexp(1.0, bits) - 1;
  at::Tensor y = at::minimum(at::relu(x), alpha);  // ∂/∂α = 1 where x > α (the clip), 0 elsewhere
  at::Tensor s = alpha.detach().abs().clamp_min(1e-12) / n;
  return y + (at::round(y / s).clamp(0, n) * s - y).detach();
}

at::Tensor seq_init_alpha(const at::Tensor& rows, int bits) {
  at::NoGradGuard ng;
  at::Tensor r = rows.to(at::kFloat);
  at::Tensor amax = r.abs().amax(1, true).clamp_min(1e-8);
  at::Tensor best = amax.clone(), best_err = at::full_like(amax, INFINITY);
  for (int pct = 30; pct <= 100; ++pct) {
    at::Tensor a = amax * (pct / 100.0);
    at::Tensor err = (r - seq_fake_quant(r, a, bits)).pow(2).sum(1, true);
    at::Tensor better = err < best_err;
    best = at::where(better, a, best);
    best_err = at::where(better, err, best_err);
  }
  return best;
}

// ---- QatQuant -------------------------------------------------------------------------------------------------

QatQuant::QatQuant(SimQuant& base, const std::function<at::Tensor(const LayerInfo&)>& weight_of, QatOptions o)
    : base_(base), opts_(o) {
  CATQ_CHECK(!base.layers().empty(), Usage, "QAT: the base quantizer has no layers (run a forward / calibration first)");
  at::NoGradGuard ng;
  for (const SimQuant::Layer& bl : base.layers()) {
    LayerState s;
    const std::string& name = bl.info.name;
    const QuantSpec& ws = bl.weight_spec;
    s.w_enabled = ws.enabled;
    if (ws.enabled) {
      WeightQat q = opts_.weight;
      if (q == WeightQat::Auto) {
        if (ws.scheme == Scheme::Binary) q = WeightQat::Sign;
        else if (ws.scheme != Scheme::Uniform) q = WeightQat::Ste;
        else q = ws.bits == 2 ? WeightQat::Seq : WeightQat::Lsq;
      }
      CATQ_CHECK(q == WeightQat::Ste || ws.granularity != Granularity::PerToken, Config,
                 "QAT: layer '{}': weights cannot be per-token", name);
      CATQ_CHECK(q != WeightQat::Lsq || ws.scheme == Scheme::Uniform, Config,
                 "QAT: layer '{}': lsq needs a uniform weight scheme, the config has {}", name, to_string(ws.scheme));
      CATQ_CHECK(q != WeightQat::Seq || (ws.bits >= 2 && ws.bits <= 8), Config,
                 "QAT: layer '{}': seq needs 2..8 weight bits, the config has {}", name, ws.bits);
      s.wq = q;
      if (q != WeightQat::Ste) {
        at::Tensor w = weight_of(bl.info).detach().to(at::kFloat);
        const QuantParams* bp = base.weight_params(name);
        QuantParams p;
        if (bp != nullptr && bp->scheme == Scheme::Uniform) p = *bp;
        else {
          QuantSpec us = ws;
          us.scheme = Scheme::Uniform;
          if (us.bits < 2) us.bits = 2;
          p = compute_params(us, w);
        }
        s.wp = p;
        if (q == WeightQat::Lsq) {
          s.w_scale = p.scale.clone();
        } else {
          at::Tensor rows = to_rows(w, p.granularity, p.axis, p.group_size);
          at::Tensor a = q == WeightQat::Seq ? seq_init_alpha(rows, ws.bits) : rows.abs().mean(1, true).clamp_min(1e-8);
          s.w_scale = a.reshape(param_shape(w.sizes(), p.granularity, p.axis, p.group_size)).contiguous();
          s.wp.bits = q == WeightQat::Sign ? 1 : ws.bits;
        }
        s.w_scale = s.w_scale.to(at::kFloat).detach().clone().set_requires_grad(true);
      }
    }
    const QuantSpec& is = bl.input_spec;
    if (is.enabled && is.granularity != Granularity::PerToken && is.scheme == Scheme::Uniform && opts_.act != ActQat::Ste) {
      const QuantParams* ip = base.input_params(name);
      CATQ_CHECK(ip != nullptr, Usage, "QAT: layer '{}': its static input is not calibrated yet", name);
      CATQ_CHECK(ip->granularity == Granularity::PerTensor, Config,
                 "QAT: layer '{}': learned activation steps need per-tensor input quantization", name);
      s.ap = *ip;
      s.aq = opts_.act;
      const int64_t z = s.ap.zero_point.item<int64_t>();
      s.a_zero = static_cast<double>(z);
      // PACT clips to [0, α]: only where the calibrated range starts at zero (after a ReLU) and has 2^b levels.
      if (s.aq == ActQat::Pact && (z != s.ap.qmin || s.ap.qmax - s.ap.qmin != (int64_t{1} << s.ap.bits) - 1))
        s.aq = ActQat::Lsq;
      s.a_learned = true;
      at::Tensor init = s.aq == ActQat::Pact ? s.ap.scale * static_cast<double>(s.ap.qmax - z) : s.ap.scale;
      s.a_scale = init.to(at::kFloat).reshape({}).detach().clone().set_requires_grad(true);
    }
    layers_.emplace(name, std::move(s));
  }
}

QatQuant::LayerState& QatQuant::state(const LayerInfo& l) {
  auto it = layers_.find(l.name);
  CATQ_CHECK(it != layers_.end(), Usage, "QAT: layer '{}' was not in the calibrated model", l.name);
  return it->second;
}

void QatQuant::bind(const std::vector<LayerInfo>& layers) {
  base_.bind(layers);
  for (const auto& l : layers) state(l);
}

at::Tensor QatQuant::weight_fq(const LayerState& s, const at::Tensor& w) const {
  switch (s.wq) {
    case WeightQat::Lsq: return fake_quant_lsq(w, s.w_scale, s.wp);
    case WeightQat::Seq: return seq_fake_quant(group_view(w, s.wp), s.w_scale, s.wp.bits).reshape(w.sizes());
    case WeightQat::Sign: return sign_fake_quant(group_view(w, s.wp), s.w_scale).reshape(w.sizes());
    default: break;
  }
  fail(ErrorKind::Internal, "QAT: no learnable weight quantizer");
}

at::Tensor QatQuant::weight(const LayerInfo& layer, const at::Tensor& w) {
  LayerState& s = state(layer);
  if (!s.w_enabled) return w;
  if (s.wq == WeightQat::Ste) return base_.weight(layer, w);
  return weight_fq(s, w);
}

at::Tensor QatQuant::input(const LayerInfo& layer, const at::Tensor& x) {
  LayerState& s = state(layer);
  if (!s.a_learned) return base_.input(layer, x);
  if (s.aq == ActQat::Pact) return pact_fake_quant(x, s.a_scale, s.ap.bits);
  const double z = s.a_zero;
  const double g = lsq_grad_scale(x.numel(), s.ap.qmax);
  if (x.device().is_cpu() && x.scalar_type() == at::kFloat)
    return fake_quant_lsq_per_tensor(x, s.a_scale, z, s.ap.qmin, s.ap.qmax, g);
  return fake_quant_lsq(x, s.a_scale, s.ap, g);
}

at::Tensor QatQuant::kv_cache(int64_t block, bool is_value, const at::Tensor& t) {
  return base_.kv_cache(block, is_value, t);
}

std::vector<at::Tensor> QatQuant::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& [name, s] : layers_) {
    if (s.w_scale.defined()) out.push_back(s.w_scale);
    if (s.a_scale.defined()) out.push_back(s.a_scale);
  }
  return out;
}

void QatQuant::commit(const std::function<at::Tensor(const LayerInfo&)>& weight_of) {
  at::NoGradGuard ng;
  for (const SimQuant::Layer& bl : base_.layers()) {
    const LayerState& s = layers_.at(bl.info.name);
    const std::string& name = bl.info.name;
    if (s.w_enabled && s.wq != WeightQat::Ste) {
      at::Tensor w = weight_of(bl.info).detach().to(at::kFloat);
      at::Tensor a = s.w_scale.detach().abs().clamp_min(1e-12).contiguous();
      QuantParams p;
      p.granularity = s.wp.granularity;
      p.axis = s.wp.axis;
      p.group_size = s.wp.group_size;
      p.bits = s.wp.bits;
      if (s.wq == WeightQat::Lsq) {
        p = s.wp;
        p.scale = a.clone();
      } else if (s.wq == WeightQat::Seq) {
        // Codebook row r: α_r/k·(j + ½), j = −k .. k−1 (ascending); the nearest codeword is seq's level.
        const int64_t k = int64_t{1} << (p.bits - 1);
        at::Tensor j = at::arange(-k, k, at::kFloat) + 0.5;
        p.scheme = Scheme::KMeans;
        p.codebook = (a.reshape({-1, 1}) / static_cast<double>(k) * j.reshape({1, -1})).contiguous();
        p.qmin = 0;
        p.qmax = 2 * k - 1;
      } else {
        p.scheme = Scheme::Binary;
        p.scale = a.clone();
        p.zero_point = at::zeros_like(a, at::kInt);
        p.qmin = -1;
        p.qmax = 1;
      }
      base_.set_quantized_weight(name, quantize(w, p), p);
    }
    if (s.a_learned) {
      QuantParams p = s.ap;
      at::Tensor v = s.a_scale.detach().abs().clamp_min(1e-12).reshape(s.ap.scale.sizes());
      if (s.aq == ActQat::Pact) {
        p.scale = (v / static_cast<double>(s.ap.qmax - s.ap.qmin)).contiguous();
        p.zero_point = at::full_like(s.ap.zero_point, s.ap.qmin);
      } else {
        p.scale = v.clone();
      }
      base_.set_input_params(name, p);
    }
  }
  base_.set_mode(SimQuant::Mode::Quantize);
}

std::string QatQuant::weight_quantizer(const std::string& layer) const {
  const LayerState& s = layers_.at(layer);
  return s.w_enabled ? to_string(s.wq) : "fp";
}

std::string QatQuant::input_quantizer(const std::string& layer) const {
  const LayerState& s = layers_.at(layer);
  if (s.a_learned) return to_string(s.aq);
  return base_.layer(layer).input_spec.enabled ? "ste" : "fp";
}

}  // namespace catq

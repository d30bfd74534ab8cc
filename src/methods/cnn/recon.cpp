#include "methods/cnn/recon.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <map>

#include "core/error.h"
#include "core/progress.h"
#include "methods/cnn/weight_param.h"
#include "quant/observer.h"
#include "quant/fake_quant.h"

namespace catq {

namespace {

// BRECQ's lp_loss: |pred − tgt|^p summed over dim 1, averaged over the remaining dims.
at::Tensor lp_loss(const at::Tensor& pred, const at::Tensor& tgt, double p) {
  at::Tensor d = (pred - tgt).abs();
  d = p == 2.0 ? d.square() : d.pow(p);
  return d.dim() > 1 ? d.sum(1).mean() : d.mean();
}

// What one pass over the units learns.
struct Pass {
  std::string name;
  bool learn_rounding = false, act_on = true, learn_act = false;
  int64_t iters = 0;
};

// The QuantContext used while a unit is reconstructed: layers of the unit use learnable rounding / step sizes
// (and QDrop's drop while training); every other layer uses the committed state in the SimQuant.
class ReconContext : public QuantContext {
 public:
  struct Active {
    std::unique_ptr<WeightParam> weight;  // learnable weight, or null (committed / RTN weight from the SimQuant)
    QuantParams ap;                       // input params; ap.scale is replaced by a_scale
    at::Tensor a_scale, a_scale0;         // step (requires grad when learned) and its initial value
  };

  ReconContext(SimQuant& base, uint64_t seed) : base_(base), rng_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}

  std::map<std::string, Active> active;
  bool act_on = true;      // false: every activation stays FP (BRECQ's rounding pass)
  bool training = false;   // QDrop's drop applies only while training
  bool soft = true;        // soft (h(V)) or hard (V ≥ 0) rounding for active layers
  double drop_prob = 0.0;
  // QDrop's partner of a dropped element for layers reading a unit input: the FP model's value of that input
  // (as the QDrop / PD-Quant code mixes the quantized model's input with the FP model's). Other layers drop to
  // their own unquantized input.
  std::map<std::string, at::Tensor> drop_partner;
  // Re-initialisation of one layer's input range: it observes its (unquantized) input instead of quantizing it.
  std::string observe_layer;
  Observer* observer = nullptr;

  at::Tensor weight(const LayerInfo& l, const at::Tensor& w) override {
    auto it = active.find(l.name);
    if (it == active.end() || !it->second.weight) return base_.weight(l, w);
    return it->second.weight->weight(!soft);
  }

  at::Tensor input(const LayerInfo& l, const at::Tensor& x) override {
    if (!act_on) return x;
    if (observer && l.name == observe_layer) {
      observer->observe(x);
      return x;
    }
    auto it = active.find(l.name);
    if (it == active.end() || !it->second.a_scale.defined()) return base_.input(l, x);
    const Active& a = it->second;
    at::Tensor keep = training && drop_prob > 0 ? drop_mask(x) : at::Tensor();
    at::Tensor xq;
    if (a.ap.granularity == Granularity::PerTensor && x.scalar_type() == at::kFloat && x.device().is_cpu() &&
        x.is_non_overlapping_and_dense())
      xq = fake_quant_lsq_per_tensor(x, a.a_scale, a.ap.zero_point.item<double>(), a.ap.qmin, a.ap.qmax, 1.0, keep);
    else
      xq = keep.defined() ? at::where(keep, x, fake_quant_lsq(x, a.a_scale, a.ap, 1.0)) : fake_quant_lsq(x, a.a_scale, a.ap, 1.0);
    if (keep.defined()) {
      auto p = drop_partner.find(l.name);
      if (p != drop_partner.end()) xq = at::where(keep, p->second, xq);
    }
    return xq;
  }

  // Sum of the active weights' regularisers (AdaRound's rounding term) at exponent beta; undefined when none.
  at::Tensor regularizer(double beta) const {
    at::Tensor total;
    for (const auto& [name, a] : active) {
      if (!a.weight) continue;
      at::Tensor r = a.weight->regularizer(beta);
      if (r.defined()) total = total.defined() ? total + r : r;
    }
    return total;
  }

  // QDrop's mask: true (keep the unquantized value) with probability drop_prob. A splitmix64 stream, one draw
  // per element: torch's Mersenne-Twister generator costs more than the rest of a reconstruction step here.
  at::Tensor drop_mask(const at::Tensor& like) {
    // Same strides as `like` (the fused quantizer walks memory in storage order).
    at::Tensor m = like.is_non_overlapping_and_dense() ? at::empty_like(like, at::TensorOptions().dtype(at::kBool))
                                                       : at::empty(like.sizes(), at::TensorOptions().dtype(at::kBool));
    bool* p = m.data_ptr<bool>();
    const int64_t n = m.numel();
    const uint64_t threshold = static_cast<uint64_t>(drop_prob * 18446744073709551616.0);
    for (int64_t i = 0; i < n; ++i) {
      uint64_t z = (rng_ += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      p[i] = (z ^ (z >> 31)) < threshold;
    }
    return m;
  }

 private:
  SimQuant& base_;
  uint64_t rng_;
};

using State = std::map<std::string, at::Tensor>;  // value name -> tensor for every calibration image


// Runs nodes [begin, end) over the whole state in chunks; returns the requested values for every image.
State run_all(const GraphExecutor& ex, size_t begin, size_t end, const State& state, QuantContext* ctx,
              const std::vector<std::string>& want) {
  at::NoGradGuard ng;
  const int64_t n = state.begin()->second.size(0), chunk = 200;
  std::map<std::string, std::vector<at::Tensor>> parts;
  for (int64_t i = 0; i < n; i += chunk) {
    ValueMap env;
    for (const auto& [k, v] : state) env[k] = v.slice(0, i, i + chunk);
    ex.run_nodes(begin, end, env, ctx, /*keep_all=*/true);
    for (const auto& w : want) {
      auto it = env.find(w);
      CATQ_CHECK(it != env.end(), Internal, "reconstruction: value '{}' not computed by nodes [{}, {})", w, begin, end);
      parts[w].push_back(it->second.contiguous());
    }
  }
  State out;
  for (auto& [k, v] : parts) out[k] = at::cat(v, 0);
  return out;
}

double rec_loss_all(const State& pred, const State& tgt, const std::vector<std::string>& targets, double p) {
  at::NoGradGuard ng;
  double total = 0;
  for (const auto& t : targets) {
    const int64_t n = pred.at(t).size(0), chunk = 200;
    double sum = 0;
    for (int64_t i = 0; i < n; i += chunk) {
      at::Tensor a = pred.at(t).slice(0, i, i + chunk), b = tgt.at(t).slice(0, i, i + chunk);
      sum += lp_loss(a, b, p).item<double>() * static_cast<double>(a.size(0));
    }
    total += sum / static_cast<double>(n);
  }
  return total;
}

std::vector<std::string> union_of(std::vector<std::string> a, const std::vector<std::string>& b) {
  for (const auto& v : b)
    if (std::find(a.begin(), a.end(), v) == a.end()) a.push_back(v);
  return a;
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
}

}  // namespace

void ReconOptions::validate() const {
  auto bad = [](const char* field, const std::string& why) { fail(ErrorKind::Config, "reconstruction: {}: {}", field, why); };
  if (iters < 0) bad("iters", fmt::format("{} is negative, expected >= 0", iters));
  if (batch <= 0) bad("batch", fmt::format("{} is not positive", batch));
  if (act_iters < 0) bad("act_iters", fmt::format("{} is negative", act_iters));
  if (!(w_lr > 0) || !(a_lr > 0)) bad("lr", "learning rates must be positive");
  if (!(round_weight >= 0)) bad("round_weight", "must be >= 0");
  if (!(b_start > 0) || !(b_end > 0)) bad("beta", "annealing range must be positive");
  if (!(warmup >= 0 && warmup < 1)) bad("warmup", fmt::format("{} is outside [0, 1)", warmup));
  if (!(rec_p > 0)) bad("rec_p", "must be positive");
  if (!(drop_prob >= 0 && drop_prob < 1)) bad("drop_prob", fmt::format("{} is outside [0, 1)", drop_prob));
  if (!(pd_weight >= 0)) bad("pd_weight", "must be >= 0");
  if (!(pd_temperature > 0)) bad("pd_temperature", "must be positive");
  if (!(drift_weight >= 0)) bad("drift_weight", "must be >= 0");
  if (weight_param != "adaround" && weight_param != "cluster_affine")
    bad("weight_param", fmt::format("'{}', expected adaround or cluster_affine", weight_param));
  if (clusters < 1 || clusters > 256) bad("clusters", fmt::format("{} outside 1..256", clusters));
}

const std::vector<std::string>& recon_methods() {
  static const std::vector<std::string> m = {"adaround", "brecq", "qdrop", "pdquant", "wca"};
  return m;
}

ReconOptions recon_preset(const std::string& method) {
  ReconOptions o;
  o.method = method;
  if (method == "adaround") {
    o.granularity = ReconGranularity::Layer;
    o.learn_act_scale = false;
  } else if (method == "brecq") {
    o.two_stage = true;
  } else if (method == "qdrop") {
    o.drop_prob = 0.5;
  } else if (method == "pdquant") {
    o.drop_prob = 0.5;
    o.pd_weight = 10.0;  // 1 / λ_r, λ_r = 0.1
    o.pd_temperature = 4.0;
  } else if (method == "wca") {
    o.granularity = ReconGranularity::Layer;
    o.weight_param = "cluster_affine";
    o.learn_act_scale = false;
    o.w_lr = 1e-2;  // the cluster parameters are in units of a quantization step
  } else {
    fail(ErrorKind::Config, "unknown reconstruction method '{}', expected one of: {}", method,
         fmt::join(recon_methods(), ", "));
  }
  return o;
}

ReconOptions recon_options(const std::string& method, const nlohmann::json& overrides) {
  nlohmann::json j = recon_preset(method);
  CATQ_CHECK(overrides.is_object(), Config, "reconstruction options must be a JSON object, got {}", overrides.dump());
  for (const auto& [key, value] : overrides.items()) {
    CATQ_CHECK(j.contains(key), Config, "reconstruction: unknown option '{}'", key);
    j[key] = value;
  }
  ReconOptions o;
  try {
    o = j.get<ReconOptions>();
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Config, "reconstruction options {}: {}", overrides.dump(), e.what());
  }
  o.validate();
  return o;
}

ReconReport reconstruct(const GraphExecutor& ex, SimQuant& sq, const at::Tensor& calib, const ReconOptions& o) {
  o.validate();
  CATQ_CHECK(calib.defined() && calib.dim() >= 2, Data, "reconstruction: calibration images must be a batch tensor");
  const int64_t n = calib.size(0);
  CATQ_CHECK(n >= o.batch, Data, "reconstruction: {} calibration images are fewer than one batch of {}", n, o.batch);
  CATQ_CHECK(ex.graph().inputs.size() == 1, Unsupported, "reconstruction: models with {} inputs are not supported "
             "(expected one image input)", ex.graph().inputs.size());
  CATQ_CHECK(sq.mode() == SimQuant::Mode::Quantize, Usage, "reconstruction: calibrate the SimQuant first (calibrate_rtn)");
  const auto start = std::chrono::steady_clock::now();
  const std::vector<ReconUnit> units = partition(ex, o.granularity);
  const Graph& g = ex.graph();
  const size_t n_nodes = g.nodes.size();
  const std::string input_name = g.inputs[0].name;

  std::vector<Pass> passes;
  if (o.two_stage) {
    passes.push_back({"rounding", o.learn_rounding, false, false, o.iters});
    passes.push_back({"activations", false, true, o.learn_act_scale, o.act_iters > 0 ? o.act_iters : o.iters / 4});
  } else {
    passes.push_back({"joint", o.learn_rounding, true, o.learn_act_scale, o.iters});
  }

  // FP logits of every calibration image (PD-Quant's target).
  at::Tensor fp_logits;
  if (o.pd_weight > 0) {
    State s0{{input_name, calib}};
    fp_logits = run_all(ex, 0, n_nodes, s0, nullptr, {g.outputs.at(0).name}).begin()->second;
  }

  int64_t total_iters = 0;
  for (const Pass& p : passes) total_iters += p.iters * static_cast<int64_t>(units.size());
  Progress bar(fmt::format("{} ({} units)", o.method, units.size()), total_iters);
  ReconReport report;
  ReconContext ctx(sq, o.seed);
  ctx.drop_prob = o.drop_prob;
  at::Generator batch_gen = make_generator(o.seed * 0x9E3779B97F4A7C15ull + 17);

  for (const Pass& pass : passes) {
    State fp_state{{input_name, calib}}, q_state{{input_name, calib}};
    for (size_t ui = 0; ui < units.size(); ++ui) {
      const ReconUnit& u = units[ui];
      const auto unit_start = std::chrono::steady_clock::now();
      const std::vector<std::string> live_end = ex.live_at(u.end);
      const std::vector<std::string> want = union_of(u.targets, live_end);

      // Learnable state of the unit's layers.
      ctx.active.clear();
      std::vector<at::Tensor> w_params, a_params;
      for (int li : u.layers) {
        const LayerInfo& l = ex.layers()[li];
        const SimQuant::Layer& sl = sq.layer(l.name);
        ReconContext::Active a;
        if (pass.learn_rounding && sl.weight_spec.enabled && sl.weight_spec.scheme == Scheme::Uniform) {
          const QuantParams* wp = sq.weight_params(l.name);
          CATQ_CHECK(wp != nullptr, Internal, "reconstruction: layer '{}' has no weight params", l.name);
          at::Tensor w = ex.layer_weight(l);
          a.weight = o.weight_param == "adaround" ? make_adaround_weight(w, *wp)
                                                  : make_cluster_affine_weight(w, *wp, o.clusters);
          for (const auto& p : a.weight->parameters()) w_params.push_back(p);
        }
        if (pass.act_on && sl.input_spec.enabled && sl.input_spec.granularity != Granularity::PerToken) {
          const QuantParams* ap = sq.input_params(l.name);
          CATQ_CHECK(ap != nullptr, Internal, "reconstruction: layer '{}' has no input params", l.name);
          a.ap = *ap;
          a.a_scale0 = ap->scale.clone();
          a.a_scale = ap->scale.clone().to(at::kFloat);
          if (pass.learn_act) {
            a.a_scale.requires_grad_(true);
            a_params.push_back(a.a_scale);
          }
        }
        ctx.active.emplace(l.name, std::move(a));
      }
      ctx.act_on = pass.act_on;
      ctx.training = false;
      ctx.soft = false;
      std::vector<std::pair<std::string, std::string>> input_of_active;  // layer -> the value it reads
      for (int li : u.layers) {
        const LayerInfo& l = ex.layers()[li];
        input_of_active.emplace_back(l.name, g.nodes[ex.node_index(l)].inputs.at(0));
      }

      // Activation ranges re-initialised on what the quantized model feeds this unit (as the BRECQ / QDrop /
      // PD-Quant code does): layer by layer, each observing its input with the earlier ones already quantized.
      if (o.reinit_act && pass.act_on) {
        State sample;
        for (const auto& [k, v] : q_state) sample[k] = v.slice(0, 0, std::min<int64_t>(n, o.reinit_images));
        for (int li : u.layers) {
          const LayerInfo& l = ex.layers()[li];
          ReconContext::Active& a = ctx.active.at(l.name);
          if (!a.a_scale.defined()) continue;
          auto obs = Observer::create(sq.layer(l.name).input_spec, l.name + " input");
          ctx.observe_layer = l.name;
          ctx.observer = obs.get();
          run_all(ex, u.begin, u.end, sample, &ctx, {});
          ctx.observer = nullptr;
          ctx.observe_layer.clear();
          QuantParams ap = obs->compute();
          a.ap = ap;
          a.a_scale0 = ap.scale.clone();
          const bool learn = a.a_scale.requires_grad();
          at::NoGradGuard ng;
          a.a_scale.copy_(ap.scale.to(at::kFloat).reshape(a.a_scale.sizes()));
          (void)learn;
        }
      }

      // Targets: the FP model on FP inputs. Loss before: the initial params, hard rounding.
      State fp_out = run_all(ex, u.begin, u.end, fp_state, nullptr, want);
      double before = rec_loss_all(run_all(ex, u.begin, u.end, q_state, &ctx, u.targets), fp_out, u.targets, o.rec_p);

      std::unique_ptr<torch::optim::Adam> w_opt, a_opt;
      if (!w_params.empty()) w_opt = std::make_unique<torch::optim::Adam>(w_params, torch::optim::AdamOptions(o.w_lr));
      if (!a_params.empty()) a_opt = std::make_unique<torch::optim::Adam>(a_params, torch::optim::AdamOptions(o.a_lr));
      const int64_t iters = (w_opt || a_opt) ? pass.iters : 0;
      const int64_t warm = static_cast<int64_t>(o.warmup * static_cast<double>(iters));
      ctx.training = true;
      ctx.soft = true;
      double last_loss = 0;
      for (int64_t it = 0; it < iters; ++it) {
        at::Tensor idx = at::randint(n, {o.batch}, batch_gen, at::TensorOptions().dtype(at::kLong));
        ValueMap env;
        for (const auto& [k, v] : q_state) env[k] = v.index_select(0, idx);
        ctx.drop_partner.clear();
        if (o.drop_prob > 0)
          for (const auto& [layer, value] : input_of_active)
            if (fp_state.count(value)) ctx.drop_partner[layer] = fp_state.at(value).index_select(0, idx);
        ValueMap env_q = o.pd_weight > 0 && o.drop_prob > 0 ? env : ValueMap{};
        ex.run_nodes(u.begin, u.end, env, &ctx, /*keep_all=*/true);
        at::Tensor loss = at::zeros({});
        for (const auto& t : u.targets) loss = loss + lp_loss(env.at(t), fp_out.at(t).index_select(0, idx), o.rec_p);
        if (o.pd_weight > 0) {
          // Prediction difference: the unit's output (without QDrop's drop, as PD-Quant's code: a second
          // forward when drop is on) through the remaining FP layers to the logits.
          if (o.drop_prob > 0) {
            ctx.training = false;
            ex.run_nodes(u.begin, u.end, env_q, &ctx, /*keep_all=*/true);
            ctx.training = true;
          }
          const ValueMap& out = o.drop_prob > 0 ? env_q : env;
          ValueMap rest;
          for (const auto& v : live_end) rest[v] = out.at(v);
          if (u.end < n_nodes) ex.run_nodes(u.end, n_nodes, rest, nullptr);
          at::Tensor z = rest.at(g.outputs.at(0).name) / o.pd_temperature;
          at::Tensor zf = fp_logits.index_select(0, idx) / o.pd_temperature;
          at::Tensor kl = at::kl_div(at::log_softmax(z, 1), at::softmax(zf, 1), at::Reduction::Sum);
          loss = loss + o.pd_weight * kl / static_cast<double>(o.batch);
        }
        const double rec = loss.item<double>();
        if (w_opt && it >= warm) {
          const double rel = iters > warm ? static_cast<double>(it - warm) / static_cast<double>(iters - warm) : 1.0;
          const double beta = o.b_end + (o.b_start - o.b_end) * std::max(0.0, 1.0 - rel);
          at::Tensor reg = ctx.regularizer(beta);
          if (reg.defined()) loss = loss + o.round_weight * reg;
        }
        if (o.drift_weight > 0 && a_opt)
          for (const auto& [name, a] : ctx.active)
            if (a.a_scale.requires_grad()) loss = loss + o.drift_weight * (a.a_scale - a.a_scale0).square().sum();
        CATQ_CHECK(std::isfinite(loss.item<double>()), Data, "reconstruction of {} diverged at iteration {} (loss {})",
                   u.name, it, loss.item<double>());
        const double cosine = 0.5 * (1 + std::cos(M_PI * static_cast<double>(it) / static_cast<double>(iters)));
        if (w_opt) {
          w_opt->zero_grad();
          // AdaRound's rounding variables use a constant rate (the annealed regulariser settles them); the cluster
          // affine parameters have no such force, so their rate decays like the activation steps'.
          if (o.weight_param == "cluster_affine") set_lr(*w_opt, o.w_lr * cosine);
        }
        if (a_opt) {
          a_opt->zero_grad();
          set_lr(*a_opt, o.a_lr * cosine);
        }
        loss.backward();
        if (w_opt) w_opt->step();
        if (a_opt) {
          a_opt->step();
          at::NoGradGuard ng;
          for (auto& p : a_params) p.clamp_(1e-8);
        }
        last_loss = rec;
        bar.step(1, fmt::format("unit {}/{} {} rec {:.4g}", ui + 1, units.size(), pass.name, last_loss));
      }

      // Commit: hard rounding into integer codes, learned (or re-initialised) steps into the input params.
      ctx.drop_partner.clear();
      ctx.training = false;
      ctx.soft = false;
      double after = rec_loss_all(run_all(ex, u.begin, u.end, q_state, &ctx, u.targets), fp_out, u.targets, o.rec_p);
      // A unit that ends worse than it started on the whole calibration set keeps its starting point.
      const bool reverted = o.keep_best && after > before;
      for (int li : u.layers) {
        const LayerInfo& l = ex.layers()[li];
        ReconContext::Active& a = ctx.active.at(l.name);
        if (a.weight) {
          if (!reverted) {
            a.weight->commit(sq, l.name);
          } else {
            const QuantParams* wp = sq.weight_params(l.name);
            sq.set_quantized_weight(l.name, quantize(ex.layer_weight(l).detach(), *wp), *wp);
          }
        }
        if (a.a_scale.defined() && (a.a_scale.requires_grad() || o.reinit_act)) {
          QuantParams ap = a.ap;
          ap.scale = reverted ? a.a_scale0.clone() : a.a_scale.detach().clone();
          sq.set_input_params(l.name, ap);
        }
      }
      if (reverted) after = before;
      ctx.active.clear();

      // Advance both states past the unit.
      State next_q = run_all(ex, u.begin, u.end, q_state, &ctx, live_end);
      State next_fp;
      for (const auto& v : live_end) next_fp[v] = fp_out.at(v);
      q_state = std::move(next_q);
      fp_state = std::move(next_fp);

      ReconUnitReport r;
      r.name = u.name;
      r.pass = pass.name;
      r.iters = iters;
      r.loss_before = before;
      r.loss_after = after;
      r.reverted = reverted;
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - unit_start).count();
      report.units.push_back(r);
    }
  }
  bar.finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace catq

#include "methods/qat/llm_qat.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace catq {

QatScheduleKind parse_qat_schedule(const std::string& s) {
  if (s == "classic") return QatScheduleKind::Classic;
  if (s == "fused") return QatScheduleKind::Fused;
  fail(ErrorKind::Usage, "QAT schedule '{}': expected classic or fused", s);
}

const char* to_string(QatScheduleKind k) { return k == QatScheduleKind::Classic ? "classic" : "fused"; }

PhaseSchedules fp_qat_schedules(int64_t total_steps, double qat_fraction, QatScheduleKind kind, double base_lr,
                                double warmup_frac, double decay_frac) {
  CATQ_CHECK(total_steps >= 1, Config, "FP/QAT run: total steps {} must be >= 1", total_steps);
  CATQ_CHECK(std::isfinite(qat_fraction) && qat_fraction >= 0 && qat_fraction <= 1, Config,
             "FP/QAT run: QAT fraction {} must be in [0, 1]", qat_fraction);
  PhaseSchedules p;
  p.fp_steps = std::llround((1.0 - qat_fraction) * static_cast<double>(total_steps));
  p.qat_steps = total_steps - p.fp_steps;
  LrSchedule base;
  base.shape = LrShape::Wsd;
  base.base_lr = base_lr;
  base.warmup_frac = warmup_frac;
  base.decay_frac = decay_frac;
  base.final_ratio = 0.0;
  if (kind == QatScheduleKind::Fused) {
    // One schedule; the decay may not start before the switch, so it is at most the QAT phase long.
    int64_t d = std::llround(decay_frac * static_cast<double>(total_steps));
    if (p.qat_steps > 0) d = std::min(d, p.qat_steps);
    base.total_steps = total_steps;
    base.decay_frac = static_cast<double>(d) / static_cast<double>(total_steps);
    if (base.warmup_frac + base.decay_frac > 1) base.warmup_frac = 1 - base.decay_frac;
    base.validate();
    p.fp = p.qat = base;
    p.qat_first_step = p.fp_steps;
  } else {
    p.fp = base;
    p.fp.total_steps = std::max<int64_t>(p.fp_steps, 1);
    p.qat = base;
    p.qat.total_steps = std::max<int64_t>(p.qat_steps, 1);
    p.fp.validate();
    p.qat.validate();
    p.qat_first_step = 0;
  }
  return p;
}

QuantConfig weight_only_qat_config(int bits, int head_bits, int embedding_bits) {
  CATQ_CHECK(embedding_bits == 0 || (embedding_bits >= 2 && embedding_bits <= 8), Config,
             "weights-only QAT: embedding bits {} must be 0 (FP) or 2..8", embedding_bits);
  CATQ_CHECK(bits >= 1 && bits <= 8, Config, "weights-only QAT: bits {} outside 1..8", bits);
  CATQ_CHECK(head_bits == 0 || (head_bits >= 2 && head_bits <= 8), Config,
             "weights-only QAT: LM head bits {} must be 0 (FP) or 2..8", head_bits);
  QuantConfig c = QuantConfig::fp();
  QuantSpec w = default_weight_spec(bits >= 2 ? bits : 2);
  if (bits == 1) {
    w.bits = 1;
    w.scheme = Scheme::Binary;
  }
  c.defaults.weight = w;
  c.defaults.input = QuantSpec::fp();
  QuantConfig::Rule head;
  // The LM head (the last layer): FP like the embedding table, or its own bit width.
  head.weight = head_bits == 0 ? nlohmann::json(nullptr) : nlohmann::json{{"bits", head_bits}, {"scheme", "uniform"}};
  c.last_layer = head;
  if (embedding_bits > 0) c.embedding = default_weight_spec(embedding_bits);  // per token row, symmetric
  c.source = fmt::format("w{} weights-only QAT (per-channel symmetric, LM head {}, embeddings {})", bits,
                         head_bits == 0 ? std::string("FP") : fmt::format("{}-bit", head_bits),
                         embedding_bits == 0 ? std::string("FP") : fmt::format("{}-bit per row", embedding_bits));
  return c;
}

nlohmann::json FpQatRun::to_json() const {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); };
  return {{"fp_steps", fp.size()},
          {"qat_steps", qat.size()},
          {"fp_final_loss", fp.empty() ? nlohmann::json(nullptr) : nlohmann::json(fp.back().loss)},
          {"qat_final_loss", qat.empty() ? nlohmann::json(nullptr) : nlohmann::json(qat.back().loss)},
          {"fp_val_nll", num(fp_val_nll)},
          {"ptq_val_nll", num(ptq_val_nll)},
          {"val_nll", num(val_nll)}};
}

FpQatRun train_fp_then_qat(LlamaModel& m, const at::Tensor& train, const at::Tensor& val, int32_t bos,
                           const FpQatOptions& o, SimQuant& sq, int64_t val_windows) {
  const PhaseSchedules ph = fp_qat_schedules(o.total_steps, o.qat_fraction, o.schedule, o.lr, o.warmup_frac, o.decay_frac);
  FpQatRun run;
  const int64_t seq = o.train.seq;
  OptimizerStateCarry carry;
  if (ph.fp_steps > 0) {
    LlmTrainOptions t = o.train;
    t.steps = ph.fp_steps;
    t.schedule = ph.fp;
    t.first_step = 0;
    t.label = o.train.label + " fp";
    if (o.carry_optimizer_state) t.carry = &carry;
    run.fp = train_llama(m, train, bos, t);
    run.fp_val_nll = stream_nll(m, val, bos, seq, val_windows);
  } else {
    run.fp_val_nll = std::numeric_limits<double>::quiet_NaN();
  }
  sq.set_mode(SimQuant::Mode::Quantize);
  m.bind(&sq);
  run.ptq_val_nll = stream_nll(m, val, bos, seq, val_windows, &sq);
  run.val_nll = run.ptq_val_nll;
  if (ph.qat_steps > 0) {
    auto weight_of = [&](const LayerInfo& l) { return m.layer_weight(l.index); };
    QatOptions qo;
    qo.act = ActQat::Ste;  // weights only: inputs are FP in the config anyway
    QatQuant qat(sq, weight_of, qo);
    LlmTrainOptions t = o.train;
    t.steps = ph.qat_steps;
    t.schedule = ph.qat;
    t.first_step = ph.qat_first_step;
    t.label = o.train.label + " qat";
    if (o.carry_optimizer_state) t.carry = &carry;
    std::vector<at::Tensor> qp = qat.parameters();
    if (!qp.empty()) t.extra_groups.push_back({qp, 1.0, 0.0});
    run.qat = train_llama(m, train, bos, t, &qat);
    for (auto& p : qp) p.set_requires_grad(false);
    qat.commit(weight_of);
    run.val_nll = stream_nll(m, val, bos, seq, val_windows, &sq);
  }
  return run;
}

}  // namespace catq

// FP → QAT training runs for Llama models (methods.md §5, seed 002): a model trains in floating point for a
// fraction 1 − f of a step budget, then with weights-only QAT (QatQuant: LSQ at 3+ bits, SEQ at 2, sign at 1;
// per-output-channel steps; the embedding table and the LM head stay FP) for the rest. Two LR schedules:
//
//   fused    one warmup–stable–decay schedule over the whole run; the switch to QAT happens at the peak LR and the
//            decay (the last max(decay_frac·T, ...) steps, never before the switch) runs inside the QAT phase.
//   classic  the FP phase is a complete WSD run of its own (warmup, stable, decay to lr_min); the QAT phase starts a
//            fresh WSD schedule (its own warmup and decay) at the same peak LR.
// The optimizer state (AdamW moments) starts fresh in the QAT phase under both schedules unless
// carry_optimizer_state: then the model weights' moments (and step counts) continue from the FP phase, and only the
// quantizers' new parameters start fresh — so a fused-vs-classic comparison is not confounded by the reset.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llm/train_llm.h"
#include "methods/qat/quantizers.h"
#include "sim/sim_quant.h"

namespace catq {

enum class QatScheduleKind { Classic, Fused };
QatScheduleKind parse_qat_schedule(const std::string& s);  // "classic" | "fused"; else Error(Usage)
const char* to_string(QatScheduleKind k);

struct PhaseSchedules {
  int64_t fp_steps = 0, qat_steps = 0;
  LrSchedule fp, qat;         // each phase's schedule (fused: the same one)
  int64_t qat_first_step = 0; // the step number the QAT phase starts at in its schedule (fused: fp_steps)
};

// T = total steps, f ∈ [0, 1]: fp_steps = round((1 − f)·T). Error(Config) for T < 1 or f outside [0, 1].
PhaseSchedules fp_qat_schedules(int64_t total_steps, double qat_fraction, QatScheduleKind kind, double base_lr,
                                double warmup_frac, double decay_frac);

// The weights-only QAT config: per-output-channel symmetric `bits`-bit weights (binary scheme at 1 bit), inputs FP;
// the LM head at head_bits (0 = FP; ParetoQ keeps it at 4+ bits). The token-embedding table is not a quantizable
// layer and stays FP. Error(Config) for bits outside 1..8 or head_bits outside {0, 2..8}.
QuantConfig weight_only_qat_config(int bits, int head_bits = 0, int embedding_bits = 0);

struct FpQatOptions {
  int64_t total_steps = 1000;
  double qat_fraction = 0.2;
  QatScheduleKind schedule = QatScheduleKind::Fused;
  int bits = 4;
  double lr = 2e-3, warmup_frac = 0.05, decay_frac = 0.2;
  bool carry_optimizer_state = false;
  LlmTrainOptions train;      // batch, seq, optimizer, clip, seed, label (steps / schedule / first_step set here)
};

struct FpQatRun {
  std::vector<StepRecord> fp, qat;
  double fp_val_nll = 0;        // after the FP phase, FP model (NaN when there is no FP phase)
  double ptq_val_nll = 0;       // after the FP phase, RTN-quantized at `bits` (what skipping QAT would give)
  double val_nll = 0;           // at the end, quantized (the QAT model; = ptq_val_nll when f = 0)
  nlohmann::json to_json() const;
};

// Trains m in place (FP phase, then QAT) and evaluates on `val` (stream_nll over val_windows windows of `seq`).
// sq receives the final quantized state (weights-only; commit()ed integer weights), so it can be saved with
// write_catq_llm.
FpQatRun train_fp_then_qat(LlamaModel& m, const at::Tensor& train, const at::Tensor& val, int32_t bos,
                           const FpQatOptions& o, SimQuant& sq, int64_t val_windows = 64);

}  // namespace catq

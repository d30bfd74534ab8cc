// Learning-rate schedules as a pure function of the optimizer step (0-based).
//
// With T = total_steps, W = round(warmup_frac * T), D = round(decay_frac * T), lr_min = base_lr * final_ratio:
//   warmup (every shape, s < W):  lr = base_lr * (s + 1) / W     (linear; the first step is not wasted at lr 0)
//   Constant: lr = base_lr after warmup
//   Cosine:   after warmup, p = (s - W) / (T - W):  lr = lr_min + (base_lr - lr_min) * (1 + cos(pi p)) / 2
//   Wsd (warmup-stable-decay): stable at base_lr until step T - D, then p = (s - (T - D)) / D and
//             Linear: lr = base_lr + (lr_min - base_lr) * p;  Cosine: lr = lr_min + (base_lr - lr_min) * (1 + cos(pi p)) / 2
//   Steps s >= T give lr_min (Cosine, Wsd) or base_lr (Constant).
// Hence lr(T) = lr_min exactly and the last step taken (s = T - 1) is slightly above it.
// A Wsd schedule is how a run is split into an FP phase (warmup + stable) followed by a QAT phase that holds
// the decay: train both phases with the same schedule and let the second start at first_step = T - D.
#pragma once
#include <cstdint>
#include <string>

namespace catq {

enum class LrShape { Constant, Cosine, Wsd };
enum class DecayShape { Linear, Cosine };

struct LrSchedule {
  LrShape shape = LrShape::Constant;
  double base_lr = 1e-3;      // peak learning rate
  int64_t total_steps = 0;    // T; 0 = let the trainer fill it in (epochs * batches per epoch, or n_steps)
  double warmup_frac = 0.0;   // W / T
  double decay_frac = 0.2;    // D / T (Wsd only)
  DecayShape decay = DecayShape::Linear;  // shape of the Wsd decay
  double final_ratio = 0.0;   // lr_min / base_lr (Cosine, Wsd)

  // Throws Error(Config) naming the field for negative or non-finite values, fractions outside [0, 1],
  // warmup_frac + decay_frac > 1, or total_steps <= 0.
  void validate() const;
  // The learning rate of step s (0-based). Call validate() first (the trainers do).
  double lr(int64_t step) const;
  int64_t warmup_steps() const;
  int64_t decay_steps() const;  // D for Wsd, 0 otherwise
};

// "constant" | "cosine" | "wsd" and "linear" | "cosine"; anything else is Error(Usage).
LrShape parse_lr_shape(const std::string& s);
DecayShape parse_decay_shape(const std::string& s);
const char* lr_shape_name(LrShape s);

}  // namespace catq

#include "train/schedule.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace catq {

void LrSchedule::validate() const {
  auto finite_nonneg = [](double v) { return std::isfinite(v) && v >= 0; };
  CATQ_CHECK(finite_nonneg(base_lr), Config, "learning-rate schedule: base_lr {} must be a finite number >= 0", base_lr);
  CATQ_CHECK(total_steps > 0, Config, "learning-rate schedule: total_steps {} must be positive", total_steps);
  CATQ_CHECK(finite_nonneg(warmup_frac) && warmup_frac <= 1, Config,
             "learning-rate schedule: warmup fraction {} must be in [0, 1]", warmup_frac);
  CATQ_CHECK(finite_nonneg(decay_frac) && decay_frac <= 1, Config,
             "learning-rate schedule: decay fraction {} must be in [0, 1]", decay_frac);
  CATQ_CHECK(finite_nonneg(final_ratio), Config, "learning-rate schedule: final LR ratio {} must be >= 0",
             final_ratio);
  if (shape == LrShape::Wsd)
    CATQ_CHECK(warmup_frac + decay_frac <= 1 + 1e-12, Config,
               "learning-rate schedule: warmup fraction {} + decay fraction {} exceed 1", warmup_frac, decay_frac);
}

int64_t LrSchedule::warmup_steps() const { return std::llround(warmup_frac * static_cast<double>(total_steps)); }

int64_t LrSchedule::decay_steps() const {
  if (shape != LrShape::Wsd) return 0;
  // Never let rounding make warmup and decay overlap.
  return std::min<int64_t>(std::llround(decay_frac * static_cast<double>(total_steps)), total_steps - warmup_steps());
}

static double cosine_between(double hi, double lo, double p) {
  return lo + (hi - lo) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
}

double LrSchedule::lr(int64_t step) const {
  const double lr_min = base_lr * final_ratio;
  const int64_t w = warmup_steps();
  if (step < 0) step = 0;
  if (step < w) return base_lr * static_cast<double>(step + 1) / static_cast<double>(w);
  switch (shape) {
    case LrShape::Constant:
      return base_lr;
    case LrShape::Cosine: {
      if (step >= total_steps) return lr_min;
      double p = static_cast<double>(step - w) / static_cast<double>(total_steps - w);
      return cosine_between(base_lr, lr_min, p);
    }
    case LrShape::Wsd: {
      const int64_t d = decay_steps(), start = total_steps - d;
      if (step >= total_steps) return lr_min;
      if (step < start) return base_lr;
      double p = static_cast<double>(step - start) / static_cast<double>(d);
      return decay == DecayShape::Linear ? base_lr + (lr_min - base_lr) * p : cosine_between(base_lr, lr_min, p);
    }
  }
  return base_lr;
}

LrShape parse_lr_shape(const std::string& s) {
  if (s == "constant") return LrShape::Constant;
  if (s == "cosine") return LrShape::Cosine;
  if (s == "wsd") return LrShape::Wsd;
  fail(ErrorKind::Usage, "unknown learning-rate schedule '{}': expected constant, cosine or wsd", s);
}

DecayShape parse_decay_shape(const std::string& s) {
  if (s == "linear") return DecayShape::Linear;
  if (s == "cosine") return DecayShape::Cosine;
  fail(ErrorKind::Usage, "unknown decay shape '{}': expected linear or cosine", s);
}

const char* lr_shape_name(LrShape s) {
  switch (s) {
    case LrShape::Constant: return "constant";
    case LrShape::Cosine: return "cosine";
    case LrShape::Wsd: return "wsd";
  }
  return "?";
}

}  // namespace catq

#include "train/optim.h"

#include <cmath>

#include <torch/nn/utils/clip_grad.h>

#include "core/error.h"

namespace catq {

OptimKind parse_optim_kind(const std::string& s) {
  if (s == "sgd") return OptimKind::Sgd;
  if (s == "adam") return OptimKind::Adam;
  if (s == "adamw") return OptimKind::AdamW;
  fail(ErrorKind::Usage, "unknown optimizer '{}': expected sgd, adam or adamw", s);
}

const char* optim_kind_name(OptimKind k) {
  switch (k) {
    case OptimKind::Sgd: return "sgd";
    case OptimKind::Adam: return "adam";
    case OptimKind::AdamW: return "adamw";
  }
  return "?";
}

namespace {

void validate(const OptimConfig& c) {
  auto ok = [](double v) { return std::isfinite(v) && v >= 0; };
  CATQ_CHECK(ok(c.weight_decay), Config, "optimizer: weight decay {} must be >= 0", c.weight_decay);
  CATQ_CHECK(ok(c.momentum) && c.momentum < 1, Config, "optimizer: momentum {} must be in [0, 1)", c.momentum);
  CATQ_CHECK(!c.nesterov || c.momentum > 0, Config, "optimizer: Nesterov momentum needs momentum > 0");
  CATQ_CHECK(ok(c.beta1) && c.beta1 < 1 && ok(c.beta2) && c.beta2 < 1, Config,
             "optimizer: Adam betas ({}, {}) must be in [0, 1)", c.beta1, c.beta2);
  CATQ_CHECK(std::isfinite(c.eps) && c.eps > 0, Config, "optimizer: Adam eps {} must be > 0", c.eps);
}

std::unique_ptr<torch::optim::OptimizerOptions> make_options(const OptimConfig& c, double lr, double wd) {
  switch (c.kind) {
    case OptimKind::Sgd:
      return std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(lr).momentum(c.momentum).nesterov(c.nesterov).weight_decay(wd));
    case OptimKind::Adam:
      return std::make_unique<torch::optim::AdamOptions>(
          torch::optim::AdamOptions(lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(wd));
    case OptimKind::AdamW:
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(wd));
  }
  fail(ErrorKind::Internal, "unknown optimizer kind");
}

}  // namespace

TrainStepper::TrainStepper(std::vector<ParamGroup> groups, const OptimConfig& cfg, const LrSchedule& schedule,
                           double grad_clip_norm, int64_t first_step)
    : schedule_(schedule), clip_(grad_clip_norm), step_(first_step) {
  validate(cfg);
  schedule_.validate();
  CATQ_CHECK(std::isfinite(grad_clip_norm) && grad_clip_norm >= 0, Config,
             "gradient clipping norm {} must be >= 0 (0 = off)", grad_clip_norm);
  CATQ_CHECK(first_step >= 0, Config, "first training step {} must be >= 0", first_step);

  std::vector<torch::optim::OptimizerParamGroup> pg;
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& grp = groups[g];
    if (grp.params.empty()) continue;
    CATQ_CHECK(std::isfinite(grp.lr_scale) && grp.lr_scale >= 0, Config,
               "parameter group {}: lr_scale {} must be >= 0", g, grp.lr_scale);
    for (size_t i = 0; i < grp.params.size(); ++i) {
      CATQ_CHECK(grp.params[i].defined() && grp.params[i].requires_grad(), Data,
                 "parameter group {}: parameter {} does not require grad, so it cannot be trained", g, i);
      all_params_.push_back(grp.params[i]);
    }
    double wd = grp.weight_decay >= 0 ? grp.weight_decay : cfg.weight_decay;
    pg.emplace_back(grp.params, make_options(cfg, schedule_.lr(step_) * grp.lr_scale, wd));
    scales_.push_back(grp.lr_scale);
  }
  CATQ_CHECK(!pg.empty(), Data, "nothing to train: no parameters were given to the optimizer");

  // The defaults only matter for groups added later; every group here carries its own options.
  switch (cfg.kind) {
    case OptimKind::Sgd:
      opt_ = std::make_unique<torch::optim::SGD>(pg, torch::optim::SGDOptions(schedule_.base_lr));
      break;
    case OptimKind::Adam:
      opt_ = std::make_unique<torch::optim::Adam>(pg, torch::optim::AdamOptions(schedule_.base_lr));
      break;
    case OptimKind::AdamW:
      opt_ = std::make_unique<torch::optim::AdamW>(pg, torch::optim::AdamWOptions(schedule_.base_lr));
      break;
  }
}

// libtorch keys an optimizer's state by the parameter's TensorImpl address, as a string.
static std::string state_key(const at::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

void TrainStepper::export_state(OptimizerStateCarry& carry) const {
  auto& state = opt_->state();
  for (const at::Tensor& p : all_params_) {
    auto it = state.find(state_key(p));
    if (it != state.end()) carry.by_param[p.data_ptr()] = it->second->clone();
  }
}

void TrainStepper::import_state(const OptimizerStateCarry& carry) {
  auto& state = opt_->state();
  for (const at::Tensor& p : all_params_) {
    auto it = carry.by_param.find(p.data_ptr());
    if (it != carry.by_param.end()) state[state_key(p)] = it->second->clone();
  }
}

double TrainStepper::step(const at::Tensor& loss) {
  CATQ_CHECK(loss.defined() && loss.numel() == 1, Internal, "training loss must be a scalar tensor");
  double lv = loss.item<double>();
  if (!std::isfinite(lv))
    fail(ErrorKind::Data, "training diverged: loss is {} at step {} (lr {:.3g}); lower the learning rate", lv, step_,
         schedule_.lr(step_));
  const double lr = schedule_.lr(step_);
  auto& groups = opt_->param_groups();
  for (size_t g = 0; g < groups.size(); ++g) groups[g].options().set_lr(lr * scales_[g]);
  opt_->zero_grad();
  loss.backward();
  if (clip_ > 0) torch::nn::utils::clip_grad_norm_(all_params_, clip_);
  opt_->step();
  ++step_;
  return lr;
}

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& labels, double label_smoothing) {
  CATQ_CHECK(logits.dim() == 2 && labels.dim() == 1 && logits.size(0) == labels.size(0), Data,
             "cross-entropy: logits [{}] and labels [{}] do not match (expected [B, K] and [B])",
             fmt::join(logits.sizes(), ", "), fmt::join(labels.sizes(), ", "));
  CATQ_CHECK(label_smoothing >= 0 && label_smoothing < 1, Config, "label smoothing {} must be in [0, 1)",
             label_smoothing);
  return at::cross_entropy_loss(logits, labels, {}, at::Reduction::Mean, -100, label_smoothing);
}

}  // namespace catq

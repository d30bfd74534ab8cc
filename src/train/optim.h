// Optimizer configuration and the one-step update shared by every training loop.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/ATen.h>
#include <torch/optim.h>

#include "train/schedule.h"

namespace catq {

enum class OptimKind { Sgd, Adam, AdamW };

// "sgd" | "adam" | "adamw"; anything else is Error(Usage).
OptimKind parse_optim_kind(const std::string& s);
const char* optim_kind_name(OptimKind k);

struct OptimConfig {
  OptimKind kind = OptimKind::Sgd;
  double weight_decay = 0.0;  // SGD/Adam: L2 added to the gradient; AdamW: decoupled decay
  // SGD
  double momentum = 0.9;
  bool nesterov = false;
  // Adam / AdamW
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// A set of parameters that shares one learning-rate multiplier (e.g. LSQ step sizes next to rounding
// variables). The group's LR at step s is schedule.lr(s) * lr_scale.
struct ParamGroup {
  std::vector<at::Tensor> params;  // leaf tensors with requires_grad
  double lr_scale = 1.0;
  double weight_decay = -1.0;      // < 0: use OptimConfig::weight_decay
};

// An optimizer's per-parameter state (AdamW: step count, first and second moments) taken out of one TrainStepper
// and handed to the next, keyed by the parameter's storage (a detach()ed re-leaf of the same weights finds its state;
// libtorch's own key, the TensorImpl, does not survive that): a second training phase over the same parameters then
// continues the moments instead of starting them from zero (CO-QAT's FP → QAT switch, issue 18).
struct OptimizerStateCarry {
  std::unordered_map<const void*, std::unique_ptr<torch::optim::OptimizerParamState>> by_param;
};

// Owns the optimizer and the step counter: zero_grad, backward, optional gradient-norm clipping, LR from the
// schedule, optimizer step. Every trainer in catq goes through it; custom loops can use it directly.
class TrainStepper {
 public:
  // Throws Error(Config) for a bad config or schedule (schedule.total_steps must be set), Error(Data) when a
  // group holds a parameter that does not require grad or no group holds any parameter.
  TrainStepper(std::vector<ParamGroup> groups, const OptimConfig& cfg, const LrSchedule& schedule,
               double grad_clip_norm = 0.0, int64_t first_step = 0);

  // One update from a scalar loss. Returns the base LR used (before lr_scale). Throws Error(Data) naming the
  // step when the loss is not finite (training diverged), leaving the parameters untouched.
  double step(const at::Tensor& loss);
  // The LR the next step will use, and the number of the next step (starts at first_step).
  double next_lr() const { return schedule_.lr(step_); }
  int64_t step_index() const { return step_; }
  torch::optim::Optimizer& optimizer() { return *opt_; }
  // Copies the state of every parameter that has one into `carry` / installs the carried state of every parameter
  // found there (others start fresh). The optimizer kinds must match (checked by libtorch's state types).
  void export_state(OptimizerStateCarry& carry) const;
  void import_state(const OptimizerStateCarry& carry);

 private:
  std::unique_ptr<torch::optim::Optimizer> opt_;
  std::vector<double> scales_;
  std::vector<at::Tensor> all_params_;
  LrSchedule schedule_;
  double clip_;
  int64_t step_;
};

// Cross-entropy of logits [B, K] against int64 labels [B], mean over the batch. label_smoothing in [0, 1)
// mixes the one-hot target with the uniform distribution (target = (1 - e) onehot + e / K).
at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& labels, double label_smoothing = 0.0);

}  // namespace catq

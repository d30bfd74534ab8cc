// Reusable training loops: epochs over an ImageDataset (classification) and a generic step loop (token LMs,
// per-block reconstruction, ...). Models are plain callables plus a parameter list, so anything libtorch
// autograd can differentiate trains here: torch::nn modules, ONNX graph executors, fake-quantized models.
//
// Determinism: both loops call torch::manual_seed(seed) when they start (this resets libtorch's global
// generator: build and initialise the model before training) and shuffle with seeded_permutation, so the same
// seed, data, model and thread count give the same losses.
#pragma once
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include "data/dataset.h"
#include "train/optim.h"
#include "train/schedule.h"

namespace catq {

// images [B, C, H, W] -> logits [B, K]. The caller is responsible for train/eval mode (BatchNorm, dropout).
using Forward = std::function<at::Tensor(const at::Tensor&)>;

struct TrainOptions {
  int64_t epochs = 1;
  int64_t batch_size = 128;
  OptimConfig optim;
  LrSchedule schedule;           // total_steps 0 = epochs * batches per epoch
  double label_smoothing = 0.0;  // cross-entropy label smoothing, [0, 1)
  double grad_clip_norm = 0.0;   // max global gradient L2 norm, 0 = off
  uint64_t seed = 0;
  bool shuffle = true;           // epoch e visits records in seeded_permutation(N, seed * 0x9E3779B97F4A7C15 + e + 1) order
  bool drop_last = false;        // drop the last incomplete batch of each epoch
  c10::Device device = c10::kCPU;  // batches are moved here before forward
  // Optional, applied to each training batch (already on `device`) before forward, e.g. random crop / flip.
  std::function<at::Tensor(const at::Tensor&)> augment;
  std::string label = "train";   // progress-bar label
};

struct EpochStats {
  int64_t epoch = 0;       // 0-based
  double loss = 0;         // mean training loss over the epoch's samples (with label smoothing if set)
  double train_acc = 0;    // fraction of training samples whose argmax matched, measured during the epoch
  double lr = 0;           // base LR of the epoch's last step
  double seconds = 0;      // wall time of the epoch, evaluation callback excluded
  double eval = std::numeric_limits<double>::quiet_NaN();  // what the epoch callback returned, NaN without one
};

// Called after each epoch with the 0-based epoch number; returns a metric (e.g. evaluation accuracy) stored in
// EpochStats::eval. It runs outside autograd's no-grad scope: use at::NoGradGuard inside if needed.
using EpochCallback = std::function<double(int64_t epoch)>;

// Trains `forward` on `data` with cross-entropy. Throws Error(Config) for bad options, Error(Data) for an empty
// data set, logits that do not match the batch, labels outside the logits' classes, or a non-finite loss.
std::vector<EpochStats> train_classifier(const ImageDataset& data, const Forward& forward,
                                         const std::vector<ParamGroup>& groups, const TrainOptions& opts,
                                         const EpochCallback& on_epoch = {});
std::vector<EpochStats> train_classifier(const ImageDataset& data, const Forward& forward,
                                         const std::vector<at::Tensor>& params, const TrainOptions& opts,
                                         const EpochCallback& on_epoch = {});

// ---- Generic step loop ----

// One mini-batch, e.g. input token ids [B, T] and targets [B, T]; the loop does not look inside.
struct Batch {
  at::Tensor input, target;
};
using BatchFn = std::function<Batch(int64_t step)>;        // receives the global step number
using LossFn = std::function<at::Tensor(const Batch&)>;    // returns a scalar loss with autograd history

struct StepOptions {
  OptimConfig optim;
  LrSchedule schedule;          // total_steps 0 = first_step + n_steps
  double grad_clip_norm = 0.0;
  uint64_t seed = 0;
  int64_t first_step = 0;       // global number of the first step: lets a second phase continue a schedule
  int64_t eval_every = 0;       // call on_eval every this many steps (and after the last one); 0 = never
  std::function<void(int64_t step)> on_eval;  // receives the number of steps done so far (global)
  std::string label = "train";
  OptimizerStateCarry* carry = nullptr;  // non-null: the optimizer starts from this state and leaves its own here
};

struct StepRecord {
  int64_t step = 0;  // global step number
  double loss = 0;
  double lr = 0;     // base LR used
};

// Runs n_steps optimizer steps: batch = batch_fn(step), loss = loss_fn(batch), update. Progress bar shows a
// running mean of the loss, the LR and the ETA. Errors as in train_classifier.
std::vector<StepRecord> train_steps(int64_t n_steps, const BatchFn& batch_fn, const LossFn& loss_fn,
                                    const std::vector<ParamGroup>& groups, const StepOptions& opts);
std::vector<StepRecord> train_steps(int64_t n_steps, const BatchFn& batch_fn, const LossFn& loss_fn,
                                    const std::vector<at::Tensor>& params, const StepOptions& opts);

}  // namespace catq

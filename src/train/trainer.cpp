#include "train/trainer.h"

#include <chrono>

#include <torch/utils.h>

#include "core/error.h"
#include "core/progress.h"

namespace catq {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::vector<EpochStats> train_classifier(const ImageDataset& data, const Forward& forward,
                                         const std::vector<ParamGroup>& groups, const TrainOptions& opts,
                                         const EpochCallback& on_epoch) {
  const int64_t n = data.size();
  CATQ_CHECK(n > 0, Data, "{}: cannot train on an empty data set", data.name);
  CATQ_CHECK(data.images.defined() && data.images.size(0) == n, Data, "{}: {} images but {} labels", data.name,
             data.images.defined() ? data.images.size(0) : 0, n);
  CATQ_CHECK(opts.epochs > 0, Config, "training: epochs {} must be positive", opts.epochs);
  CATQ_CHECK(opts.batch_size > 0, Config, "training: batch size {} must be positive", opts.batch_size);
  CATQ_CHECK(!opts.drop_last || n >= opts.batch_size, Data,
             "{}: {} samples are fewer than one batch of {} with drop_last", data.name, n, opts.batch_size);

  const int64_t batches = opts.drop_last ? n / opts.batch_size : (n + opts.batch_size - 1) / opts.batch_size;
  LrSchedule sched = opts.schedule;
  if (sched.total_steps == 0) sched.total_steps = opts.epochs * batches;
  TrainStepper stepper(groups, opts.optim, sched, opts.grad_clip_norm);
  torch::manual_seed(opts.seed);

  std::vector<EpochStats> history;
  for (int64_t epoch = 0; epoch < opts.epochs; ++epoch) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int64_t> order(n);
    if (opts.shuffle)
      order = seeded_permutation(n, opts.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
    else
      for (int64_t i = 0; i < n; ++i) order[i] = i;
    at::Tensor order_t = at::from_blob(order.data(), {n}, at::kLong);

    Progress bar(fmt::format("{} epoch {}/{}", opts.label, epoch + 1, opts.epochs), batches);
    double loss_sum = 0, lr = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t b = 0; b < batches; ++b) {
      int64_t lo = b * opts.batch_size, hi = std::min(n, lo + opts.batch_size);
      at::Tensor idx = order_t.slice(0, lo, hi);
      at::Tensor x = data.images.index_select(0, idx).to(opts.device);
      at::Tensor y = data.labels.index_select(0, idx).to(opts.device);
      if (opts.augment) x = opts.augment(x);
      at::Tensor logits = forward(x);
      CATQ_CHECK(logits.defined() && logits.dim() == 2 && logits.size(0) == hi - lo, Data,
                 "{}: the model returned logits [{}] for a batch of {} images, expected [{}, classes]", data.name,
                 logits.defined() ? fmt::format("{}", fmt::join(logits.sizes(), ", ")) : "undefined", hi - lo,
                 hi - lo);
      int64_t ymax = y.max().item<int64_t>(), ymin = y.min().item<int64_t>();
      CATQ_CHECK(ymin >= 0 && ymax < logits.size(1), Data,
                 "{}: label {} is outside the model's {} classes", data.name, ymin < 0 ? ymin : ymax, logits.size(1));
      at::Tensor loss = cross_entropy(logits, y, opts.label_smoothing);
      lr = stepper.step(loss);
      const int64_t bs = hi - lo;
      loss_sum += loss.item<double>() * bs;
      correct += logits.detach().argmax(1).eq(y).sum().item<int64_t>();
      seen += bs;
      bar.step(1, fmt::format("loss {:.4f} acc {:.2f}% lr {:.3g}", loss_sum / seen, 100.0 * correct / seen, lr));
    }
    bar.finish();
    EpochStats st;
    st.epoch = epoch;
    st.loss = loss_sum / seen;
    st.train_acc = static_cast<double>(correct) / seen;
    st.lr = lr;
    st.seconds = seconds_since(t0);
    if (on_epoch) st.eval = on_epoch(epoch);
    history.push_back(st);
  }
  return history;
}

std::vector<EpochStats> train_classifier(const ImageDataset& data, const Forward& forward,
                                         const std::vector<at::Tensor>& params, const TrainOptions& opts,
                                         const EpochCallback& on_epoch) {
  return train_classifier(data, forward, std::vector<ParamGroup>{{params}}, opts, on_epoch);
}

std::vector<StepRecord> train_steps(int64_t n_steps, const BatchFn& batch_fn, const LossFn& loss_fn,
                                    const std::vector<ParamGroup>& groups, const StepOptions& opts) {
  CATQ_CHECK(n_steps > 0, Config, "training: number of steps {} must be positive", n_steps);
  CATQ_CHECK(opts.eval_every >= 0, Config, "training: eval_every {} must be >= 0", opts.eval_every);
  LrSchedule sched = opts.schedule;
  if (sched.total_steps == 0) sched.total_steps = opts.first_step + n_steps;
  TrainStepper stepper(groups, opts.optim, sched, opts.grad_clip_norm, opts.first_step);
  if (opts.carry) stepper.import_state(*opts.carry);
  torch::manual_seed(opts.seed);

  std::vector<StepRecord> out;
  out.reserve(n_steps);
  Progress bar(opts.label, n_steps);
  double ema = 0;
  for (int64_t i = 0; i < n_steps; ++i) {
    const int64_t step = opts.first_step + i;
    Batch batch = batch_fn(step);
    at::Tensor loss = loss_fn(batch);
    CATQ_CHECK(loss.defined() && loss.numel() == 1, Data,
               "training step {}: the loss function must return a scalar tensor", step);
    double lr = stepper.step(loss);
    double lv = loss.item<double>();
    // Mean of the steps so far at first, then an exponential average over ~50 steps.
    ema = i == 0 ? lv : ema + (lv - ema) * std::max(1.0 / (i + 1), 0.02);
    out.push_back({step, lv, lr});
    bar.step(1, fmt::format("loss {:.4f} lr {:.3g}", ema, lr));
    if (opts.on_eval && opts.eval_every > 0 && ((i + 1) % opts.eval_every == 0 || i + 1 == n_steps))
      opts.on_eval(step + 1);
  }
  bar.finish();
  if (opts.carry) stepper.export_state(*opts.carry);
  return out;
}

std::vector<StepRecord> train_steps(int64_t n_steps, const BatchFn& batch_fn, const LossFn& loss_fn,
                                    const std::vector<at::Tensor>& params, const StepOptions& opts) {
  return train_steps(n_steps, batch_fn, loss_fn, std::vector<ParamGroup>{{params}}, opts);
}

}  // namespace catq

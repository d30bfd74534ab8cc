#include "methods/qat/cnn_qat.h"

#include <chrono>

#include "core/error.h"
#include "ir/passes.h"
#include "methods/cnn/pipeline.h"
#include "methods/cnn/rtn.h"
#include "train/augment.h"

namespace catq {

using nlohmann::json;

CnnQatOptions::CnnQatOptions() {
  optim.kind = OptimKind::Adam;
  optim.weight_decay = 0.0;
}

QuantizedCnn qat_cnn(Graph g, const ImageDataset& train, const CnnQatOptions& o,
                     const std::function<double(const Forward&, int64_t epoch)>& on_epoch) {
  const auto start = std::chrono::steady_clock::now();
  CATQ_CHECK(train.size() > 0, Data, "QAT training data {} is empty", train.name);
  CATQ_CHECK(o.epochs > 0 && o.batch > 0, Config, "QAT: epochs ({}) and batch ({}) must be positive", o.epochs, o.batch);
  CATQ_CHECK(std::isfinite(o.lr) && o.lr > 0 && std::isfinite(o.quant_lr_scale) && o.quant_lr_scale >= 0, Config,
             "QAT: --lr {} must be positive and --quant-lr-scale {} non-negative", o.lr, o.quant_lr_scale);
  CATQ_CHECK(o.calib_images > 0, Config, "QAT: --calib-images {} must be positive", o.calib_images);
  check_image_model(g, train, "QAT", "training");
  QuantConfig cfg = o.config.empty() ? academic_config(o.bits) : QuantConfig::load(o.config);
  // Training updates weights in place: own them, so the caller's graph (whose tensors a copy shares) is untouched.
  for (auto& [name, t] : g.initializers) t = t.clone();
  const int bn = cfg.fold_bn ? fold_batchnorm(g) : 0;

  QuantizedCnn m;
  m.ex = std::make_unique<GraphExecutor>(std::move(g));
  m.sq = std::make_unique<SimQuant>(cfg);
  GraphExecutor& ex = *m.ex;
  // RTN starting point on a seeded random subset of the training images (the data may be sorted by class).
  std::vector<int64_t> perm = seeded_permutation(train.size(), o.seed + 17);
  perm.resize(std::min<int64_t>(o.calib_images, train.size()));
  at::Tensor calib = train.images.index_select(0, at::tensor(perm, at::kLong));
  calibrate_rtn(ex, *m.sq, calib);

  auto weight_of = [&](const LayerInfo& l) { return ex.layer_weight(l); };
  QatQuant qat(*m.sq, weight_of, o.qat);
  std::vector<at::Tensor> params = ex.parameters();
  for (auto& p : params) p.set_requires_grad(true);
  std::vector<ParamGroup> groups = {{params, 1.0, -1.0}};
  std::vector<at::Tensor> qp = qat.parameters();
  if (!qp.empty() && o.quant_lr_scale > 0) groups.push_back({qp, o.quant_lr_scale, 0.0});

  // The teacher for distillation: a frozen deep copy of the FP (BN-folded) model before any update.
  std::unique_ptr<GraphExecutor> teacher;
  if (o.distill > 0) {
    Graph tg = ex.graph();
    for (auto& [name, t] : tg.initializers) t = t.clone();
    teacher = std::make_unique<GraphExecutor>(std::move(tg));
  }

  const int64_t n = train.size();
  const bool drop_last = n >= o.batch;
  const int64_t per_epoch = drop_last ? n / o.batch : 1;
  auto augment = o.augment ? random_crop_flip(4, true, o.seed + 29) : nullptr;
  std::vector<int64_t> order;
  int64_t order_epoch = -1;
  BatchFn batch_fn = [&](int64_t step) {
    const int64_t e = step / per_epoch, b = step % per_epoch;
    if (e != order_epoch) {
      order = seeded_permutation(n, o.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(e) + 1);
      order_epoch = e;
    }
    const int64_t lo = b * o.batch, hi = std::min(n, lo + o.batch);
    at::Tensor idx = at::tensor(std::vector<int64_t>(order.begin() + lo, order.begin() + hi), at::kLong);
    at::Tensor x = train.images.index_select(0, idx);
    if (augment) x = augment(x);
    return Batch{x, train.labels.index_select(0, idx)};
  };
  Forward qat_forward = [&](const at::Tensor& x) { return ex.forward(x, &qat); };
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  LossFn loss_fn = [&](const Batch& b) {
    at::Tensor logits = qat_forward(b.input);
    at::Tensor loss = cross_entropy(logits, b.target);
    if (o.distill > 0) {
      at::Tensor t;
      {
        at::NoGradGuard ng;
        t = teacher->forward(b.input);
      }
      const double T = o.temperature;
      at::Tensor kd = at::kl_div(at::log_softmax(logits / T, 1), at::log_softmax(t / T, 1), at::Reduction::Sum,
                                 /*log_target=*/true) * (T * T / static_cast<double>(logits.size(0)));
      loss = loss * (1 - o.distill) + kd * o.distill;
    }
    loss_sum += loss.item<double>() * b.input.size(0);
    correct += logits.detach().argmax(1).eq(b.target).sum().item<int64_t>();
    seen += b.input.size(0);
    return loss;
  };
  std::vector<EpochStats> hist;
  auto epoch_start = std::chrono::steady_clock::now();
  StepOptions so;
  so.optim = o.optim;
  so.schedule.shape = LrShape::Cosine;
  so.schedule.base_lr = o.lr;
  so.schedule.warmup_frac = 0.05;
  so.seed = o.seed;
  so.eval_every = per_epoch;
  so.label = "qat";
  so.on_eval = [&](int64_t steps) {
    EpochStats st;
    st.epoch = steps / per_epoch - 1;
    st.loss = loss_sum / std::max<int64_t>(seen, 1);
    st.train_acc = static_cast<double>(correct) / std::max<int64_t>(seen, 1);
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    if (on_epoch) st.eval = on_epoch(qat_forward, st.epoch);
    hist.push_back(st);
    loss_sum = 0;
    correct = seen = 0;
    epoch_start = std::chrono::steady_clock::now();
  };
  train_steps(per_epoch * o.epochs, batch_fn, loss_fn, groups, so);
  for (auto& p : params) p.set_requires_grad(false);
  qat.commit(weight_of);
  // Layers left to the base's STE quantizer (kmeans / ternary schemes) get their codes from the trained weight.
  install_weight_codes(ex, *m.sq, calib.slice(0, 0, 1));

  json layers = json::array();
  for (const LayerInfo& l : ex.layers())
    layers.push_back({{"layer", l.name}, {"weight", qat.weight_quantizer(l.name)}, {"input", qat.input_quantizer(l.name)}});
  json epochs = json::array();
  for (const auto& e : hist)
    epochs.push_back({{"epoch", e.epoch}, {"loss", e.loss}, {"train_acc", e.train_acc}, {"seconds", e.seconds},
                      {"monitor", std::isfinite(e.eval) ? json(e.eval) : json(nullptr)}});
  m.metadata["method"] = "qat";
  m.metadata["bits"] = o.config.empty() ? o.bits : o.config;
  m.metadata["source_model"] = ex.graph().source;
  m.metadata["bn_folded"] = bn;
  m.metadata["calibration"] = {{"data", train.name}, {"images", calib.size(0)}};
  m.metadata["qat"] = {{"train_data", train.name}, {"train_images", train.size()}, {"epochs", o.epochs},
                       {"batch", o.batch}, {"optimizer", optim_kind_name(o.optim.kind)}, {"lr", o.lr},
                       {"quant_lr_scale", o.quant_lr_scale}, {"weight_decay", o.optim.weight_decay},
                       {"augment", o.augment}, {"distill", o.distill}, {"temperature", o.temperature}, {"seed", o.seed}, {"weight_quantizer", to_string(o.qat.weight)},
                       {"act_quantizer", to_string(o.qat.act)}, {"layers", layers}, {"history", epochs}};
  m.metadata["weight_bytes"] = m.sq->total_weight_bytes();
  m.metadata["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return m;
}

}  // namespace catq

#include "demo/mnist_demo.h"

#include "core/progress.h"
#include "eval/classification.h"
#include "io/mnist.h"
#include "methods/cnn/pipeline.h"
#include "methods/qat/cnn_qat.h"
#include "ir/builder.h"
#include "sim/executor.h"
#include "sim/sim_quant.h"
#include "train/trainer.h"

namespace catq {

Graph build_mnist_cnn() {
  GraphBuilder b("mnist_cnn");
  std::string x = b.input("image", {-1, 1, 28, 28});
  x = b.max_pool(b.relu(b.conv(x, 1, 8, 3, 1, 1, "conv1")), 2, 2);
  x = b.max_pool(b.relu(b.conv(x, 8, 16, 3, 1, 1, "conv2")), 2, 2);
  x = b.relu(b.linear(b.flatten(x), 16 * 7 * 7, 64, "fc1"));
  x = b.linear(x, 64, 10, "fc2");
  b.output(x);
  return b.build();
}

DemoResult run_mnist_demo(const DemoOptions& opts) {
  MnistOptions mo;
  mo.dir = opts.mnist_dir;
  MnistData data = load_mnist(mo);
  ImageDataset train = opts.train_limit > 0 ? data.train.slice(0, opts.train_limit) : data.train;

  torch::manual_seed(opts.seed);
  GraphExecutor model(build_mnist_cnn());
  std::vector<at::Tensor> params = model.parameters();
  for (auto& p : params) p.set_requires_grad(true);

  TrainOptions to;
  to.epochs = opts.epochs;
  to.batch_size = 64;
  to.optim.kind = OptimKind::Adam;
  to.schedule.shape = LrShape::Cosine;
  to.schedule.base_lr = 2e-3;
  to.schedule.warmup_frac = 0.05;
  to.seed = opts.seed;
  to.label = "train mnist cnn";
  auto fwd = [&](const at::Tensor& x) { return model.forward(x); };
  DemoResult r;
  r.train_images = train.size();
  r.test_images = data.test.size();
  auto hist = train_classifier(train, fwd, params, to);
  for (const auto& e : hist) r.train_seconds += e.seconds;
  for (auto& p : params) p.set_requires_grad(false);

  ClassifyOptions co;
  co.label = "eval fp32";
  ClassifyResult fp = evaluate_classifier(data.test, fwd, co);
  r.fp_top1 = fp.top1;
  for (const auto& l : model.layers()) {
    int64_t n = 1;
    for (int64_t d : l.weight_shape) n *= d;
    r.fp_weight_bytes += 4 * n;
  }

  ImageDataset calib = data.train.slice(0, opts.calib_images);
  for (const auto& cfg : opts.configs) {
    for (const auto& obs : opts.observers) {
      SimQuant sq(QuantConfig::from_string(cfg + "-" + obs), SimQuant::Mode::Calibrate);
      {
        at::NoGradGuard ng;
        for (int64_t i = 0; i < calib.size(); i += 128) model.forward(calib.slice(i, i + 128).images, &sq);
      }
      sq.finalize_calibration();
      sq.set_mode(SimQuant::Mode::Quantize);
      co.label = "eval " + cfg + "-" + obs;
      CompareResult c = compare_classifiers(data.test, fwd, [&](const at::Tensor& x) { return model.forward(x, &sq); }, co);
      r.rows.push_back({cfg, obs, c.top1_q, c.kl, c.agreement, sq.total_weight_bytes()});
    }
  }

  if (!opts.ptq_method.empty()) {
    // The headline pipeline on the same network: reconstruction PTQ, then a CAT head on the calibration images.
    CnnPtqOptions po;
    po.method = opts.ptq_method;
    po.config = opts.ptq_config;
    po.recon = recon_preset(opts.ptq_method);
    po.recon.iters = opts.ptq_iters;
    po.recon.seed = opts.seed;
    QuantizedCnn q = quantize_cnn(model.graph(), calib, po);
    auto compare = [&](const std::string& label, const ClassifierFn& f) {
      co.label = "eval " + label;
      CompareResult c = compare_classifiers(data.test, fwd, f, co);
      r.rows.push_back({opts.ptq_config.substr(0, opts.ptq_config.find('-')), label, c.top1_q, c.kl, c.agreement,
                        q.sq->total_weight_bytes()});
    };
    compare(opts.ptq_method, [&](const at::Tensor& x) { return q.base_logits(x); });
    HeadOptions ho;
    ho.seed = opts.seed;
    fit_head(q, model, calib, ho);
    compare(opts.ptq_method + " + CAT", [&](const at::Tensor& x) { return q.forward(x); });
    const auto& h = q.metadata["head"];
    r.head_note = h.value("declined", false)
                      ? "CAT: cross-validation on the calibration images chose no correction (alpha = 0)"
                      : fmt::format("CAT: K = {}, alpha = {} chosen by 5-fold cross-validation on the calibration images",
                                    h.value("k", 0), h.value("alpha", 0.0));
  }
  if (opts.qat_epochs > 0) {
    CnnQatOptions qo;
    qo.config = opts.ptq_config;
    qo.epochs = opts.qat_epochs;
    qo.batch = 64;
    qo.lr = 1e-3;
    qo.augment = false;
    qo.calib_images = opts.calib_images;
    qo.seed = opts.seed;
    QuantizedCnn q = qat_cnn(model.graph(), train, qo);
    co.label = "eval qat";
    CompareResult c = compare_classifiers(data.test, fwd, [&](const at::Tensor& x) { return q.forward(x); }, co);
    r.rows.push_back({opts.ptq_config.substr(0, opts.ptq_config.find('-')), fmt::format("QAT ({} ep)", opts.qat_epochs),
                      c.top1_q, c.kl, c.agreement, q.sq->total_weight_bytes()});
  }
  return r;
}

std::string demo_table(const DemoResult& r) {
  std::string s = fmt::format("MNIST CNN: trained on {} images ({:.1f} s), evaluated on {} held-out images\n",
                              r.train_images, r.train_seconds, r.test_images);
  s += "RTN: weights per-channel symmetric (min-max), activations per-tensor asymmetric (observer below);\n"
       "calibration on training images only; all layers at the same precision.\n";
  if (!r.head_note.empty())
    s += "Last rows: reconstruction PTQ (QDrop, MSE-initialised ranges, asymmetric per-channel weights) and its\n" +
         r.head_note + ".\n";
  s += "QAT row: the same W2A2 setting fine-tuned with learnable quantizers (SEQ weights, LSQ activations) and\n"
       "distillation from the FP network on the training images (catq qat; docs/qat.md).\n";
  s += "\n";
  s += fmt::format("| {:<8} | {:<13} | {:>7} | {:>9} | {:>8} | {:>13} |\n", "config", "observer", "top-1 %",
                   "agree %", "KL", "weight bytes");
  s += "|----------|---------------|---------|-----------|----------|---------------|\n";
  s += fmt::format("| {:<8} | {:<13} | {:>7.2f} | {:>9} | {:>8} | {:>13} |\n", "fp32", "-", r.fp_top1 * 100, "100.00",
                   "0", r.fp_weight_bytes);
  for (const auto& row : r.rows)
    s += fmt::format("| {:<8} | {:<13} | {:>7.2f} | {:>9.2f} | {:>8.4f} | {:>13} |\n", row.config, row.observer,
                     row.top1 * 100, row.agreement * 100, row.kl, row.weight_bytes);
  return s;
}

}  // namespace catq

// run_cnn_qat_job: the whole `catq qat` job for a CNN (cnn_qat_job.h).
#include "methods/qat/cnn_qat_job.h"

#include <utility>
#include <vector>

#include "core/error.h"
#include "data/dataset.h"
#include "eval/classification.h"
#include "io/catq_file.h"
#include "io/cifar.h"
#include "io/onnx_reader.h"
#include "methods/cnn/pipeline.h"
#include "methods/qat/cnn_qat.h"
#include "sim/fold_constants.h"
#include "train/optim.h"

namespace catq {

namespace {

// A seeded random subset of `limit` images (the file is sorted by class: a prefix would hold one class only).
ImageDataset random_subset(ImageDataset d, int64_t limit, uint64_t seed) {
  if (limit <= 0 || limit >= d.size()) return d;
  std::vector<int64_t> perm = seeded_permutation(d.size(), seed + 5);
  perm.resize(limit);
  at::Tensor idx = at::tensor(perm, at::kLong);
  return {d.images.index_select(0, idx), d.labels.index_select(0, idx), fmt::format("{}[{} random]", d.name, limit)};
}

}  // namespace

nlohmann::json run_cnn_qat_job(const CnnQatJob& job, const QatMonitorReport& on_monitor) {
  CATQ_CHECK(!job.out.empty(), Usage, "qat: -o OUT.catq is required");
  CATQ_CHECK(!job.data.empty(), Usage, "qat: --data TRAIN (labelled CIFAR-10 binary file, e.g. train_jpeg10k.bin) is "
             "required");
  // Options first, so a typo fails before minutes of loading.
  CnnQatOptions o;
  o.bits = job.bits;
  o.config = job.config;
  if (o.config.empty()) (void)academic_config(o.bits);
  o.qat.weight = parse_weight_qat(job.weight_q);
  o.qat.act = parse_act_qat(job.act_q);
  o.epochs = job.epochs;
  o.batch = job.batch;
  o.lr = job.lr;
  o.quant_lr_scale = job.quant_lr_scale;
  o.optim.kind = parse_optim_kind(job.optim);
  o.optim.weight_decay = job.weight_decay;
  o.calib_images = job.calib_images;
  o.augment = job.augment;
  o.seed = job.seed;
  o.distill = job.distill;
  o.temperature = job.temperature;
  CATQ_CHECK(job.distill >= 0 && job.distill <= 1, Config, "--distill {} must be in [0, 1]", job.distill);
  CATQ_CHECK(job.temperature > 0, Config, "--temperature {} must be positive", job.temperature);
  CATQ_CHECK(job.weight_decay >= 0, Config, "--weight-decay {} must be >= 0", job.weight_decay);
  CATQ_CHECK(job.monitor_split != "eval" || !job.monitor.empty(), Usage, "--monitor-split needs --monitor");

  Graph g = load_onnx(job.model);
  fold_constants(g);
  ImageDataset train = random_subset(load_cifar10(job.data, parse_cifar_split(job.split)), job.train_limit, job.seed);
  ImageDataset monitor;
  if (!job.monitor.empty()) monitor = load_cifar10(job.monitor, parse_cifar_split(job.monitor_split));
  std::function<double(const Forward&, int64_t)> on_epoch;
  nlohmann::json monitor_log = nlohmann::json::array();
  if (monitor.size() > 0)
    on_epoch = [&](const Forward& f, int64_t e) {
      at::NoGradGuard ng;
      ClassifyOptions co;
      co.label = fmt::format("monitor epoch {}", e + 1);
      const double top1 = evaluate_classifier(monitor, f, co).top1;
      if (on_monitor) on_monitor(e, top1, monitor.name);
      monitor_log.push_back({{"epoch", e}, {"top1", top1}});
      return top1;
    };
  QuantizedCnn m = qat_cnn(std::move(g), train, o, on_epoch);
  if (monitor.size() > 0) m.metadata["qat"]["monitor"] = {{"data", monitor.name}, {"top1", monitor_log}};
  write_catq(job.out, *m.ex, *m.sq, nullptr, m.metadata);
  return m.metadata;
}

}  // namespace catq

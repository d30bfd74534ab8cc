// `catq qat MODEL --data TRAIN ...`: quantization-aware fine-tuning of a CNN (ONNX) with learnable quantizers
// (LSQ / SEQ / sign weights, LSQ / PACT activations), written to a self-contained .catq file that `catq eval` runs.
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/classification.h"
#include "io/catq_file.h"
#include "io/cifar.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"
#include "sim/fold_constants.h"
#include "methods/cnn/pipeline.h"
#include "methods/qat/cnn_qat.h"

namespace catq::cli {

namespace {

struct QatArgs {
  std::string model, data, split = "all", bits = "w4a4", config, out, weight_q = "auto", act_q = "lsq", optim = "adam";
  std::string monitor, monitor_split = "calib";
  int64_t epochs = 3, batch = 128, calib_images = 1024, train_limit = 0;
  double lr = 1e-4, quant_lr_scale = 1.0, weight_decay = 0, distill = 1.0, temperature = 1.0;
  bool no_augment = false;
  uint64_t seed = 0;
};
QatArgs args;

ImageDataset random_subset(ImageDataset d, int64_t limit, uint64_t seed) {
  if (limit <= 0 || limit >= d.size()) return d;
  std::vector<int64_t> perm = seeded_permutation(d.size(), seed + 5);
  perm.resize(limit);
  at::Tensor idx = at::tensor(perm, at::kLong);
  return {d.images.index_select(0, idx), d.labels.index_select(0, idx), fmt::format("{}[{} random]", d.name, limit)};
}

int run_qat(const Common& common) {
  CATQ_CHECK(!args.out.empty(), Usage, "qat: -o OUT.catq is required");
  CATQ_CHECK(!args.data.empty(), Usage, "qat: --data TRAIN (labelled CIFAR-10 binary file, e.g. train_jpeg10k.bin) is "
             "required");
  // Options first, so a typo fails before minutes of loading.
  CnnQatOptions o;
  o.bits = args.bits;
  o.config = args.config;
  if (o.config.empty()) (void)academic_config(o.bits);
  o.qat.weight = parse_weight_qat(args.weight_q);
  o.qat.act = parse_act_qat(args.act_q);
  o.epochs = args.epochs;
  o.batch = args.batch;
  o.lr = args.lr;
  o.quant_lr_scale = args.quant_lr_scale;
  o.optim.kind = parse_optim_kind(args.optim);
  o.optim.weight_decay = args.weight_decay;
  o.calib_images = args.calib_images;
  o.augment = !args.no_augment;
  o.seed = args.seed;
  o.distill = args.distill;
  o.temperature = args.temperature;
  CATQ_CHECK(args.distill >= 0 && args.distill <= 1, Config, "--distill {} must be in [0, 1]", args.distill);
  CATQ_CHECK(args.temperature > 0, Config, "--temperature {} must be positive", args.temperature);
  CATQ_CHECK(args.weight_decay >= 0, Config, "--weight-decay {} must be >= 0", args.weight_decay);
  CATQ_CHECK(args.monitor_split != "eval" || !args.monitor.empty(), Usage, "--monitor-split needs --monitor");

  Graph g = load_onnx(args.model);
  fold_constants(g);
  ImageDataset train = random_subset(load_cifar10(args.data, parse_cifar_split(args.split)), args.train_limit, args.seed);
  ImageDataset monitor;
  if (!args.monitor.empty()) monitor = load_cifar10(args.monitor, parse_cifar_split(args.monitor_split));
  std::function<double(const Forward&, int64_t)> on_epoch;
  nlohmann::json monitor_log = nlohmann::json::array();
  if (monitor.size() > 0)
    on_epoch = [&](const Forward& f, int64_t e) {
      at::NoGradGuard ng;
      ClassifyOptions co;
      co.label = fmt::format("monitor epoch {}", e + 1);
      const double top1 = evaluate_classifier(monitor, f, co).top1;
      std::cerr << fmt::format("epoch {}: top-1 {:.2f} % on {}\n", e + 1, 100 * top1, monitor.name);
      monitor_log.push_back({{"epoch", e}, {"top1", top1}});
      return top1;
    };
  QuantizedCnn m = qat_cnn(std::move(g), train, o, on_epoch);
  if (monitor.size() > 0) m.metadata["qat"]["monitor"] = {{"data", monitor.name}, {"top1", monitor_log}};
  write_catq(args.out, *m.ex, *m.sq, nullptr, m.metadata);
  if (common.json) {
    nlohmann::json j = m.metadata;
    j["output"] = args.out;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  const auto& q = m.metadata["qat"];
  std::cout << fmt::format("qat {}: {} epochs on {} ({} images), {} s\n", m.metadata.value("bits", "?"),
                           q.value("epochs", 0), q.value("train_data", ""), q.value("train_images", 0),
                           static_cast<int64_t>(m.metadata.value("seconds", 0.0)));
  for (const auto& e : q["history"])
    std::cout << fmt::format("  epoch {:>3}  loss {:.4f}  train top-1 {:.2f} %\n", e.value("epoch", 0) + 1,
                             e.value("loss", 0.0), 100 * e.value("train_acc", 0.0));
  std::map<std::string, int> wq, aq;
  for (const auto& l : q["layers"]) {
    ++wq[l.value("weight", "")];
    ++aq[l.value("input", "")];
  }
  std::string ws, as;
  for (const auto& [k, v] : wq) ws += fmt::format(" {}×{}", v, k);
  for (const auto& [k, v] : aq) as += fmt::format(" {}×{}", v, k);
  std::cout << fmt::format("weight quantizers:{}; input quantizers:{}\nweights: {} bytes\nwrote {}\n", ws, as,
                           m.metadata.value("weight_bytes", 0), args.out);
  return 0;
}

}  // namespace

void register_qat(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("qat", "Quantization-aware fine-tuning of a CNN with learnable quantizers (LSQ / SEQ "
                                        "/ sign weights, LSQ / PACT activations); writes a self-contained .catq file");
  sub->footer(
      "Setting: as `catq quantize` (BN folded, per-channel asymmetric weights, per-tensor activations, first conv\n"
      "and last linear at 8 bits), started from RTN ranges calibrated on --calib-images random training images.\n"
      "Weight quantizer auto = SEQ at 2 bits, LSQ at 3+ bits, sign for a binary config (ParetoQ). See docs/qat.md.\n\n"
      "Examples:\n"
      "  catq qat resnet20.onnx --data train_jpeg10k.bin --bits w4a4 --epochs 8 -o r20_w4a4_qat.catq\n"
      "  catq qat resnet20.onnx --data train_jpeg10k.bin --bits w2a2 --act-quantizer pact --weight-quantizer lsq \\\n"
      "       --monitor test.bin --monitor-split calib -o r20_w2a2_qat.catq\n"
      "  catq eval r20_w4a4_qat.catq --data test.bin --split eval --reference resnet20.onnx\n");
  sub->add_option("model", args.model, "FP model (.onnx CNN)")->required();
  sub->add_option("-o,--output", args.out, "Output .catq file");
  sub->add_option("--data", args.data, "Labelled training images: CIFAR-10 binary file");
  sub->add_option("--split", args.split, "all | calib | eval split of --data")->capture_default_str();
  sub->add_option("--train-limit", args.train_limit, "Use a seeded random subset of N training images (0 = all)");
  sub->add_option("--bits", args.bits, "wWaA, e.g. w4a4, w2a2 (the academic setting)")->capture_default_str();
  sub->add_option("--config", args.config, "Quantization config (JSON file or compact string) instead of --bits");
  sub->add_option("--weight-quantizer", args.weight_q, "auto | lsq | seq | sign | ste")->capture_default_str();
  sub->add_option("--act-quantizer", args.act_q, "lsq | pact | ste")->capture_default_str();
  sub->add_option("--epochs", args.epochs, "Training epochs")->capture_default_str();
  sub->add_option("--batch", args.batch, "Batch size")->capture_default_str();
  sub->add_option("--lr", args.lr, "Peak learning rate (cosine, 5 % warmup)")->capture_default_str();
  sub->add_option("--quant-lr-scale", args.quant_lr_scale, "LR multiplier of the quantizer steps (0 = frozen)")
      ->capture_default_str();
  sub->add_option("--optim", args.optim, "adam | adamw | sgd (momentum 0.9)")->capture_default_str();
  sub->add_option("--weight-decay", args.weight_decay, "Weight decay of the model weights")->capture_default_str();
  sub->add_option("--calib-images", args.calib_images, "Training images for the RTN starting point")->capture_default_str();
  sub->add_option("--distill", args.distill, "Weight of distillation from the FP model vs cross-entropy on labels "
                  "(1 = distillation only, 0 = labels only)")->capture_default_str();
  sub->add_option("--temperature", args.temperature, "Distillation temperature")->capture_default_str();
  sub->add_flag("--no-augment", args.no_augment, "No random crop + flip");
  sub->add_option("--monitor", args.monitor, "Print top-1 on this CIFAR-10 file after each epoch (monitoring only)");
  sub->add_option("--monitor-split", args.monitor_split, "Split of --monitor")->capture_default_str();
  sub->add_option("--seed", args.seed, "Seed: calibration subset, shuffling, augmentation")->capture_default_str();
  sub->callback([&common] {
    if (common.json || common.quiet) Progress::set_enabled(false);
    run_qat(common);
  });
}

}  // namespace catq::cli

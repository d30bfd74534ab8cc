// `catq qat MODEL --data TRAIN ...`: quantization-aware fine-tuning of a CNN (ONNX) with learnable quantizers
// (LSQ / SEQ / sign weights, LSQ / PACT activations), written to a self-contained .catq file that `catq eval` runs.
#include <iostream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "methods/qat/cnn_qat_job.h"

namespace catq::cli {

namespace {

// The command line fills the job; the method layer runs it.
CnnQatJob job;
bool no_augment = false;

int run_qat(const Common& common) {
  job.augment = !no_augment;
  nlohmann::json meta = run_cnn_qat_job(job, [](int64_t e, double top1, const std::string& data) {
    std::cerr << fmt::format("epoch {}: top-1 {:.2f} % on {}\n", e + 1, 100 * top1, data);
  });
  if (common.json) {
    nlohmann::json j = meta;
    j["output"] = job.out;
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  const auto& q = meta["qat"];
  std::cout << fmt::format("qat {}: {} epochs on {} ({} images), {} s\n", meta.value("bits", "?"),
                           q.value("epochs", 0), q.value("train_data", ""), q.value("train_images", 0),
                           static_cast<int64_t>(meta.value("seconds", 0.0)));
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
                           meta.value("weight_bytes", 0), job.out);
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
  sub->add_option("model", job.model, "FP model (.onnx CNN)")->required();
  sub->add_option("-o,--output", job.out, "Output .catq file");
  sub->add_option("--data", job.data, "Labelled training images: CIFAR-10 binary file");
  sub->add_option("--split", job.split, "all | calib | eval split of --data")->capture_default_str();
  sub->add_option("--train-limit", job.train_limit, "Use a seeded random subset of N training images (0 = all)");
  sub->add_option("--bits", job.bits, "wWaA, e.g. w4a4, w2a2 (the academic setting)")->capture_default_str();
  sub->add_option("--config", job.config, "Quantization config (JSON file or compact string) instead of --bits");
  sub->add_option("--weight-quantizer", job.weight_q, "auto | lsq | seq | sign | ste")->capture_default_str();
  sub->add_option("--act-quantizer", job.act_q, "lsq | pact | ste")->capture_default_str();
  sub->add_option("--epochs", job.epochs, "Training epochs")->capture_default_str();
  sub->add_option("--batch", job.batch, "Batch size")->capture_default_str();
  sub->add_option("--lr", job.lr, "Peak learning rate (cosine, 5 % warmup)")->capture_default_str();
  sub->add_option("--quant-lr-scale", job.quant_lr_scale, "LR multiplier of the quantizer steps (0 = frozen)")
      ->capture_default_str();
  sub->add_option("--optim", job.optim, "adam | adamw | sgd (momentum 0.9)")->capture_default_str();
  sub->add_option("--weight-decay", job.weight_decay, "Weight decay of the model weights")->capture_default_str();
  sub->add_option("--calib-images", job.calib_images, "Training images for the RTN starting point")->capture_default_str();
  sub->add_option("--distill", job.distill, "Weight of distillation from the FP model vs cross-entropy on labels "
                  "(1 = distillation only, 0 = labels only)")->capture_default_str();
  sub->add_option("--temperature", job.temperature, "Distillation temperature")->capture_default_str();
  sub->add_flag("--no-augment", no_augment, "No random crop + flip");
  sub->add_option("--monitor", job.monitor, "Print top-1 on this CIFAR-10 file after each epoch (monitoring only)");
  sub->add_option("--monitor-split", job.monitor_split, "Split of --monitor")->capture_default_str();
  sub->add_option("--seed", job.seed, "Seed: calibration subset, shuffling, augmentation")->capture_default_str();
  sub->callback([&common] {
    if (common.json || common.quiet) Progress::set_enabled(false);
    run_qat(common);
  });
}

}  // namespace catq::cli

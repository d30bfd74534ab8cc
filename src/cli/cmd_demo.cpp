// `catq demo`: the embedded default job. Needs only the MNIST digits fetched by scripts/setup.sh.
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "demo/mnist_demo.h"

namespace catq::cli {

void register_demo(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("demo", "Train a small MNIST CNN (about a minute), then compare FP32 with RTN "
                                         "W8A8 / W4A4 / W2A2 under several activation observers, and with W2A2 "
                                         "reconstruction PTQ (QDrop) plus a CAT head, and W2A2 QAT");
  sub->footer("Examples:\n  catq demo\n  catq demo --epochs 2 --seed 1\n  catq --json demo > demo.json");
  static DemoOptions o;
  sub->add_option("--mnist", o.mnist_dir, "Folder with the digits JSON files (default: .cache from setup)");
  sub->add_option("--epochs", o.epochs, "Training epochs")->capture_default_str();
  sub->add_option("--seed", o.seed, "Seed for initialisation and shuffling")->capture_default_str();
  sub->add_option("--train-limit", o.train_limit, "Train on the first N images only (0 = all)");
  sub->add_option("--calib", o.calib_images, "Calibration images (from the training split)")->capture_default_str();
  sub->add_option("--ptq-iters", o.ptq_iters, "QDrop iterations per layer (0 = skip the PTQ rows)")->capture_default_str();
  sub->add_option("--qat-epochs", o.qat_epochs, "QAT epochs of the W2A2 QAT row (0 = skip it)")->capture_default_str();
  sub->callback([&common] {
    if (o.ptq_iters <= 0) o.ptq_method.clear();
    DemoResult r = run_mnist_demo(o);
    if (!common.json) {
      std::cout << demo_table(r);
      return;
    }
    nlohmann::json j;
    j["train_images"] = r.train_images;
    j["test_images"] = r.test_images;
    j["train_seconds"] = r.train_seconds;
    j["fp32"] = {{"top1", r.fp_top1 * 100}, {"weight_bytes", r.fp_weight_bytes}};
    j["ptq_head"] = r.head_note;
    for (const auto& row : r.rows)
      j["rows"].push_back({{"config", row.config}, {"observer", row.observer}, {"top1", row.top1 * 100},
                          {"agreement", row.agreement * 100}, {"kl", row.kl}, {"weight_bytes", row.weight_bytes}});
    std::cout << j.dump(2) << "\n";
  });
}

}  // namespace catq::cli

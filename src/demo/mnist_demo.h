// The embedded default job (`catq demo`, `make demo`): train a small CNN on the MNIST digits, then
// compare FP32 with RTN-quantized versions at several bit widths and activation observers.
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"

namespace catq {

struct DemoOptions {
  std::string mnist_dir;                 // empty = default_mnist_dir()
  int64_t epochs = 10;
  int64_t train_limit = 0;               // use only the first N training images (0 = all 8,000); tests shrink it
  uint64_t seed = 0;
  int64_t calib_images = 512;            // calibration images, taken from the training split
  std::vector<std::string> configs = {"w8a8", "w4a4", "w2a2"};
  std::vector<std::string> observers = {"minmax", "percentile", "mse"};
  // Reconstruction PTQ rows (empty method = none): QDrop at `ptq_config` (all layers, MSE-initialised ranges,
  // asymmetric per-channel weights), then a CAT head chosen by cross-validation on the calibration images.
  std::string ptq_method = "qdrop";
  std::string ptq_config = "w2a2-mse-wmse-wasym";
  int64_t ptq_iters = 500;
  // QAT row (0 epochs = none): `catq qat` at ptq_config on the training images (LSQ / SEQ weights, LSQ
  // activations, distillation from the FP network, no augmentation: flips would change digits).
  int64_t qat_epochs = 2;
};

struct DemoRow {
  std::string config, observer;  // observer: the RTN observer, or the PTQ method ("qdrop", "qdrop + CAT")
  double top1 = 0, kl = 0, agreement = 0;
  uint64_t weight_bytes = 0;
};

struct DemoResult {
  int64_t train_images = 0, test_images = 0;
  double train_seconds = 0;
  double fp_top1 = 0;
  uint64_t fp_weight_bytes = 0;
  std::vector<DemoRow> rows;
  std::string head_note;  // which CAT head the cross-validation chose
};

// The demo network: conv3x3(1->8)-relu-maxpool2, conv3x3(8->16)-relu-maxpool2, linear(784->64)-relu,
// linear(64->10). Weights are initialised from torch's global generator (seed it first).
Graph build_mnist_cnn();

DemoResult run_mnist_demo(const DemoOptions& opts);
std::string demo_table(const DemoResult& r);

}  // namespace catq

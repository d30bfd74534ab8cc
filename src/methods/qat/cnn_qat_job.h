// The `catq qat` job for a CNN, as data: the model, the labelled training images, the quantization setting and the
// training recipe as the user states them, and the one function that runs it — check the options, load the model
// and the images, fine-tune with qat_cnn (cnn_qat.h), write the .catq file. The CLI only fills the struct.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace catq {

struct CnnQatJob {
  std::string model;                    // FP ONNX classifier
  std::string data;                     // labelled training images: CIFAR-10 binary file (required)
  std::string split = "all";            // all | calib | eval split of `data`
  int64_t train_limit = 0;              // a seeded random subset of this many training images (0 = all)
  std::string bits = "w4a4";            // the academic setting (academic_config), unless `config` is given
  std::string config;                   // a quant config (JSON file or compact string)
  std::string weight_q = "auto";        // weight quantizer: auto | lsq | seq | sign | ste
  std::string act_q = "lsq";            // activation quantizer: lsq | pact | ste
  std::string optim = "adam";           // adam | adamw | sgd
  int64_t epochs = 3, batch = 128;
  int64_t calib_images = 1024;          // training images for the RTN starting point
  double lr = 1e-4;                     // peak LR of the model weights (cosine, 5 % warmup)
  double quant_lr_scale = 1.0;          // LR multiplier of the quantizer steps (0 = frozen)
  double weight_decay = 0;              // of the model weights, >= 0
  double distill = 1.0;                 // weight of distillation vs cross-entropy on labels, in [0, 1]
  double temperature = 1.0;             // distillation temperature, > 0
  bool augment = true;                  // random crop + flip of every training batch
  std::string monitor;                  // CIFAR-10 file evaluated after each epoch (monitoring only); "" = none
  std::string monitor_split = "calib";  // split of `monitor`
  uint64_t seed = 0;                    // calibration subset, training subset, shuffling, augmentation
  std::string out;                      // the .catq file written (required)
};

// Called after each epoch when the job has a monitor set: the epoch (0-based), the top-1 on it and its name.
using QatMonitorReport = std::function<void(int64_t epoch, double top1, const std::string& data)>;

// Runs the job: options checked before anything is loaded (Error(Usage) for a missing -o / --data or
// --monitor-split eval without --monitor, Error(Config) for bad bits / --distill / --temperature /
// --weight-decay), then fine-tunes and writes job.out. Returns the file's metadata (qat_cnn's, plus
// qat.monitor {data, top1: [{epoch, top1}]} when monitored).
nlohmann::json run_cnn_qat_job(const CnnQatJob& job, const QatMonitorReport& on_monitor = {});

}  // namespace catq

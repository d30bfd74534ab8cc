// `catq qat` for CNNs: quantization-aware fine-tuning of an imported classifier in the academic setting of the PTQ
// methods (cnn_ptq.h: BN folded, per-channel weights, per-tensor activations, first/last layer 8-bit), with the
// learnable quantizers of qat.h. Starting point: RTN ranges calibrated on training images; then the folded FP
// weights, weight steps / α and activation steps / α are trained on labelled images with cross-entropy and/or
// distillation from the FP model (the usual QAT recipe when training data is scarce).
#pragma once
#include <string>

#include "io/catq_file.h"
#include "data/dataset.h"
#include "methods/qat/quantizers.h"
#include "train/trainer.h"

namespace catq {

struct CnnQatOptions {
  std::string bits = "w4a4";      // academic_config(bits), unless `config` is given
  std::string config;             // a quant config (file or compact string)
  QatOptions qat;
  int64_t epochs = 3;
  int64_t batch = 128;
  OptimConfig optim;              // default Adam, no weight decay (constructor). Folded-BN networks train
                                  // unstably with SGD at usual LRs: there is no normalisation left.
  double lr = 1e-4;               // peak LR of the model weights (cosine, 5 % warmup)
  double quant_lr_scale = 1.0;    // LR multiplier of the quantizer steps / α (no weight decay on them)
  int64_t calib_images = 1024;    // random training images for the RTN starting point
  bool augment = true;            // random crop (pad 4) + flip of every training batch
  // Knowledge distillation from the FP model (a frozen copy): loss = (1 − distill)·CE(labels)
  //   + distill·T²·KL(softmax(teacher/T) ‖ softmax(student/T)); 0 = labels only.
  double distill = 1.0;
  double temperature = 1.0;
  uint64_t seed = 0;
  CnnQatOptions();
};

// Fine-tunes `g` (constants folded; BN is folded here) on `train`. Every quantized layer ends with installed
// integer codes (a self-contained QuantizedCnn, saved by write_catq and run by `catq eval`). on_epoch, if given,
// is called after each epoch with the model's forward in its QAT state (e.g. to print a validation accuracy; it
// runs outside no-grad mode: guard it). metadata records the options,
// the per-epoch loss / training accuracy and the wall time.
QuantizedCnn qat_cnn(Graph g, const ImageDataset& train, const CnnQatOptions& o,
                     const std::function<double(const Forward&, int64_t epoch)>& on_epoch = {});

}  // namespace catq

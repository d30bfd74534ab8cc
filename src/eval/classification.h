// Classification metrics: top-1 / top-5 accuracy over a data set, and how closely a quantized model follows
// its FP model (mean KL divergence and top-1 agreement). Accuracies are fractions in [0, 1].
#pragma once
#include <functional>
#include <string>

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include "data/dataset.h"

namespace catq {

// images [B, C, H, W] -> logits [B, K] (same signature as the trainer's Forward).
using ClassifierFn = std::function<at::Tensor(const at::Tensor&)>;

struct ClassifyOptions {
  int64_t batch_size = 256;
  int64_t limit = 0;              // evaluate only the first `limit` samples; 0 = all
  bool keep_logits = false;       // return every sample's logits (float32 [N, K], CPU)
  c10::Device device = c10::kCPU; // batches are moved here before forward
  std::string label = "eval";     // progress-bar label
};

struct ClassifyResult {
  int64_t n = 0;            // samples evaluated
  int64_t top1_correct = 0, top5_correct = 0;
  double top1 = 0, top5 = 0;  // fractions; with K < 5 classes top5 counts the top K (always correct)
  int64_t nonfinite = 0;    // samples whose logits held NaN/inf: counted as wrong in top1 and top5
  at::Tensor logits;        // float32 [n, K] if keep_logits, else undefined
  double seconds = 0;
};

// Runs `forward` batch by batch without autograd. Throws Error(Data) for an empty data set, logits that are
// not [B, K] for a batch of B images, or labels outside 0..K-1; Error(Config) for a bad batch size.
ClassifyResult evaluate_classifier(const ImageDataset& data, const ClassifierFn& forward,
                                   const ClassifyOptions& opts = {});

// Number of rows of logits [N, K] whose label (int64 [N]) is among the k largest logits (k clamped to K).
// Rows with a non-finite logit never count.
int64_t topk_correct(const at::Tensor& logits, const at::Tensor& labels, int64_t k);

// Mean over samples of KL(p_ref || p_q) in nats, p = softmax(logits / temperature), from logits [N, K].
// Computed from log-softmax in float64, so identical logits give exactly 0; NaN if any logit is not finite.
double kl_divergence(const at::Tensor& logits_ref, const at::Tensor& logits_q, double temperature = 1.0);
// Fraction of samples whose argmax agrees.
double top1_agreement(const at::Tensor& logits_ref, const at::Tensor& logits_q);

// A quantized model against its FP reference on the same data, in one pass.
struct CompareResult {
  int64_t n = 0;
  double top1_ref = 0, top1_q = 0;  // accuracy of each model
  double top5_ref = 0, top5_q = 0;
  double kl = 0;                    // mean KL(p_ref || p_q), nats
  double agreement = 0;             // top-1 agreement
  int64_t nonfinite_q = 0;          // samples with non-finite quantized logits (also counted as disagreeing)
  double seconds = 0;
};
// Errors as evaluate_classifier, plus Error(Data) when the two models return different numbers of classes.
// Samples whose quantized logits are not finite are excluded from kl (which averages the others) and
// reported in nonfinite_q (kl is NaN if no sample is left).
CompareResult compare_classifiers(const ImageDataset& data, const ClassifierFn& reference,
                                  const ClassifierFn& quantized, const ClassifyOptions& opts = {});

}  // namespace catq

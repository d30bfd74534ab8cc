// Observers ("calibrators"): accumulate statistics over calibration batches with observe(x), then compute()
// the uniform QuantParams for their QuantSpec (granularity tensor / channel / group; per-token is dynamic and
// has no observer).
//
//   minmax      running min / max (exact)                              × clip_ratio
//   ema         per-batch min / max, range = m·range + (1−m)·batch     × clip_ratio   (first batch initialises)
//   percentile  symmetric: the p-th percentile of |x|; asymmetric: the (100−p)-th and p-th percentiles
//   mse         grid search over clipping ratios r = k/grid (k = 1..grid) of the exact min / max range,
//               minimising mean |x − fq(x)|^p per row (p = mse_p, 2.0; 2.4 as in BRECQ/QDrop), evaluated on a
//               random subset of the kept samples of at most max(2^18 / rows, 4096) per row
//   kl          TensorRT entropy calibration: histogram of |x| over [0, max|x|] (kl_bins = 2048 bins), try
//               threshold bins i ≥ nq (every bin up to 256 candidates, else a uniform stride, always including
//               the full range), keep the one minimising KL(P‖Q), where P = the first i bins with the
//               clipped mass added to the last, Q = the same bins merged into nq quantized bins and expanded
//               back over their non-empty bins. nq = number of levels covering [0, T]: 2^(b−1) when the data
//               has negatives or the quantizer is symmetric signed (128 for int8, as TensorRT), else 2^b.
//               The threshold T gives the range [max(xmin, −T), min(xmax, T)]. Exact zeros are left out of the
//               histogram (they are exact at any threshold; a ReLU's zero spike would otherwise force clipping).
//
// Big tensors: percentile / mse / kl keep, per row, a uniform random subsample of at most
// max(max_samples / rows, 4096) columns across all batches (batch reservoir: each batch contributes in
// proportion to its size; columns drawn with a fixed seed, so calibration is reproducible). The exact min / max
// is always tracked besides. Statistics are computed in float32 on the CPU: per-row min / max, the percentile
// selection and the MSE grid search run on the torch-free kernels of quant/range_search.h, rows split over
// at::parallel_for threads (the result does not depend on the thread count).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "quant/quantizer.h"

namespace catq {

class Observer {
 public:
  // spec: uniform scheme, granularity tensor / channel / group. `name` prefixes error messages (a layer name).
  static std::unique_ptr<Observer> create(const QuantSpec& spec, const std::string& name = "observer");
  virtual ~Observer() = default;

  // Accumulate one batch (detached; any device / float dtype). Per-channel / per-group need the same number of
  // rows every batch (Error(Data) otherwise).
  void observe(const at::Tensor& x);
  // Params for everything observed so far, broadcastable against the last observed tensor shape.
  // Error(Data) when nothing was observed or the data held NaN / Inf.
  QuantParams compute() const;
  void reset();

  int64_t batches() const { return batches_; }
  const QuantSpec& spec() const { return spec_; }
  const std::string& name() const { return name_; }

 protected:
  Observer(const QuantSpec& spec, std::string name) : spec_(spec), name_(std::move(name)) {}
  // rows: float32 CPU [R, M] (see to_rows); min/max of the batch per row already folded into min_ / max_.
  virtual void accumulate(const at::Tensor& rows, const at::Tensor& batch_min, const at::Tensor& batch_max) = 0;
  // Range [R] each for the spec.
  virtual std::pair<at::Tensor, at::Tensor> range() const = 0;
  virtual void clear() {}

  QuantSpec spec_;
  std::string name_;
  std::vector<int64_t> shape_;  // last observed shape
  int axis_ = 0;
  int64_t rows_ = -1;
  int64_t batches_ = 0;
  at::Tensor min_, max_;  // exact running min / max per row [R]
};

// TensorRT-style KL threshold search on a histogram of |x| with bins of width `bin_width`; `nq` = quantized bins.
// Returns the threshold (upper edge of the best bin count). nq ≥ hist.size() returns the full range.
double kl_threshold(const std::vector<double>& hist, double bin_width, int64_t nq);

}  // namespace catq

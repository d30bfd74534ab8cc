// Signal-to-quantization-noise ratio, whole tensors and per layer.
//
//   SQNR(x, x̂) = 10 · log10( Σ x² / Σ (x − x̂)² )  dB      (sums in float64 over all elements)
//
// An exact approximation (zero noise) would be +inf dB; it is reported as the finite cap +kSqnrCapDb so tables,
// JSON and averages stay printable. A zero signal with non-zero noise is reported as −kSqnrCapDb. Non-finite
// inputs give NaN (never hidden).
#pragma once
#include <map>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace catq {

inline constexpr double kSqnrCapDb = 200.0;

// x and x_hat must have the same number of elements (shapes may differ in layout, e.g. [N,C,H,W] vs [N,CHW]);
// otherwise Error(Data).
double sqnr_db(const at::Tensor& x, const at::Tensor& x_hat);
// The formula above for precomputed sums, with the same capping.
double sqnr_db_from_power(double signal_sum_sq, double noise_sum_sq);

// Accumulates Σx² and Σ(x−x̂)² across batches so that the SQNR of a whole data set is a ratio of sums, not a
// mean of per-batch ratios.
struct SqnrAccumulator {
  double signal = 0, noise = 0;  // Σx², Σ(x−x̂)²
  int64_t numel = 0;
  void add(const at::Tensor& x, const at::Tensor& x_hat);
  double db() const { return sqnr_db_from_power(signal, noise); }
};

// One row of a per-layer table.
struct LayerSqnr {
  std::string name;
  double sqnr_db = 0;
  double signal = 0, noise = 0;  // Σx², Σ(x−x̂)²
  int64_t numel = 0;
};

// Given the outputs of each layer for a reference model and an approximation (maps layer name -> tensor, filled
// e.g. by executor hooks), returns one row per layer of `ref`. Rows follow `order` when it is given (names in
// `order` missing from `ref` are skipped, layers of `ref` not in `order` follow in name order), else name order.
// Error(Data) naming the layer when `approx` lacks it or the element counts differ.
std::vector<LayerSqnr> per_layer_sqnr(const std::map<std::string, at::Tensor>& ref,
                                      const std::map<std::string, at::Tensor>& approx,
                                      const std::vector<std::string>& order = {});

// The same over many batches: call add() per batch with that batch's maps, then table(). Rows are in the order
// layers were first added.
class LayerSqnrCollector {
 public:
  void add(const std::string& layer, const at::Tensor& x, const at::Tensor& x_hat);
  void add(const std::map<std::string, at::Tensor>& ref, const std::map<std::string, at::Tensor>& approx);
  std::vector<LayerSqnr> table() const;
  void clear() {
    names_.clear();
    acc_.clear();
  }

 private:
  std::vector<std::string> names_;
  std::map<std::string, SqnrAccumulator> acc_;
};

// A plain-text table: layer, SQNR dB, elements. Capped values print as ">= 200.0".
std::string format_sqnr_table(const std::vector<LayerSqnr>& rows);

}  // namespace catq

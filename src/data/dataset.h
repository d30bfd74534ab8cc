// The in-memory image data set every reader returns and every trainer / evaluator consumes.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "core/error.h"

namespace catq {

// images: float32 [N, C, H, W], already preprocessed (scaled and normalised), contiguous, CPU.
// labels: int64 [N], class indices in [0, num_classes).
// name:   human-readable origin, e.g. "cifar10:test.bin[eval]" (used in messages and reports).
struct ImageDataset {
  at::Tensor images;
  at::Tensor labels;
  std::string name;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  // Records [begin, end) as a new data set sharing storage with this one (end is clamped to size()).
  ImageDataset slice(int64_t begin, int64_t end) const {
    end = std::min(end, size());
    begin = std::min(std::max<int64_t>(begin, 0), end);
    return {images.slice(0, begin, end), labels.slice(0, begin, end), name};
  }
};

// Per-channel normalisation applied after scaling pixels to [0, 1]: x -> (x - mean[c]) / std[c].
// Empty vectors mean "no normalisation" (pixels stay in [0, 1]).
struct Normalize {
  std::vector<double> mean, std;

  static Normalize none() { return {}; }
  // ImageNet statistics, used by the project's CIFAR-10 ResNets (see docs/data.md).
  static Normalize imagenet() { return {{0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}}; }
  // The customary MNIST statistics.
  static Normalize mnist() { return {{0.1307}, {0.3081}}; }

  // Normalises x (float32 [N, C, H, W] in [0, 1]) in place. Throws Error(Config) when the statistics do not
  // have one entry per channel or a std is not positive; `what` names the data set in that message.
  void apply(at::Tensor& x, const std::string& what) const {
    if (mean.empty() && std.empty()) return;
    int64_t c = x.size(1);
    CATQ_CHECK(static_cast<int64_t>(mean.size()) == c && static_cast<int64_t>(std.size()) == c, Config,
               "{}: normalisation has {} mean and {} std values, expected one per channel ({})", what, mean.size(),
               std.size(), c);
    for (int64_t i = 0; i < c; ++i) {
      CATQ_CHECK(std[i] > 0 && std::isfinite(std[i]) && std::isfinite(mean[i]), Config,
                 "{}: normalisation for channel {} has mean {} std {}; std must be a positive finite number", what, i,
                 mean[i], std[i]);
      x.select(1, i).sub_(mean[i]).div_(std[i]);
    }
  }
};

// A permutation of 0..n-1 that depends only on `seed`: a Fisher-Yates shuffle driven by splitmix64, so the
// result is identical on every platform and library version (std::shuffle and torch::randperm are not).
inline std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  uint64_t s = seed;
  auto next = [&s]() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  for (int64_t i = n - 1; i > 0; --i) {
    // Modulo bias is below 2^-40 for any realistic n: irrelevant for shuffling data.
    int64_t j = static_cast<int64_t>(next() % static_cast<uint64_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

}  // namespace catq

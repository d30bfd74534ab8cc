#include "llm/sampler.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace catq {

int32_t argmax_first(const at::Tensor& logits) {
  at::Tensor l = logits.detach().to(at::kCPU, at::kFloat).contiguous().view(-1);
  const float* p = l.data_ptr<float>();
  int32_t best = 0;
  for (int64_t i = 1; i < l.numel(); ++i)
    if (p[i] > p[best]) best = static_cast<int32_t>(i);
  return best;
}

int32_t Sampler::sample(const at::Tensor& logits) {
  CATQ_CHECK(opt_.temperature >= 0, Usage, "temperature must be >= 0, got {}", opt_.temperature);
  if (opt_.temperature == 0) return argmax_first(logits);
  at::Tensor l = logits.detach().to(at::kCPU, at::kDouble).contiguous().view(-1);
  const int64_t n = l.numel();
  // Softmax of logits / T in double.
  std::vector<double> p(l.data_ptr<double>(), l.data_ptr<double>() + n);
  double mx = *std::max_element(p.begin(), p.end());
  double sum = 0;
  for (double& x : p) sum += (x = std::exp((x - mx) / opt_.temperature));
  for (double& x : p) x /= sum;
  const double coin = rng_.next_double();
  if (opt_.top_p > 0 && opt_.top_p < 1) {
    // Nucleus: the smallest set of most likely tokens whose mass exceeds top_p, then sample within it.
    std::vector<int32_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    double cum = 0;
    int64_t last = n - 1;
    for (int64_t i = 0; i < n; ++i) {
      cum += p[idx[i]];
      if (cum > opt_.top_p) {
        last = i;
        break;
      }
    }
    double r = coin * cum, acc = 0;
    for (int64_t i = 0; i <= last; ++i) {
      acc += p[idx[i]];
      if (r < acc) return idx[i];
    }
    return idx[last];
  }
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    acc += p[i];
    if (coin < acc) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(n - 1);
}

}  // namespace catq

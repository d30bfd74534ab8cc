#include "eval/classification.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/progress.h"

namespace catq {

namespace {

std::string shape_str(const at::Tensor& t) {
  return t.defined() ? fmt::format("[{}]", fmt::join(t.sizes(), ", ")) : "undefined";
}

void check_pair(const at::Tensor& a, const at::Tensor& b, const char* what) {
  CATQ_CHECK(a.defined() && b.defined() && a.dim() == 2 && a.sizes() == b.sizes(), Data,
             "{}: logits {} and {} must have the same shape [N, K]", what, shape_str(a), shape_str(b));
}

// Runs one batch through a model and checks what comes back. Returns float32 CPU logits [B, K].
at::Tensor run_batch(const ClassifierFn& f, const at::Tensor& x, const ImageDataset& data, int64_t start) {
  at::Tensor out = f(x);
  const int64_t b = x.size(0);
  CATQ_CHECK(out.defined() && out.dim() == 2 && out.size(0) == b && out.size(1) > 0, Data,
             "{}: the model returned logits {} for the batch of {} images at sample {}, expected [{}, classes]",
             data.name, shape_str(out), b, start, b);
  return out.detach().to(at::kCPU, at::kFloat).contiguous();
}

void check_labels(const at::Tensor& y, int64_t k, const ImageDataset& data, int64_t start) {
  int64_t lo = y.min().item<int64_t>(), hi = y.max().item<int64_t>();
  CATQ_CHECK(lo >= 0 && hi < k, Data, "{}: a label in the batch at sample {} is {}, outside the model's {} classes",
             data.name, start, lo < 0 ? lo : hi, k);
}

int64_t eval_count(const ImageDataset& data, const ClassifyOptions& opts) {
  CATQ_CHECK(opts.batch_size > 0, Config, "evaluation batch size {} must be positive", opts.batch_size);
  CATQ_CHECK(opts.limit >= 0, Config, "evaluation limit {} must be >= 0", opts.limit);
  int64_t n = data.size();
  CATQ_CHECK(n > 0, Data, "{}: cannot evaluate on an empty data set", data.name);
  CATQ_CHECK(data.images.defined() && data.images.size(0) == n, Data, "{}: {} images but {} labels", data.name,
             data.images.defined() ? data.images.size(0) : 0, n);
  return opts.limit > 0 ? std::min(opts.limit, n) : n;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int64_t topk_correct(const at::Tensor& logits, const at::Tensor& labels, int64_t k) {
  CATQ_CHECK(logits.dim() == 2 && labels.dim() == 1 && logits.size(0) == labels.size(0), Data,
             "top-k: logits {} and labels {} do not match (expected [N, K] and [N])", shape_str(logits),
             shape_str(labels));
  if (logits.size(0) == 0) return 0;
  k = std::max<int64_t>(1, std::min(k, logits.size(1)));
  at::Tensor lg = logits.detach().to(at::kCPU);
  at::Tensor idx = std::get<1>(lg.topk(k, 1));
  at::Tensor hit = idx.eq(labels.to(at::kCPU).unsqueeze(1)).any(1).logical_and(lg.isfinite().all(1));
  return hit.sum().item<int64_t>();
}

double kl_divergence(const at::Tensor& logits_ref, const at::Tensor& logits_q, double temperature) {
  check_pair(logits_ref, logits_q, "KL divergence");
  CATQ_CHECK(temperature > 0 && std::isfinite(temperature), Config, "KL divergence: temperature {} must be > 0",
             temperature);
  if (logits_ref.size(0) == 0) return 0;
  at::Tensor lp = (logits_ref.detach().to(at::kCPU, at::kDouble) / temperature).log_softmax(1);
  at::Tensor lq = (logits_q.detach().to(at::kCPU, at::kDouble) / temperature).log_softmax(1);
  return (lp.exp() * (lp - lq)).sum(1).mean().item<double>();
}

double top1_agreement(const at::Tensor& logits_ref, const at::Tensor& logits_q) {
  check_pair(logits_ref, logits_q, "top-1 agreement");
  if (logits_ref.size(0) == 0) return 0;
  at::Tensor a = logits_ref.detach().to(at::kCPU).argmax(1), b = logits_q.detach().to(at::kCPU).argmax(1);
  return a.eq(b).to(at::kDouble).mean().item<double>();
}

ClassifyResult evaluate_classifier(const ImageDataset& data, const ClassifierFn& forward,
                                   const ClassifyOptions& opts) {
  const int64_t n = eval_count(data, opts);
  auto t0 = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  ClassifyResult r;
  std::vector<at::Tensor> kept;
  Progress bar(opts.label, n);
  for (int64_t lo = 0; lo < n; lo += opts.batch_size) {
    const int64_t hi = std::min(n, lo + opts.batch_size);
    at::Tensor logits = run_batch(forward, data.images.slice(0, lo, hi).to(opts.device), data, lo);
    at::Tensor y = data.labels.slice(0, lo, hi);
    check_labels(y, logits.size(1), data, lo);
    r.top1_correct += topk_correct(logits, y, 1);
    r.top5_correct += topk_correct(logits, y, 5);
    r.nonfinite += logits.isfinite().all(1).logical_not().sum().item<int64_t>();
    if (opts.keep_logits) kept.push_back(logits);
    r.n = hi;
    bar.step(hi - lo, fmt::format("top-1 {:.2f}%", 100.0 * r.top1_correct / r.n));
  }
  bar.finish();
  r.top1 = static_cast<double>(r.top1_correct) / r.n;
  r.top5 = static_cast<double>(r.top5_correct) / r.n;
  if (opts.keep_logits) r.logits = at::cat(kept, 0);
  r.seconds = since(t0);
  return r;
}

CompareResult compare_classifiers(const ImageDataset& data, const ClassifierFn& reference,
                                  const ClassifierFn& quantized, const ClassifyOptions& opts) {
  const int64_t n = eval_count(data, opts);
  auto t0 = std::chrono::steady_clock::now();
  at::NoGradGuard no_grad;
  CompareResult r;
  int64_t c1r = 0, c1q = 0, c5r = 0, c5q = 0, agree = 0, kl_n = 0;
  double kl_sum = 0;
  Progress bar(opts.label, n);
  for (int64_t lo = 0; lo < n; lo += opts.batch_size) {
    const int64_t hi = std::min(n, lo + opts.batch_size);
    at::Tensor x = data.images.slice(0, lo, hi).to(opts.device);
    at::Tensor lr = run_batch(reference, x, data, lo);
    at::Tensor lq = run_batch(quantized, x, data, lo);
    CATQ_CHECK(lr.size(1) == lq.size(1), Data,
               "{}: the reference model returns {} classes but the quantized model {}", data.name, lr.size(1),
               lq.size(1));
    at::Tensor y = data.labels.slice(0, lo, hi);
    check_labels(y, lr.size(1), data, lo);
    c1r += topk_correct(lr, y, 1);
    c1q += topk_correct(lq, y, 1);
    c5r += topk_correct(lr, y, 5);
    c5q += topk_correct(lq, y, 5);
    at::Tensor fin = lq.isfinite().all(1).logical_and(lr.isfinite().all(1));
    agree += lr.argmax(1).eq(lq.argmax(1)).logical_and(fin).sum().item<int64_t>();
    r.nonfinite_q += lq.isfinite().all(1).logical_not().sum().item<int64_t>();
    at::Tensor keep = fin.nonzero().squeeze(1);
    if (keep.numel() > 0) {
      kl_sum += kl_divergence(lr.index_select(0, keep), lq.index_select(0, keep)) * keep.numel();
      kl_n += keep.numel();
    }
    r.n = hi;
    bar.step(hi - lo, fmt::format("agree {:.2f}% KL {:.4f}", 100.0 * agree / r.n, kl_n ? kl_sum / kl_n : 0.0));
  }
  bar.finish();
  const double dn = static_cast<double>(r.n);
  r.top1_ref = c1r / dn;
  r.top1_q = c1q / dn;
  r.top5_ref = c5r / dn;
  r.top5_q = c5q / dn;
  r.agreement = agree / dn;
  r.kl = kl_n ? kl_sum / kl_n : std::numeric_limits<double>::quiet_NaN();
  r.seconds = since(t0);
  return r;
}

}  // namespace catq

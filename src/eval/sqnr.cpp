#include "eval/sqnr.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace catq {

double sqnr_db_from_power(double signal, double noise) {
  if (!std::isfinite(signal) || !std::isfinite(noise)) return std::numeric_limits<double>::quiet_NaN();
  if (noise <= 0) return kSqnrCapDb;  // exact match, including 0 vs 0
  if (signal <= 0) return -kSqnrCapDb;
  return std::clamp(10.0 * std::log10(signal / noise), -kSqnrCapDb, kSqnrCapDb);
}

void SqnrAccumulator::add(const at::Tensor& x, const at::Tensor& x_hat) {
  CATQ_CHECK(x.defined() && x_hat.defined() && x.numel() == x_hat.numel(), Data,
             "SQNR: signal has {} elements but its approximation {}", x.defined() ? x.numel() : 0,
             x_hat.defined() ? x_hat.numel() : 0);
  at::Tensor a = x.detach().to(at::kCPU, at::kDouble).reshape({-1});
  at::Tensor b = x_hat.detach().to(at::kCPU, at::kDouble).reshape({-1});
  signal += a.square().sum().item<double>();
  noise += (a - b).square().sum().item<double>();
  numel += a.numel();
}

double sqnr_db(const at::Tensor& x, const at::Tensor& x_hat) {
  SqnrAccumulator acc;
  acc.add(x, x_hat);
  return acc.db();
}

static LayerSqnr make_row(const std::string& name, const SqnrAccumulator& a) {
  return {name, a.db(), a.signal, a.noise, a.numel};
}

std::vector<LayerSqnr> per_layer_sqnr(const std::map<std::string, at::Tensor>& ref,
                                      const std::map<std::string, at::Tensor>& approx,
                                      const std::vector<std::string>& order) {
  std::vector<std::string> names;
  std::map<std::string, bool> placed;
  for (const auto& n : order)
    if (ref.count(n) && !placed[n]) {
      names.push_back(n);
      placed[n] = true;
    }
  for (const auto& [n, t] : ref)
    if (!placed[n]) names.push_back(n);

  std::vector<LayerSqnr> rows;
  for (const auto& n : names) {
    auto it = approx.find(n);
    CATQ_CHECK(it != approx.end(), Data, "per-layer SQNR: layer '{}' has a reference output but no approximation",
               n);
    const at::Tensor& x = ref.at(n);
    CATQ_CHECK(x.defined() && it->second.defined() && x.numel() == it->second.numel(), Data,
               "per-layer SQNR: layer '{}' has {} reference elements but {} approximated ones", n,
               x.defined() ? x.numel() : 0, it->second.defined() ? it->second.numel() : 0);
    SqnrAccumulator a;
    a.add(x, it->second);
    rows.push_back(make_row(n, a));
  }
  return rows;
}

void LayerSqnrCollector::add(const std::string& layer, const at::Tensor& x, const at::Tensor& x_hat) {
  CATQ_CHECK(x.defined() && x_hat.defined() && x.numel() == x_hat.numel(), Data,
             "per-layer SQNR: layer '{}' has {} reference elements but {} approximated ones", layer,
             x.defined() ? x.numel() : 0, x_hat.defined() ? x_hat.numel() : 0);
  auto it = acc_.find(layer);
  if (it == acc_.end()) {
    names_.push_back(layer);
    it = acc_.emplace(layer, SqnrAccumulator{}).first;
  }
  it->second.add(x, x_hat);
}

void LayerSqnrCollector::add(const std::map<std::string, at::Tensor>& ref,
                             const std::map<std::string, at::Tensor>& approx) {
  for (const auto& [n, x] : ref) {
    auto it = approx.find(n);
    CATQ_CHECK(it != approx.end(), Data, "per-layer SQNR: layer '{}' has a reference output but no approximation",
               n);
    add(n, x, it->second);
  }
}

std::vector<LayerSqnr> LayerSqnrCollector::table() const {
  std::vector<LayerSqnr> rows;
  for (const auto& n : names_) rows.push_back(make_row(n, acc_.at(n)));
  return rows;
}

std::string format_sqnr_table(const std::vector<LayerSqnr>& rows) {
  size_t w = 5;
  for (const auto& r : rows) w = std::max(w, r.name.size());
  std::string s = fmt::format("{:<{}}  {:>10}  {:>12}\n", "layer", w, "SQNR dB", "elements");
  for (const auto& r : rows) {
    std::string v = r.sqnr_db >= kSqnrCapDb ? fmt::format(">= {:.1f}", kSqnrCapDb) : fmt::format("{:.2f}", r.sqnr_db);
    s += fmt::format("{:<{}}  {:>10}  {:>12}\n", r.name, w, v, r.numel);
  }
  return s;
}

}  // namespace catq

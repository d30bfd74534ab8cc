// bench/observer_throughput: weights/s of the weight-quantization path (compute_params with the min-max, MSE and
// percentile observers, and RTN fake-quantize / codes) on an LLM-sized [5632, 2048] weight, per group of 32 / 128
// and per channel, on 1 and 2 threads; next to the libtorch code it replaced (observer.cpp / quantizer.cpp before
// issue 15 deliverable 5, kept here as legacy_*), measured in the same run. Prints markdown.
//   cmake --build build --target catq_bench_observers && build/catq_bench_observers [--old-rows N] [--reps N]
// --old-rows N: run the legacy paths on the first N rows only (default: all; the legacy MSE search takes ~10 s per
// pass over the whole weight) and report their rate per weight; 0 skips them. Weights: N(0, 0.02²) with 0.1 %
// outliers at ±0.3.
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "quant/quantizer.h"
#include "quant/range_search.h"

using namespace catq;

namespace {

double cpu_now() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Best wall time of `reps` runs, and the process CPU time of that run (all threads): on a shared machine the
// weights per CPU-second stay meaningful when the wall time does not.
struct Timing {
  double wall = 1e30, cpu = 0;
};
Timing best_seconds(int reps, const std::function<void()>& f) {
  Timing best;
  for (int r = 0; r < reps; ++r) {
    const double c0 = cpu_now();
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (wall < best.wall) best = {wall, cpu_now() - c0};
  }
  return best;
}

// ---- The libtorch path before range_search (one observation, as compute_params makes) ----------------------------

at::Tensor legacy_quantile(const at::Tensor& t, double q) {
  at::Tensor sorted = std::get<0>(t.sort(1));
  const int64_t m = t.size(1);
  double pos = q * static_cast<double>(m - 1);
  int64_t i0 = static_cast<int64_t>(std::floor(pos)), i1 = std::min<int64_t>(i0 + 1, m - 1);
  double f = pos - static_cast<double>(i0);
  return sorted.select(1, i0) * (1.0 - f) + sorted.select(1, i1) * f;
}

QuantParams legacy_params(const QuantSpec& spec, const at::Tensor& w) {
  at::NoGradGuard ng;
  const int axis = spec.resolved_axis(w.dim());
  at::Tensor rows = to_rows(w, spec.granularity, axis, spec.group_size);
  at::Tensor mn = std::get<0>(rows.min(1)), mx = std::get<0>(rows.max(1));
  at::Tensor lo = mn, hi = mx;
  const int64_t r = rows.size(0);
  if (spec.observer == ObserverKind::Percentile) {
    const double q = spec.percentile / 100.0;
    if (spec.symmetric) {
      hi = legacy_quantile(rows.abs(), q);
      lo = -hi;
    } else {
      lo = at::maximum(legacy_quantile(rows, 1.0 - q), mn);
      hi = at::minimum(legacy_quantile(rows, q), mx);
    }
  } else if (spec.observer == ObserverKind::Mse) {
    at::Tensor data = rows.contiguous();  // ≤ 4096 columns per row here: no subsampling
    const bool square = spec.mse_p == 2.0;
    at::Tensor lo0 = mn.reshape({r, 1}), hi0 = mx.reshape({r, 1});
    at::Tensor best_err = at::full({r, 1}, std::numeric_limits<float>::infinity());
    at::Tensor best_lo = lo0.clone(), best_hi = hi0.clone();
    const double qmin = static_cast<double>(spec.qmin()), qmax = static_cast<double>(spec.qmax());
    for (int k = spec.mse_grid; k >= 1; --k) {
      const double ratio = static_cast<double>(k) / spec.mse_grid;
      at::Tensor l = lo0 * ratio, h = hi0 * ratio;
      QuantParams p = params_from_range(spec, l, h);
      at::Tensor z = p.zero_point.to(at::kFloat);
      at::Tensor d = data - ((at::round(data / p.scale) + z).clamp(qmin, qmax) - z) * p.scale;
      at::Tensor err = (square ? d.square() : d.abs().pow(spec.mse_p)).mean(1, true);
      at::Tensor better = err < best_err;
      best_err = at::where(better, err, best_err);
      best_lo = at::where(better, l, best_lo);
      best_hi = at::where(better, h, best_hi);
    }
    lo = best_lo.reshape({r});
    hi = best_hi.reshape({r});
  }
  auto pshape = param_shape(w.sizes(), spec.granularity, axis, spec.group_size);
  return params_from_range(spec, lo.reshape(pshape), hi.reshape(pshape), axis);
}

std::pair<at::Tensor, at::Tensor> legacy_rtn(const at::Tensor& x, const QuantParams& p) {
  at::Tensor xv = group_view(x, p);
  at::Tensor z = p.zero_point.to(at::kFloat);
  at::Tensor q = (at::round(xv / p.scale) + z).clamp(p.qmin, p.qmax);
  return {q.reshape(x.sizes()).to(at::kInt), ((q - z) * p.scale).reshape(x.sizes())};
}

QuantSpec weight_spec(ObserverKind obs, int64_t group) {
  QuantSpec s;
  s.bits = 4;
  s.symmetric = false;
  s.observer = obs;
  s.percentile = 99.9;
  if (group > 0) {
    s.granularity = Granularity::PerGroup;
    s.group_size = group;
  } else {
    s.granularity = Granularity::PerChannel;
    s.axis = 0;
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t old_rows = std::numeric_limits<int64_t>::max();
  int reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--old-rows")) old_rows = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: %s [--old-rows N] [--reps N]\n", argv[0]);
      return 2;
    }
  }
  at::NoGradGuard ng;
  torch::manual_seed(0);
  const int64_t out = 5632, in = 2048;
  at::Tensor w = torch::randn({out, in}) * 0.02;
  at::Tensor outl = torch::rand({out, in}) < 0.001;
  w = at::where(outl, at::where(torch::rand({out, in}) < 0.5, 0.3f, -0.3f), w).contiguous();
  const double n = static_cast<double>(w.numel());
  old_rows = std::min<int64_t>(old_rows, out);
  at::Tensor w_old = w.slice(0, 0, std::max<int64_t>(old_rows, 1)).contiguous();
  const double n_old = static_cast<double>(w_old.numel());
  const int threads_before = at::get_num_threads();

  std::printf("# Weight quantization throughput, W4 asymmetric, weight [%lld, %lld]\n\n", static_cast<long long>(out),
              static_cast<long long>(in));
  std::printf("range_search ISA: %s; best of %d; legacy (libtorch) path on the first %lld rows%s.\n\n",
              to_string(range_best_isa()), reps, static_cast<long long>(old_rows),
              old_rows == 0 ? " (skipped)" : "");
  std::printf("| path | granularity | threads | new Mweights/s | new Mweights/CPU-s | legacy Mweights/s | speed-up |\n");
  std::printf("|---|---|---|---:|---:|---:|---:|\n");
  double mse_g32_rate[3] = {0, 0, 0};
  struct Obs {
    const char* name;
    ObserverKind kind;
  };
  for (Obs o : {Obs{"minmax", ObserverKind::MinMax}, Obs{"mse (grid 100, p 2)", ObserverKind::Mse},
                Obs{"percentile 99.9", ObserverKind::Percentile}, Obs{"rtn fake-quant + codes", ObserverKind::MinMax}}) {
    const bool rtn = std::string(o.name).rfind("rtn", 0) == 0;
    for (int64_t g : {int64_t{32}, int64_t{128}, int64_t{0}}) {
      const QuantSpec s = weight_spec(o.kind, g);
      const QuantParams p = compute_params(s, w);
      const QuantParams p_old = old_rows > 0 ? compute_params(s, w_old) : QuantParams();
      for (int t : {1, 2}) {
        at::set_num_threads(t);
        const Timing tn = rtn ? best_seconds(reps, [&] {
          at::Tensor a = fake_quantize(w, p), b = quantize(w, p);
        })
                              : best_seconds(reps, [&] { QuantParams q = compute_params(s, w); });
        double sec_old = 0;
        if (old_rows > 0) {
          const bool slow = o.kind == ObserverKind::Mse;
          sec_old = rtn ? best_seconds(reps, [&] { auto r = legacy_rtn(w_old, p_old); }).wall
                        : best_seconds(slow ? 1 : reps, [&] { QuantParams q = legacy_params(s, w_old); }).wall;
        }
        const double rate = n / tn.wall / 1e6, rate_old = sec_old > 0 ? n_old / sec_old / 1e6 : 0;
        if (o.kind == ObserverKind::Mse && g == 32) mse_g32_rate[t] = rate;
        const std::string gran = g ? fmt::format("group {}", g) : "channel";
        std::printf("| %s | %s | %d | %.1f | %.1f | %s | %s |\n", o.name, gran.c_str(), t, rate,
                    tn.cpu > 0 ? n / tn.cpu / 1e6 : 0.0, rate_old > 0 ? fmt::format("{:.2f}", rate_old).c_str() : "-",
                    rate_old > 0 ? fmt::format("{:.0f}x", rate / rate_old).c_str() : "-");
        std::fflush(stdout);
      }
    }
  }
  at::set_num_threads(threads_before);
  // The random Llama of issue 15: dim 2048, ffn 5632, 8 layers (q, k, v, o, gate, up, down; the head stays FP).
  const double llama = 8.0 * (4.0 * 2048 * 2048 + 3.0 * 2048 * 5632);
  std::printf("\nEstimate for the weight params of a Llama with dim 2048, ffn 5632, 8 layers (%.0f M quantized weights), "
              "W4 g32 MSE: %.1f s on 1 thread, %.1f s on 2.\n",
              llama / 1e6, llama / (mse_g32_rate[1] * 1e6), llama / (mse_g32_rate[2] * 1e6));
  return 0;
}

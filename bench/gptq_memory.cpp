// Peak memory and time of GPTQ's factorization (methods/llm/gptq.h, gptq_factor) for one [in, in] Hessian, the part
// of a streamed GPTQ run that sets its peak at large widths (issue 15: the 8B shape's 14336-wide ffn_down input).
//   cmake --build build --target catq_bench_gptq_memory && build/catq_bench_gptq_memory --in 14336
// H = XᵀX / n from random X [n, in] (built in row blocks); prints VmHWM before and after the factor, in MB.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "methods/llm/gptq.h"

static long vm_hwm_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

int main(int argc, char** argv) {
  CLI::App app("GPTQ factor: peak memory and time for one Hessian");
  int64_t in = 14336, tokens = 4096;
  app.add_option("--in", in, "Hessian width")->capture_default_str();
  app.add_option("--tokens", tokens, "Rows of X behind H")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  torch::NoGradGuard ng;
  torch::manual_seed(0);
  at::Tensor h = at::zeros({in, in});
  for (int64_t r = 0; r < tokens; r += 512) {
    at::Tensor x = at::randn({std::min<int64_t>(512, tokens - r), in});
    h.addmm_(x.t(), x);
  }
  h.div_(static_cast<double>(tokens));
  const long before = vm_hwm_kb();
  const double h_mb = static_cast<double>(in) * in * 4 / 1e6;
  const auto t0 = std::chrono::steady_clock::now();
  catq::GptqOptions o;
  catq::GptqFactor f = catq::gptq_factor(h, o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long after = vm_hwm_kb();
  std::printf("in %ld: one [in, in] fp32 = %.0f MB; VmHWM %.0f MB before the factor (H built), %.0f MB after: the "
              "factor's peak adds %.0f MB = %.2f [in, in] matrices; %.1f s (damp %g)\n",
              static_cast<long>(in), h_mb, before / 1e3, after / 1e3, (after - before) / 1e3,
              (after - before) / 1e3 / h_mb, s, f.damp);
  return 0;
}

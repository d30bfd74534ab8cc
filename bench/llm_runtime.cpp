// bench/llm_runtime: end-to-end Llama speed of the integer runtime (src/runtime/int_runtime.h) against the FP32
// libtorch forward and the fake-quant simulation, on a random model with LLM-like layer shapes (speed does not
// depend on the weights' values). Decoding: tokens/s generating one token at a time through the KV cache; prefill:
// tokens/s of one forward over a prompt. Prints markdown. Built on demand (bench/llm_runtime.sh):
//   cmake --build build --target catq_bench_llm && build/catq_bench_llm [--dim 2048 --hidden 5632 --layers 4 ...]
// All layers except the LM head are quantized (weights RTN min-max; activations per token where the config has
// them); the head stays FP32 in every row, as in the quantized LLM configs of bench/configs.
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "llm/llama.h"
#include "runtime/int_runtime.h"
#include "sim/quant_config.h"

using namespace catq;

namespace {

double seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

QuantConfig config(const std::string& weight, const std::string& input) {
  return QuantConfig::from_json(R"({"defaults": {"weight": )" + weight + R"(, "input": )" + input +
                                    R"(}, "overrides": [{"pattern": "output", "weight": null, "input": null}]})",
                                "bench");
}

struct Timing {
  double decode_tps = 0, prefill_tps = 0;
};

// Best of `reps` for each: decoding `steps` tokens after a 1-token prompt, and one prefill of `prompt` tokens.
Timing time_model(const LlamaModel& m, QuantContext* ctx, int64_t steps, int64_t prompt, int reps) {
  at::NoGradGuard ng;
  Timing t;
  const at::Tensor start = at::ones({1, 1}, at::kLong);
  double best_dec = 1e30, best_pre = 1e30;
  for (int r = 0; r < reps; ++r) {
    KVCache cache = m.make_cache(1, steps + 1);
    at::Tensor tok = start;
    m.forward(tok, cache, ctx);  // the prompt token (not timed)
    best_dec = std::min(best_dec, seconds([&] {
      for (int64_t s = 0; s < steps; ++s) {
        const at::Tensor logits = m.forward(tok, cache, ctx);
        tok = logits.select(1, -1).argmax(-1, true);
      }
    }));
    const at::Tensor p = at::randint(1, m.cfg.vocab_size, {1, prompt}, at::kLong);
    best_pre = std::min(best_pre, seconds([&] { m.forward(p, ctx); }));
  }
  t.decode_tps = steps / best_dec;
  t.prefill_tps = prompt / best_pre;
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  LlamaConfig c;
  c.dim = 2048; c.hidden_dim = 5632; c.n_layers = 4; c.n_heads = 16; c.n_kv_heads = 4; c.vocab_size = 4096;
  c.seq_len = 1024; c.tied_head = false;
  int64_t steps = 32, prompt = 256;
  int reps = 2, threads = 1;
  bool with_sim = true;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? std::atoll(argv[++i]) : 0; };
    if (!std::strcmp(argv[i], "--dim")) c.dim = next();
    else if (!std::strcmp(argv[i], "--hidden")) c.hidden_dim = next();
    else if (!std::strcmp(argv[i], "--layers")) c.n_layers = next();
    else if (!std::strcmp(argv[i], "--heads")) c.n_heads = next();
    else if (!std::strcmp(argv[i], "--kv-heads")) c.n_kv_heads = next();
    else if (!std::strcmp(argv[i], "--vocab")) c.vocab_size = next();
    else if (!std::strcmp(argv[i], "--steps")) steps = next();
    else if (!std::strcmp(argv[i], "--prompt")) prompt = next();
    else if (!std::strcmp(argv[i], "--reps")) reps = static_cast<int>(next());
    else if (!std::strcmp(argv[i], "--threads")) threads = static_cast<int>(next());
    else if (!std::strcmp(argv[i], "--no-sim")) with_sim = false;
    else {
      std::fprintf(stderr, "usage: %s [--dim D --hidden H --layers L --heads N --kv-heads N --vocab V --steps S "
                   "--prompt P --reps R --threads T --no-sim]\n", argv[0]);
      return 2;
    }
  }
  if (steps < 1 || prompt < 1 || reps < 1 || threads < 1) {
    std::fprintf(stderr, "--steps, --prompt, --reps and --threads must be >= 1\n");
    return 2;
  }
  c.seq_len = std::max<int64_t>(c.seq_len, std::max(steps + 1, prompt));
  c.validate("bench");
  at::set_num_threads(threads);
  const LlamaModel m = LlamaModel::random(c, 1);
  std::printf("Model: %s; %.1f M parameters (random weights). %d thread(s), ISA %s. Decoding %lld tokens, prefill "
              "%lld tokens, best of %d.\n\n", c.summary().c_str(), m.num_parameters() / 1e6, threads,
              to_string(best_isa()), static_cast<long long>(steps), static_cast<long long>(prompt), reps);
  std::printf("| model | runtime | linear layers | weight MB | decode tok/s | vs FP32 | prefill tok/s | vs FP32 |\n"
              "|---|---|---|---:|---:|---:|---:|---:|\n");
  const Timing fp = time_model(m, nullptr, steps, prompt, reps);
  int64_t linear_params = 0;
  for (const auto& info : m.layer_infos())
    if (info.name != "output") linear_params += info.weight_shape[0] * info.weight_shape[1];
  std::printf("| FP32 | libtorch | fp32 | %.0f | %.2f | 1.00 | %.1f | 1.00 |\n", 4.0 * linear_params / 1e6,
              fp.decode_tps, fp.prefill_tps);
  const std::string tok8 = R"({"bits": 8, "granularity": "token"})", tok4 = R"({"bits": 4, "granularity": "token"})";
  struct Row {
    const char* label;
    std::string weight, input;
  };
  const std::vector<Row> rows = {
      {"W8A8", R"({"bits": 8})", tok8},
      {"W4A16 g128", R"({"bits": 4, "group_size": 128, "symmetric": false})", "null"},
      {"W4A16 g32", R"({"bits": 4, "group_size": 32, "symmetric": false})", "null"},
      {"W4A8", R"({"bits": 4})", tok8},
      {"W4A4", R"({"bits": 4})", tok4},
      {"W3A16 k-means", R"({"bits": 3, "scheme": "kmeans", "granularity": "channel"})", "null"},
  };
  for (const Row& r : rows) {
    SimQuant sq(config(r.weight, r.input));
    m.bind(&sq);
    IntegerRuntime rt(m, sq);  // computes the RTN weight params and packs the codes
    const Timing t = time_model(m, &rt, steps, prompt, reps);
    const std::string how = rt.report().front().how;
    std::printf("| %s | integer runtime | %s | %.0f | %.2f | %.2f | %.1f | %.2f |\n", r.label,
                how.substr(0, how.find(" (")).c_str(), rt.packed_bytes() / 1e6, t.decode_tps,
                t.decode_tps / fp.decode_tps, t.prefill_tps, t.prefill_tps / fp.prefill_tps);
    if (with_sim && (std::string(r.label) == "W8A8" || std::string(r.label) == "W4A8")) {
      const Timing s = time_model(m, &sq, steps, prompt, 1);
      std::printf("| %s | simulation (fake quant) | fp32 on dequantized weights | – | %.2f | %.2f | %.1f | %.2f |\n",
                  r.label, s.decode_tps, s.decode_tps / fp.decode_tps, s.prefill_tps, s.prefill_tps / fp.prefill_tps);
    }
    std::fflush(stdout);
  }
  std::printf("\nweight MB: linear-layer weights as stored by the runtime (codes + per-group scales and zero-points as "
              "float32), LM head excluded (FP32 in every row).\n");
  return 0;
}

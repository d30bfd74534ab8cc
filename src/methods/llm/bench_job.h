// The `catq bench` job (llama-bench style): prompt-processing (pp) and token-generation (tg) speed of a model at
// each requested thread count.
//   GGUF      the lean runtime (runtime/lean_llama.h): the file's own blocks on catq's kernels — the same file
//             llama.cpp runs, for the cleanest comparison;
//   .catq     a quantized LLM on the lean runtime too (its integer layers on catq's integer GEMM, the others in
//             fp32), or (runtime "int", or "auto" when the lean runtime cannot run it: KV-cache / embedding
//             quantization) on the integer runtime (runtime/int_runtime.h, libtorch around the kernels), threads via
//             libtorch's intra-op pool.
// pp: `prompt` random tokens evaluated as one batch from an empty cache; tg: `gen` tokens decoded one at a time from
// an empty cache. Each test runs once untimed (warm-up), then `repetitions` times; mean and standard deviation of
// tokens/s are reported.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace catq {

struct BenchJob {
  std::string model;
  int64_t prompt = 512;        // pp tokens (0 = skip)
  int64_t gen = 128;           // tg tokens (0 = skip)
  std::vector<int> threads{1};
  int repetitions = 3;
  uint64_t seed = 1;
  std::string runtime = "auto";  // auto | lean | int (int: .catq only)
};

struct BenchRow {
  std::string test;  // "pp512" / "tg128"
  int threads = 1;
  double tokens_per_s = 0, stddev = 0;
  std::vector<double> samples;
};

struct BenchResult {
  std::string model, runtime, weights;  // runtime "lean" | "int"; weights: what each linear runs on
  std::string note;                     // why "auto" chose the integer runtime for a .catq (empty otherwise)
  uint64_t weight_bytes = 0;
  int64_t parameters = 0;
  std::vector<BenchRow> rows;
  nlohmann::json json() const;
  std::string markdown() const;
};

// Error(Usage) for bad counts, Error(Io/Format/Unsupported) from the loaders.
BenchResult run_bench_job(const BenchJob& job);

}  // namespace catq

#include "methods/llm/bench_job.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <random>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "core/error.h"
#include "core/progress.h"
#include "io/llm_loader.h"
#include "io/model_format.h"
#include "runtime/int_runtime.h"
#include "runtime/lean_llama.h"

namespace catq {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> d(0, vocab - 1);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& v : t) v = static_cast<int32_t>(d(rng));
  return t;
}

BenchRow summarize(const std::string& test, int threads, std::vector<double> samples) {
  BenchRow r;
  r.test = test;
  r.threads = threads;
  double s = 0, s2 = 0;
  for (double v : samples) s += v, s2 += v * v;
  const double n = static_cast<double>(samples.size());
  r.tokens_per_s = s / n;
  r.stddev = samples.size() > 1 ? std::sqrt(std::max(0.0, (s2 - s * s / n) / (n - 1))) : 0.0;
  r.samples = std::move(samples);
  return r;
}

// Times f(tokens) `reps` times after one warm-up; returns tokens/s per repetition.
template <class F>
std::vector<double> time_reps(int reps, int64_t tokens, F&& f) {
  f();
  std::vector<double> out;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    f();
    out.push_back(static_cast<double>(tokens) / seconds_since(t0));
  }
  return out;
}

}  // namespace

nlohmann::json BenchResult::json() const {
  nlohmann::json rs = nlohmann::json::array();
  for (const BenchRow& r : rows)
    rs.push_back({{"test", r.test}, {"threads", r.threads}, {"tokens_per_s", r.tokens_per_s}, {"stddev", r.stddev},
                  {"samples", r.samples}});
  nlohmann::json j = {{"model", model}, {"runtime", runtime}, {"weights", weights}, {"weight_bytes", weight_bytes},
                      {"parameters", parameters}, {"results", rs}};
  if (!note.empty()) j["note"] = note;
  return j;
}

std::string BenchResult::markdown() const {
  std::string s = fmt::format("{} ({} runtime; {:.1f} MiB of weights; {})\n\n", model, runtime,
                              static_cast<double>(weight_bytes) / (1 << 20), weights);
  if (!note.empty()) s += note + "\n\n";
  s += "| test | threads | tokens/s |\n|---|---:|---:|\n";
  for (const BenchRow& r : rows) s += fmt::format("| {} | {} | {:.2f} ± {:.2f} |\n", r.test, r.threads, r.tokens_per_s, r.stddev);
  return s;
}

BenchResult run_bench_job(const BenchJob& job) {
  CATQ_CHECK(job.prompt >= 0 && job.gen >= 0 && job.prompt + job.gen > 0, Usage,
             "-p and -n must be >= 0 and not both 0 (got {} and {})", job.prompt, job.gen);
  CATQ_CHECK(job.repetitions >= 1, Usage, "-r must be >= 1, got {}", job.repetitions);
  CATQ_CHECK(!job.threads.empty(), Usage, "-t needs at least one thread count");
  for (int t : job.threads) CATQ_CHECK(t >= 1 && t <= 256, Usage, "-t: thread count {} outside 1..256", t);
  CATQ_CHECK(job.runtime == "auto" || job.runtime == "lean" || job.runtime == "int", Usage,
             "--runtime '{}': expected auto, lean or int", job.runtime);
  const ModelFormat fmt_ = detect_model_format(job.model);
  CATQ_CHECK(fmt_ == ModelFormat::Gguf || fmt_ == ModelFormat::CatqQuantized, Usage,
             "{}: catq bench runs a GGUF file or a quantized LLM .catq, got {}", job.model, model_format_name(fmt_));
  CATQ_CHECK(!(fmt_ == ModelFormat::Gguf && job.runtime == "int"), Usage,
             "{}: --runtime int runs a quantized .catq; a GGUF runs on the lean runtime", job.model);
  BenchResult res;
  res.model = job.model;
  const std::string pp = fmt::format("pp{}", job.prompt), tg = fmt::format("tg{}", job.gen);
  if (job.runtime != "int") {
    try {
      res.runtime = "lean";
      // The lean pool and libtorch (the GEMM of weight-only prefill) both get the row's thread count.
      struct RestoreThreads {
        int n = at::get_num_threads();
        ~RestoreThreads() { at::set_num_threads(n); }
      } restore;
      for (int th : job.threads) {
        at::set_num_threads(th);
        LeanLlamaOptions o;
        o.threads = th;
        o.max_context = std::max(job.prompt, job.gen) + 1;
        LeanLlama m(job.model, o);
        res.weights = m.describe();
        res.weight_bytes = m.weight_bytes();
        const LlamaConfig& c = m.config();
        LlamaModel shape;  // num_parameters() counts from the config's shapes alone
        shape.cfg = c;
        res.parameters = shape.num_parameters();
        const std::vector<int32_t> toks = random_tokens(std::max(job.prompt, job.gen), c.vocab_size, job.seed);
        std::vector<float> logits;
        if (job.prompt > 0)
          res.rows.push_back(summarize(pp, th, time_reps(job.repetitions, job.prompt, [&] {
                                         m.reset();
                                         m.eval(toks.data(), job.prompt, &logits);
                                       })));
        if (job.gen > 0)
          res.rows.push_back(summarize(tg, th, time_reps(job.repetitions, job.gen, [&] {
                                         m.reset();
                                         for (int64_t i = 0; i < job.gen; ++i) m.eval(&toks[static_cast<size_t>(i)], 1, &logits);
                                       })));
      }
      return res;
    } catch (const Error& e) {
      // auto: a .catq the lean runtime cannot run goes to the integer runtime, saying why.
      if (!(job.runtime == "auto" && fmt_ == ModelFormat::CatqQuantized && e.kind() == ErrorKind::Unsupported)) throw;
      res = BenchResult{};
      res.model = job.model;
      res.note = fmt::format("integer runtime: {}", e.what());
    }
  }
  res.runtime = "int";
  LoadedLlama m = load_llama(job.model, "");
  CATQ_CHECK(m.quant, Usage, "{}: not a quantized LLM .catq", job.model);
  IntegerRuntime rt(m.model, *m.quant);
  res.weights = fmt::format("{} integer / {} weight-only / {} simulated layers", rt.num_integer(),
                            rt.num_weight_only(), static_cast<int64_t>(rt.report().size()) - rt.num_integer() - rt.num_weight_only());
  res.weight_bytes = rt.packed_bytes();
  res.parameters = m.model.num_parameters();
  const at::Tensor toks = at::randint(m.model.cfg.vocab_size, {1, std::max(job.prompt, job.gen)},
                                      at::TensorOptions().dtype(at::kLong));
  at::NoGradGuard ng;
  const int before = at::get_num_threads();
  for (int th : job.threads) {
    at::set_num_threads(th);
    if (job.prompt > 0)
      res.rows.push_back(summarize(pp, th, time_reps(job.repetitions, job.prompt, [&] {
                                     KVCache cache = m.model.make_cache(1, job.prompt + 1);
                                     (void)m.model.forward(toks.narrow(1, 0, job.prompt), cache, &rt);
                                   })));
    if (job.gen > 0)
      res.rows.push_back(summarize(tg, th, time_reps(job.repetitions, job.gen, [&] {
                                     KVCache cache = m.model.make_cache(1, job.gen + 1);
                                     for (int64_t i = 0; i < job.gen; ++i) (void)m.model.forward(toks.narrow(1, i, 1), cache, &rt);
                                   })));
  }
  at::set_num_threads(before);
  return res;
}

}  // namespace catq

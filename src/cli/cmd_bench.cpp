// `catq bench MODEL [-p 512] [-n 128] [-t 1,2] [-r 3]` (llama-bench style)
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/progress.h"
#include "methods/llm/bench_job.h"

namespace catq::cli {

void register_bench(CLI::App& app, Common& common) {
  auto a = std::make_shared<BenchJob>();
  auto* sub = app.add_subcommand("bench",
                                 "Prompt-processing and generation speed of an LLM (GGUF or quantized .catq on catq's "
                                 "lean runtime; a .catq also on the integer runtime), llama-bench style");
  sub->footer("Examples:\n"
              "  catq bench model-q4_0.gguf                    (pp512 and tg128, 1 thread, 3 repetitions)\n"
              "  catq bench model-q8_0.gguf -p 256 -n 64 -t 1,2\n"
              "  catq --json bench model_w4a8.catq -t 1,2 -r 5\n"
              "  catq bench model_w4a8.catq --runtime int       (the libtorch-hosted integer runtime)\n"
              "pp: the prompt evaluated as one batch from an empty cache; tg: tokens decoded one at a time.\n"
              "Compare with llama.cpp on the same GGUF: bench/vs_llamacpp.sh.");
  sub->add_option("model", a->model, "GGUF file or quantized LLM .catq")->required();
  sub->add_option("-p,--prompt", a->prompt, "Prompt tokens (0 = skip pp)")->capture_default_str();
  sub->add_option("-n,--gen", a->gen, "Generated tokens (0 = skip tg)")->capture_default_str();
  sub->add_option("-t,--threads", a->threads, "Thread counts, comma separated")->delimiter(',')->capture_default_str();
  sub->add_option("-r,--repetitions", a->repetitions, "Timed repetitions per test")->capture_default_str();
  sub->add_option("--seed", a->seed, "Seed of the random token ids")->capture_default_str();
  sub->add_option("--runtime", a->runtime, "auto | lean | int (int: a .catq on the integer runtime; auto: lean, or "
                  "int for a .catq the lean runtime cannot run)")->capture_default_str();
  sub->callback([a, &common] {
    if (common.json || common.quiet) Progress::set_enabled(false);
    const BenchResult r = run_bench_job(*a);
    if (common.json) std::printf("%s\n", r.json().dump(2).c_str());
    else std::printf("%s", r.markdown().c_str());
  });
}

}  // namespace catq::cli

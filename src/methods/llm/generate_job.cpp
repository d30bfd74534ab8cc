#include "methods/llm/generate_job.h"

#include <memory>

#include "core/error.h"
#include "io/llm_loader.h"
#include "runtime/int_runtime.h"
#include "runtime/lean_llama.h"

namespace catq {

GenerateJobResult run_generate_job(const GenerateJob& job) {
  CATQ_CHECK(job.steps >= 0, Usage, "--steps must be >= 0, got {}", job.steps);
  CATQ_CHECK(job.temperature >= 0, Usage, "--temperature must be >= 0, got {}", job.temperature);
  const bool lean = job.runtime == "lean";
  LlmLoadOptions lo;
  lo.keep_stored_dtype = lean;  // the lean runtime reads the file itself: only the tokenizer is needed here
  LoadedLlama m = load_llama(job.model, job.tokenizer, lo);
  CATQ_CHECK(!lean || m.format == "gguf", Usage, "{}: --runtime lean runs a GGUF file (got {})", job.model, m.format);
  const Tokenizer& tok = require_tokenizer(m);
  GenerateOptions opt;
  opt.steps = job.steps;
  opt.sampler.temperature = job.temperature;
  opt.sampler.top_p = job.top_p;
  opt.sampler.seed = job.seed;
  if (job.stream) job.stream(job.prompt);
  QuantContext* ctx = m.quant.get();
  std::unique_ptr<IntegerRuntime> rt;
  if (job.runtime == "int") {
    CATQ_CHECK(m.quant, Usage, "{}: --runtime int needs a quantized model (.catq)", job.model);
    rt = std::make_unique<IntegerRuntime>(m.model, *m.quant);
    ctx = rt.get();
  }
  GenerateJobResult res;
  GenerateResult& r = res.gen;
  if (lean) {
    // Context: prompt + steps (a prompt encodes to at most one token per byte, plus BOS and a dummy prefix).
    LeanLlamaOptions o;
    o.max_context = std::min<int64_t>(m.model.cfg.seq_len, job.steps + static_cast<int64_t>(job.prompt.size()) + 4);
    LeanLlama rt_lean(job.model, o);
    std::vector<float> logits;
    const NextLogitsFn step = [&](const int32_t* tokens, int64_t n) {
      rt_lean.eval(tokens, n, &logits);
      return at::from_blob(logits.data(), {static_cast<int64_t>(logits.size())}, at::kFloat);
    };
    r = generate_with(step, o.max_context, m.model.cfg.vocab_size, tok, job.prompt, opt, job.stream);
  } else {
    r = generate(m.model, tok, job.prompt, opt, ctx, job.stream);
  }
  res.report = {{"model", job.model},
                {"format", m.format},
                {"prompt", job.prompt},
                {"prompt_tokens", r.prompt_tokens},
                {"tokens", r.tokens},
                {"text", r.text},
                {"stop_reason", r.stop_reason},
                {"steps", r.tokens.size()},
                {"temperature", job.temperature},
                {"top_p", job.top_p},
                {"seed", job.seed},
                {"runtime", m.quant || lean ? job.runtime : "fp32"},
                {"seconds", r.seconds},
                {"tokens_per_s", r.tokens_per_s}};
  return res;
}

}  // namespace catq

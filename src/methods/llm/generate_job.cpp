#include "methods/llm/generate_job.h"

#include <memory>
#include <optional>

#include "core/error.h"
#include "io/llm_loader.h"
#include "runtime/int_runtime.h"
#include "io/gguf.h"
#include "io/model_format.h"
#include "runtime/lean_llama.h"

namespace catq {

namespace {

// --runtime lean: the GGUF's blocks (or a quantized .catq) on the lean runtime. The tokenizer is the GGUF's own (read
// without loading any weight), the .catq's, or --tokenizer.
GenerateResult generate_lean(const GenerateJob& job, const GenerateOptions& opt) {
  const ModelFormat f = detect_model_format(job.model);
  CATQ_CHECK(f == ModelFormat::Gguf || f == ModelFormat::CatqQuantized, Usage, "{}: --runtime lean runs a GGUF file "
             "or a quantized .catq", job.model);
  std::optional<Tokenizer> own;
  std::optional<LoadedLlama> loaded;
  const Tokenizer* tok = nullptr;
  if (job.tokenizer.empty() && f == ModelFormat::Gguf) {
    const GgufFile g = read_gguf(job.model);
    std::string note;
    own = read_gguf_tokenizer(g, gguf_llama_config(g).vocab_size, note);
    CATQ_CHECK(own, Usage, "{}: {}; pass --tokenizer FILE", job.model, note);
    tok = &*own;
  } else {
    LlmLoadOptions lo;
    lo.keep_stored_dtype = true;
    loaded = load_llama(job.model, job.tokenizer, lo);
    tok = &require_tokenizer(*loaded);
  }
  // Context: prompt + steps (a prompt encodes to at most one token per byte, plus BOS and a dummy prefix).
  LeanLlamaOptions o;
  o.max_context = job.steps + static_cast<int64_t>(job.prompt.size()) + 4;
  LeanLlama lean(job.model, o);
  std::vector<float> logits;
  const NextLogitsFn step = [&](const int32_t* tokens, int64_t n) {
    lean.eval(tokens, n, &logits);
    return at::from_blob(logits.data(), {static_cast<int64_t>(logits.size())}, at::kFloat);
  };
  const int64_t context = std::min(lean.max_context(), lean.config().seq_len);
  return generate_with(step, context, lean.config().vocab_size, *tok, job.prompt, opt, job.stream);
}

}  // namespace

GenerateJobResult run_generate_job(const GenerateJob& job) {
  CATQ_CHECK(job.steps >= 0, Usage, "--steps must be >= 0, got {}", job.steps);
  CATQ_CHECK(job.temperature >= 0, Usage, "--temperature must be >= 0, got {}", job.temperature);
  GenerateOptions opt;
  opt.steps = job.steps;
  opt.sampler.temperature = job.temperature;
  opt.sampler.top_p = job.top_p;
  opt.sampler.seed = job.seed;
  GenerateJobResult res;
  GenerateResult& r = res.gen;
  std::string format = "gguf";
  bool quantized = false;
  if (job.runtime == "lean") {
    if (job.stream) job.stream(job.prompt);
    r = generate_lean(job, opt);
  } else {
    LoadedLlama m = load_llama(job.model, job.tokenizer);
    const Tokenizer& tok = require_tokenizer(m);
    format = m.format;
    quantized = m.quant != nullptr;
    if (job.stream) job.stream(job.prompt);
    QuantContext* ctx = m.quant.get();
    std::unique_ptr<IntegerRuntime> rt;
    if (job.runtime == "int") {
      CATQ_CHECK(m.quant, Usage, "{}: --runtime int needs a quantized model (.catq)", job.model);
      rt = std::make_unique<IntegerRuntime>(m.model, *m.quant);
      ctx = rt.get();
    }
    r = generate(m.model, tok, job.prompt, opt, ctx, job.stream);
  }
  res.report = {{"model", job.model},
                {"format", format},
                {"prompt", job.prompt},
                {"prompt_tokens", r.prompt_tokens},
                {"tokens", r.tokens},
                {"text", r.text},
                {"stop_reason", r.stop_reason},
                {"steps", r.tokens.size()},
                {"temperature", job.temperature},
                {"top_p", job.top_p},
                {"seed", job.seed},
                {"runtime", quantized || job.runtime == "lean" ? job.runtime : "fp32"},
                {"seconds", r.seconds},
                {"tokens_per_s", r.tokens_per_s}};
  return res;
}

}  // namespace catq

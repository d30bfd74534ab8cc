// Autoregressive text generation with a KV cache (llama2.c's loop: BOS + prompt, then sample).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "llm/tokenizer.h"
#include "llm/llama.h"
#include "llm/sampler.h"

namespace catq {

struct GenerateOptions {
  int64_t steps = 256;    // new tokens to generate (clipped so prompt + steps <= seq_len)
  SamplerOptions sampler;
  bool stop_at_eos = true;  // stop when BOS or EOS is sampled (llama2.c stops at BOS)
};

struct GenerateResult {
  std::vector<int32_t> prompt_tokens;  // BOS + encoded prompt
  std::vector<int32_t> tokens;         // generated tokens (excluding a final BOS/EOS that stopped it)
  std::string text;                    // decoded generated tokens (not the prompt)
  std::string stop_reason;             // "steps", "eos", "context"
  double seconds = 0;                  // wall time of the whole loop, prompt included
  double tokens_per_s = 0;             // generated tokens / seconds
};

// The model as a step function: evaluates tokens[0..n) continuing its own cache and returns the logits of the last
// one (vocab floats). generate() below wraps a LlamaModel; other runtimes (the lean GGUF runtime) supply their own.
using NextLogitsFn = std::function<at::Tensor(const int32_t* tokens, int64_t n)>;
GenerateResult generate_with(const NextLogitsFn& step, int64_t seq_len, int64_t vocab, const Tokenizer& tok,
                             const std::string& prompt, const GenerateOptions& opt,
                             const std::function<void(const std::string&)>& on_piece = {});

// on_piece (optional) receives each generated piece as soon as it is decoded (for streaming).
GenerateResult generate(const LlamaModel& model, const Tokenizer& tok, const std::string& prompt,
                        const GenerateOptions& opt, QuantContext* ctx = nullptr,
                        const std::function<void(const std::string&)>& on_piece = {});

}  // namespace catq

#include "llm/generate.h"

#include <torch/torch.h>

#include <chrono>
#include <optional>

#include "core/error.h"

namespace catq {

GenerateResult generate_with(const NextLogitsFn& step, int64_t seq_len, int64_t vocab, const Tokenizer& tok,
                             const std::string& prompt, const GenerateOptions& opt,
                             const std::function<void(const std::string&)>& on_piece) {
  CATQ_CHECK(opt.steps >= 0, Usage, "--steps must be >= 0, got {}", opt.steps);
  CATQ_CHECK(tok.vocab_size() == vocab, Data,
             "tokenizer has {} tokens but the model's vocabulary is {}: wrong tokenizer file?", tok.vocab_size(), vocab);
  auto t0 = std::chrono::steady_clock::now();
  GenerateResult res;
  res.prompt_tokens = tok.encode(prompt, /*bos=*/true, /*eos=*/false);
  const int64_t n_prompt = static_cast<int64_t>(res.prompt_tokens.size());
  CATQ_CHECK(n_prompt < seq_len, Data, "prompt is {} tokens, the model's context is only {}", n_prompt, seq_len);
  const int64_t steps = std::min(opt.steps, seq_len - n_prompt);
  res.stop_reason = steps < opt.steps ? "context" : "steps";
  Sampler sampler(opt.sampler);
  // The whole prompt in one step; only its last position's logits matter.
  at::Tensor logits = step(res.prompt_tokens.data(), n_prompt);
  int32_t prev = res.prompt_tokens.back();
  for (int64_t s = 0; s < steps; ++s) {
    const int32_t next = sampler.sample(logits);
    if (opt.stop_at_eos && (next == tok.bos_id() || next == tok.eos_id())) {
      res.stop_reason = "eos";
      break;
    }
    res.tokens.push_back(next);
    std::string piece = tok.decode_piece(prev, next);
    res.text += piece;
    if (on_piece) on_piece(piece);
    prev = next;
    if (s + 1 < steps) logits = step(&next, 1);
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.tokens_per_s = res.seconds > 0 ? res.tokens.size() / res.seconds : 0;
  return res;
}

GenerateResult generate(const LlamaModel& model, const Tokenizer& tok, const std::string& prompt,
                        const GenerateOptions& opt, QuantContext* ctx,
                        const std::function<void(const std::string&)>& on_piece) {
  torch::NoGradGuard ng;
  SmallModelThreadGuard threads(model);
  std::optional<KVCache> cache;  // sized by the first step (the prompt): prompt + steps positions
  auto opts = at::TensorOptions().dtype(at::kLong).device(model.tok_embeddings.device());
  const NextLogitsFn step = [&](const int32_t* tokens, int64_t n) {
    if (!cache) cache = model.make_cache(1, std::min(model.cfg.seq_len, n + opt.steps));
    std::vector<int64_t> t64(tokens, tokens + n);
    at::Tensor logits = model.forward(at::tensor(t64, opts).view({1, -1}), *cache, ctx);
    return logits[0][n - 1];
  };
  return generate_with(step, model.cfg.seq_len, model.cfg.vocab_size, tok, prompt, opt, on_piece);
}

}  // namespace catq

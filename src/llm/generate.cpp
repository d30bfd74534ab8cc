#include "llm/generate.h"

#include <torch/torch.h>

#include <chrono>

#include "core/error.h"

namespace catq {

GenerateResult generate(const LlamaModel& model, const Tokenizer& tok, const std::string& prompt,
                        const GenerateOptions& opt, QuantContext* ctx,
                        const std::function<void(const std::string&)>& on_piece) {
  CATQ_CHECK(opt.steps >= 0, Usage, "--steps must be >= 0, got {}", opt.steps);
  CATQ_CHECK(tok.vocab_size() == model.cfg.vocab_size, Data,
             "tokenizer has {} tokens but the model's vocabulary is {}: wrong tokenizer file?", tok.vocab_size(),
             model.cfg.vocab_size);
  torch::NoGradGuard ng;
  SmallModelThreadGuard threads(model);
  auto t0 = std::chrono::steady_clock::now();
  GenerateResult res;
  res.prompt_tokens = tok.encode(prompt, /*bos=*/true, /*eos=*/false);
  const int64_t n_prompt = static_cast<int64_t>(res.prompt_tokens.size());
  CATQ_CHECK(n_prompt < model.cfg.seq_len, Data, "prompt is {} tokens, the model's context is only {}", n_prompt,
             model.cfg.seq_len);
  const int64_t steps = std::min(opt.steps, model.cfg.seq_len - n_prompt);
  res.stop_reason = steps < opt.steps ? "context" : "steps";

  KVCache cache = model.make_cache(1, n_prompt + steps);
  Sampler sampler(opt.sampler);
  auto opts = at::TensorOptions().dtype(at::kLong).device(model.tok_embeddings.device());
  std::vector<int64_t> p64(res.prompt_tokens.begin(), res.prompt_tokens.end());
  // The whole prompt in one forward; only its last position's logits matter.
  at::Tensor logits = model.forward(at::tensor(p64, opts).view({1, -1}), cache, ctx);
  int32_t prev = res.prompt_tokens.back();
  for (int64_t s = 0; s < steps; ++s) {
    int32_t next = sampler.sample(logits[0][logits.size(1) - 1]);
    if (opt.stop_at_eos && (next == tok.bos_id() || next == tok.eos_id())) {
      res.stop_reason = "eos";
      break;
    }
    res.tokens.push_back(next);
    std::string piece = tok.decode_piece(prev, next);
    res.text += piece;
    if (on_piece) on_piece(piece);
    prev = next;
    if (s + 1 < steps) logits = model.forward(at::full({1, 1}, next, opts), cache, ctx);
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.tokens_per_s = res.seconds > 0 ? res.tokens.size() / res.seconds : 0;
  return res;
}

}  // namespace catq

// Perplexity of a language model on a text, and how far a quantized model's next-token distribution is
// from the FP model's, under one documented windowing protocol (docs/llm.md).
//
// Protocol (defaults = the stories260K reference in shared/README.md):
//   1. text = first `max_chars` UTF-8 code points (0 = all), encoded WITHOUT BOS -> n tokens t[0..n).
//   2. Windows of `window` (W) positions start at b = 0, S, 2S, ... (S = stride, default W) while the
//      window fits entirely; the tail that does not fill a whole window is not scored.
//      - prepend_bos: input [BOS, t[b] .. t[b+W-2]] predicts t[b] .. t[b+W-1] (needs b + W <= n);
//      - otherwise:   input [t[b] .. t[b+W-1]]      predicts t[b+1] .. t[b+W] (needs b + W + 1 <= n).
//   3. The first window scores all W predictions; later windows only the last S (so with S < W every
//      token is scored once, each with at least W - S tokens of context).
//   4. mean NLL = average of -log p(target) over scored tokens (nats); PPL = exp(mean NLL).
// Reference: 12,000 chars -> 5,774 tokens -> 22 windows of 256 -> 5,632 scored tokens, PPL 4.349.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "llm/tokenizer.h"
#include "llm/llama.h"

namespace catq {

struct PerplexityOptions {
  int64_t window = 256;
  int64_t stride = 0;        // 0 = window (non-overlapping); must be <= window
  bool prepend_bos = true;
  int64_t max_chars = 12000; // 0 = the whole text
  int64_t max_windows = 0;   // 0 = all windows
  int64_t batch = 8;         // windows per forward pass
};

// The token windows of the protocol: inputs/targets [N, W] int64, score [N, W] bool.
struct EvalWindows {
  at::Tensor inputs, targets, score;
  int64_t n_text_tokens = 0;
  int64_t n_chars = 0;
  int64_t n_scored() const;
  int64_t n_windows() const { return inputs.defined() ? inputs.size(0) : 0; }
};

// First max_chars code points of a UTF-8 string (0 = all).
std::string truncate_utf8(const std::string& text, int64_t max_chars);
// The text after its first n code points (n <= 0: the whole text; empty when the text is shorter).
std::string utf8_skip(const std::string& text, int64_t n);
EvalWindows make_eval_windows(const std::vector<int32_t>& tokens, const PerplexityOptions& opt, int32_t bos_id);
EvalWindows make_eval_windows(const Tokenizer& tok, const std::string& text, const PerplexityOptions& opt);

// A model as a function of token windows: [B, T] int64 -> logits [B, T, V].
using LogitsFn = std::function<at::Tensor(const at::Tensor& tokens)>;
LogitsFn model_logits_fn(const LlamaModel& model, QuantContext* ctx = nullptr);

struct PerplexityResult {
  double mean_nll = 0;  // nats per scored token
  double ppl = 0;
  int64_t n_scored = 0, n_windows = 0, n_text_tokens = 0, n_chars = 0;
  double seconds = 0;
};
PerplexityResult perplexity(const LogitsFn& fn, const EvalWindows& w, int64_t batch = 8, const std::string& label = "perplexity");
PerplexityResult perplexity(const LlamaModel& model, const Tokenizer& tok, const std::string& text,
                            const PerplexityOptions& opt = {}, QuantContext* ctx = nullptr);

// Next-token distribution of `test` vs `ref` over the scored positions of the same windows.
struct DistributionComparison {
  double mean_kl = 0;          // mean over tokens of KL(P_ref || P_test), nats
  double max_kl = 0;
  double top1_agreement = 0;   // fraction of positions where both argmaxes agree
  PerplexityResult ref, test;  // perplexity of each on the same tokens
  int64_t n_scored = 0;
  double seconds = 0;
};
DistributionComparison compare_next_token(const LogitsFn& ref, const LogitsFn& test, const EvalWindows& w,
                                          int64_t batch = 8);
DistributionComparison compare_next_token(const LlamaModel& model, QuantContext* ref_ctx, QuantContext* test_ctx,
                                          const Tokenizer& tok, const std::string& text,
                                          const PerplexityOptions& opt = {});

}  // namespace catq

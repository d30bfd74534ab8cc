#include "eval/perplexity.h"

#include <torch/torch.h>

#include <chrono>

#include "core/error.h"
#include "core/progress.h"

namespace catq {

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int64_t EvalWindows::n_scored() const { return score.defined() ? score.sum().item<int64_t>() : 0; }

std::string truncate_utf8(const std::string& text, int64_t max_chars) {
  if (max_chars <= 0) return text;
  int64_t chars = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<uint8_t>(text[i]) & 0xC0) != 0x80) {  // first byte of a code point
      if (chars == max_chars) return text.substr(0, i);
      ++chars;
    }
  }
  return text;
}

std::string utf8_skip(const std::string& text, int64_t n) {
  if (n <= 0) return text;
  const size_t b = truncate_utf8(text, n).size();
  return text.substr(std::min(b, text.size()));
}

static int64_t count_utf8(const std::string& s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<uint8_t>(c) & 0xC0) != 0x80;
  return n;
}

EvalWindows make_eval_windows(const std::vector<int32_t>& tokens, const PerplexityOptions& opt, int32_t bos_id) {
  const int64_t W = opt.window, S = opt.stride > 0 ? opt.stride : opt.window, n = tokens.size();
  CATQ_CHECK(W >= 2, Usage, "perplexity window must be >= 2, got {}", W);
  CATQ_CHECK(S <= W, Usage, "perplexity stride {} must not exceed the window {}", S, W);
  CATQ_CHECK(!opt.prepend_bos || bos_id >= 0, Usage, "prepend BOS requested but the tokenizer has no BOS");
  const int64_t need = opt.prepend_bos ? W : W + 1;  // tokens a window spans
  std::vector<int64_t> in, tg;
  std::vector<uint8_t> sc;
  int64_t N = 0;
  for (int64_t b = 0; b + need <= n; b += S) {
    if (opt.max_windows > 0 && N == opt.max_windows) break;
    for (int64_t j = 0; j < W; ++j) {
      if (opt.prepend_bos) {
        in.push_back(j == 0 ? bos_id : tokens[b + j - 1]);
        tg.push_back(tokens[b + j]);
      } else {
        in.push_back(tokens[b + j]);
        tg.push_back(tokens[b + j + 1]);
      }
      sc.push_back(N == 0 || j >= W - S);
    }
    ++N;
  }
  if (N == 0)
    fail(ErrorKind::Data, "text gives {} tokens, fewer than one evaluation window of {} (+{})", n, W,
         opt.prepend_bos ? 0 : 1);
  EvalWindows w;
  w.inputs = at::tensor(in, at::kLong).view({N, W});
  w.targets = at::tensor(tg, at::kLong).view({N, W});
  w.score = at::tensor(std::vector<int64_t>(sc.begin(), sc.end()), at::kLong).view({N, W}).to(at::kBool);
  w.n_text_tokens = n;
  return w;
}

EvalWindows make_eval_windows(const Tokenizer& tok, const std::string& text, const PerplexityOptions& opt) {
  std::string t = truncate_utf8(text, opt.max_chars);
  EvalWindows w = make_eval_windows(tok.encode(t, false, false), opt, tok.bos_id());
  w.n_chars = count_utf8(t);
  return w;
}

LogitsFn model_logits_fn(const LlamaModel& model, QuantContext* ctx) {
  return [&model, ctx](const at::Tensor& tokens) { return model.forward(tokens, ctx); };
}

PerplexityResult perplexity(const LogitsFn& fn, const EvalWindows& w, int64_t batch, const std::string& label) {
  torch::NoGradGuard ng;
  const double t0 = now_s();
  const int64_t N = w.n_windows();
  batch = std::max<int64_t>(1, batch);
  double nll_sum = 0;
  Progress prog(label, N);
  for (int64_t i = 0; i < N; i += batch) {
    int64_t b = std::min(batch, N - i);
    at::Tensor logits = fn(w.inputs.narrow(0, i, b));
    at::Tensor lp = at::log_softmax(logits.to(at::kCPU, at::kDouble), -1);
    at::Tensor nll = -lp.gather(-1, w.targets.narrow(0, i, b).unsqueeze(-1)).squeeze(-1);
    nll_sum += nll.masked_select(w.score.narrow(0, i, b)).sum().item<double>();
    prog.step(b);
  }
  prog.finish();
  PerplexityResult r;
  r.n_scored = w.n_scored();
  r.n_windows = N;
  r.n_text_tokens = w.n_text_tokens;
  r.n_chars = w.n_chars;
  r.mean_nll = nll_sum / std::max<int64_t>(1, r.n_scored);
  r.ppl = std::exp(r.mean_nll);
  r.seconds = now_s() - t0;
  return r;
}

PerplexityResult perplexity(const LlamaModel& model, const Tokenizer& tok, const std::string& text,
                            const PerplexityOptions& opt, QuantContext* ctx) {
  CATQ_CHECK(tok.vocab_size() == model.cfg.vocab_size, Data,
             "tokenizer has {} tokens but the model's vocabulary is {}: wrong tokenizer file?", tok.vocab_size(),
             model.cfg.vocab_size);
  CATQ_CHECK(opt.window <= model.cfg.seq_len, Usage, "perplexity window {} exceeds the model context {}", opt.window,
             model.cfg.seq_len);
  EvalWindows w = make_eval_windows(tok, text, opt);
  SmallModelThreadGuard threads(model);
  return perplexity(model_logits_fn(model, ctx), w, opt.batch);
}

DistributionComparison compare_next_token(const LogitsFn& ref, const LogitsFn& test, const EvalWindows& w,
                                          int64_t batch) {
  torch::NoGradGuard ng;
  const double t0 = now_s();
  const int64_t N = w.n_windows();
  batch = std::max<int64_t>(1, batch);
  double kl_sum = 0, kl_max = 0, nll_ref = 0, nll_test = 0;
  int64_t agree = 0;
  Progress prog("KL vs reference", N);
  for (int64_t i = 0; i < N; i += batch) {
    int64_t b = std::min(batch, N - i);
    at::Tensor x = w.inputs.narrow(0, i, b), tg = w.targets.narrow(0, i, b).unsqueeze(-1);
    at::Tensor m = w.score.narrow(0, i, b);
    at::Tensor lr = at::log_softmax(ref(x).to(at::kCPU, at::kDouble), -1);
    at::Tensor lt = at::log_softmax(test(x).to(at::kCPU, at::kDouble), -1);
    at::Tensor kl = (lr.exp() * (lr - lt)).sum(-1).masked_select(m);  // [scored]
    kl_sum += kl.sum().item<double>();
    if (kl.numel()) kl_max = std::max(kl_max, kl.max().item<double>());
    agree += (lr.argmax(-1) == lt.argmax(-1)).masked_select(m).sum().item<int64_t>();
    nll_ref -= lr.gather(-1, tg).squeeze(-1).masked_select(m).sum().item<double>();
    nll_test -= lt.gather(-1, tg).squeeze(-1).masked_select(m).sum().item<double>();
    prog.step(b);
  }
  prog.finish();
  DistributionComparison r;
  r.n_scored = w.n_scored();
  const double n = std::max<int64_t>(1, r.n_scored);
  r.mean_kl = kl_sum / n;
  r.max_kl = kl_max;
  r.top1_agreement = agree / n;
  for (auto [res, sum] : {std::pair{&r.ref, nll_ref}, std::pair{&r.test, nll_test}}) {
    res->mean_nll = sum / n;
    res->ppl = std::exp(res->mean_nll);
    res->n_scored = r.n_scored;
    res->n_windows = N;
    res->n_text_tokens = w.n_text_tokens;
    res->n_chars = w.n_chars;
  }
  r.seconds = now_s() - t0;
  r.ref.seconds = r.test.seconds = r.seconds;  // both were computed in the same pass
  return r;
}

DistributionComparison compare_next_token(const LlamaModel& model, QuantContext* ref_ctx, QuantContext* test_ctx,
                                          const Tokenizer& tok, const std::string& text,
                                          const PerplexityOptions& opt) {
  CATQ_CHECK(tok.vocab_size() == model.cfg.vocab_size, Data,
             "tokenizer has {} tokens but the model's vocabulary is {}", tok.vocab_size(), model.cfg.vocab_size);
  EvalWindows w = make_eval_windows(tok, text, opt);
  SmallModelThreadGuard threads(model);
  return compare_next_token(model_logits_fn(model, ref_ctx), model_logits_fn(model, test_ctx), w, opt.batch);
}

}  // namespace catq

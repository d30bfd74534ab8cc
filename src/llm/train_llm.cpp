#include "llm/train_llm.h"

#include "llm/llama_tensors.h"

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "quant/quantizer.h"

namespace catq {

LlmTrainOptions::LlmTrainOptions() {
  optim.kind = OptimKind::AdamW;
  optim.beta2 = 0.95;
  optim.weight_decay = 0.1;
  schedule.shape = LrShape::Cosine;
  schedule.base_lr = 1e-3;
  schedule.warmup_frac = 0.05;
  schedule.final_ratio = 0.1;
}

at::Tensor encode_stream(const Tokenizer& tok, const std::string& text) {
  std::vector<int32_t> t = tok.encode(text, false, false);
  return at::tensor(std::vector<int64_t>(t.begin(), t.end()), at::kLong);
}

LlamaModel init_llama(const LlamaConfig& cfg, uint64_t seed) {
  LlamaModel m = LlamaModel::random(cfg, seed);
  at::NoGradGuard ng;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed + 1);
  auto normal = [&](const at::Tensor& like, double std) { return at::normal(0.0, std, like.sizes(), gen, like.options()); };
  const double resid = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg.n_layers));
  m.tok_embeddings = normal(m.tok_embeddings, 0.02);
  for (auto& b : m.blocks) {
    b.wq = normal(b.wq, 0.02), b.wk = normal(b.wk, 0.02), b.wv = normal(b.wv, 0.02);
    b.w1 = normal(b.w1, 0.02), b.w3 = normal(b.w3, 0.02);
    b.wo = normal(b.wo, resid), b.w2 = normal(b.w2, resid);
    b.attn_norm = at::ones_like(b.attn_norm), b.ffn_norm = at::ones_like(b.ffn_norm);
    for (at::Tensor* t : {&b.bq, &b.bk, &b.bv})
      if (t->defined()) *t = at::zeros_like(*t);
    for (at::Tensor* t : {&b.q_norm, &b.k_norm})
      if (t->defined()) *t = at::ones_like(*t);
  }
  m.norm = at::ones_like(m.norm);
  m.output = cfg.tied_head ? m.tok_embeddings : normal(m.output, 0.02);
  return m;
}

std::vector<at::Tensor> llama_parameters(LlamaModel& m) {
  std::vector<at::Tensor> p;
  auto add = [&](at::Tensor& t) {
    t = t.detach().requires_grad_(true);
    p.push_back(t);
  };
  add(m.tok_embeddings);
  for (auto& b : m.blocks)
    for (const LlamaBlockTensor& t : llama_block_tensors())
      if (t.present(m.cfg)) add(b.*t.member);
  add(m.norm);
  if (m.cfg.tied_head) m.output = m.tok_embeddings;
  else add(m.output);
  return p;
}

std::vector<StepRecord> train_llama(LlamaModel& m, const at::Tensor& stream, int32_t bos, const LlmTrainOptions& o,
                                    QuantContext* ctx) {
  const int64_t n = stream.numel();
  CATQ_CHECK(o.seq >= 2 && o.seq <= m.cfg.seq_len, Config, "training window {} must be in 2..{} (the model context)",
             o.seq, m.cfg.seq_len);
  CATQ_CHECK(n > o.seq, Data, "training text has {} tokens, fewer than one window of {}", n, o.seq);
  CATQ_CHECK(o.batch >= 1 && o.steps >= 1, Config, "training needs batch >= 1 and steps >= 1");
  std::vector<at::Tensor> params = llama_parameters(m);
  at::Generator gen = make_generator(o.seed * 0x9E3779B97F4A7C15ull + 5);
  const at::Tensor s = stream.to(at::kLong);
  BatchFn batch_fn = [&](int64_t) {
    at::Tensor start = at::randint(0, n - o.seq + 1, {o.batch}, gen, at::TensorOptions().dtype(at::kLong));
    at::Tensor idx = start.unsqueeze(1) + at::arange(o.seq, at::kLong).unsqueeze(0);  // [B, seq]
    at::Tensor tgt = s.index({idx});
    at::Tensor inp = at::cat({at::full({o.batch, 1}, bos, at::kLong), tgt.slice(1, 0, o.seq - 1)}, 1);
    return Batch{inp, tgt};
  };
  LossFn loss_fn = [&](const Batch& b) {
    at::Tensor logits = m.forward(b.input, ctx);
    return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), b.target.reshape({-1}));
  };
  StepOptions so;
  so.optim = o.optim;
  so.schedule = o.schedule;
  so.grad_clip_norm = o.grad_clip;
  so.seed = o.seed;
  so.first_step = o.first_step;
  so.eval_every = o.eval_every;
  so.on_eval = o.on_eval;
  so.label = o.label;
  so.carry = o.carry;
  std::vector<ParamGroup> groups = {{params}};
  for (const auto& g : o.extra_groups) groups.push_back(g);
  auto rec = train_steps(o.steps, batch_fn, loss_fn, groups, so);
  at::NoGradGuard ng;
  for (auto& p : params) p.requires_grad_(false);
  return rec;
}

double stream_nll(const LlamaModel& m, const at::Tensor& stream, int32_t bos, int64_t seq, int64_t max_windows,
                  QuantContext* ctx) {
  const int64_t n = stream.numel();
  CATQ_CHECK(n >= seq, Data, "evaluation text has {} tokens, fewer than one window of {}", n, seq);
  at::NoGradGuard ng;
  double total = 0;
  int64_t count = 0;
  for (int64_t w = 0; w < max_windows && (w + 1) * seq <= n; ++w) {
    at::Tensor tgt = stream.slice(0, w * seq, (w + 1) * seq).to(at::kLong).unsqueeze(0);
    at::Tensor inp = at::cat({at::full({1, 1}, bos, at::kLong), tgt.slice(1, 0, seq - 1)}, 1);
    at::Tensor logits = m.forward(inp, ctx);
    total += at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), tgt.reshape({-1}), {},
                                    at::Reduction::Sum).item<double>();
    count += seq;
  }
  return total / static_cast<double>(count);
}

}  // namespace catq

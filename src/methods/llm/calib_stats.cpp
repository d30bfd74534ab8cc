#include "methods/llm/calib_stats.h"

#include <torch/torch.h>

#include "core/error.h"
#include "core/progress.h"
#include "quant/quant_context.h"

namespace catq {

namespace {

constexpr int kPerBlock = 7;  // layer_infos(): q, k, v, o, gate, up, down per block, then the head

void accumulate(PositionStats& s, const at::Tensor& x2d, int64_t block) {
  at::Tensor x = x2d.detach().to(at::kDouble);
  const int64_t d = x.size(1);
  at::Tensor g = gram_blocks(x, block > 0 && block < d && d % block == 0 ? block : 0);
  at::Tensor m = x.abs().amax(0).to(at::kFloat);
  s.sigma = s.sigma.defined() ? s.sigma + g : g;
  s.absmax = s.absmax.defined() ? at::maximum(s.absmax, m) : m;
  s.count += x.size(0);
}

// Records the inputs of the transform positions (the q, gate, down and o layers' inputs).
// (into out[block], or into *one for every block when `one` is set).
class StatsContext : public QuantContext {
 public:
  StatsContext(const LlamaConfig& c, std::vector<BlockStats>& out, int64_t block)
      : cfg_(c), out_(&out), block_(block) {}
  StatsContext(const LlamaConfig& c, BlockStats& one, int64_t block) : cfg_(c), one_(&one), block_(block) {}
  at::Tensor weight(const LayerInfo&, const at::Tensor& w) override { return w; }
  at::Tensor input(const LayerInfo& l, const at::Tensor& x) override {
    const int64_t blk = l.index / kPerBlock, k = l.index % kPerBlock;
    if (blk >= cfg_.n_layers) return x;  // the LM head
    BlockStats& b = one_ ? *one_ : (*out_)[blk];
    const at::Tensor x2 = x.reshape({-1, x.size(-1)});
    if (k == 0) accumulate(b.attn, x2, block_);
    else if (k == 4) accumulate(b.ffn, x2, block_);
    else if (k == 6) accumulate(b.down, x2, block_);
    else if (k == 3) {
      const int64_t hd = cfg_.hd(), kv = cfg_.n_kv_heads, rep = cfg_.n_heads / kv;
      at::Tensor heads = x2.reshape({-1, kv, rep, hd});
      if (b.o.empty()) b.o.resize(kv);
      for (int64_t g = 0; g < kv; ++g) accumulate(b.o[g], heads.select(1, g).reshape({-1, hd}), block_);
    }
    return x;
  }

 private:
  const LlamaConfig& cfg_;
  std::vector<BlockStats>* out_ = nullptr;
  BlockStats* one_ = nullptr;
  int64_t block_ = 0;
};

void finish(PositionStats& s) {
  if (s.count > 0) s.sigma = s.sigma / static_cast<double>(s.count);
}
void finish(BlockStats& b) {
  finish(b.attn);
  finish(b.ffn);
  finish(b.down);
  for (auto& o : b.o) finish(o);
}

}  // namespace

std::vector<BlockStats> collect_llama_stats(const LlamaModel& m, const at::Tensor& tokens, int64_t batch,
                                            int64_t block) {
  CATQ_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.size(0) > 0, Data,
             "LLM statistics: need token windows [N, T], got none");
  std::vector<BlockStats> out(m.cfg.n_layers);
  StatsContext ctx(m.cfg, out, block);
  m.bind(&ctx);
  at::NoGradGuard ng;
  Progress bar("statistics", tokens.size(0));
  for (int64_t i = 0; i < tokens.size(0); i += batch) {
    at::Tensor t = tokens.slice(0, i, i + batch);
    m.forward(t, &ctx);
    bar.step(t.size(0));
  }
  bar.finish();
  for (auto& b : out) finish(b);
  return out;
}

BlockStats collect_block_stats(const LlamaModel& m, int64_t l, const std::vector<at::Tensor>& states,
                               int64_t block) {
  CATQ_CHECK(!states.empty(), Data, "LLM statistics of block {}: no calibration states", l);
  BlockStats b;
  StatsContext ctx(m.cfg, b, block);
  at::NoGradGuard ng;
  for (const at::Tensor& x : states) m.block_forward(l, x, &ctx);
  finish(b);
  return b;
}

at::Tensor diagonal_block(const at::Tensor& sigma, int64_t i, int64_t k) {
  if (sigma.dim() == 2) return sigma.slice(0, i, i + k).slice(1, i, i + k);
  const int64_t kb = sigma.size(1);
  CATQ_CHECK(sigma.dim() == 3 && k >= 1 && kb % k == 0 && i % k == 0, Usage,
             "statistics: a {}×{} block at {} is not inside the stored {}×{} diagonal blocks", k, k, i, kb, kb);
  return sigma[i / kb].slice(0, i % kb, i % kb + k).slice(1, i % kb, i % kb + k);
}

at::Tensor sigma_diagonal(const at::Tensor& sigma) {
  return sigma.dim() == 2 ? sigma.diagonal() : sigma.diagonal(0, 1, 2).reshape({-1});
}

const PositionStats& stats_at(const BlockStats& b, TransformPosition p, int64_t g) {
  switch (p) {
    case TransformPosition::Attn: return b.attn;
    case TransformPosition::Ffn: return b.ffn;
    case TransformPosition::Down: return b.down;
    default: return b.o.at(g);
  }
}

void check_llama_stats(const std::vector<BlockStats>& s, const LlamaModel& m) {
  CATQ_CHECK(static_cast<int64_t>(s.size()) == m.cfg.n_layers && !s.empty() && s[0].attn.count > 0, Usage,
             "LLM transform: calibration statistics are missing or belong to another model");
}

}  // namespace catq

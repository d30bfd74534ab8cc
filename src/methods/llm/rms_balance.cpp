#include "methods/llm/rms_balance.h"

#include <ATen/ATen.h>

#include "methods/llm/transform_ops.h"

namespace catq {

void apply_rms_balance_block(LlamaModel& m, int64_t l, const BlockStats& stats) {
  for_each_site_in_block(m.cfg, l, [&](const TransformSite& t) {
    const PositionStats& s = stats_at(stats, t.pos, t.group);
    at::Tensor ex2 = sigma_diagonal(s.sigma).clamp_min(1e-12);                                   // E[x_i²]
    at::Tensor w2 = sigma_diagonal(consumer_gram(m, t.layer, t.pos, t.group, 1)).clamp_min(1e-12);  // Σ_j W_ji²
    apply_diagonal(m, t.layer, t.pos, (w2 / ex2).pow(0.25), t.kv_head());                  // x_i ← m_i·x_i
  });
}

void apply_rms_balance(LlamaModel& m, const std::vector<BlockStats>& stats) {
  check_llama_stats(stats, m);
  for (int64_t l = 0; l < m.cfg.n_layers; ++l) apply_rms_balance_block(m, l, stats[l]);
}

}  // namespace catq

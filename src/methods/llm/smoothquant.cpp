#include "methods/llm/smoothquant.h"

#include <ATen/ATen.h>

#include "methods/llm/transform_ops.h"

namespace catq {

void apply_smoothquant_block(LlamaModel& m, int64_t l, const BlockStats& stats, double alpha) {
  for_each_site_in_block(m.cfg, l, [&](const TransformSite& t) {
    const PositionStats& s = stats_at(stats, t.pos, t.group);
    at::Tensor ax = s.absmax.clamp_min(1e-5), aw = consumer_absmax(m, t.layer, t.pos, t.group).clamp_min(1e-5);
    at::Tensor sc = ax.pow(alpha) / aw.pow(1.0 - alpha);  // s_j = max|x_j|^α / max_i|W_ij|^(1−α)
    apply_diagonal(m, t.layer, t.pos, 1.0 / sc, t.kv_head());  // x ← x/s
  });
}

void apply_smoothquant(LlamaModel& m, const std::vector<BlockStats>& stats, double alpha) {
  check_llama_stats(stats, m);
  for (int64_t l = 0; l < m.cfg.n_layers; ++l) apply_smoothquant_block(m, l, stats[l], alpha);
}

}  // namespace catq

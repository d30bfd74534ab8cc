#include "methods/llm/block_cat.h"

#include <cmath>

#include "core/error.h"
#include "methods/llm/rms_balance.h"
#include "methods/llm/transform_ops.h"

namespace catq {

namespace {

at::Tensor sym_pow(const at::Tensor& a, double p) {
  auto [evals, evecs] = at::linalg_eigh(a);
  at::Tensor e = evals.clamp_min(1e-300).pow(p);
  return at::matmul(evecs * e.unsqueeze(0), evecs.t());
}

at::Tensor damp(const at::Tensor& s, double eps) {
  const int64_t d = s.size(0);
  const double tr = s.diagonal().sum().item<double>();
  const double add = eps * (tr > 0 ? tr / static_cast<double>(d) : 1.0);
  return s + add * at::eye(d, s.options());
}

}  // namespace

at::Tensor geometric_mean(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor ah = sym_pow(a, 0.5), aih = sym_pow(a, -0.5);
  at::Tensor mid = at::matmul(at::matmul(aih, b), aih);
  mid = 0.5 * (mid + mid.t());
  return at::matmul(at::matmul(ah, sym_pow(mid, 0.5)), ah);
}

at::Tensor block_alignment_transform(const at::Tensor& sigma_x, const at::Tensor& sigma_w, int64_t k, double damping) {
  const at::Tensor blocks = block_alignment_blocks(sigma_x, sigma_w, k, damping);
  const int64_t d = blocks.size(0) * k;
  at::Tensor m = at::zeros({d, d}, at::kDouble);
  for (int64_t i = 0; i < blocks.size(0); ++i) m.slice(0, i * k, i * k + k).slice(1, i * k, i * k + k).copy_(blocks[i]);
  return m;
}

at::Tensor block_alignment_blocks(const at::Tensor& sigma_x, const at::Tensor& sigma_w, int64_t k, double damping) {
  const int64_t d = sigma_diagonal(sigma_x).numel();
  CATQ_CHECK(k >= 1 && d % k == 0, Config, "block CAT: block size {} does not divide the dimension {}", k, d);
  CATQ_CHECK(damping >= 0 && std::isfinite(damping), Config, "block CAT: damping {} must be >= 0", damping);
  at::Tensor sx = sigma_x.to(at::kDouble), sw = sigma_w.to(at::kDouble);
  at::Tensor m = at::empty({d / k, k, k}, at::kDouble);
  for (int64_t i = 0; i < d; i += k) {
    at::Tensor bx = damp(diagonal_block(sx, i, k), damping);
    at::Tensor bw = damp(diagonal_block(sw, i, k), damping);
    bx = 0.5 * (bx + bx.t());
    bw = 0.5 * (bw + bw.t());
    at::Tensor g = geometric_mean(bw, at::linalg_inv(bx));
    m[i / k].copy_(sym_pow(0.5 * (g + g.t()), 0.5));
  }
  CATQ_CHECK(at::isfinite(m).all().item<bool>(), Data, "block CAT: the transform is not finite (singular statistics; "
             "raise the damping)");
  return m;
}

namespace {
// The o transform is per head: a block larger than the head (a multiple of it) is the whole head.
int64_t block_at(const LlamaConfig& c, TransformPosition p, int64_t k) {
  return p == TransformPosition::O && k > c.hd() && k % c.hd() == 0 ? c.hd() : k;
}
}  // namespace

void check_block_cat(const LlamaConfig& c, int64_t k) {
  for (TransformPosition p : {TransformPosition::Attn, TransformPosition::Ffn, TransformPosition::Down,
                              TransformPosition::O})
    CATQ_CHECK(position_dim(c, p) % block_at(c, p, k) == 0, Config,
               "block CAT: block size {} does not divide the {} dimension {} "
               "(choose k dividing dim {} and hidden_dim {}, and dividing or a multiple of the head size {})",
               k, to_string(p), position_dim(c, p), c.dim, c.hidden_dim, c.hd());
}

void apply_block_cat_block(LlamaModel& m, int64_t l, const BlockStats& stats, int64_t k, double damping,
                           bool hadamard_after, uint64_t seed) {
  const LlamaConfig& c = m.cfg;
  if (k == 1 && !hadamard_after) {  // M̂ of 1×1 blocks is RMS balance's diagonal
    apply_rms_balance_block(m, l, stats);
    return;
  }
  for_each_site_in_block(c, l, [&](const TransformSite& t) {
    const PositionStats& s = stats_at(stats, t.pos, t.group);
    const int64_t kb = block_at(c, t.pos, k), d = position_dim(c, t.pos);
    at::Tensor sw = consumer_gram(m, t.layer, t.pos, t.group, kb);  // its diagonal kb×kb blocks only
    const at::Tensor blocks = block_alignment_blocks(s.sigma, sw, kb, damping);  // M̂ = (Σ_w # Σ_x⁻¹)^{1/2}
    if (t.pos == TransformPosition::O) {  // offline through V/O: a dense hd×hd matrix
      at::Tensor mt = block_alignment_transform(s.sigma, sw, kb, damping);
      if (hadamard_after) mt = at::matmul(hadamard_matrix(d, false, seed + 30), mt);  // H·M̂
      apply_transform(m, t.layer, t.pos, mt, t.kv_head());
    } else {  // online, kept structured: M̂ block-diagonal, then H
      std::vector<OnlineFactor> f = {OnlineFactor::block_diagonal(blocks)};
      if (hadamard_after) f.push_back(hadamard_factor(d, false, seed + 30));
      apply_transform(m, t.layer, t.pos, f);
    }
  });
}

void apply_block_cat(LlamaModel& m, const std::vector<BlockStats>& stats, int64_t k, double damping,
                     bool hadamard_after, uint64_t seed) {
  check_llama_stats(stats, m);
  check_block_cat(m.cfg, k);
  for (int64_t l = 0; l < m.cfg.n_layers; ++l) apply_block_cat_block(m, l, stats[l], k, damping, hadamard_after, seed);
}

}  // namespace catq

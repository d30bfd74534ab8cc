#include "methods/llm/quarot.h"

#include <ATen/ATen.h>

#include "methods/llm/transform_ops.h"

namespace catq {

at::Tensor quarot_residual_rotation(const LlamaConfig& c, RotationKind kind, uint64_t seed) {
  return kind == RotationKind::Hadamard ? hadamard_matrix(c.dim, true, seed) : random_orthogonal(c.dim, seed);
}

void apply_quarot_ends(LlamaModel& m, const at::Tensor& q) {
  fold_rmsnorm_head(m);
  rotate_residual_ends(m, q);
}

void apply_quarot_block(LlamaModel& m, int64_t l, const at::Tensor& q, RotationKind kind, uint64_t seed) {
  const LlamaConfig& c = m.cfg;
  const bool hadamard = kind == RotationKind::Hadamard;
  fold_rmsnorm_block(m, l);
  rotate_residual_block(m, l, q);
  // The online Hadamard before down_proj stays structured (fast Walsh–Hadamard ⊗ a small odd factor).
  if (hadamard) apply_transform(m, l, TransformPosition::Down, {hadamard_factor(c.hidden_dim, false, seed + 10)});
  else apply_transform(m, l, TransformPosition::Down, random_orthogonal(c.hidden_dim, seed + 10 + l));
  apply_transform(m, l, TransformPosition::O,  // every KV head
                  hadamard ? hadamard_matrix(c.hd(), false, seed + 20) : random_orthogonal(c.hd(), seed + 20 + l));
}

void apply_quarot_offline(LlamaModel& m, RotationKind kind, uint64_t seed) {
  const at::Tensor q = quarot_residual_rotation(m.cfg, kind, seed);
  apply_quarot_ends(m, q);
  for (int64_t l = 0; l < m.cfg.n_layers; ++l) {
    fold_rmsnorm_block(m, l);
    rotate_residual_block(m, l, q);
    apply_transform(m, l, TransformPosition::O,  // every KV head, as apply_quarot_block
                    kind == RotationKind::Hadamard ? hadamard_matrix(m.cfg.hd(), false, seed + 20)
                                                   : random_orthogonal(m.cfg.hd(), seed + 20 + l));
  }
}

void apply_quarot(LlamaModel& m, RotationKind kind, uint64_t seed) {
  const at::Tensor q = quarot_residual_rotation(m.cfg, kind, seed);
  apply_quarot_ends(m, q);
  for (int64_t l = 0; l < m.cfg.n_layers; ++l) apply_quarot_block(m, l, q, kind, seed);
}

}  // namespace catq

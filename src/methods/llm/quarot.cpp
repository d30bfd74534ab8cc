#include "methods/llm/quarot.h"

#include <ATen/ATen.h>

#include "methods/llm/transform_ops.h"

namespace catq {

void apply_quarot(LlamaModel& m, RotationKind kind, uint64_t seed) {
  const LlamaConfig& c = m.cfg;
  const int64_t L = c.n_layers, hd = c.hd();
  const bool hadamard = kind == RotationKind::Hadamard;
  fold_rmsnorm_weights(m);
  rotate_residual(m, hadamard ? hadamard_matrix(c.dim, true, seed) : random_orthogonal(c.dim, seed));
  for (int64_t l = 0; l < L; ++l) {
    apply_transform(m, l, TransformPosition::Down,
                    hadamard ? hadamard_matrix(c.hidden_dim, false, seed + 10)
                             : random_orthogonal(c.hidden_dim, seed + 10 + l));
    apply_transform(m, l, TransformPosition::O,  // every KV head
                    hadamard ? hadamard_matrix(hd, false, seed + 20) : random_orthogonal(hd, seed + 20 + l));
  }
}

}  // namespace catq

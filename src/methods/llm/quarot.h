// QuaRot and random rotation (methods.md §4): RMSNorm weights folded into the consumers, the residual stream
// rotated by Q (randomized Hadamard or random orthogonal, D×D), an online Hadamard before ffn_down, per-head
// Hadamards folded through V/O (methods/llm/transform_ops.h). Changes concentration, never alignment.
// Needs no calibration statistics.
#pragma once
#include <cstdint>

#include "llm/llama.h"

namespace catq {

enum class RotationKind {
  Hadamard,          // quarot: randomized Hadamard Q (seed), plain Hadamards (seed + 10, seed + 20) in every block
  RandomOrthogonal,  // rotation: random orthogonal Q (seed) and, in block l, fresh ones (seed + 10 + l, seed + 20 + l)
};

// Applies QuaRot (kind Hadamard) or the random-orthogonal rotation in place.
void apply_quarot(LlamaModel& m, RotationKind kind, uint64_t seed);
// The same in pieces, for block-by-block pipelines: apply_quarot == ends, then every block, with Q the residual
// rotation (the ends fold the final RMSNorm into the head, which unties it, and rotate embeddings and head).
at::Tensor quarot_residual_rotation(const LlamaConfig& c, RotationKind kind, uint64_t seed);
void apply_quarot_ends(LlamaModel& m, const at::Tensor& q);
void apply_quarot_block(LlamaModel& m, int64_t l, const at::Tensor& q, RotationKind kind, uint64_t seed);

// The part of QuaRot / the random rotation that is exact in an unchanged Llama graph (llama.cpp's): the RMSNorm
// weights folded into their consumers, the residual rotation Q (embeddings, head, every block's input and output
// linears; the final RMSNorm folded into the head, which unties it) and the per-head rotation through V/O. The online
// rotation before ffn_down is left out: llama.cpp's graph has no place to run it. The model computes the same
// function (up to float rounding) with differently distributed weights.
void apply_quarot_offline(LlamaModel& m, RotationKind kind, uint64_t seed);

}  // namespace catq

// Applying function-preserving transforms to a Llama model (methods.md §4): the positions where a transform acts,
// the statistics of their consumers' weights, diagonal and full transforms, RMSNorm folding, residual rotation,
// and the orthogonal matrices the methods use.
//
// Positions where a transform acts, per block (y = (W T⁻¹)(T x)):
//   attn   input of q/k/v after attn_norm (one transform shared by the three consumers)
//   ffn    input of gate/up after ffn_norm (shared)
//   down   input of ffn_down
//   o      input of attn_output, per KV head: folded offline through V (W_v,g ← T_g W_v,g for KV head g and
//          W_o,h ← W_o,h T_g⁻¹ for each query head h reading it), so it costs nothing at run time
// Diagonal transforms (SmoothQuant, block CAT with k = 1) fold offline everywhere: attn/ffn into the RMSNorm
// weights, down into the rows of ffn_up (silu(g)·(u·s) = (silu(g)·u)·s). Full transforms at attn / ffn / down are
// online (LlamaBlock::attn_in / ffn_in / down_in), kept as structured factors (llm/online_transform.h).
//
// Hadamard of size n = 2^a·m (m odd): Sylvester H_{2^a} (fast Walsh–Hadamard) ⊗ Q_m with Q_m a seeded random
// orthogonal matrix when m > 1 (true Hadamard matrices of such orders need stored tables), normalised to be
// orthogonal; "randomized" multiplies columns by seeded random signs.
#pragma once
#include <cstdint>
#include <functional>

#include <ATen/ATen.h>

#include "llm/llama.h"

namespace catq {

// ---- Positions ---------------------------------------------------------------------------------------------
enum class TransformPosition { Attn, Ffn, Down, O };
const char* to_string(TransformPosition p);
// Size of the vectors a transform at p acts on: dim (attn, ffn), hidden_dim (down), the head size (o).
int64_t position_dim(const LlamaConfig& c, TransformPosition p);

// One place a per-position method acts: block `layer`, position `pos`, KV-head group `group` (0 except at O).
struct TransformSite {
  int64_t layer = 0;
  TransformPosition pos = TransformPosition::Attn;
  int64_t group = 0;
  // The kv_head argument of apply_diagonal / apply_transform: the group at O, -1 elsewhere.
  int64_t kv_head() const { return pos == TransformPosition::O ? group : -1; }
};
// Calls f for every site of the model in order: blocks l = 0..n_layers−1 outermost, in each block Attn, Ffn,
// Down, then O once per KV head g = 0..n_kv_heads−1. f may transform the model; later sites see the result
// (e.g. the O transform rewrites W_v after the attn one read it), so this order is part of every method's numerics.
void for_each_site(const LlamaConfig& c, const std::function<void(const TransformSite&)>& f);
// The sites of block l only, in the same order (block-by-block pipelines: for_each_site == this for l = 0, 1, ...).
void for_each_site_in_block(const LlamaConfig& c, int64_t l, const std::function<void(const TransformSite&)>& f);

// ---- The consumers' weights -------------------------------------------------------------------------------
// Diagonal blocks [d/k, k, k] of XᵀX for rows X [N, d], k dividing d (Error(Usage) otherwise); k = 0 or k ≥ d
// gives the full [d, d].
at::Tensor gram_blocks(const at::Tensor& x, int64_t k);
// The Gram matrix Σ_w = Σ over the consumers of WᵀW at a position of block l (for O: of KV head g), double;
// block > 0 (dividing the position's dimension) gives only its diagonal blocks [d/block, block, block].
at::Tensor consumer_gram(const LlamaModel& m, int64_t l, TransformPosition p, int64_t kv_head = 0, int64_t block = 0);
// Column j of the consumers' weights: max |W_ij| over the rows of every consumer (for O: of KV head g).
at::Tensor consumer_absmax(const LlamaModel& m, int64_t l, TransformPosition p, int64_t kv_head = 0);

// ---- Applying transforms ----------------------------------------------------------------------------------
// Diagonal scaling x_i ← d_i·x_i at a position, folded offline (see the header comment).
void apply_diagonal(LlamaModel& m, int64_t l, TransformPosition p, const at::Tensor& d, int64_t kv_head = -1);
// Full transform x ← T x at attn / ffn / down (online, composed with any existing one) or o (per KV head,
// offline through V/O; kv_head = -1 applies the same T to every KV head).
void apply_transform(LlamaModel& m, int64_t l, TransformPosition p, const at::Tensor& t, int64_t kv_head = -1);
// The same with T = factors.back() ··· factors.front() kept structured online (attn / ffn / down only): the
// consumers get W·F₁⁻¹···Fₙ⁻¹ factor by factor, and the online transform gains the factors, not their product.
void apply_transform(LlamaModel& m, int64_t l, TransformPosition p, const std::vector<OnlineFactor>& factors);
// Folds every RMSNorm weight into the linear layers that read it (unties a tied head) and sets it to 1.
// == fold_rmsnorm_block for every block + fold_rmsnorm_head (the final norm into the head), in any order.
void fold_rmsnorm_weights(LlamaModel& m);
void fold_rmsnorm_block(LlamaModel& m, int64_t l);
void fold_rmsnorm_head(LlamaModel& m);
// Rotates the residual stream by orthogonal Q (x ← x·Q); needs folded RMSNorm weights (Error(Usage) otherwise).
// == rotate_residual_ends (token embeddings and head) + rotate_residual_block for every block, in any order.
// Every rotated weight is a new fp32 tensor (the inputs may be read-only mapped views in any float dtype).
void rotate_residual(LlamaModel& m, const at::Tensor& q);
void rotate_residual_ends(LlamaModel& m, const at::Tensor& q);
void rotate_residual_block(LlamaModel& m, int64_t l, const at::Tensor& q);

// ---- Orthogonal matrices ----------------------------------------------------------------------------------
// Orthogonal Hadamard-type matrix of order n (see the header comment). Error(Config) for n < 1.
// hadamard_matrix == hadamard_factor(...).matrix(); the factor is the structured form online transforms keep
// (llm/online_transform.h; fwht_ is declared there).
at::Tensor hadamard_matrix(int64_t n, bool randomized = false, uint64_t seed = 0);
OnlineFactor hadamard_factor(int64_t n, bool randomized = false, uint64_t seed = 0);  // double
// Haar-distributed random orthogonal matrix of order n (double), seeded. Error(Config) for n < 1.
at::Tensor random_orthogonal(int64_t n, uint64_t seed);

}  // namespace catq

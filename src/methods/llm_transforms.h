// Function-preserving transforms of a Llama model (methods.md §4) and the calibration statistics they use.
//
// Positions where a transform acts, per block (y = (W T⁻¹)(T x)):
//   attn   input of q/k/v after attn_norm (one transform shared by the three consumers)
//   ffn    input of gate/up after ffn_norm (shared)
//   down   input of ffn_down
//   o      input of attn_output, per KV head: folded offline through V (W_v,g ← T_g W_v,g for KV head g and
//          W_o,h ← W_o,h T_g⁻¹ for each query head h reading it), so it costs nothing at run time
// Diagonal transforms (SmoothQuant, block CAT with k = 1) fold offline everywhere: attn/ffn into the RMSNorm
// weights, down into the rows of ffn_up (silu(g)·(u·s) = (silu(g)·u)·s). Full transforms at attn / ffn / down are
// online (LlamaBlock::attn_in / ffn_in / down_in).
//
// Methods:
//   smoothquant(α)   diagonal, s_j = max|x_j|^α / max_i|W_ij|^(1−α) (max over the consumers' weights), x ← x/s
//   rms_balance      block CAT with k = 1: x_i ← m_i·x_i, m_i = (Σ_j W_ji² / E[x_i²])^(1/4)
//   quarot(kind)     RMSNorm weights folded into the consumers, the residual stream rotated by Q (randomized
//                    Hadamard or random orthogonal, D×D), an online Hadamard before ffn_down, per-head Hadamards
//                    folded through V/O. Changes concentration, never alignment.
//   block_cat(k, ε)  M̂ = (Σ_w # Σ_x⁻¹)^{1/2} per diagonal k×k block (Σ damped by ε·tr/d), then T = H·M̂ with a
//                    Hadamard H of the full dimension (per head for o): raises alignment, restores concentration.
// Hadamard of size n = 2^a·m (m odd): Sylvester H_{2^a} (fast Walsh–Hadamard) ⊗ Q_m with Q_m a seeded random
// orthogonal matrix when m > 1 (true Hadamard matrices of such orders need stored tables), normalised to be
// orthogonal; "randomized" multiplies columns by seeded random signs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "llm/llama.h"

namespace catq {

// ---- Calibration statistics --------------------------------------------------------------------------------
// Uncentred second moments Σ = E[x xᵀ] and per-channel max |x| of the inputs of every transform position.
struct PositionStats {
  at::Tensor sigma;   // [d, d] double
  at::Tensor absmax;  // [d] float
  int64_t count = 0;  // vectors (tokens, or tokens × query heads for o)
};
struct BlockStats {
  PositionStats attn, ffn, down;
  std::vector<PositionStats> o;  // one per KV head (hd×hd), pooled over the query heads that read it
};
// Runs the model (FP) on token windows [N, T] in batches. Error(Data) for an empty batch.
std::vector<BlockStats> collect_llama_stats(const LlamaModel& m, const at::Tensor& tokens, int64_t batch = 8);

// ---- Building blocks -------------------------------------------------------------------------------------
// In-place fast Walsh–Hadamard transform along the last dim (size a power of two), unnormalised.
void fwht_(at::Tensor& x);
// Orthogonal Hadamard-type matrix of order n (see the header comment). Error(Config) for n < 1.
at::Tensor hadamard_matrix(int64_t n, bool randomized = false, uint64_t seed = 0);
at::Tensor random_orthogonal(int64_t n, uint64_t seed);
// Matrix geometric mean A # B of symmetric positive definite matrices.
at::Tensor geometric_mean(const at::Tensor& a, const at::Tensor& b);
// Alignment-optimal M̂ = (Σ_w # Σ_x⁻¹)^{1/2} per diagonal block of size k (k must divide d), both damped by
// damping·tr/d. Error(Config) when k does not divide d.
at::Tensor block_alignment_transform(const at::Tensor& sigma_x, const at::Tensor& sigma_w, int64_t k, double damping);

// ---- Applying transforms ----------------------------------------------------------------------------------
enum class TransformPosition { Attn, Ffn, Down, O };
const char* to_string(TransformPosition p);
// The Gram matrix Σ_w = Σ over the consumers of WᵀW at a position of block l (for O: of KV head g).
at::Tensor consumer_gram(const LlamaModel& m, int64_t l, TransformPosition p, int64_t kv_head = 0);
// Diagonal scaling x_i ← d_i·x_i at a position, folded offline (see the header comment).
void apply_diagonal(LlamaModel& m, int64_t l, TransformPosition p, const at::Tensor& d, int64_t kv_head = -1);
// Full transform x ← T x at attn / ffn / down (online, composed with any existing one) or o (per KV head,
// offline through V/O; kv_head = -1 applies the same T to every KV head).
void apply_transform(LlamaModel& m, int64_t l, TransformPosition p, const at::Tensor& t, int64_t kv_head = -1);
// Folds every RMSNorm weight into the linear layers that read it (unties a tied head) and sets it to 1.
void fold_rmsnorm_weights(LlamaModel& m);
// Rotates the residual stream by orthogonal Q (x ← x·Q); needs folded RMSNorm weights (Error(Usage) otherwise).
void rotate_residual(LlamaModel& m, const at::Tensor& q);

// ---- Methods -------------------------------------------------------------------------------------------------
struct LlmTransformOptions {
  std::string method = "none";  // none | smoothquant | rms | quarot | rotation (random orthogonal) | blockcat
  double alpha = 0.5;           // smoothquant
  int64_t block = 16;           // blockcat: k (must divide dim, hidden_dim and head_dim)
  double damping = 0.01;        // ε of Σ + ε·tr/d·I
  bool hadamard_after = true;   // blockcat: T = H·M̂ (false: M̂ only)
  uint64_t seed = 0;
  std::string str() const;      // e.g. "blockcat:k=16"
};
// Parses "none", "smoothquant[:alpha=0.5]", "rms", "quarot", "rotation", "blockcat[:k=16][:damp=0.01][:nohad]".
LlmTransformOptions parse_llm_transform(const std::string& s);
// Applies the method in place; `stats` are collected on the untransformed model (quarot/rotation need none).
// Error(Config) for a block size that does not divide a dimension.
void apply_llm_transform(LlamaModel& m, const std::vector<BlockStats>& stats, const LlmTransformOptions& o);

}  // namespace catq

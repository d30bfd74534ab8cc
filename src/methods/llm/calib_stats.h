// Calibration statistics of the LLM transforms (methods.md §4): uncentred second moments Σ = E[x xᵀ] and
// per-channel max |x| of the inputs of every transform position (methods/llm/transform_ops.h), collected by
// running the FP model on calibration windows.
//
// A method that reads only Σ's diagonal k×k blocks (block CAT with block size k; k = 1 for RMS balance and
// SmoothQuant) collects only those: Σ is then stored as [d/k, k, k] (block i = rows and columns i·k … i·k+k−1),
// which for an 8192-wide ffn_down input and k = 16 is 1 MB instead of 512 MB, and costs N·d·k instead of N·d².
#pragma once
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "llm/llama.h"
#include "methods/llm/transform_ops.h"

namespace catq {

struct PositionStats {
  at::Tensor sigma;   // double: [d, d], or its diagonal blocks [d/k, k, k] (see the header comment)
  at::Tensor absmax;  // [d] float
  int64_t count = 0;  // vectors (tokens, or tokens × query heads for o)
};
struct BlockStats {
  PositionStats attn, ffn, down;
  std::vector<PositionStats> o;  // one per KV head (hd×hd), pooled over the query heads that read it
};
// Runs the model (FP) on token windows [N, T] in batches. Error(Data) for an empty batch. block > 0 keeps only
// the diagonal block×block blocks of Σ at the positions whose dimension it divides (and exceeds); 0 = full Σ.
std::vector<BlockStats> collect_llama_stats(const LlamaModel& m, const at::Tensor& tokens, int64_t batch = 8,
                                            int64_t block = 0);
// The statistics of block l alone from the hidden states entering it ([B, T, D] each, e.g. a layer-streamed
// pipeline's FP stream): equal to collect_llama_stats(...)[l] for the states of the same windows.
BlockStats collect_block_stats(const LlamaModel& m, int64_t l, const std::vector<at::Tensor>& states,
                               int64_t block = 0);

// The k×k diagonal block of a second-moment matrix starting at row / column i, from either storage ([d, d] or
// [d/kb, kb, kb] with k dividing kb, the block not straddling two stored blocks): Error(Usage) otherwise.
at::Tensor diagonal_block(const at::Tensor& sigma, int64_t i, int64_t k);
// The diagonal [d] of a second-moment matrix in either storage.
at::Tensor sigma_diagonal(const at::Tensor& sigma);
// The statistics of position p of a block (for O: of KV head g).
const PositionStats& stats_at(const BlockStats& b, TransformPosition p, int64_t g);
// Error(Usage) unless `s` holds collected statistics for every block of `m`.
void check_llama_stats(const std::vector<BlockStats>& s, const LlamaModel& m);

}  // namespace catq

// Calibration statistics of the LLM transforms (methods.md §4): uncentred second moments Σ = E[x xᵀ] and
// per-channel max |x| of the inputs of every transform position (methods/llm/transform_ops.h), collected by
// running the FP model on calibration windows.
#pragma once
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "llm/llama.h"
#include "methods/llm/transform_ops.h"

namespace catq {

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
// The statistics of block l alone from the hidden states entering it ([B, T, D] each, e.g. a layer-streamed
// pipeline's FP stream): equal to collect_llama_stats(...)[l] for the states of the same windows.
BlockStats collect_block_stats(const LlamaModel& m, int64_t l, const std::vector<at::Tensor>& states);
// The statistics of position p of a block (for O: of KV head g).
const PositionStats& stats_at(const BlockStats& b, TransformPosition p, int64_t g);
// Error(Usage) unless `s` holds collected statistics for every block of `m`.
void check_llama_stats(const std::vector<BlockStats>& s, const LlamaModel& m);

}  // namespace catq

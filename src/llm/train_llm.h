// Training small Llama models from scratch on a text (the larger model of the LLM benchmarks; the models of the
// QAT scaling-law harness). Windows follow the evaluation protocol: [BOS, t_i .. t_{i+T-2}] predicts
// [t_i .. t_{i+T-1}], sampled uniformly from the token stream.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "llm/tokenizer.h"
#include "llm/llama.h"
#include "quant/quant_context.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "train/trainer.h"

namespace catq {

// Encodes a text (as the evaluation protocol does: one string, no BOS) into an int64 token stream.
at::Tensor encode_stream(const Tokenizer& tok, const std::string& text);

// A fresh model: weights N(0, 0.02), the residual-writing projections (attn_output, ffn_down) scaled by
// 1/√(2·layers) (GPT-2), norms 1, tied head. Seeded.
LlamaModel init_llama(const LlamaConfig& cfg, uint64_t seed);

// Every trainable tensor (norms included), made leaves that require grad.
std::vector<at::Tensor> llama_parameters(LlamaModel& m);

struct LlmTrainOptions {
  int64_t steps = 1000;
  int64_t batch = 8;      // windows per step
  int64_t seq = 256;      // tokens per window (BOS + seq − 1 text tokens as input)
  OptimConfig optim;      // default AdamW β2 0.95, weight decay 0.1 (set by the constructor)
  LrSchedule schedule;    // default cosine, warmup 5 %, to 10 % of the peak
  double grad_clip = 1.0;
  uint64_t seed = 0;
  int64_t first_step = 0;  // continue a schedule (a QAT phase after an FP phase)
  int64_t eval_every = 0;  // call on_eval every this many steps and at the end
  std::function<void(int64_t step)> on_eval;
  std::vector<ParamGroup> extra_groups;  // trained next to the model's weights (e.g. QAT step sizes)
  OptimizerStateCarry* carry = nullptr;   // optimizer state continued from / left for another phase (StepOptions)
  std::string label = "train llm";
  LlmTrainOptions();
};

// Trains m on the token stream (int64 [n], n > seq) with cross-entropy, optionally through a QuantContext
// (QAT). BOS id from `bos`. Error(Data) when the stream is shorter than one window.
std::vector<StepRecord> train_llama(LlamaModel& m, const at::Tensor& stream, int32_t bos, const LlmTrainOptions& o,
                                    QuantContext* ctx = nullptr);

// Mean next-token NLL (nats) of m on non-overlapping protocol windows of the stream (at most max_windows).
double stream_nll(const LlamaModel& m, const at::Tensor& stream, int32_t bos, int64_t seq, int64_t max_windows = 64,
                  QuantContext* ctx = nullptr);

}  // namespace catq

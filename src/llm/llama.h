// Llama-architecture decoder in libtorch: RMSNorm, RoPE, grouped-query attention with a KV cache,
// SwiGLU FFN. One model type for every source format (llama2.c, GGUF, Hugging Face safetensors).
//
// Architectures (LlamaArch; the traits and tensor-name tables are in llm/llama_tensors.h): Llama 2/3/3.1/3.2 and the
// Llama-shaped models (Mistral, SmolLM, TinyLlama), Qwen2/2.5 (biases on q, k, v) and Qwen3 (RMSNorm of each q/k head
// before RoPE, explicit head_dim). Llama 3.1's "llama3" RoPE scaling and linear scaling divide the RoPE frequencies
// by per-frequency factors (LlamaConfig::rope_freq_factors).
//
// Conventions (see docs/llm.md):
// - Linear weights are nn.Linear layout [out, in]; y = x W^T + b (b only for Qwen2's q/k/v).
// - RoPE rotates the pairs (2i, 2i+1) within each head ("interleaved", the original Meta/llama2.c and
//   GGUF-llama convention). Readers of checkpoints that use rotate-half (Hugging Face) permute the rows
//   of wq/wk on load so that this one forward is correct for all of them.
//   Qwen2/Qwen3 GGUF files keep the rotate-half order too (llama.cpp runs them with NEOX RoPE): permuted the same way.
// - Head h of the queries uses KV head h / (n_heads / n_kv_heads) (as llama2.c).
// - Quantizable layers are announced to a QuantContext with the names "blk.{i}.attn_q", "blk.{i}.attn_k",
//   "blk.{i}.attn_v", "blk.{i}.attn_output", "blk.{i}.ffn_gate" (w1), "blk.{i}.ffn_up" (w3),
//   "blk.{i}.ffn_down" (w2) and "output" (the LM head, is_last), in that execution order.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>

#include "llm/online_transform.h"
#include "quant/quant_context.h"

namespace catq {

enum class LlamaArch { Llama, Qwen2, Qwen3 };

// RoPE context scaling. Every supported kind divides frequency i (of hd/2) by a factor f_i:
//   linear   f_i = factor (positions divided by factor)
//   llama3   Llama 3.1: wavelength λ_i = 2π / θ^(-2i/hd); f_i = 1 where λ_i < L/high_freq_factor, factor where
//            λ_i > L/low_freq_factor, else 1 / ((1 − s)/factor + s) with s = (L/λ_i − low)/(high − low),
//            L = original_max_position (what HF computes and llama.cpp's rope_freqs tensor stores)
//   factors  explicit f_i (read from a GGUF's rope_freqs.weight)
struct RopeScaling {
  std::string type = "none";  // "none", "linear", "llama3", "factors"
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position = 8192;
  std::vector<double> factors;  // type "factors": hd/2 values
};

struct LlamaConfig {
  LlamaArch arch = LlamaArch::Llama;
  int64_t dim = 0;         // model width (embedding size)
  int64_t hidden_dim = 0;  // FFN width (w1/w3 out, w2 in)
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // < n_heads: grouped-query attention; must divide n_heads
  int64_t vocab_size = 0;
  int64_t seq_len = 0;     // maximum context length the model was trained for
  int64_t head_dim = 0;    // 0 = dim / n_heads
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool tied_head = true;   // LM head shares the token-embedding matrix
  RopeScaling rope_scaling;
  int64_t sliding_window = 0;  // > 0: a query attends only to the last sliding_window keys (Mistral v0.1)

  bool qkv_bias() const { return arch == LlamaArch::Qwen2; }
  bool qk_norm() const { return arch == LlamaArch::Qwen3; }
  // The hd/2 divisors of the RoPE frequencies (rope_scaling); empty when there is no scaling.
  std::vector<double> rope_freq_factors() const;

  int64_t hd() const { return head_dim > 0 ? head_dim : (n_heads > 0 ? dim / n_heads : 0); }
  int64_t q_dim() const { return n_heads * hd(); }
  int64_t kv_dim() const { return n_kv_heads * hd(); }
  // Throws Error(Format) naming `source` when the numbers are inconsistent or implausibly large.
  void validate(const std::string& source) const;
  std::string summary() const;
};

const char* to_string(LlamaArch a);

// One transformer block. Shapes with D = dim, Q = n_heads*hd, K = n_kv_heads*hd, H = hidden_dim.
struct LlamaBlock {
  at::Tensor attn_norm;   // [D]
  at::Tensor wq;          // [Q, D]
  at::Tensor wk;          // [K, D]
  at::Tensor wv;          // [K, D]
  at::Tensor wo;          // [D, Q]
  at::Tensor ffn_norm;    // [D]
  at::Tensor w1;          // [H, D]  gate
  at::Tensor w2;          // [D, H]  down
  at::Tensor w3;          // [H, D]  up
  at::Tensor bq, bk, bv;  // [Q], [K], [K]: Qwen2's projection biases; undefined for other architectures
  at::Tensor q_norm, k_norm;  // [hd]: Qwen3's per-head RMSNorm of queries / keys before RoPE; else undefined
  // Online transforms (llm/online_transform.h): of the attention input after attn_norm (shared by q, k, v),
  // of the FFN input after ffn_norm (shared by gate and up), and of the down projection's input.
  OnlineTransform attn_in, ffn_in, down_in;
};

// Keys/values of the positions decoded so far, per layer [B, n_kv_heads, max_len, hd] (after RoPE).
struct KVCache {
  std::vector<at::Tensor> k, v;
  int64_t pos = 0;      // number of positions already stored
  int64_t max_len = 0;
};

// A block tensor read on demand: `read` returns it (fp32) when the block is materialized.
struct DeferredTensor {
  at::Tensor LlamaBlock::*member = nullptr;
  std::function<at::Tensor()> read;
};

class LlamaModel {
 public:
  LlamaConfig cfg;
  at::Tensor tok_embeddings;  // [vocab, D]
  std::vector<LlamaBlock> blocks;
  at::Tensor norm;            // [D] final RMSNorm
  at::Tensor output;          // [vocab, D]; the same tensor object as tok_embeddings when cfg.tied_head
  // Block tensors read on demand (GGUF block-quantized weights loaded with LlmLoadOptions::keep_stored_dtype, which
  // would be 4-8x their file size in fp32): per block, empty when none. They are undefined in `blocks` until
  // materialize_block(l); only layer-streamed pipelines (methods/llm/blockwise.h) load such models.
  std::vector<std::vector<DeferredTensor>> deferred;
  // Reads block l's deferred tensors that are not defined (a no-op otherwise).
  void materialize_block(int64_t l);

  // Small random model (weights ~ N(0, 0.02), norms 1) for tests.
  static LlamaModel random(const LlamaConfig& cfg, uint64_t seed);

  // Throws Error(Format) naming `source` and the tensor when a weight's shape disagrees with cfg (deferred tensors
  // not yet read are skipped).
  void check_shapes(const std::string& source) const;
  // Throws Error(Format) naming `source` and the tensor when a weight held in memory has NaN or Inf values (a corrupt
  // file or a diverged model: nothing meaningful can be quantized or evaluated from it). Tensors viewing a memory-mapped
  // checkpoint (is_mapped_tensor) and deferred ones are not read here — layer-streamed pipelines read each weight once,
  // when they quantize it, and refuse non-finite values then (quant/observer.h).
  void check_finite(const std::string& source) const;

  // The quantizable linear layers in execution order (7 per block, then "output").
  std::vector<LayerInfo> layer_infos() const;
  // The weight tensor of quantizable layer `index` (layer_infos() order). Error(Usage) when out of range.
  at::Tensor& layer_weight(int64_t index);
  const at::Tensor& layer_weight(int64_t index) const;
  // Announces layer_infos() to ctx. forward() does this automatically the first time it sees a context
  // pointer (each distinct pointer once, so alternating between two contexts does not re-bind them);
  // call it explicitly to re-announce (e.g. a new context allocated at a reused address).
  void bind(QuantContext* ctx) const;

  // Full-sequence forward with a causal mask: tokens [B, T] int64 -> logits [B, T, vocab] float.
  // Differentiable (no in-place ops on anything that may require grad).
  at::Tensor forward(const at::Tensor& tokens, QuantContext* ctx = nullptr) const;
  // Incremental forward: tokens [B, T] continue at position cache.pos; appends their keys/values to the
  // cache and returns logits [B, T, vocab]. Inference only (writes the cache in place).
  at::Tensor forward(const at::Tensor& tokens, KVCache& cache, QuantContext* ctx = nullptr) const;
  KVCache make_cache(int64_t batch = 1, int64_t max_len = 0) const;  // max_len 0 = cfg.seq_len

  // The forward in pieces, for pipelines that run the model block by block (layer-streamed quantization):
  // forward(tokens) == head(block_forward(L-1, ... block_forward(0, embed(tokens)))) for a full sequence from
  // position 0. embed: tokens [B, T] -> hidden states [B, T, D]; block_forward: [B, T, D] -> [B, T, D];
  // head: final RMSNorm + LM head -> logits [B, T, vocab]. Weights may be in any float dtype (converted per use).
  at::Tensor embed(const at::Tensor& tokens, QuantContext* ctx = nullptr) const;
  at::Tensor block_forward(int64_t block, const at::Tensor& x, QuantContext* ctx = nullptr) const;
  at::Tensor head(const at::Tensor& x, QuantContext* ctx = nullptr) const;

  // Every parameter tensor under its GGUF name ("token_embd.weight", "blk.0.attn_q.weight", ...,
  // "output_norm.weight", "output.weight" only when untied).
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const;
  int64_t num_parameters() const;  // from cfg's shapes (deferred tensors count)
  // Moves all weights (keeps tying).
  void to(const at::Device& device);

 private:
  struct Positions;
  Positions positions(int64_t pos0, int64_t T, const at::Device& dev) const;
  at::Tensor block_forward(int64_t l, const at::Tensor& x, const Positions& p, KVCache* cache, QuantContext* ctx) const;
  void check_tokens(const at::Tensor& tokens) const;
  void prepare(QuantContext* ctx) const;  // layer infos built, ctx bound
  at::Tensor forward_impl(const at::Tensor& tokens, KVCache* cache, QuantContext* ctx) const;
  at::Tensor linear(const at::Tensor& x, const at::Tensor& w, int idx, QuantContext* ctx) const;
  mutable std::vector<LayerInfo> infos_;
  mutable std::vector<const QuantContext*> bound_;  // contexts already announced to
};

// Small models are a chain of tiny ops for which extra intra-op threads only add synchronisation
// (stories260K on a busy 2-core machine: 1 thread ~700 tokens/s decoding, 2 threads 25-150). While alive,
// this limits libtorch to one thread when the model has fewer than 20 M parameters; restores on exit.
class SmallModelThreadGuard {
 public:
  explicit SmallModelThreadGuard(const LlamaModel& m);
  ~SmallModelThreadGuard();
  SmallModelThreadGuard(const SmallModelThreadGuard&) = delete;
  SmallModelThreadGuard& operator=(const SmallModelThreadGuard&) = delete;

 private:
  int before_ = 0;
  bool changed_ = false;
};

// Hugging Face stores wq/wk rows permuted for rotate-half RoPE. These convert a [n_heads*hd, in] weight
// between the HF order (within each head: first all "real" halves, then all "imaginary" halves) and the
// interleaved order used here (pairs (2i, 2i+1)). Also 1-D [n_heads*hd] tensors (biases, per-head norms).
at::Tensor rope_permute_hf_to_interleaved(const at::Tensor& w, int64_t n_heads);
at::Tensor rope_permute_interleaved_to_hf(const at::Tensor& w, int64_t n_heads);

}  // namespace catq

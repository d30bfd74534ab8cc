// The Llama tensor-name table: every weight of a LlamaModel with its GGUF (llama.cpp) name, its Hugging Face
// name, the LlamaModel / LlamaBlock member holding it, its shape in terms of the config, whether it is a
// quantizable linear (and its index in layer_infos()) and whether Hugging Face stores its rows RoPE-permuted.
// The model (check_shapes, layer_infos, layer_weight, named_parameters) and the GGUF, safetensors and .catq
// readers and writers iterate these tables instead of spelling names.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "llm/llama.h"

namespace catq {

// Index of each quantizable linear within a block, in execution order: the layer_infos() / layer_weight() index of
// block l's linear j is l * kLinearsPerBlock + j; the LM head ("output") follows the last block.
enum LlamaLinear : int { kLinQ = 0, kLinK, kLinV, kLinO, kLinGate, kLinUp, kLinDown, kLinearsPerBlock };

// A size from the config: D = dim, Q = q_dim(), K = kv_dim(), H = hidden_dim, V = vocab_size; None = no dimension.
enum class LlamaDim { None, D, Q, K, H, V };
int64_t llama_dim(const LlamaConfig& c, LlamaDim d);

// The head count of the rotate-half RoPE row permutation Hugging Face applies to a weight (q: n_heads,
// k: n_kv_heads); see rope_permute_hf_to_interleaved.
enum class HfRope { None, Heads, KvHeads };

// One per-block tensor.
struct LlamaBlockTensor {
  const char* gguf;                  // "attn_q": GGUF "blk.{l}.attn_q.weight"; a linear's layer name "blk.{l}.attn_q"
  const char* hf;                    // "self_attn.q_proj": HF "model.layers.{l}.self_attn.q_proj.weight"
  at::Tensor LlamaBlock::*member;
  LlamaDim rows, cols;               // shape [rows, cols]; cols None = 1-D [rows]
  int linear;                        // LlamaLinear index; -1 = not a linear (an RMSNorm weight)
  int hf_pos;                        // position in the execution order (attn_norm, q, k, v, o, ffn_norm, gate, up,
                                     // down), the order transformers' state_dict and write_hf_llama list them in
  HfRope rope;

  std::vector<int64_t> shape(const LlamaConfig& c) const;
  std::string gguf_base(int64_t l) const;  // "blk.{l}.attn_q" (GGUF name without ".weight"; a linear's layer name)
  std::string gguf_name(int64_t l) const;  // "blk.{l}.attn_q.weight"
  std::string hf_name(int64_t l) const;    // "model.layers.{l}.self_attn.q_proj.weight"
  int64_t hf_rope_heads(const LlamaConfig& c) const;  // n_heads / n_kv_heads for rope Heads / KvHeads, else 0
};

// One tensor outside the blocks.
struct LlamaGlobalTensor {
  const char* gguf;  // "token_embd": GGUF "token_embd.weight"
  const char* hf;    // "model.embed_tokens": HF "model.embed_tokens.weight"
  at::Tensor LlamaModel::*member;
  LlamaDim rows, cols;

  std::vector<int64_t> shape(const LlamaConfig& c) const;
  std::string gguf_name() const;  // "token_embd.weight"
  std::string hf_name() const;    // "model.embed_tokens.weight"
};

// The per-block tensors in the order of named_parameters() (the order GGUF files are written in, and the order
// models are read and checked in): attn_norm, q, k, v, o, ffn_norm, gate (w1), down (w2), up (w3).
std::span<const LlamaBlockTensor> llama_block_tensors();
// The per-block tensors in execution order (hf_pos).
std::span<const LlamaBlockTensor* const> llama_block_tensors_hf_order();
// The block's linear with LlamaLinear index j (0 <= j < kLinearsPerBlock).
const LlamaBlockTensor& llama_block_linear(int j);

// Token embedding [V, D], final RMSNorm [D], LM head [V, D] (layer "output", the last linear; absent from files
// when cfg.tied_head, where output is the same tensor as tok_embeddings).
extern const LlamaGlobalTensor kLlamaTokenEmbd, kLlamaOutputNorm, kLlamaOutput;

}  // namespace catq

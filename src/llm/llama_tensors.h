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

// A size from the config: D = dim, Q = q_dim(), K = kv_dim(), H = hidden_dim, V = vocab_size, Hd = head size;
// None = no dimension.
enum class LlamaDim { None, D, Q, K, H, V, Hd };
int64_t llama_dim(const LlamaConfig& c, LlamaDim d);

// The head count of the rotate-half RoPE row permutation Hugging Face applies to a weight (q: n_heads,
// k: n_kv_heads, a per-head norm: one head); see rope_permute_hf_to_interleaved.
enum class HfRope { None, Heads, KvHeads, OneHead };

// Which architectures have a tensor.
enum class LlamaFeature { Always, QkvBias, QkNorm };

// One row per architecture: its names in Hugging Face config.json (model_type) and GGUF (general.architecture,
// also the prefix of its metadata keys), and how its checkpoints differ from Llama's.
struct LlamaArchTraits {
  LlamaArch arch;
  const char* gguf;         // "qwen2": general.architecture and the "qwen2.context_length" key prefix
  const char* hf_types[2];  // config.json model_type values ("llama", "mistral"); nullptr = unused slot
  const char* hf_class;     // config.json architectures[0] written for this architecture
  bool gguf_rope_hf_order;  // GGUF keeps q/k rows in HF's rotate-half order (llama.cpp runs NEOX RoPE)
};
std::span<const LlamaArchTraits> llama_arch_table();
const LlamaArchTraits& llama_arch_traits(LlamaArch a);
// Null when the name is not a supported architecture.
const LlamaArchTraits* llama_arch_from_gguf(const std::string& name);
const LlamaArchTraits* llama_arch_from_hf(const std::string& model_type);
// "llama, mistral, qwen2, qwen3" (HF) or "llama, qwen2, qwen3" (GGUF), for error messages.
std::string llama_supported_archs(bool hf);

// One per-block tensor.
struct LlamaBlockTensor {
  const char* gguf;                  // "attn_q": GGUF "blk.{l}.attn_q.weight"; a linear's layer name "blk.{l}.attn_q"
  const char* hf;                    // "self_attn.q_proj": HF "model.layers.{l}.self_attn.q_proj.weight"
  const char* suffix;                // "weight" or "bias"
  at::Tensor LlamaBlock::*member;
  LlamaDim rows, cols;               // shape [rows, cols]; cols None = 1-D [rows]
  int linear;                        // LlamaLinear index; -1 = not a linear (an RMSNorm weight)
  int hf_pos;                        // position in the execution order (attn_norm, q, k, v, o, ffn_norm, gate, up,
                                     // down), the order transformers' state_dict and write_hf_llama list them in
  HfRope rope;
  LlamaFeature feature;

  bool present(const LlamaConfig& c) const;  // the architecture has this tensor
  std::vector<int64_t> shape(const LlamaConfig& c) const;
  std::string gguf_base(int64_t l) const;  // "blk.{l}.attn_q" (GGUF name without ".weight"; a linear's layer name)
  std::string gguf_name(int64_t l) const;  // "blk.{l}.attn_q.weight" / "blk.{l}.attn_q.bias"
  std::string hf_name(int64_t l) const;    // "model.layers.{l}.self_attn.q_proj.weight"
  // The key of a non-linear tensor in a .catq file: gguf_base for weights (RMSNorms), gguf_name for biases.
  std::string catq_key(int64_t l) const;
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
// models are read and checked in): attn_norm, q, k, v, o, ffn_norm, gate (w1), down (w2), up (w3), then the
// architecture-specific ones (q/k/v biases, q/k norms). Skip those whose present(cfg) is false.
std::span<const LlamaBlockTensor> llama_block_tensors();
// The per-block tensors in execution order (hf_pos).
std::span<const LlamaBlockTensor* const> llama_block_tensors_hf_order();
// The block's linear with LlamaLinear index j (0 <= j < kLinearsPerBlock).
const LlamaBlockTensor& llama_block_linear(int j);

// Token embedding [V, D], final RMSNorm [D], LM head [V, D] (layer "output", the last linear; absent from files
// when cfg.tied_head, where output is the same tensor as tok_embeddings).
extern const LlamaGlobalTensor kLlamaTokenEmbd, kLlamaOutputNorm, kLlamaOutput;

}  // namespace catq

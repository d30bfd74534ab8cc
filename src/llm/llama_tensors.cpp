// The Llama tensor-name table (see llama_tensors.h): names, members, shapes and linear indices of every weight.
#include "llm/llama_tensors.h"

#include <array>

#include <fmt/format.h>

namespace catq {

using enum LlamaDim;  // the table's shapes read as D, Q, K, H, V

namespace {

// named_parameters() order.
constexpr LlamaBlockTensor kBlock[] = {
    // gguf          hf                          member                  shape     linear    hf_pos  rope
    {"attn_norm",   "input_layernorm",          &LlamaBlock::attn_norm, D, None,  -1,       0,      HfRope::None},
    {"attn_q",      "self_attn.q_proj",         &LlamaBlock::wq,        Q, D,     kLinQ,    1,      HfRope::Heads},
    {"attn_k",      "self_attn.k_proj",         &LlamaBlock::wk,        K, D,     kLinK,    2,      HfRope::KvHeads},
    {"attn_v",      "self_attn.v_proj",         &LlamaBlock::wv,        K, D,     kLinV,    3,      HfRope::None},
    {"attn_output", "self_attn.o_proj",         &LlamaBlock::wo,        D, Q,     kLinO,    4,      HfRope::None},
    {"ffn_norm",    "post_attention_layernorm", &LlamaBlock::ffn_norm,  D, None,  -1,       5,      HfRope::None},
    {"ffn_gate",    "mlp.gate_proj",            &LlamaBlock::w1,        H, D,     kLinGate, 6,      HfRope::None},
    {"ffn_down",    "mlp.down_proj",            &LlamaBlock::w2,        D, H,     kLinDown, 8,      HfRope::None},
    {"ffn_up",      "mlp.up_proj",              &LlamaBlock::w3,        H, D,     kLinUp,   7,      HfRope::None},
};
constexpr size_t kNumBlock = sizeof(kBlock) / sizeof(kBlock[0]);

std::vector<int64_t> shape_of(const LlamaConfig& c, LlamaDim rows, LlamaDim cols) {
  if (cols == None) return {llama_dim(c, rows)};
  return {llama_dim(c, rows), llama_dim(c, cols)};
}

}  // namespace

const LlamaGlobalTensor kLlamaTokenEmbd = {"token_embd", "model.embed_tokens", &LlamaModel::tok_embeddings, V, D};
const LlamaGlobalTensor kLlamaOutputNorm = {"output_norm", "model.norm", &LlamaModel::norm, D, None};
const LlamaGlobalTensor kLlamaOutput = {"output", "lm_head", &LlamaModel::output, V, D};

int64_t llama_dim(const LlamaConfig& c, LlamaDim d) {
  switch (d) {
    case D: return c.dim;
    case Q: return c.q_dim();
    case K: return c.kv_dim();
    case H: return c.hidden_dim;
    case V: return c.vocab_size;
    case None: break;
  }
  return 0;
}

std::vector<int64_t> LlamaBlockTensor::shape(const LlamaConfig& c) const { return shape_of(c, rows, cols); }
std::string LlamaBlockTensor::gguf_base(int64_t l) const { return fmt::format("blk.{}.{}", l, gguf); }
std::string LlamaBlockTensor::gguf_name(int64_t l) const { return fmt::format("blk.{}.{}.weight", l, gguf); }
std::string LlamaBlockTensor::hf_name(int64_t l) const { return fmt::format("model.layers.{}.{}.weight", l, hf); }
int64_t LlamaBlockTensor::hf_rope_heads(const LlamaConfig& c) const {
  return rope == HfRope::Heads ? c.n_heads : rope == HfRope::KvHeads ? c.n_kv_heads : 0;
}

std::vector<int64_t> LlamaGlobalTensor::shape(const LlamaConfig& c) const { return shape_of(c, rows, cols); }
std::string LlamaGlobalTensor::gguf_name() const { return fmt::format("{}.weight", gguf); }
std::string LlamaGlobalTensor::hf_name() const { return fmt::format("{}.weight", hf); }

std::span<const LlamaBlockTensor> llama_block_tensors() { return kBlock; }

std::span<const LlamaBlockTensor* const> llama_block_tensors_hf_order() {
  static const std::array<const LlamaBlockTensor*, kNumBlock> order = [] {
    std::array<const LlamaBlockTensor*, kNumBlock> a{};
    for (const LlamaBlockTensor& t : kBlock) a[t.hf_pos] = &t;
    return a;
  }();
  return order;
}

const LlamaBlockTensor& llama_block_linear(int j) {
  static const std::array<const LlamaBlockTensor*, kLinearsPerBlock> by_index = [] {
    std::array<const LlamaBlockTensor*, kLinearsPerBlock> a{};
    for (const LlamaBlockTensor& t : kBlock)
      if (t.linear >= 0) a[t.linear] = &t;
    return a;
  }();
  return *by_index[j];
}

}  // namespace catq

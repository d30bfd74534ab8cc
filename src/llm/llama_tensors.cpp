// The Llama tensor-name table (see llama_tensors.h): names, members, shapes and linear indices of every weight.
#include "llm/llama_tensors.h"

#include <array>

#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace catq {

using enum LlamaDim;  // the table's shapes read as D, Q, K, H, V

namespace {

// named_parameters() order.
using enum LlamaFeature;
constexpr LlamaBlockTensor kBlock[] = {
    // gguf          hf                          suffix    member                  shape     linear    hf_pos rope             feature
    {"attn_norm",   "input_layernorm",          "weight", &LlamaBlock::attn_norm, D, None,  -1,       0,     HfRope::None,    Always},
    {"attn_q",      "self_attn.q_proj",         "weight", &LlamaBlock::wq,        Q, D,     kLinQ,    1,     HfRope::Heads,   Always},
    {"attn_k",      "self_attn.k_proj",         "weight", &LlamaBlock::wk,        K, D,     kLinK,    3,     HfRope::KvHeads, Always},
    {"attn_v",      "self_attn.v_proj",         "weight", &LlamaBlock::wv,        K, D,     kLinV,    5,     HfRope::None,    Always},
    {"attn_output", "self_attn.o_proj",         "weight", &LlamaBlock::wo,        D, Q,     kLinO,    9,     HfRope::None,    Always},
    {"ffn_norm",    "post_attention_layernorm", "weight", &LlamaBlock::ffn_norm,  D, None,  -1,       10,    HfRope::None,    Always},
    {"ffn_gate",    "mlp.gate_proj",            "weight", &LlamaBlock::w1,        H, D,     kLinGate, 11,    HfRope::None,    Always},
    {"ffn_down",    "mlp.down_proj",            "weight", &LlamaBlock::w2,        D, H,     kLinDown, 13,    HfRope::None,    Always},
    {"ffn_up",      "mlp.up_proj",              "weight", &LlamaBlock::w3,        H, D,     kLinUp,   12,    HfRope::None,    Always},
    {"attn_q",      "self_attn.q_proj",         "bias",   &LlamaBlock::bq,        Q, None,  -1,       2,     HfRope::Heads,   QkvBias},
    {"attn_k",      "self_attn.k_proj",         "bias",   &LlamaBlock::bk,        K, None,  -1,       4,     HfRope::KvHeads, QkvBias},
    {"attn_v",      "self_attn.v_proj",         "bias",   &LlamaBlock::bv,        K, None,  -1,       6,     HfRope::None,    QkvBias},
    {"attn_q_norm", "self_attn.q_norm",         "weight", &LlamaBlock::q_norm,    Hd, None, -1,       7,     HfRope::OneHead, QkNorm},
    {"attn_k_norm", "self_attn.k_norm",         "weight", &LlamaBlock::k_norm,    Hd, None, -1,       8,     HfRope::OneHead, QkNorm},
};
constexpr size_t kNumBlock = sizeof(kBlock) / sizeof(kBlock[0]);

constexpr LlamaArchTraits kArchs[] = {
    // arch             gguf     HF model_type          HF class             GGUF keeps HF q/k order
    {LlamaArch::Llama, "llama", {"llama", "mistral"}, "LlamaForCausalLM", false},
    {LlamaArch::Qwen2, "qwen2", {"qwen2", nullptr},   "Qwen2ForCausalLM", true},
    {LlamaArch::Qwen3, "qwen3", {"qwen3", nullptr},   "Qwen3ForCausalLM", true},
};

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
    case Hd: return c.hd();
    case None: break;
  }
  return 0;
}

std::vector<int64_t> LlamaBlockTensor::shape(const LlamaConfig& c) const { return shape_of(c, rows, cols); }
std::string LlamaBlockTensor::gguf_base(int64_t l) const { return fmt::format("blk.{}.{}", l, gguf); }
std::string LlamaBlockTensor::gguf_name(int64_t l) const { return fmt::format("blk.{}.{}.{}", l, gguf, suffix); }
std::string LlamaBlockTensor::hf_name(int64_t l) const { return fmt::format("model.layers.{}.{}.{}", l, hf, suffix); }
std::string LlamaBlockTensor::catq_key(int64_t l) const {
  return std::string_view(suffix) == "weight" ? gguf_base(l) : gguf_name(l);
}
bool LlamaBlockTensor::present(const LlamaConfig& c) const {
  switch (feature) {
    case LlamaFeature::Always: return true;
    case LlamaFeature::QkvBias: return c.qkv_bias();
    case LlamaFeature::QkNorm: return c.qk_norm();
  }
  return false;
}
int64_t LlamaBlockTensor::hf_rope_heads(const LlamaConfig& c) const {
  switch (rope) {
    case HfRope::Heads: return c.n_heads;
    case HfRope::KvHeads: return c.n_kv_heads;
    case HfRope::OneHead: return 1;
    case HfRope::None: break;
  }
  return 0;
}

std::span<const LlamaArchTraits> llama_arch_table() { return kArchs; }

const LlamaArchTraits& llama_arch_traits(LlamaArch a) {
  for (const LlamaArchTraits& t : kArchs)
    if (t.arch == a) return t;
  return kArchs[0];
}

const LlamaArchTraits* llama_arch_from_gguf(const std::string& name) {
  for (const LlamaArchTraits& t : kArchs)
    if (name == t.gguf) return &t;
  return nullptr;
}

const LlamaArchTraits* llama_arch_from_hf(const std::string& model_type) {
  for (const LlamaArchTraits& t : kArchs)
    for (const char* h : t.hf_types)
      if (h && model_type == h) return &t;
  return nullptr;
}

std::string llama_supported_archs(bool hf) {
  std::vector<std::string> v;
  for (const LlamaArchTraits& t : kArchs) {
    if (!hf) v.push_back(t.gguf);
    else
      for (const char* h : t.hf_types)
        if (h) v.push_back(h);
  }
  return fmt::format("{}", fmt::join(v, ", "));
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

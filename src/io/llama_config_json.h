// LlamaConfig as JSON: the "config" object of quantized-LLM .catq files and of `catq info --json`.
// Keys: arch, dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len, head_dim (0 = dim / n_heads),
// rope_theta, norm_eps, tied_head, sliding_window, rope_scaling {type, factor, low_freq_factor, high_freq_factor,
// original_max_position, factors}. Files written before the architecture keys existed read as arch "llama" without
// RoPE scaling or sliding window.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "llm/llama.h"

namespace catq {

nlohmann::json llama_config_to_json(const LlamaConfig& c);
// Error(Format) naming `source` for missing or mistyped keys and unknown architectures.
LlamaConfig llama_config_from_json(const nlohmann::json& j, const std::string& source);

}  // namespace catq

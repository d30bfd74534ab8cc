// llama2.c "legacy" (version 0) checkpoint: the format of karpathy/tinyllamas (stories260K.bin, ...).
//
// Layout (little-endian):
//   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//     (vocab_size < 0: the classifier is NOT shared with the embedding and is stored at the end)
//   float32 arrays, nn.Linear layout [out, in], all layers of one kind together:
//     token_embedding [V, D], rms_att [L, D], wq [L, D, D], wk [L, KV*hs, D], wv [L, KV*hs, D],
//     wo [L, D, D], rms_ffn [L, D], w1 [L, H, D], w2 [L, D, H], w3 [L, H, D], rms_final [D],
//     freq_cis_real [seq_len, hs/2], freq_cis_imag [seq_len, hs/2] (ignored: recomputed),
//     wcls [V, D] only when vocab_size < 0.
// RoPE: interleaved pairs (2i, 2i+1), theta 10000; RMSNorm eps 1e-5 (not stored; llama2.c constants).
// The file length must equal what the header implies.
#pragma once
#include <string>

#include "llm/llama.h"

namespace catq {

LlamaModel read_llama2c(const std::string& path);
void write_llama2c(const LlamaModel& model, const std::string& path);

}  // namespace catq

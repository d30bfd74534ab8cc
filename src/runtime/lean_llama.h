// The lean LLM runtime (issue 17): a Llama-family decoder executed directly on a GGUF file's tensors, or on a quantized
// catq LLM (.catq), with catq's own kernels, buffers and thread pool — no libtorch on the per-token path.
//
//   LeanLlama m("model.gguf", {.threads = 2});
//   m.eval(prompt.data(), prompt.size(), nullptr);    // prefill: every linear a GEMM over the prompt's tokens
//   m.eval(&next, 1, &logits);                         // decode: one token through the KV cache
//
// Linear layers run on runtime/block_matvec.h (Q4_0 / Q4_1 / Q8_0 / Q4_K / Q6_K natively on their own blocks with Q8
// activations as llama.cpp does; other types converted to fp32 at load), split over output rows across the pool.
// A .catq's layers with quantized activations (W8A8, W4A8, W4A4 …, per token or static) run catq's integer GEMM
// (runtime/int_gemm.h, the 16-row layout) on the activations quantized exactly as the simulation does; its other
// layers (weight-only, FP, k-means) run their dequantized weights in fp32; online transforms (QuaRot, block CAT) are
// applied to the activations through libtorch. KV-cache and embedding quantization are refused (not implemented here);
// q/k/v and gate/up are stacked into one matrix each when their types agree. RMSNorm,
// RoPE (interleaved pairs, or NEOX halves for the architectures whose GGUF keeps Hugging Face's order), attention
// over an fp32 KV cache (split over heads × tokens), SwiGLU and the residual adds run in preallocated buffers.
// Architectures: everything gguf_llama_config() accepts (Llama 2/3/3.1 RoPE scaling, Mistral's sliding window,
// Qwen2 q/k/v biases, Qwen3 q/k norms). The result does not depend on the thread count (each output element is
// computed by one thread with the same code).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "llm/llama.h"
#include "runtime/block_matvec.h"
#include "runtime/int_gemm.h"
#include "runtime/int_linear.h"

namespace catq {

struct IntLinear;

struct LeanLlamaOptions {
  int threads = 0;          // 0 = default_thread_count()
  int64_t max_context = 0;  // KV cache positions; 0 = min(the model's context length, 4096)
  KernelIsa isa = KernelIsa::Avx512;  // capped by the CPU and CATQ_ISA (best_isa())
};

class LeanLlama {
 public:
  // Loads and prepares (repacks) every tensor of a GGUF Llama-family file, or of a quantized .catq LLM.
  // Error(Io/Format/Unsupported) naming the file and tensor (or the feature not supported).
  explicit LeanLlama(const std::string& path, const LeanLlamaOptions& opt = {});
  ~LeanLlama();

  const LlamaConfig& config() const { return cfg_; }
  int threads() const { return pool_.size(); }
  int64_t position() const { return pos_; }
  int64_t max_context() const { return max_ctx_; }
  void reset() { pos_ = 0; }  // forget the cached positions

  // Runs tokens[0..T) at positions position().. (appending to the KV cache). logits: nullptr, or filled with
  // T × vocab (all_logits) or the last token's vocab logits. Error(Usage) for a token outside the vocabulary or
  // past max_context().
  void eval(const int32_t* tokens, int64_t T, std::vector<float>* logits, bool all_logits = false);

  // "q4_0 x 56, f32 x 17, ..." (".catq": "W4A8 int x 56") — the kernel each linear runs, and bytes of prepared weights.
  std::string describe() const;
  uint64_t weight_bytes() const;

 private:
  struct Layer;
  struct Linear;
  struct Source;  // the memory-mapped GGUF file (token embedding rows are decoded from it per token), or the .catq's
  void load_gguf(const std::string& path);
  void load_catq(const std::string& path);
  void finish_load(const LeanLlamaOptions& opt);
  void embed_row(int32_t token, float* out) const;
  void linear(const Linear& w, const float* x, const ActQ8& xq, int64_t T, float* y);
  void linear_weight_only(const IntLinear& il, const float* x, int64_t T, float* y);
  void rms_norm(const float* x, const std::vector<float>& g, int64_t T, int64_t n, float* y);
  void attention(int64_t l, int64_t T);

  LlamaConfig cfg_;
  bool neox_ = false;
  KernelIsa isa_, vec_isa_;  // of the block kernels, and of the elementwise / attention passes
  ThreadPool pool_;
  std::unique_ptr<Source> src_;
  std::unique_ptr<Linear> output_;  // the LM head (the token embedding's data when tied)
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<float> norm_;
  std::vector<double> inv_freq_;
  int64_t max_ctx_ = 0, pos_ = 0;
  std::vector<float> k_cache_, v_cache_;  // [layer][position][kv_dim]
  // Scratch for up to the largest T seen.
  std::vector<float> x_, h_, q_, k_, v_, att_, o_, g_, u_, fused_, cos_, sin_, scores_;
  ActQ8 xq_;
  QuantizedRows rows_;  // integer layers' activation codes
};

}  // namespace catq

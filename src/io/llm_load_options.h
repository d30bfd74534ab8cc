// Options shared by the Llama checkpoint readers (read_hf_llama, read_gguf_llama, load_llama).
#pragma once

namespace catq {

struct LlmLoadOptions {
  // false (default): every weight is an fp32 copy and nothing stays mapped once the reader returns.
  // true: weights are kept in their stored dtype as zero-copy, READ-ONLY views of the memory-mapped file
  // (core/mapped_file.h: is_mapped_tensor() is true for them; never modify them in place — clone first). Exceptions,
  // which are private copies in the stored dtype: Hugging Face q/k weights (and q/k biases, Qwen3 q_norm/k_norm)
  // whose rows are permuted into catq's interleaved RoPE order (about 1.3 GB of bf16 for Llama-3-8B), and tensors
  // whose data is not aligned to their element size in the file. GGUF block-quantized linears (Q4_0 ... Q6_K,
  // IQ4_NL) are deferred: undefined until LlamaModel::materialize_block(l) dequantizes that block (layer-streamed
  // pipelines do; block-quantized token embeddings and LM head are dequantized to fp32 at load); F64 safetensors are converted to fp32. llama2.c and .catq
  // files are always read into fp32 (the option is ignored).
  bool keep_stored_dtype = false;
};

}  // namespace catq

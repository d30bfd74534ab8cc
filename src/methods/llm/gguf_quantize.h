// Format-aware post-training quantization of a Llama straight into a GGUF file for llama.cpp (issue 16,
// deliverables 3 and 6): every linear is quantized in the file's own block format, on the scale grid llama.cpp
// decodes, so what catq optimized is exactly what llama.cpp runs.
//
//   rtn      the format's encoder alone (io/gguf.h quantize_gguf_blocks; K-quants: catq's scale search)
//   imatrix  the encoder's scale search with each value's error weighted by diag(H) = Σ x² of its input column over
//            the layer's calibration inputs, times sqrt(σ² + w²) (σ² the row's mean square weight): what llama.cpp's
//            importance matrix does
//   gptq     an encoding weighted by diag(H) alone (GPTQ's objective on the diagonal) fixes every block's scales
//            (static groups); GPTQ then chooses each code on that grid column by column, spreading the rounding
//            error with H⁻¹'s factor (methods/llm/gptq.h gptq_quantize_grid), and the codes are written into the
//            encoded blocks (gguf_set_codes)
//
// Calibration flows block by block (methods/llm/blockwise.h): the Hessians are those of the already-quantized
// model's inputs, as for catq's own GPTQ. token_embd is looked up, not multiplied: it gets the encoder alone. A tied
// head (token_embd is also the output projection) gets imatrix from the head's inputs, never GPTQ (its codes also
// serve the lookup). Norms stay F32; rows a format's block does not divide use llama.cpp's fallback types
// (gguf_row_type).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "llm/llama.h"
#include "llm/tokenizer.h"
#include "methods/llm/gptq.h"
#include "methods/llm/transforms.h"

namespace catq {

// Encodes a weight [rows, row] in a ggml type with optional per-column importance (diag H; llama.cpp's imatrix
// contract: the encoder applies its own per-value weighting). Replaceable so that benchmarks can run llama.cpp's own
// quantizer through the same pipeline.
using GgufEncoder = std::function<std::string(const at::Tensor& w, uint32_t ggml, const at::Tensor& importance)>;

// Named per-tensor mixes (--gguf q4_k_m …; llama.cpp's recipe names, catq's own rule): a base type for every linear
// and token_embd, a better one for attn_v and ffn_down of the blocks that matter most — the first and last eighth of
// the stack and every third block between them (errors there reach every later block, or the head directly) — an
// optional step up for attn_output, and the untied LM head's type.
struct GgufRecipe {
  const char* name;
  GgufWeightType base, important, attn_output, head;
  uint32_t file_type;  // llama.cpp's general.file_type of the mix (LLAMA_FTYPE_MOSTLY_Q4_K_M = 15, ...)
  const char* summary;
};
const std::vector<GgufRecipe>& gguf_recipes();
const GgufRecipe* find_gguf_recipe(const std::string& name);  // nullptr when `name` is no recipe
// Block l of n gets the recipe's `important` type for attn_v and ffn_down.
bool gguf_recipe_important_block(int64_t l, int64_t n);

struct GgufQuantizeOptions {
  GgufWeightType type = GgufWeightType::Q4_K;
  const GgufRecipe* recipe = nullptr;  // set: per-tensor types from the recipe (`type` unused)
  std::string weights = "gptq";  // rtn | imatrix | gptq
  GptqOptions gptq;
  int64_t batch = 8;             // calibration windows per pass
  std::string name = "catq";     // general.name
  GgufEncoder encoder;           // empty: catq's encoders (quantize_gguf_blocks)
  // > 0: per-tensor types to this many bits per weight of the whole file (tensor data; --target-bpw): each linear's
  // type from gguf_target_bpw_candidates() by the knapsack over its measured sensitivity; `type` is then unused.
  double target_bpw = 0;
  // A block transform applied as each block is reached, before its weights are quantized: awq only (a diagonal
  // transform folded offline, so llama.cpp's graph runs the same function), its scales searched under each linear's
  // own GGUF type (plain encoder). "none" otherwise.
  LlmTransformOptions transform;
};

// The types --target-bpw chooses from: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_0.
const std::vector<GgufWeightType>& gguf_target_bpw_candidates();

// True for rtn, imatrix and gptq; the methods that read calibration (imatrix, gptq).
bool gguf_weight_method_known(const std::string& m);
bool gguf_weight_method_needs_calibration(const std::string& m);

// One weight [out, in] in the file's type for its rows (gguf_row_type(type, in)).
struct GgufWeightResult {
  QuantizedWeight weight;  // a ggml format, [out, in], rows in the weight's order
  at::Tensor dequantized;  // fp32 [out, in], the decoder's values
  double proxy_rtn = -1;   // tr((W − Ŵ) H (W − Ŵ)ᵀ) of the plain encoder (−1 without H)
  double proxy = -1;       // the same for this method's result
};
// h: H = Σ x xᵀ of the weight's input (fp32 [in, in]; needed by imatrix and gptq), f: its GPTQ factor (gptq).
// Error(Config) for an unknown method.
GgufWeightResult quantize_gguf_weight(const at::Tensor& w, GgufWeightType type, const std::string& method,
                                      const at::Tensor& h, const GptqFactor* f, const GptqOptions& o,
                                      const GgufEncoder& encoder = {});

// Quantizes m (weights in any float dtype; calib: token windows [N, T], required by imatrix / gptq / target_bpw) and
// writes the GGUF file `path` atomically with tok embedded, each tensor as soon as it is encoded (GgufStreamWriter).
// The decoder blocks of m are dropped as they are written (m keeps its config, embeddings, final norm and head).
// Returns the report: type, weights, per-layer types and proxies and their totals, seconds, and with target_bpw the
// allocation.
nlohmann::json quantize_llama_gguf(LlamaModel& m, const Tokenizer& tok, const at::Tensor& calib,
                                   const GgufQuantizeOptions& o, const std::string& path);

}  // namespace catq

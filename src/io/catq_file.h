// The .catq quantized-model file: everything needed to run a quantized CNN without the original model —
// the (BN-folded) graph, integer weights bit-packed at their width with scales and zero-points, activation
// quantization params, the quantization config, an optional CAT head, and metadata (method, options, reports).
// Format: docs/catq_format.md.
//
//   bytes 0..7    "CATQMDL\0"
//   uint32        version (1)
//   uint32        reserved (0)
//   uint64        header length H
//   H bytes       JSON header (UTF-8)
//   padding       zeros up to a multiple of 64
//   blob          tensor data; each tensor at its header "offset" (relative to the blob start, 64-aligned)
#pragma once
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "llm/tokenizer.h"
#include "llm/llama.h"
#include "quant/cat_head.h"
#include "sim/executor.h"
#include "sim/sim_quant.h"

namespace catq {

// A quantized CNN ready to run: the graph (quantized layers' weight initializers hold the dequantized weights,
// so ex->forward(x) without a context is the weight-only-quantized model), the SimQuant with the integer weights
// and activation params installed (Mode::Quantize), the optional CAT head, and metadata.
struct QuantizedCnn {
  std::unique_ptr<GraphExecutor> ex;
  std::unique_ptr<SimQuant> sq;
  std::optional<CatHead> head;
  nlohmann::json metadata = nlohmann::json::object();

  at::Tensor base_logits(const at::Tensor& x) const { return ex->forward(x, sq.get()); }
  // Logits with the head applied (when there is one).
  at::Tensor forward(const at::Tensor& x) const {
    at::Tensor z = base_logits(x);
    return head ? head->apply(z) : z;
  }
};

// Writes `ex` quantized by `sq` (every quantized layer's weight params computed or installed) atomically.
// Quantized weights are stored as codes: installed integer weights, else quantize(weight, params).
void write_catq(const std::string& path, const GraphExecutor& ex, const SimQuant& sq, const CatHead* head,
                const nlohmann::json& metadata);

// Reads a .catq file. Error(Io) when unreadable; Error(Format) naming the file and the problem for a malformed
// file (wrong magic / version, truncated, bad JSON, tensors out of bounds or of the wrong size, inconsistent params).
QuantizedCnn read_catq(const std::string& path);

bool is_catq_file(const std::string& path);  // starts with the magic
// "cnn" or "llm": what a .catq file holds. Error(Format) for a malformed file.
std::string catq_file_kind(const std::string& path);

// A quantized Llama model: the model (quantized layers' weights hold their dequantized codes; online transforms
// included), the SimQuant with integer weights and activation params (Mode::Quantize), the embedded tokenizer.
struct QuantizedLlama {
  LlamaModel model;
  std::unique_ptr<SimQuant> sq;
  std::optional<Tokenizer> tokenizer;
  nlohmann::json metadata = nlohmann::json::object();
};
// Writes a quantized-LLM .catq file incrementally with bounded memory: blob data is appended to a temporary file
// next to `path` as tensors arrive; finish() writes the final file (magic, version, header, blob) to another temp
// and renames it over `path`; without finish() (exception, early return) the destructor removes the temp files and
// `path` is untouched. (finish() needs disk room for the blob twice for a moment: the temp blob is copied after the
// header, sequentially in 8 MiB chunks.) Misuse (a key added twice, layers out of layer_infos() order, wrong shapes,
// a missing tensor at finish()) is Error(Internal) naming the tensor; disk failures are Error(Io).
// The file is byte-identical to one write_catq_llm writes when the calls come in its order (FP tensors, then the
// layers, then the tokenizer); any other order is an equally valid file.
class CatqLlmWriter {
 public:
  CatqLlmWriter(const std::string& path, const LlamaConfig& cfg, const QuantConfig& qc, const nlohmann::json& metadata);
  ~CatqLlmWriter();
  CatqLlmWriter(const CatqLlmWriter&) = delete;
  CatqLlmWriter& operator=(const CatqLlmWriter&) = delete;
  // An FP tensor under its .catq key (token_embd, output_norm, blk.N.attn_norm, blk.N.attn_q.bias, an FP linear
  // such as "output").
  void add_tensor(const std::string& key, const at::Tensor& t);
  // The online transforms of block l (attn_in, ffn_in, down_in), factor by factor (docs/catq_format.md).
  void add_online_transforms(int64_t l, const LlamaBlock& b);
  // A quantizable linear, in layer_infos() order (the writer checks the order and count against cfg at finish()): a
  // quantized weight (a catq-format QuantizedWeight, the linear's shape), or the FP weight (not written when it is the
  // tied head; it may then be undefined); input params for static activation quantization or nullptr.
  void add_quantized_layer(const std::string& name, const QuantizedWeight& weight, const QuantParams* input_params);
  void add_fp_layer(const std::string& name, const at::Tensor& weight, const QuantParams* input_params);
  // The same from codes (any integer dtype, the weight's shape) and their params, or weight_params == nullptr and
  // `codes_or_weight` the FP weight.
  void add_layer(const std::string& name, const QuantParams* weight_params, const at::Tensor& codes_or_weight,
                 const QuantParams* input_params);
  // Once. Error(Data) when its vocabulary does not fit cfg.vocab_size (llama2c: equal; BPE kinds: at most, padded by
  // the loader). BPE kinds are stored as their tokenizer.json / tokenizer_config.json texts (docs/catq_format.md).
  void set_tokenizer(const Tokenizer& tok);
  // Replaces the metadata given to the constructor (before finish(): e.g. with a report known only at the end).
  void set_metadata(const nlohmann::json& metadata);
  void finish();

 private:
  size_t next_layer(const std::string& name);  // checks the name against layer_infos() order; its index
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes a Llama model quantized by `sq` (weights and static inputs calibrated), its online transforms and
// (optionally) its tokenizer, atomically, through CatqLlmWriter. Same container as the CNN file, header format
// "catq-quantized-llm".
void write_catq_llm(const std::string& path, const LlamaModel& m, const SimQuant& sq, const Tokenizer* tok,
                    const nlohmann::json& metadata);
QuantizedLlama read_catq_llm(const std::string& path);

}  // namespace catq

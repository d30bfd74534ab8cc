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
// Writes a Llama model quantized by `sq` (weights and static inputs calibrated), its online transforms and
// (optionally) its tokenizer, atomically. Same container as the CNN file, header format "catq-quantized-llm".
void write_catq_llm(const std::string& path, const LlamaModel& m, const SimQuant& sq, const Tokenizer* tok,
                    const nlohmann::json& metadata);
QuantizedLlama read_catq_llm(const std::string& path);

}  // namespace catq

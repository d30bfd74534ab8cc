// What a model file holds (`catq info`), as data: an ONNX graph (opset, nodes before / after constant folding,
// inputs, outputs, op histogram, quantizable layers), a Llama checkpoint (format, config, parameters, tokenizer;
// GGUF: version, metadata and tensor types), a quantized-LLM .catq file (as a Llama checkpoint) or a quantized-CNN
// .catq file (metadata, layers, weight bytes, head).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace catq {

struct ModelInfo {
  enum class Kind { Onnx, Llama, QuantizedCnn };
  Kind kind = Kind::Onnx;
  nlohmann::json json;          // the description (what `catq --json info` prints); ONNX: "layers" in execution order
  std::string config_summary;   // Llama: LlamaConfig::summary()
  std::string report_table;     // quantized CNN: SimQuant::report_table() (per-layer quantization)
};

// Reads the model file (format from its magic bytes). tokenizer: a llama2.c tokenizer for Llama checkpoints ("" =
// the GGUF's own or one next to the model). Error(Unsupported) for a format `info` does not describe.
ModelInfo describe_model(const std::string& path, const std::string& tokenizer = "");

}  // namespace catq

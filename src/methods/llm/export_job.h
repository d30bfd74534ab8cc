// The `catq export` job, as data (model, tokenizer, format, GGUF weight type and name, output file), and the
// function that runs it: a Llama model as GGUF for llama.cpp (io/gguf.h), or a quantized CNN (.catq) as QDQ ONNX
// for ONNX Runtime (io/onnx_writer.h). Lives with the LLM methods because GGUF is the main path; the QDQ export is
// the one CNN case. The CLI only fills the job and prints the result.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace catq {

struct ExportJob {
  std::string model;            // Llama model (llama2.c .bin, .gguf, safetensors folder) or a quantized-CNN .catq
  std::string tokenizer;        // llama2.c tokenizer (GGUF files carry their own)
  std::string format = "auto";  // auto (onnx for a quantized CNN, else gguf) | gguf | onnx
  std::string type = "q8_0";    // GGUF 2-D weight type (gguf_weight_types(): f32 … q6_k)
  std::string name = "catq";    // GGUF general.name
  std::string out;              // the file written
};

// Runs the job and writes job.out. Returns what `catq --json export` prints: model, output, format ("gguf" |
// "onnx-qdq"), bytes, and per format type + parameters (GGUF) or opset, nodes, head_exported, has_head (ONNX).
// Error(Usage) for a bad --format, a missing -o or a model without a tokenizer (GGUF); Error(Unsupported) for a
// model the chosen format cannot hold.
nlohmann::json run_export_job(const ExportJob& job);

}  // namespace catq

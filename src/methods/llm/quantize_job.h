// The `catq quantize` job for a Llama model, as data (model, tokenizer, config, calibration text, transform,
// weight method, output file) and the function that runs it: load, take calibration windows from the text,
// transform + RTN / GPTQ + static ranges (pipeline.h), write the quantized-LLM .catq file. The CLI only fills it.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace catq {

struct LlmQuantizeJob {
  std::string model, tokenizer;    // a Llama checkpoint (llama2.c / GGUF / safetensors); tokenizer "" = find one
  std::string config;              // quant config: JSON file or compact string
  std::string text;                // calibration text
  int64_t skip_chars = 0;          // characters of `text` skipped first (keep calibration and evaluation apart)
  int64_t calib_chars = 24000;
  int64_t window = 256;            // tokens per calibration window (capped at the model's seq_len)
  std::string transform = "none";  // parse_llm_transform syntax
  std::string weights = "rtn";     // rtn | gptq (| imatrix with gguf)
  bool act_order = false;
  double gptq_damp = 0.01;
  std::string stream = "auto";     // auto / always: layer-streamed (methods/llm/stream_quantize.h); never: the
                                   // in-memory pipeline (the whole model in fp32)
  std::string gguf;                // set: write a GGUF file of this type for llama.cpp (methods/llm/gguf_quantize.h)
                                   // instead of a .catq; config and transform do not apply
  double target_bpw = 0;           // > 0: a GGUF file with per-tensor types to this many bits per weight (no gguf)
  std::string name = "catq";       // GGUF general.name
  std::string out;                 // the .catq (or .gguf) file written
};

// Runs the job and writes job.out atomically; returns the file's metadata (quantization report, calibration,
// weight and embedding bytes; for gguf: output, type, bytes, tensors_by_type, bits_per_weight, quantization). Error(Usage) for a missing --text / --config or an already-quantized model,
// Error(Data) for too little calibration text.
nlohmann::json run_llm_quantize_job(const LlmQuantizeJob& job);

}  // namespace catq

// The `catq analyze` job for a Llama model, as data (model, text, bits, transform, report files), and the function
// that runs it: per linear layer, measured vs predicted RTN SQNR at WbAb, concentration and alignment
// (sqnr_analyzer.h), before and, with a transform, after it; writes the JSON report and the SVG plot when asked.
// The CLI only fills the job and prints the result.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "methods/llm/sqnr_analyzer.h"

namespace catq {

struct LlmAnalyzeJob {
  std::string model, tokenizer;    // a Llama checkpoint (llama2.c / GGUF / safetensors); tokenizer "" = find one
  std::string text;                // calibration / analysis text (UTF-8)
  std::string transform = "none";  // parse_llm_transform syntax
  int bits = 4;                    // bits of weights and activations (WbAb), 2..8
  int weight_bits = 0, act_bits = 0;  // WaAb with a != b: each overrides `bits` when > 0
  bool asym = false;               // asymmetric quantizers (default symmetric)
  int64_t max_chars = 24000;       // characters of text used (after skip_chars)
  int64_t skip_chars = 0;          // characters of `text` skipped first
  int64_t window = 256;            // tokens per window (capped at the model's seq_len)
  int64_t max_tokens = 4096;       // input rows kept per layer
  std::string output;              // JSON report written here ("" = none)
  std::string plot;                // SVG plot of per-layer SQNR written here ("" = none)
};

// Means over the layers of one analysis.
struct SqnrSummary {
  double measured = 0, predicted = 0, abs_err = 0, alignment = 0, concentration = 0;  // dB
};

struct LlmAnalyzeResult {
  nlohmann::json report;               // the JSON report (what --json prints and --output holds)
  std::vector<SqnrStats> before;       // per layer, no transform
  std::vector<SqnrStats> after;        // per layer, after the transform (empty for "none")
  SqnrSummary before_summary, after_summary;
  std::string transform;               // the transform as parsed (LlmTransformOptions::str())
  int64_t windows = 0, window = 0;     // windows analysed and tokens per window
};

// Runs the job; writes job.output and job.plot atomically when set. Error(Usage) for bits outside 2..8 or a bad
// transform, Error(Data) for too little text for one window.
LlmAnalyzeResult run_llm_analyze_job(const LlmAnalyzeJob& job);

}  // namespace catq

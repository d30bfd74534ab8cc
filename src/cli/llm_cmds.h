// LLM paths of the `info` and `eval` subcommands (cmd_info.cpp / cmd_eval.cpp call these when the model
// file is a language model: see is_llm_model_file in llm/loader.h).
#pragma once
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "eval/perplexity.h"
#include "io/llm_loader.h"
#include "quant/quant_context.h"
#include "sim/sim_quant.h"

namespace catq::cli {

struct LlmEvalArgs {
  std::string model;       // llama2.c .bin, .gguf, or HF folder / .safetensors
  std::string tokenizer;   // llama2.c tokenizer file; empty = GGUF's own or tok{V}.bin next to the model
  std::string text;        // UTF-8 text file to score (required)
  PerplexityOptions ppl;   // protocol (defaults = the stories260K reference protocol)
  QuantContext* quant = nullptr;  // when set: score the model under this context too, plus KL/top-1 vs FP32
  SimQuant* sim = nullptr;        // the SimQuant behind `quant` (for runtime == "int")
  // "sim": fake-quantized simulation (default). "int": run the quantized model (.catq, or --quant) on the integer
  // runtime and compare it with the simulation (perplexity of both, KL, top-1 agreement, which layers ran how).
  std::string runtime = "sim";
  std::string quant_label;        // how to name it in the report (e.g. the config file)
  std::string reference;          // FP model to compare a quantized .catq file with (default: the file's own
                                  // weights with FP activations)
  // Called once after loading, before scoring (e.g. to transform the model and calibrate `quant` on it); may
  // change the model only in function-preserving ways (the FP reference is scored on the same model).
  std::function<void(LoadedLlama&)> prepare;
  nlohmann::json report;  // what `prepare` did (added to the JSON output)
};

// Prints format, config, parameter count, tokenizer (and GGUF metadata/tensor types). Returns exit code 0.
int run_llm_info(const std::string& model, const Common& common, const std::string& tokenizer = "");
// Prints perplexity (and, with a quant context, its perplexity, mean KL and top-1 agreement vs FP32).
int run_llm_eval(const LlmEvalArgs& args, const Common& common);

// Adds the perplexity-protocol options (--window, --stride, --no-bos, --max-chars, --max-windows, --batch).
void add_perplexity_options(CLI::App* sub, PerplexityOptions& opt);

}  // namespace catq::cli

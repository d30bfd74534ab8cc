// `catq export MODEL --format gguf --type q4_0 -o OUT.gguf`: writes a Llama model as GGUF for llama.cpp
// (block quantization Q8_0 / Q4_0 / Q4_1 exactly as ggml defines it, llama metadata, the tokenizer).
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/file_util.h"
#include "io/gguf.h"
#include "llm/loader.h"

namespace catq::cli {

namespace {

struct ExportArgs {
  std::string model, tokenizer, format = "gguf", type = "q8_0", out, name = "catq";
};
ExportArgs args;

int run_export(const Common& common) {
  CATQ_CHECK(args.format == "gguf", Usage, "export: --format '{}': expected gguf", args.format);
  CATQ_CHECK(!args.out.empty(), Usage, "export: -o OUT.gguf is required");
  GgufWriteOptions o;
  o.weights = parse_gguf_weight_type(args.type);
  o.name = args.name;
  CATQ_CHECK(is_llm_model_file(args.model), Unsupported, "{}: export --format gguf needs a Llama model (llama2.c, GGUF, "
             "safetensors folder)", args.model);
  LoadedLlama m = load_llama(args.model, args.tokenizer);
  // A .catq model's online transforms and per-channel codes have no GGUF equivalent: export its FP source instead.
  CATQ_CHECK(!m.quant, Unsupported, "{}: a quantized .catq model cannot be written as GGUF (its transforms and codes "
             "have no GGUF equivalent); export the FP model with --type q4_0 / q4_1 / q8_0", args.model);
  CATQ_CHECK(m.tokenizer.has_value(), Usage, "{}: no tokenizer ({}); llama.cpp needs one: pass --tokenizer",
             args.model, m.tokenizer_note);
  write_gguf_llama(m.model, &*m.tokenizer, args.out, o);
  const int64_t bytes = file_size(args.out);
  if (common.json) {
    std::cout << nlohmann::json{{"model", args.model}, {"output", args.out}, {"format", "gguf"},
                                {"type", to_string(o.weights)}, {"bytes", bytes},
                                {"parameters", m.model.num_parameters()}}.dump(2)
              << "\n";
  } else {
    std::cout << fmt::format("{} -> {} (GGUF, 2-D weights {}, norms f32; {} bytes)\n", args.model, args.out,
                             to_string(o.weights), bytes);
  }
  return 0;
}

}  // namespace

void register_export(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("export", "Write a Llama model as GGUF for llama.cpp (f32/f16/bf16/q8_0/q4_0/q4_1)");
  sub->footer(
      "2-D weights use --type; rows whose length is not a multiple of 32 fall back to f16 (as llama.cpp's quantizer);\n"
      "RMSNorm weights stay f32. The tokenizer is embedded (tokenizer.ggml.*).\n\n"
      "Examples:\n"
      "  catq export stories260K.bin --tokenizer tok512.bin --type q4_0 -o stories260K-q4_0.gguf\n"
      "  catq --json export tiny3m.bin --tokenizer tok512.bin --type q8_0 -o tiny3m-q8_0.gguf\n");
  sub->add_option("model", args.model, "Llama model (llama2.c .bin, .gguf, safetensors folder)")->required();
  sub->add_option("--tokenizer", args.tokenizer, "llama2.c tokenizer (GGUF files carry their own)");
  sub->add_option("--format", args.format, "Output format")->capture_default_str();
  sub->add_option("--type", args.type, "f32 | f16 | bf16 | q8_0 | q4_0 | q4_1")->capture_default_str();
  sub->add_option("--name", args.name, "general.name")->capture_default_str();
  sub->add_option("-o,--output", args.out, "Output file");
  sub->callback([&common] { run_export(common); });
}

}  // namespace catq::cli

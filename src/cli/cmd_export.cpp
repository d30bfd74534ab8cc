// `catq export MODEL --type q4_0 -o OUT.gguf`: writes a Llama model as GGUF for llama.cpp (block quantization
// Q8_0 / Q4_0 / Q4_1 exactly as ggml defines it, llama metadata, the tokenizer).
// `catq export QUANTIZED_CNN.catq -o OUT.onnx`: writes a quantized CNN as a QDQ ONNX model for ONNX Runtime.
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/file_util.h"
#include "io/catq_file.h"
#include "io/gguf.h"
#include "io/model_format.h"
#include "io/onnx_writer.h"
#include "io/llm_loader.h"

namespace catq::cli {

namespace {

struct ExportArgs {
  std::string model, tokenizer, format = "auto", type = "q8_0", out, name = "catq";
};
ExportArgs args;

// A quantized CNN (.catq) as QDQ ONNX.
int run_export_onnx(const Common& common) {
  QuantizedCnn m = read_catq(args.model);
  Graph g = qdq_graph(*m.ex, *m.sq);
  write_onnx(g, args.out, 13);
  const int64_t bytes = static_cast<int64_t>(file_size(args.out));
  const std::string head_note = m.head ? "; the CAT/affine head is not in the ONNX graph (catq eval applies it)" : "";
  if (common.json) {
    std::cout << nlohmann::json{{"model", args.model}, {"output", args.out}, {"format", "onnx-qdq"},
                                {"opset", g.opset}, {"bytes", bytes}, {"nodes", g.nodes.size()},
                                {"head_exported", false}, {"has_head", m.head.has_value()}}.dump(2) << "\n";
  } else {
    std::cout << fmt::format("{} -> {} (QDQ ONNX, opset {}, {} nodes, {} bytes){}\n", args.model, args.out, g.opset,
                             g.nodes.size(), bytes, head_note);
  }
  return 0;
}

int run_export(const Common& common) {
  CATQ_CHECK(args.format == "auto" || args.format == "gguf" || args.format == "onnx", Usage,
             "export: --format '{}': expected auto, gguf or onnx", args.format);
  CATQ_CHECK(!args.out.empty(), Usage, "export: -o OUT is required");
  // --format onnx reads the model now (a missing file is an I/O error); auto only looks when the file exists.
  const bool look = args.format == "onnx" || (args.format == "auto" && file_exists(args.model));
  const bool quantized_cnn = look && detect_model_format(args.model) == ModelFormat::CatqQuantized &&
                             catq_file_kind(args.model) == "cnn";
  if (args.format == "onnx" || quantized_cnn) {
    CATQ_CHECK(quantized_cnn, Unsupported, "{}: --format onnx exports a quantized CNN (.catq from catq quantize)",
               args.model);
    return run_export_onnx(common);
  }
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
  const int64_t bytes = static_cast<int64_t>(file_size(args.out));
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
  auto* sub = app.add_subcommand("export", "Write a Llama model as GGUF for llama.cpp (f32/f16/bf16/q8_0/q4_0/q4_1), or "
                                           "a quantized CNN (.catq) as QDQ ONNX for ONNX Runtime");
  sub->footer(
      "2-D weights use --type; rows whose length is not a multiple of 32 fall back to f16 (as llama.cpp's quantizer);\n"
      "RMSNorm weights stay f32. The tokenizer is embedded (tokenizer.ggml.*).\n\n"
      "A quantized CNN (.catq) becomes QDQ ONNX (opset 13): integer weight codes with per-channel DequantizeLinear,\n"
      "activations Clip -> QuantizeLinear -> DequantizeLinear (docs/catq_format.md); a CAT head is not exported.\n\n"
      "Examples:\n"
      "  catq export r20_w4a4.catq -o r20_w4a4_qdq.onnx\n"
      "  catq export stories260K.bin --tokenizer tok512.bin --type q4_0 -o stories260K-q4_0.gguf\n"
      "  catq --json export tiny3m.bin --tokenizer tok512.bin --type q8_0 -o tiny3m-q8_0.gguf\n");
  sub->add_option("model", args.model, "Llama model (llama2.c .bin, .gguf, safetensors folder)")->required();
  sub->add_option("--tokenizer", args.tokenizer, "llama2.c tokenizer (GGUF files carry their own)");
  sub->add_option("--format", args.format, "auto (onnx for a quantized CNN, else gguf) | gguf | onnx")->capture_default_str();
  sub->add_option("--type", args.type, "f32 | f16 | bf16 | q8_0 | q4_0 | q4_1")->capture_default_str();
  sub->add_option("--name", args.name, "general.name")->capture_default_str();
  sub->add_option("-o,--output", args.out, "Output file");
  sub->callback([&common] { run_export(common); });
}

}  // namespace catq::cli

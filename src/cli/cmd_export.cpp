// `catq export MODEL --type q4_0 -o OUT.gguf`: writes a Llama model as GGUF for llama.cpp (block quantization
// Q8_0 / Q4_0 / Q4_1 exactly as ggml defines it, llama metadata, the tokenizer).
// `catq export QUANTIZED_CNN.catq -o OUT.onnx`: writes a quantized CNN as a QDQ ONNX model for ONNX Runtime.
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "methods/cnn/tflite_export_job.h"
#include "methods/llm/export_job.h"

namespace catq::cli {

namespace {

// The command line fills the job; the method layer runs it.
ExportJob args;
TfliteExportJob tflite;

int run_export(const Common& common) {
  if (args.format == "tflite") {
    tflite.model = args.model;
    tflite.out = args.out;
    const nlohmann::json j = run_tflite_export_job(tflite);
    if (common.json) {
      std::cout << j.dump(2) << "\n";
    } else {
      const auto& rb = j["readback"];
      std::cout << fmt::format("{} -> {} (int8 TFLite, {} bytes; {} tensors with ranges measured on {} images, {} "
                               "QUANTIZE, {} PAD inserted)\nread back on catq's TFLite integer executor: decisions "
                               "equal to the simulation on {:.2f} % of {} calibration images{}\n",
                               args.model, args.out, j["bytes"].get<int64_t>(),
                               j["tensors_with_measured_ranges"].get<int64_t>(), j["calibration"]["images"].get<int64_t>(),
                               j["quantize_ops"].get<int64_t>(), j["pad_ops"].get<int64_t>(),
                               rb["decisions_equal_to_simulation"].get<double>(), rb["images"].get<int64_t>(),
                               j["has_head"].get<bool>() ? " (the CAT head is not part of the TFLite file)" : "");
    }
    return 0;
  }
  const nlohmann::json j = run_export_job(args);
  if (common.json) {
    std::cout << j.dump(2) << "\n";
  } else if (j["format"] == "onnx-qdq") {
    const std::string head_note =
        j["head_exported"].get<bool>() ? "; with the CAT / affine head as ONNX ops (ArgMin, Gather, Mul, Add)" : "";
    std::cout << fmt::format("{} -> {} (QDQ ONNX, opset {}, {} nodes, {} bytes){}\n", args.model, args.out,
                             j["opset"].get<int64_t>(), j["nodes"].get<size_t>(), j["bytes"].get<int64_t>(), head_note);
  } else {
    std::string types;
    for (const auto& [t, n] : j["tensors_by_type"].items()) types += fmt::format("{}{} {}", types.empty() ? "" : ", ", n.get<int64_t>(), t);
    std::cout << fmt::format("{} -> {} (GGUF --type {}: tensors {}; {:.2f} bits per weight, {} bytes)\n", args.model,
                             args.out, j["type"].get<std::string>(), types, j["bits_per_weight"].get<double>(),
                             j["bytes"].get<int64_t>());
  }
  return 0;
}

}  // namespace

void register_export(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("export", "Write a Llama model as GGUF for llama.cpp (f32/f16/bf16, q8_0 … q4_0, K-quants, iq4_nl), or "
                                           "a quantized CNN (.catq) as QDQ ONNX for ONNX Runtime");
  sub->footer(
      "2-D weights use --type, round to nearest (K-quants and iq4_nl: a least-squares scale search per sub-block);\n"
      "rows that the type's block does not divide fall back as in llama.cpp's quantizer (q4_k -> q5_0, q5_k -> q5_1,\n"
      "q6_k -> q8_0, q2_k/q3_k -> iq4_nl; f16 when not a multiple of 32);\n"
      "RMSNorm weights stay f32. The tokenizer is embedded (tokenizer.ggml.*).\n\n"
      "A quantized CNN (.catq) becomes QDQ ONNX (opset 13): integer weight codes with per-channel DequantizeLinear,\n"
      "activations Clip -> QuantizeLinear -> DequantizeLinear (docs/catq_format.md); a CAT head becomes ArgMin + Gather + affine ops.\n\n"
      "Examples:\n"
      "  catq export r20_w4a4.catq -o r20_w4a4_qdq.onnx\n"
      "  catq export vww_w8a8.catq --format tflite --calib vww_eval1000_u8hwc.bin -o vww_w8a8.tflite\n"
      "  catq export stories260K.bin --tokenizer tok512.bin --type q4_0 -o stories260K-q4_0.gguf\n"
      "  catq --json export tiny3m.bin --tokenizer tok512.bin --type q8_0 -o tiny3m-q8_0.gguf\n");
  sub->add_option("model", args.model, "Llama model (llama2.c .bin, .gguf, safetensors folder)")->required();
  sub->add_option("--tokenizer", args.tokenizer, "llama2.c tokenizer (GGUF files carry their own)");
  sub->add_option("--format", args.format, "auto (onnx for a quantized CNN, else gguf) | gguf | onnx | tflite (a W8A8 "
                  "quantized CNN as a full-integer int8 TFLite file; needs --calib)")->capture_default_str();
  sub->add_option("--calib", tflite.calib.path, "TFLite: images whose ranges fix the activations the simulation keeps "
                  "in float (CIFAR-10 binary or an EEMBC set)");
  sub->add_option("--calib-split", tflite.calib.split, "TFLite: split of --calib (never eval)")->capture_default_str();
  sub->add_option("--calib-size", tflite.calib.limit, "TFLite: a seeded random subset of N images (0 = all)")
      ->capture_default_str();
  sub->add_option("--type", args.type, "f32 | f16 | bf16 | q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | iq4_nl | q2_k | q3_k | q4_k | q5_k | q6_k")->capture_default_str();
  sub->add_option("--name", args.name, "general.name")->capture_default_str();
  sub->add_option("-o,--output", args.out, "Output file");
  sub->callback([&common] { run_export(common); });
}

}  // namespace catq::cli

// `catq info MODEL`: what a model file holds (format, graph or architecture, parameters, layers).
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "io/model_info.h"

namespace catq::cli {

namespace {

using json = nlohmann::json;

void print_onnx(const std::string& path, const json& j) {
  const bool tflite = j.value("format", "") == "tflite";
  if (tflite) {
    std::cout << fmt::format("{}: TFLite schema {}, {} model, {} tensors{}\n", path, j["schema_version"].get<int64_t>(),
                             j["integer"].get<bool>() ? "integer (int8)" : "float", j["tensors"].get<int64_t>(),
                             j["subgraphs"].get<int64_t>() > 1 ? fmt::format(", {} subgraphs (the first is run)",
                                                                             j["subgraphs"].get<int64_t>()) : "");
  } else {
    const json& f = j["folded"];
    std::cout << fmt::format("{}: ONNX opset {}, {} nodes ({} after folding {} constant + {} shape nodes, {} dead)\n",
                             path, j["opset"].get<int64_t>(), j["nodes_in_file"].get<size_t>(),
                             j["nodes_after_folding"].get<size_t>(), f["constant_nodes"].get<int64_t>(),
                             f["shape_nodes"].get<int64_t>(), f["dead_nodes"].get<int64_t>());
  }
  std::cout << fmt::format("parameters: {}\n", j["parameters"].get<int64_t>());
  auto tensor_line = [&](const char* what, const json& t) {
    std::string q;
    if (t.contains("quantization"))
      q = fmt::format(" scale {} zero-point {}", t["quantization"]["scale"].get<double>(),
                      t["quantization"]["zero_point"].get<int64_t>());
    std::cout << fmt::format("{} {} [{}]{}{}\n", what, t["name"].get<std::string>(),
                             fmt::join(t["shape"].get<std::vector<int64_t>>(), ","),
                             t.contains("type") ? " " + t["type"].get<std::string>() : "", q);
  };
  for (const auto& in : j.value("inputs", json::array())) tensor_line("input ", in);
  for (const auto& o : j.value("outputs", json::array())) tensor_line("output", o);
  std::cout << "ops:";
  for (const auto& [op, c] : j["ops"].items()) std::cout << fmt::format(" {}x{}", op, c.get<int64_t>());
  const json layers = j.value("layers", json::array());
  std::cout << fmt::format("\nquantizable layers: {}\n", layers.size());
  int index = 0;  // a layer's index is its position in execution order
  for (const auto& l : layers)
    std::cout << fmt::format("  {:3d} {:6} {:40} [{}]\n", index++, l["kind"].get<std::string>(),
                             l["name"].get<std::string>(), fmt::join(l["weight_shape"].get<std::vector<int64_t>>(), ","));
}

void print_llm(const std::string& model, const ModelInfo& info) {
  const json& j = info.json;
  const json& tok = j["tokenizer"];
  std::printf("%s: %s Llama model, %.3f M parameters\n", model.c_str(), j["format"].get<std::string>().c_str(),
              j["parameters"].get<int64_t>() / 1e6);
  std::printf("  %s\n", info.config_summary.c_str());
  std::printf("  quantizable linear layers: %zu (blk.{i}.attn_q/k/v/output, ffn_gate/up/down, output)\n",
              j["quantizable_layers"].get<size_t>());
  if (!tok["source"].is_null())
    std::printf("  tokenizer: %s, %lld tokens (BOS %d, EOS %d)\n", tok["source"].get<std::string>().c_str(),
                static_cast<long long>(tok["vocab_size"].get<int64_t>()), tok["bos_id"].get<int>(),
                tok["eos_id"].get<int>());
  else
    std::printf("  tokenizer: none (%s)\n", tok["note"].get<std::string>().c_str());
  if (j.contains("gguf") && !j["gguf"]["tensor_types"].empty()) {
    std::printf("  GGUF v%u, tensor types:", j["gguf"]["version"].get<unsigned>());
    for (const auto& [t, n] : j["gguf"]["tensor_types"].items())
      std::printf(" %s x%lld", t.c_str(), static_cast<long long>(n.get<int64_t>()));
    std::printf("\n");
  }
}

void print_quantized_cnn(const std::string& model, const ModelInfo& info) {
  const json& j = info.json;
  const json& md = j["metadata"];
  const json& head = j["head"];
  std::cout << fmt::format("{}: quantized CNN ({} {}), {} layers, {} weight bytes{}\n{}", model, md.value("method", "?"),
                           md.value("bits", "?"), j["layers"].get<size_t>(), j["weight_bytes"].get<uint64_t>(),
                           head.is_null() ? "" : fmt::format(", CAT head K={} alpha={}", head["k"].get<int64_t>(),
                                                             head["alpha"].get<double>()),
                           info.report_table);
}

}  // namespace

void register_info(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("info", "Show what a model file holds (ONNX graph or Llama checkpoint)");
  sub->footer("Examples:\n  catq info ../shared/assets/resnet-cifar10/resnet20.onnx\n"
              "  catq --json info ../shared/assets/llama2c/stories260K.bin");
  static std::string model, tokenizer;
  sub->add_option("--tokenizer", tokenizer, "llama2.c tokenizer file (for LLM checkpoints)");
  sub->add_option("model", model, "Model file (.onnx, .tflite, .catq, llama2.c .bin, .gguf, safetensors folder)")->required();
  sub->callback([&common] {
    const ModelInfo info = describe_model(model, tokenizer);
    switch (info.kind) {
      case ModelInfo::Kind::Onnx:
        if (common.json) std::cout << info.json.dump(2) << "\n";
        else print_onnx(model, info.json);
        break;
      case ModelInfo::Kind::Llama:
        if (common.json) std::printf("%s\n", info.json.dump(2).c_str());
        else print_llm(model, info);
        break;
      case ModelInfo::Kind::QuantizedCnn:
        if (common.json) std::cout << info.json.dump(2) << "\n";
        else print_quantized_cnn(model, info);
        break;
    }
  });
}

}  // namespace catq::cli

// `catq info MODEL`: what a model file holds (format, graph or architecture, parameters, layers).
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "io/catq_file.h"
#include "core/error.h"
#include "cli/llm_cmds.h"
#include "io/model_format.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"
#include "sim/fold_constants.h"
#include "sim/executor.h"

namespace catq::cli {

static int onnx_info(const std::string& path, const Common& common) {
  Graph g = load_onnx(path);
  size_t nodes_before = g.nodes.size();
  FoldStats fs = fold_constants(g);
  GraphExecutor ex(std::move(g));
  const Graph& gr = ex.graph();
  nlohmann::json j;
  j["file"] = path;
  j["format"] = "onnx";
  j["opset"] = gr.opset;
  j["nodes_in_file"] = nodes_before;
  j["nodes_after_folding"] = gr.nodes.size();
  j["folded"] = {{"constant_nodes", fs.constant_nodes}, {"shape_nodes", fs.shape_nodes}, {"dead_nodes", fs.dead_nodes}};
  j["parameters"] = gr.parameter_count();
  for (const auto& in : gr.inputs) j["inputs"].push_back({{"name", in.name}, {"shape", in.shape}});
  for (const auto& o : gr.outputs) j["outputs"].push_back({{"name", o.name}, {"shape", o.shape}});
  j["ops"] = gr.op_histogram();
  for (const auto& l : ex.layers())
    j["layers"].push_back({{"name", l.name}, {"kind", l.kind == LayerKind::Conv ? "conv" : "linear"},
                           {"weight_shape", l.weight_shape}});
  if (common.json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{}: ONNX opset {}, {} nodes ({} after folding {} constant + {} shape nodes, {} dead)\n",
                           path, gr.opset, nodes_before, gr.nodes.size(), fs.constant_nodes, fs.shape_nodes,
                           fs.dead_nodes);
  std::cout << fmt::format("parameters: {}\n", gr.parameter_count());
  for (const auto& in : gr.inputs) std::cout << fmt::format("input  {} [{}]\n", in.name, fmt::join(in.shape, ","));
  for (const auto& o : gr.outputs) std::cout << fmt::format("output {} [{}]\n", o.name, fmt::join(o.shape, ","));
  std::cout << "ops:";
  for (const auto& [op, c] : gr.op_histogram()) std::cout << fmt::format(" {}x{}", op, c);
  std::cout << fmt::format("\nquantizable layers: {}\n", ex.layers().size());
  for (const auto& l : ex.layers())
    std::cout << fmt::format("  {:3d} {:6} {:40} [{}]\n", l.index, l.kind == LayerKind::Conv ? "conv" : "linear",
                             l.name, fmt::join(l.weight_shape, ","));
  return 0;
}

void register_info(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("info", "Show what a model file holds (ONNX graph or Llama checkpoint)");
  sub->footer("Examples:\n  catq info ../shared/assets/resnet-cifar10/resnet20.onnx\n"
              "  catq --json info ../shared/assets/llama2c/stories260K.bin");
  static std::string model, tokenizer;
  sub->add_option("--tokenizer", tokenizer, "llama2.c tokenizer file (for LLM checkpoints)");
  sub->add_option("model", model, "Model file (.onnx, llama2.c .bin, .gguf, safetensors folder)")->required();
  sub->callback([&common] {
    ModelFormat f = detect_model_format(model);
    switch (f) {
      case ModelFormat::Onnx: onnx_info(model, common); break;
      case ModelFormat::Llama2c: case ModelFormat::Gguf: case ModelFormat::Safetensors: run_llm_info(model, common, tokenizer); break;
      case ModelFormat::CatqQuantized:
        if (catq_file_kind(model) == "llm") {
          run_llm_info(model, common, tokenizer);
        } else {
          QuantizedCnn q = read_catq(model);
          nlohmann::json j = {{"model", model}, {"kind", "quantized CNN"}, {"metadata", q.metadata},
                              {"layers", q.ex->layers().size()}, {"weight_bytes", q.sq->total_weight_bytes()},
                              {"head", q.head ? nlohmann::json{{"k", q.head->k}, {"alpha", q.head->alpha}} : nlohmann::json(nullptr)}};
          if (common.json) std::cout << j.dump(2) << "\n";
          else std::cout << fmt::format("{}: quantized CNN ({} {}), {} layers, {} weight bytes{}\n{}", model,
                                        q.metadata.value("method", "?"), q.metadata.value("bits", "?"),
                                        q.ex->layers().size(), q.sq->total_weight_bytes(),
                                        q.head ? fmt::format(", CAT head K={} alpha={}", q.head->k, q.head->alpha) : "",
                                        q.sq->report_table());
        }
        break;
      default: fail(ErrorKind::Unsupported, "{}: format '{}' is not supported by 'info' yet", model, model_format_name(f));
    }
  });
}

}  // namespace catq::cli

#include "io/model_info.h"

#include <map>

#include "core/error.h"
#include "io/catq_file.h"
#include "io/gguf.h"
#include "io/llama_config_json.h"
#include "io/llm_loader.h"
#include "io/model_format.h"
#include "io/onnx_reader.h"
#include "io/tflite.h"
#include "sim/executor.h"
#include "sim/fold_constants.h"

namespace catq {

namespace {

using json = nlohmann::json;

ModelInfo onnx_info(const std::string& path) {
  Graph g = load_onnx(path);
  size_t nodes_before = g.nodes.size();
  FoldStats fs = fold_constants(g);
  GraphExecutor ex(std::move(g));
  const Graph& gr = ex.graph();
  ModelInfo info;
  info.kind = ModelInfo::Kind::Onnx;
  json& j = info.json;
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
  return info;
}

ModelInfo llm_info(const std::string& model, const std::string& tokenizer) {
  LoadedLlama m = load_llama(model, tokenizer);
  const LlamaConfig& c = m.model.cfg;
  ModelInfo info;
  info.kind = ModelInfo::Kind::Llama;
  info.config_summary = c.summary();
  json& j = info.json;
  j = {{"model", model}, {"format", m.format}, {"architecture", to_string(c.arch)},
       {"config", llama_config_to_json(c)},
       {"parameters", m.model.num_parameters()}};
  j["config"]["head_size"] = c.hd();
  j["tokenizer"] = m.tokenizer ? json{{"source", m.tokenizer_path}, {"vocab_size", m.tokenizer->vocab_size()},
                                      {"bos_id", m.tokenizer->bos_id()}, {"eos_id", m.tokenizer->eos_id()}}
                               : json{{"source", nullptr}, {"note", m.tokenizer_note}};
  json layers = json::array();
  for (const auto& li : m.model.layer_infos()) layers.push_back(li.name);
  j["quantizable_layers"] = layers.size();
  std::map<std::string, int64_t> types;
  if (m.format == "gguf") {
    GgufFile g = read_gguf(model);
    json meta = json::object();
    for (const auto& [k, v] : g.kv) meta[k] = v.describe();
    for (const auto& t : g.tensors) types[ggml_type_name(t.type)]++;
    j["gguf"] = {{"version", g.version}, {"alignment", g.alignment}, {"metadata", meta}, {"tensor_types", types},
                 {"tensors", g.tensors.size()}};
  }
  return info;
}

ModelInfo tflite_info(const std::string& path) {
  const TfliteModel m = read_tflite(path);
  ModelInfo info;
  info.kind = ModelInfo::Kind::Onnx;
  json& j = info.json;
  j["file"] = path;
  j["format"] = "tflite";
  j["schema_version"] = m.version;
  j["description"] = m.description;
  j["integer"] = m.is_integer();
  j["subgraphs"] = m.subgraphs;
  j["tensors"] = m.tensors.size();
  int64_t params = 0;
  for (const auto& t : m.tensors)
    if (t.is_constant()) params += t.numel();
  j["parameters"] = params;
  auto tensor_json = [&](int32_t i) {
    const TfliteTensor& t = m.tensor(i);
    json tj = {{"name", t.name}, {"shape", t.shape}, {"type", tflite_type_name(static_cast<int>(t.type))}};
    if (t.quant.present() && !t.quant.per_channel())
      tj["quantization"] = {{"scale", t.quant.scale[0]}, {"zero_point", t.quant.zero_point[0]}};
    return tj;
  };
  for (int32_t i : m.inputs) j["inputs"].push_back(tensor_json(i));
  for (int32_t i : m.outputs) j["outputs"].push_back(tensor_json(i));
  j["ops"] = m.op_histogram();
  Graph g = tflite_to_graph(m);  // refuses unsupported operators by name
  GraphExecutor ex(std::move(g));
  for (const auto& l : ex.layers())
    j["layers"].push_back({{"name", l.name}, {"kind", l.kind == LayerKind::Conv ? "conv" : "linear"},
                           {"weight_shape", l.weight_shape}});
  return info;
}

ModelInfo quantized_cnn_info(const std::string& model) {
  QuantizedCnn q = read_catq(model);
  ModelInfo info;
  info.kind = ModelInfo::Kind::QuantizedCnn;
  info.json = {{"model", model}, {"kind", "quantized CNN"}, {"metadata", q.metadata},
               {"layers", q.ex->layers().size()}, {"weight_bytes", q.sq->total_weight_bytes()},
               {"head", q.head ? json{{"k", q.head->k}, {"alpha", q.head->alpha}} : json(nullptr)}};
  info.report_table = q.sq->report_table();
  return info;
}

}  // namespace

ModelInfo describe_model(const std::string& path, const std::string& tokenizer) {
  ModelFormat f = detect_model_format(path);
  switch (f) {
    case ModelFormat::Onnx: return onnx_info(path);
    case ModelFormat::Tflite: return tflite_info(path);
    case ModelFormat::Llama2c: case ModelFormat::Gguf: case ModelFormat::Safetensors: return llm_info(path, tokenizer);
    case ModelFormat::CatqQuantized:
      if (catq_file_kind(path) == "llm") return llm_info(path, tokenizer);
      return quantized_cnn_info(path);
    default: fail(ErrorKind::Unsupported, "{}: format '{}' is not supported by 'info' yet", path, model_format_name(f));
  }
}

}  // namespace catq

#include "methods/llm/export_job.h"

#include <algorithm>
#include <cstdint>
#include <map>

#include "core/error.h"
#include "core/file_util.h"
#include "io/catq_file.h"
#include "io/gguf.h"
#include "io/llm_loader.h"
#include "io/model_format.h"
#include "quant/ggml_blocks.h"
#include "io/onnx_writer.h"
#include "llm/llama_tensors.h"

namespace catq {

namespace {

// A quantized CNN (.catq) as QDQ ONNX.
nlohmann::json export_onnx(const ExportJob& job) {
  QuantizedCnn m = read_catq(job.model);
  Graph g = qdq_graph(*m.ex, *m.sq);
  if (m.head) append_cat_head(g, *m.head);  // the CAT head as ONNX ops (ArgMin + Gather + affine)
  write_onnx(g, job.out, 13);
  const int64_t bytes = static_cast<int64_t>(file_size(job.out));
  return nlohmann::json{{"model", job.model}, {"output", job.out}, {"format", "onnx-qdq"},
                        {"opset", g.opset}, {"bytes", bytes}, {"nodes", g.nodes.size()},
                        {"head_exported", m.head.has_value()}, {"has_head", m.head.has_value()}};
}

// A quantized .catq LLM's layers as GGUF blocks whose codes are its codes: uniform per-channel or per-group (groups
// of 32·k along the input) weights of 4, 5 or 8 bits map onto Q4_0 / Q5_0 / Q8_0 (symmetric: x = s·q) or Q4_1 /
// Q5_1 (zero point: x = s·(q − z) = s·(q − qmin) + s·(qmin − z)), every 32-value block taking its group's scale
// (rounded to fp16, as GGUF stores it). Anything llama.cpp's graph would compute differently is refused naming the
// layer: quantized activations, KV cache or embeddings, other bit widths or schemes. Returns the tensors by GGUF name
// and, in *dominant, the type most weights use (the file's general.file_type); *max_dev: the largest
// |GGUF value − catq value| relative to the layer's largest magnitude (the fp16 rounding of the scales).
std::map<std::string, QuantizedWeight> gguf_tensors_of_catq(const LoadedLlama& m, GgufWeightType* dominant,
                                                              double* max_dev) {
  const SimQuant& sq = *m.quant;
  const QuantConfig& qc = sq.config();
  CATQ_CHECK(!qc.kv_cache.enabled, Unsupported, "the model quantizes its KV cache ({}); llama.cpp's GGUF graph keeps "
             "it in floating point: export refused", qc.kv_cache.str());
  CATQ_CHECK(!qc.embedding.enabled, Unsupported, "the model quantizes its token embeddings per row ({}), which no GGUF "
             "type catq writes reproduces: export refused", qc.embedding.str());
  std::map<std::string, QuantizedWeight> out;
  std::map<GgufWeightType, int64_t> weights_by_type;
  *max_dev = 0;
  const int64_t head = static_cast<int64_t>(m.model.blocks.size()) * kLinearsPerBlock;
  for (const LayerInfo& li : m.model.layer_infos()) {
    const SimQuant::Layer& l = sq.layer(li.name);
    auto refuse = [&](const std::string& why) {
      fail(ErrorKind::Unsupported, "layer '{}': {}; llama.cpp's graph cannot run it as catq does: export refused",
           li.name, why);
    };
    if (l.input_spec.enabled) refuse(fmt::format("its input activations are quantized ({})", l.input_spec.str()));
    if (!l.weight_spec.enabled) continue;  // floating point: written as F32 below
    if (!l.weight_codes.defined()) refuse("its weight has no stored codes");
    const QuantizedWeight qw = sq.quantized_weight(li.name);
    std::string why;
    const std::optional<WeightFormat> f = exact_ggml_format(qw, &why);
    if (!f) refuse(why);
    double dev = 0;
    QuantizedWeight g = convert_weight(qw, *f, &dev);
    *max_dev = std::max(*max_dev, dev);
    const GgufWeightType t = gguf_weight_type_of_ggml(g.traits().ggml);
    if (li.index == head && m.model.cfg.tied_head)
      refuse("the tied LM head is quantized while the token lookup stays floating point; GGUF has one tensor for both "
             "(quantize with the head in floating point, or untie it)");
    const std::string name = li.index == head ? (m.model.cfg.tied_head ? kLlamaTokenEmbd.gguf_name() : kLlamaOutput.gguf_name())
                                              : li.name + ".weight";
    out[name] = std::move(g);
    weights_by_type[t] += qw.numel();
  }
  CATQ_CHECK(!weights_by_type.empty(), Unsupported, "no layer of the model has quantized weights");
  *dominant = std::max_element(weights_by_type.begin(), weights_by_type.end(),
                               [](const auto& a, const auto& b) { return a.second < b.second; })->first;
  return out;
}

}  // namespace

nlohmann::json run_export_job(const ExportJob& job) {
  CATQ_CHECK(job.format == "auto" || job.format == "gguf" || job.format == "onnx", Usage,
             "export: --format '{}': expected auto, gguf or onnx", job.format);
  CATQ_CHECK(!job.out.empty(), Usage, "export: -o OUT is required");
  // --format onnx reads the model now (a missing file is an I/O error); auto only looks when the file exists.
  const bool look = job.format == "onnx" || (job.format == "auto" && file_exists(job.model));
  const bool quantized_cnn = look && detect_model_format(job.model) == ModelFormat::CatqQuantized &&
                             catq_file_kind(job.model) == "cnn";
  if (job.format == "onnx" || quantized_cnn) {
    CATQ_CHECK(quantized_cnn, Unsupported, "{}: --format onnx exports a quantized CNN (.catq from catq quantize)",
               job.model);
    return export_onnx(job);
  }
  GgufWriteOptions o;
  o.weights = parse_gguf_weight_type(job.type);
  o.name = job.name;
  CATQ_CHECK(is_llm_model_file(job.model), Unsupported, "{}: export --format gguf needs a Llama model (llama2.c, GGUF, "
             "safetensors folder)", job.model);
  LoadedLlama m = load_llama(job.model, job.tokenizer);
  CATQ_CHECK(m.tokenizer.has_value(), Usage, "{}: no tokenizer ({}); llama.cpp needs one: pass --tokenizer",
             job.model, m.tokenizer_note);
  // A quantized .catq: its own codes, where they map exactly (else refused naming the layer); FP tensors stay F32.
  std::map<std::string, QuantizedWeight> codes;
  double max_dev = 0;
  if (m.quant) {
    try {
      codes = gguf_tensors_of_catq(m, &o.weights, &max_dev);
      for (const LlamaBlock& b : m.model.blocks)
        CATQ_CHECK(!b.attn_in.defined() && !b.ffn_in.defined() && !b.down_in.defined(), Unsupported,
                   "its transforms run online (a Hadamard or block transform inside the block), which llama.cpp's "
                   "graph cannot run");
    } catch (const Error& e) {
      fail(e.kind(), "{}: {}. (For llama.cpp, quantize the FP model directly: catq quantize FP_MODEL --text F --gguf T "
           "--weights gptq -o OUT.gguf)", job.model, e.what());
    }
    o.encoded = &codes;
    o.fp_unencoded = true;
  }
  write_gguf_llama(m.model, &*m.tokenizer, job.out, o);
  const int64_t bytes = static_cast<int64_t>(file_size(job.out));
  const GgufFile written = read_gguf(job.out);
  return nlohmann::json{{"model", job.model}, {"output", job.out}, {"format", "gguf"},
                        {"type", to_string(o.weights)}, {"bytes", bytes}, {"tensors_by_type", gguf_tensors_by_type(written)},
                        {"bits_per_weight", gguf_bits_per_weight(written)},
                        {"parameters", m.model.num_parameters()},
                        {"from_quantized", static_cast<bool>(m.quant)},
                        {"max_relative_deviation", max_dev}};
}

}  // namespace catq

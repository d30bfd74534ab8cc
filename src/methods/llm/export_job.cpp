#include "methods/llm/export_job.h"

#include <cstdint>

#include "core/error.h"
#include "core/file_util.h"
#include "io/catq_file.h"
#include "io/gguf.h"
#include "io/llm_loader.h"
#include "io/model_format.h"
#include "io/onnx_writer.h"

namespace catq {

namespace {

// A quantized CNN (.catq) as QDQ ONNX.
nlohmann::json export_onnx(const ExportJob& job) {
  QuantizedCnn m = read_catq(job.model);
  Graph g = qdq_graph(*m.ex, *m.sq);
  write_onnx(g, job.out, 13);
  const int64_t bytes = static_cast<int64_t>(file_size(job.out));
  return nlohmann::json{{"model", job.model}, {"output", job.out}, {"format", "onnx-qdq"},
                        {"opset", g.opset}, {"bytes", bytes}, {"nodes", g.nodes.size()},
                        {"head_exported", false}, {"has_head", m.head.has_value()}};
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
  // A .catq model's online transforms and per-channel codes have no GGUF equivalent: export its FP source instead.
  CATQ_CHECK(!m.quant, Unsupported, "{}: a quantized .catq model cannot be written as GGUF (its transforms and codes "
             "have no GGUF equivalent yet); export the FP model with --type T, or quantize it for llama.cpp directly: catq "
             "quantize FP_MODEL --text F --gguf T --weights gptq -o OUT.gguf", job.model);
  CATQ_CHECK(m.tokenizer.has_value(), Usage, "{}: no tokenizer ({}); llama.cpp needs one: pass --tokenizer",
             job.model, m.tokenizer_note);
  write_gguf_llama(m.model, &*m.tokenizer, job.out, o);
  const int64_t bytes = static_cast<int64_t>(file_size(job.out));
  const GgufFile written = read_gguf(job.out);
  return nlohmann::json{{"model", job.model}, {"output", job.out}, {"format", "gguf"},
                        {"type", to_string(o.weights)}, {"bytes", bytes}, {"tensors_by_type", gguf_tensors_by_type(written)},
                        {"bits_per_weight", gguf_bits_per_weight(written)},
                        {"parameters", m.model.num_parameters()}};
}

}  // namespace catq

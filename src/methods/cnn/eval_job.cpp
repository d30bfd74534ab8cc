#include "methods/cnn/eval_job.h"

#include <map>
#include <memory>
#include <optional>

#include "core/error.h"
#include "eval/classification.h"
#include "eval/sqnr.h"
#include "io/catq_file.h"
#include "io/cifar.h"
#include "io/cnn_model.h"
#include "io/tflite.h"
#include "methods/cnn/pipeline.h"
#include "runtime/tflite_int8.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"
#include "methods/cnn/rtn.h"
#include "runtime/int_cnn.h"
#include "sim/fold_constants.h"
#include "sim/sim_quant.h"

namespace catq {

using json = nlohmann::json;

namespace {

// Per-layer output SQNR on (up to) 500 evaluation images: each layer's output in the quantized model against the
// same layer's output in the FP model.
std::vector<LayerSqnr> layer_output_sqnr(GraphExecutor& ex, SimQuant& sq, const ImageDataset& data, int64_t batch) {
  LayerSqnrCollector col;
  at::NoGradGuard ng;
  ImageDataset probe = data.slice(0, 500);
  for (int64_t i = 0; i < probe.size(); i += batch) {
    at::Tensor x = probe.slice(i, i + batch).images;
    std::map<std::string, at::Tensor> ref, q;
    auto* target = &ref;
    ex.on_layer_output = [&](const LayerInfo& l, const at::Tensor& y) { (*target)[l.name] = y; };
    ex.forward(x);
    target = &q;
    ex.forward(x, &sq);
    ex.on_layer_output = nullptr;
    col.add(ref, q);
  }
  return col.table();
}

json top_json(const ClassifyResult& r) { return {{"top1", r.top1 * 100}, {"top5", r.top5 * 100}}; }

}  // namespace

CnnEvalReport run_onnx_eval_job(const CnnEvalJob& job) {
  CATQ_CHECK(job.runtime != "lean", Usage, "{}: --runtime lean runs a GGUF language model, not a CNN", job.model);
  CATQ_CHECK(job.runtime == "sim", Unsupported, "{}: --runtime int runs a quantized .catq model (quantize the FP model "
             "first)", job.model);
  CATQ_CHECK(!job.data.empty(), Usage, "eval: --data FILE is required for a CNN (a CIFAR-10 .bin file or an EEMBC set)");
  Graph g = load_cnn_graph(job.model);
  std::optional<QuantConfig> cfg;
  if (!job.quant.empty()) cfg = QuantConfig::load(job.quant);
  bool fold_bn = !job.no_fold_bn && (!cfg || cfg->fold_bn);
  if (fold_bn) fold_batchnorm(g);
  const DataOptions dopt = data_options_for(job.model, job.data, job.data_options);
  ImageDataset data = load_image_data(job.data, job.split, dopt);
  check_image_model(g, data, "eval", "evaluation");
  GraphExecutor ex(std::move(g));
  ClassifyOptions o;
  o.batch_size = job.batch;
  o.limit = job.limit;
  auto fp_fn = [&](const at::Tensor& x) { return ex.forward(x); };
  CnnEvalReport rep;
  json& j = rep.json;
  j["model"] = job.model;
  j["data"] = data.name;
  j["bn_folded"] = fold_bn;

  if (!cfg) {
    o.label = "fp32";
    ClassifyResult fp = evaluate_classifier(data, fp_fn, o);
    j["n"] = fp.n;
    j["fp32"] = {{"top1", fp.top1 * 100}, {"top5", fp.top5 * 100}, {"seconds", fp.seconds}};
    return rep;
  }

  std::string calib_path = job.calib_data.empty() ? job.data : job.calib_data;
  CATQ_CHECK(!(calib_path == job.data && job.calib_split != "calib" && job.split != "calib"),
             Usage, "eval: calibrating on split '{}' of the evaluation file would calibrate on evaluation images; "
             "use --calib-split calib", job.calib_split);
  ImageDataset calib = load_image_data(calib_path, job.calib_split, data_options_for(job.model, calib_path, job.data_options));
  if (job.calib_size > 0) calib = calib.slice(0, job.calib_size);
  SimQuant sq(*cfg);
  calibrate_rtn(ex, sq, calib.images, job.batch);
  o.label = "fp32 vs " + job.quant;
  CompareResult c = compare_classifiers(data, fp_fn, [&](const at::Tensor& x) { return ex.forward(x, &sq); }, o);
  std::vector<LayerSqnr> sqnr;
  if (job.per_layer) {
    sqnr = layer_output_sqnr(ex, sq, data, job.batch);
    rep.quantizer_table = sq.report_table();
  }

  j["n"] = c.n;
  j["calibration"] = {{"data", calib.name}, {"images", calib.size()}};
  j["config"] = cfg->to_json();
  j["fp32"] = {{"top1", c.top1_ref * 100}, {"top5", c.top5_ref * 100}};
  j["quantized"] = {{"label", job.quant}, {"top1", c.top1_q * 100}, {"top5", c.top5_q * 100},
                    {"weight_bytes", sq.total_weight_bytes()}};
  j["kl"] = c.kl;
  j["top1_agreement"] = c.agreement * 100;
  for (const auto& r : sqnr) {
    j["layer_sqnr_db"][r.name] = r.sqnr_db;
    rep.layer_sqnr.emplace_back(r.name, r.sqnr_db);
  }
  return rep;
}

// The float reference model (ONNX or float TFLite, BatchNorm folded) on the same images, logits kept.
static ClassifyResult evaluate_reference(const std::string& path, const ImageDataset& data, ClassifyOptions o) {
  Graph g = load_cnn_graph(path);
  fold_batchnorm(g);
  GraphExecutor ref(std::move(g));
  o.label = "eval reference";
  return evaluate_classifier(data, [&](const at::Tensor& x) { return ref.forward(x); }, o);
}

json run_catq_eval_job(const CnnEvalJob& job) {
  CATQ_CHECK(!job.data.empty(), Usage, "eval: --data FILE is required for a quantized CNN (a CIFAR-10 .bin file)");
  CATQ_CHECK(job.quant.empty(), Usage, "eval: {} is already quantized; --quant does not apply", job.model);
  QuantizedCnn m = read_catq(job.model);
  // The scaling the model was quantized with (recorded by catq quantize), unless given.
  ImageDataset data =
      load_image_data(job.data, job.split, data_options_for_catq(m.metadata, job.reference, job.data, job.data_options));
  ClassifyOptions o;
  o.batch_size = job.batch;
  o.limit = job.limit;
  o.keep_logits = true;
  json j;
  j["model"] = job.model;
  j["data"] = data.name;
  j["metadata"] = m.metadata;
  o.label = "eval quantized";
  ClassifyResult base = evaluate_classifier(data, [&](const at::Tensor& x) { return m.base_logits(x); }, o);
  j["n"] = base.n;
  j["quantized"] = {{"top1", base.top1 * 100}, {"top5", base.top5 * 100}, {"weight_bytes", m.sq->total_weight_bytes()},
                    {"seconds", base.seconds}};
  std::optional<ClassifyResult> headed;
  const at::Tensor labels = data.labels.slice(0, 0, base.n);
  if (m.head) {
    ClassifyResult h;
    h.logits = m.head->apply(base.logits);
    h.n = base.n;
    h.top1 = static_cast<double>(topk_correct(h.logits, labels, 1)) / h.n;
    h.top5 = static_cast<double>(topk_correct(h.logits, labels, 5)) / h.n;
    headed = h;
    j["with_head"] = {{"top1", h.top1 * 100}, {"top5", h.top5 * 100}, {"k", m.head->k}, {"alpha", m.head->alpha},
                      {"extra_params", m.head->extra_params()}};
  }
  // runtime "int": the same images through the integer runtime, compared with the simulation just measured.
  CATQ_CHECK(job.runtime != "lean", Usage, "{}: --runtime lean runs a GGUF language model, not a CNN", job.model);
  if (job.runtime == "int") {
    IntegerCnn net(*m.ex, *m.sq);
    const IntegerRuntime& rt = net.runtime();
    o.label = "eval integer runtime";
    ClassifyResult integer = evaluate_classifier(data, [&](const at::Tensor& x) { return net.forward(x); }, o);
    json layers = json::array();
    for (const auto& e : rt.report()) layers.push_back({{"name", e.name}, {"runtime", e.how}});
    j["integer_runtime"] = {{"top1", integer.top1 * 100}, {"top5", integer.top5 * 100}, {"seconds", integer.seconds},
                            {"images_per_s", integer.n / integer.seconds},
                            {"top1_agreement_with_simulation", top1_agreement(base.logits, integer.logits) * 100},
                            {"kl_vs_simulation", kl_divergence(base.logits, integer.logits)},
                            {"integer_layers", rt.num_integer()}, {"layers", layers},
                            {"convs_writing_codes", net.fused_convs()}, {"convs_adding_shortcut", net.residual_convs()},
                            {"fallbacks", net.fallback_calls()}, {"classifier_integer_calls", net.linear_calls()}};
    j["quantized"]["images_per_s"] = base.n / base.seconds;
    if (m.head) {
      const at::Tensor hl = m.head->apply(integer.logits);
      j["integer_runtime"]["with_head_top1"] = 100.0 * static_cast<double>(topk_correct(hl, labels, 1)) / base.n;
      j["integer_runtime"]["with_head_agreement_with_simulation"] = top1_agreement(headed->logits, hl) * 100;
    }
  }
  if (!job.reference.empty()) {
    const ClassifyResult fp = evaluate_reference(job.reference, data, o);
    j["fp32"] = top_json(fp);
    j["quantized"]["kl"] = kl_divergence(fp.logits, base.logits);
    j["quantized"]["top1_agreement"] = top1_agreement(fp.logits, base.logits) * 100;
    if (headed) {
      j["with_head"]["kl"] = kl_divergence(fp.logits, headed->logits);
      j["with_head"]["top1_agreement"] = top1_agreement(fp.logits, headed->logits) * 100;
    }
  }
  return j;
}

json run_tflite_int8_eval_job(const CnnEvalJob& job) {
  CATQ_CHECK(!job.data.empty(), Usage, "eval: --data FILE is required for a CNN (a CIFAR-10 .bin file or an EEMBC set)");
  CATQ_CHECK(job.quant.empty(), Usage, "eval: {} is already an integer model; --quant does not apply", job.model);
  CATQ_CHECK(job.runtime == "sim" || job.runtime == "int", Usage, "{}: an integer TFLite model runs on catq's TFLite "
             "integer executor (--runtime int)", job.model);
  TfliteModel tm = read_tflite(job.model);
  // KWS features are dequantized with the official int8 DS-CNN's input parameters (io/image_data.h), whatever this
  // file's input parameters are (a file catq exported has its own); the executor quantizes them with its own.
  ImageDataset data = load_image_data(job.data, job.split, data_options_for(job.model, job.data, job.data_options));
  TfliteInt8Executor net(std::move(tm));
  ClassifyOptions o;
  o.batch_size = job.batch;
  o.limit = job.limit;
  o.keep_logits = true;
  o.label = "eval int8 tflite";
  ClassifyResult r = evaluate_classifier(data, [&](const at::Tensor& x) { return net.forward(x); }, o);
  json j;
  j["model"] = job.model;
  j["data"] = data.name;
  j["n"] = r.n;
  j["int8"] = {{"top1", r.top1 * 100}, {"top5", r.top5 * 100}, {"seconds", r.seconds},
               {"images_per_s", r.n / r.seconds}, {"runtime", "catq TFLite integer executor (TFLite reference-kernel "
                                                              "arithmetic)"}};
  if (!job.reference.empty()) {
    const ClassifyResult fp = evaluate_reference(job.reference, data, o);
    j["fp32"] = top_json(fp);
    j["int8"]["kl"] = kl_divergence(fp.logits, r.logits);
    j["int8"]["top1_agreement"] = top1_agreement(fp.logits, r.logits) * 100;
  }
  return j;
}

}  // namespace catq

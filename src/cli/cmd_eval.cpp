// `catq eval MODEL ...`: accuracy of a CNN on CIFAR-10 (FP32, or RTN-quantized with --quant, reporting
// agreement / KL vs FP32 and per-layer SQNR), or perplexity of a Llama model on text.
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/llm_cmds.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/progress.h"
#include "eval/classification.h"
#include "eval/sqnr.h"
#include "runtime/int_cnn.h"
#include "runtime/int_runtime.h"
#include "io/catq_file.h"
#include "methods/cnn/rtn.h"
#include "methods/llm/pipeline.h"
#include "io/cifar.h"
#include "io/model_format.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"
#include "sim/fold_constants.h"
#include "sim/executor.h"
#include "sim/sim_quant.h"

namespace catq::cli {

namespace {

struct EvalArgs {
  std::string model, data, split = "eval", quant, calib_data, calib_split = "calib", reference;
  std::string runtime = "sim";
  int64_t batch = 250, limit = 0, calib_size = 0;
  bool no_fold_bn = false, per_layer = false;
  // LLM
  std::string text, tokenizer, calib_text;
  int64_t calib_chars = 12000;
  std::string transform = "none", weights = "rtn";
  bool act_order = false;
  double gptq_damp = 0.01;
  PerplexityOptions ppl;
};
EvalArgs args;

int onnx_eval(const Common& common) {
  CATQ_CHECK(args.runtime == "sim", Unsupported, "{}: --runtime int runs a quantized .catq model (quantize the ONNX model first)",
             args.model);
  CATQ_CHECK(!args.data.empty(), Usage, "eval: --data FILE is required for an ONNX model (a CIFAR-10 .bin file)");
  Graph g = load_onnx(args.model);
  fold_constants(g);
  std::optional<QuantConfig> cfg;
  if (!args.quant.empty()) cfg = QuantConfig::load(args.quant);
  bool fold_bn = !args.no_fold_bn && (!cfg || cfg->fold_bn);
  if (fold_bn) fold_batchnorm(g);
  GraphExecutor ex(std::move(g));
  ImageDataset data = load_cifar10(args.data, parse_cifar_split(args.split));
  CATQ_CHECK(data.images.size(1) == 3 && data.images.size(2) == 32, Data, "{}: images are [{}] but the model expects "
             "CIFAR-sized [3,32,32] input", args.data, fmt::join(data.images.sizes().slice(1), ","));
  ClassifyOptions o;
  o.batch_size = args.batch;
  o.limit = args.limit;
  auto fp_fn = [&](const at::Tensor& x) { return ex.forward(x); };
  nlohmann::json j;
  j["model"] = args.model;
  j["data"] = data.name;
  j["bn_folded"] = fold_bn;

  if (!cfg) {
    o.label = "fp32";
    ClassifyResult fp = evaluate_classifier(data, fp_fn, o);
    j["n"] = fp.n;
    j["fp32"] = {{"top1", fp.top1 * 100}, {"top5", fp.top5 * 100}, {"seconds", fp.seconds}};
    if (common.json) std::cout << j.dump(2) << "\n";
    else
      std::cout << fmt::format("{} on {} ({} images): FP32 top-1 {:.2f} %  top-5 {:.2f} %  ({:.1f} s)\n", args.model,
                               data.name, fp.n, fp.top1 * 100, fp.top5 * 100, fp.seconds);
    return 0;
  }

  std::string calib_path = args.calib_data.empty() ? args.data : args.calib_data;
  CifarSplit calib_split = parse_cifar_split(args.calib_split);
  CATQ_CHECK(!(calib_path == args.data && calib_split != CifarSplit::Calib && parse_cifar_split(args.split) != CifarSplit::Calib),
             Usage, "eval: calibrating on split '{}' of the evaluation file would calibrate on evaluation images; "
             "use --calib-split calib", args.calib_split);
  ImageDataset calib = load_cifar10(calib_path, calib_split);
  if (args.calib_size > 0) calib = calib.slice(0, args.calib_size);
  SimQuant sq(*cfg);
  calibrate_rtn(ex, sq, calib.images, args.batch);
  o.label = "fp32 vs " + args.quant;
  CompareResult c = compare_classifiers(data, fp_fn, [&](const at::Tensor& x) { return ex.forward(x, &sq); }, o);

  std::vector<LayerSqnr> sqnr;
  if (args.per_layer) {
    // Per-layer output SQNR on (up to) 500 evaluation images: each layer's output in the quantized model
    // against the same layer's output in the FP model.
    LayerSqnrCollector col;
    at::NoGradGuard ng;
    ImageDataset probe = data.slice(0, 500);
    for (int64_t i = 0; i < probe.size(); i += args.batch) {
      at::Tensor x = probe.slice(i, i + args.batch).images;
      std::map<std::string, at::Tensor> ref, q;
      auto* target = &ref;
      ex.on_layer_output = [&](const LayerInfo& l, const at::Tensor& y) { (*target)[l.name] = y; };
      ex.forward(x);
      target = &q;
      ex.forward(x, &sq);
      ex.on_layer_output = nullptr;
      col.add(ref, q);
    }
    sqnr = col.table();
  }

  j["n"] = c.n;
  j["calibration"] = {{"data", calib.name}, {"images", calib.size()}};
  j["config"] = cfg->to_json();
  j["fp32"] = {{"top1", c.top1_ref * 100}, {"top5", c.top5_ref * 100}};
  j["quantized"] = {{"label", args.quant}, {"top1", c.top1_q * 100}, {"top5", c.top5_q * 100},
                    {"weight_bytes", sq.total_weight_bytes()}};
  j["kl"] = c.kl;
  j["top1_agreement"] = c.agreement * 100;
  for (const auto& r : sqnr) j["layer_sqnr_db"][r.name] = r.sqnr_db;
  if (common.json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{} on {} ({} images), calibrated on {} ({} images)\n", args.model, data.name, c.n,
                           calib.name, calib.size());
  std::cout << fmt::format("FP32              top-1 {:.2f} %  top-5 {:.2f} %\n", c.top1_ref * 100, c.top5_ref * 100);
  std::cout << fmt::format("{:<17} top-1 {:.2f} %  top-5 {:.2f} %  KL(FP||Q) {:.4f}  top-1 agreement {:.2f} %  "
                           "weights {} bytes\n", args.quant, c.top1_q * 100, c.top5_q * 100, c.kl, c.agreement * 100,
                           sq.total_weight_bytes());
  if (args.per_layer) {
    std::cout << "\n" << sq.report_table() << "\nper-layer output SQNR (500 evaluation images):\n";
    for (const auto& r : sqnr) std::cout << fmt::format("  {:<45} {:8.2f} dB\n", r.name, r.sqnr_db);
  }
  return 0;
}

// A .catq quantized CNN: its accuracy (with and without its CAT head), and against the FP model when
// --reference gives it.
int catq_eval(const Common& common) {
  CATQ_CHECK(!args.data.empty(), Usage, "eval: --data FILE is required for a quantized CNN (a CIFAR-10 .bin file)");
  CATQ_CHECK(args.quant.empty(), Usage, "eval: {} is already quantized; --quant does not apply", args.model);
  QuantizedCnn m = read_catq(args.model);
  ImageDataset data = load_cifar10(args.data, parse_cifar_split(args.split));
  ClassifyOptions o;
  o.batch_size = args.batch;
  o.limit = args.limit;
  o.keep_logits = true;
  nlohmann::json j;
  j["model"] = args.model;
  j["data"] = data.name;
  j["metadata"] = m.metadata;
  o.label = "eval quantized";
  ClassifyResult base = evaluate_classifier(data, [&](const at::Tensor& x) { return m.base_logits(x); }, o);
  j["n"] = base.n;
  j["quantized"] = {{"top1", base.top1 * 100}, {"top5", base.top5 * 100}, {"weight_bytes", m.sq->total_weight_bytes()},
                    {"seconds", base.seconds}};
  std::optional<ClassifyResult> headed;
  if (m.head) {
    ClassifyResult h;
    h.logits = m.head->apply(base.logits);
    h.n = base.n;
    at::Tensor labels = data.labels.slice(0, 0, base.n);
    h.top1 = static_cast<double>(topk_correct(h.logits, labels, 1)) / h.n;
    h.top5 = static_cast<double>(topk_correct(h.logits, labels, 5)) / h.n;
    headed = h;
    j["with_head"] = {{"top1", h.top1 * 100}, {"top5", h.top5 * 100}, {"k", m.head->k}, {"alpha", m.head->alpha},
                      {"extra_params", m.head->extra_params()}};
  }
  // --runtime int: the same images through the integer runtime, compared with the simulation just measured.
  std::optional<ClassifyResult> integer;
  std::unique_ptr<IntegerCnn> net;
  if (args.runtime == "int") {
    net = std::make_unique<IntegerCnn>(*m.ex, *m.sq);
    const IntegerRuntime* rt = &net->runtime();
    o.label = "eval integer runtime";
    integer = evaluate_classifier(data, [&](const at::Tensor& x) { return net->forward(x); }, o);
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& e : rt->report()) layers.push_back({{"name", e.name}, {"runtime", e.how}});
    j["integer_runtime"] = {{"top1", integer->top1 * 100}, {"top5", integer->top5 * 100}, {"seconds", integer->seconds},
                            {"images_per_s", integer->n / integer->seconds},
                            {"top1_agreement_with_simulation", top1_agreement(base.logits, integer->logits) * 100},
                            {"kl_vs_simulation", kl_divergence(base.logits, integer->logits)},
                            {"integer_layers", rt->num_integer()}, {"layers", layers},
                            {"convs_writing_codes", net->fused_convs()}, {"convs_adding_shortcut", net->residual_convs()},
                            {"fallbacks", net->fallback_calls()}};
    j["quantized"]["images_per_s"] = base.n / base.seconds;
    if (m.head) {
      const at::Tensor hl = m.head->apply(integer->logits);
      const at::Tensor labels = data.labels.slice(0, 0, base.n);
      j["integer_runtime"]["with_head_top1"] = 100.0 * static_cast<double>(topk_correct(hl, labels, 1)) / base.n;
      j["integer_runtime"]["with_head_agreement_with_simulation"] = top1_agreement(headed->logits, hl) * 100;
    }
  }
  std::optional<ClassifyResult> fp;
  if (!args.reference.empty()) {
    Graph g = load_onnx(args.reference);
    fold_constants(g);
    fold_batchnorm(g);
    GraphExecutor ref(std::move(g));
    o.label = "eval reference";
    fp = evaluate_classifier(data, [&](const at::Tensor& x) { return ref.forward(x); }, o);
    j["fp32"] = {{"top1", fp->top1 * 100}, {"top5", fp->top5 * 100}};
    j["quantized"]["kl"] = kl_divergence(fp->logits, base.logits);
    j["quantized"]["top1_agreement"] = top1_agreement(fp->logits, base.logits) * 100;
    if (headed) {
      j["with_head"]["kl"] = kl_divergence(fp->logits, headed->logits);
      j["with_head"]["top1_agreement"] = top1_agreement(fp->logits, headed->logits) * 100;
    }
  }
  if (common.json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{} ({} {}) on {} ({} images)\n", args.model, m.metadata.value("method", "?"),
                           m.metadata.value("bits", "?"), data.name, base.n);
  if (fp) std::cout << fmt::format("FP32 reference    top-1 {:.2f} %  top-5 {:.2f} %\n", fp->top1 * 100, fp->top5 * 100);
  auto line = [&](const char* label, const ClassifyResult& r, const char* key) {
    std::string extra;
    if (fp) extra = fmt::format("  KL(FP||Q) {:.4f}  top-1 agreement {:.2f} %", j[key].value("kl", 0.0),
                                j[key].value("top1_agreement", 0.0));
    std::cout << fmt::format("{:<17} top-1 {:.2f} %  top-5 {:.2f} %{}\n", label, r.top1 * 100, r.top5 * 100, extra);
  };
  line(m.head ? "quantized (base)" : "quantized", base, "quantized");
  if (integer) {
    const auto& ji = j["integer_runtime"];
    std::cout << fmt::format("integer runtime   top-1 {:.2f} %  top-5 {:.2f} %  top-1 decisions equal to the simulation "
                             "on {:.2f} %  ({} of {} layers integer; {:.0f} vs {:.0f} images/s simulated)\n",
                             integer->top1 * 100, integer->top5 * 100,
                             ji["top1_agreement_with_simulation"].get<double>(), net->runtime().num_integer(),
                             net->runtime().report().size(),
                             ji["images_per_s"].get<double>(), j["quantized"]["images_per_s"].get<double>());
  }
  if (headed) line(fmt::format("+ {} head", m.head->k == 1 ? "affine" : "CAT").c_str(), *headed, "with_head");
  std::cout << fmt::format("weights {} bytes", m.sq->total_weight_bytes());
  if (m.head) std::cout << fmt::format("; head K = {}, alpha = {}, {} extra parameters", m.head->k, m.head->alpha,
                                       m.head->extra_params());
  std::cout << "\n";
  return 0;
}

int llm_eval(const Common& common) {
  LlmEvalArgs a;
  a.model = args.model;
  a.tokenizer = args.tokenizer;
  a.text = args.text;
  a.ppl = args.ppl;
  a.reference = args.reference;
  a.runtime = args.runtime;
  std::optional<SimQuant> sq;
  if (!args.quant.empty()) {
    sq.emplace(QuantConfig::load(args.quant));
    a.quant = &*sq;
    a.sim = &*sq;
    a.quant_label = args.quant;
    // Static activation ranges are calibrated on text disjoint from the scored text: by default the
    // characters that follow the scored prefix of the same file.
    a.prepare = [&](LoadedLlama& m) {
      const std::string path = args.calib_text.empty() ? args.text : args.calib_text;
      std::string text = read_file_text(path);
      if (args.calib_text.empty()) {
        const size_t skip = args.ppl.max_chars > 0 ? truncate_utf8(text, args.ppl.max_chars).size() : text.size();
        CATQ_CHECK(skip < text.size(), Data, "{}: no text left after the {} scored characters for calibration; pass "
                   "--calib-text FILE", path, args.ppl.max_chars);
        text = text.substr(skip);
      }
      PerplexityOptions co = args.ppl;
      co.max_chars = args.calib_chars;
      co.max_windows = 0;
      EvalWindows w = make_eval_windows(*m.tokenizer, text, co);
      CATQ_CHECK(w.n_windows() > 0, Data, "{}: too little calibration text for one window of {} tokens", path, co.window);
      LlmPtqOptions po;
      po.transform = parse_llm_transform(args.transform);
      po.weights = args.weights;
      po.gptq.act_order = args.act_order;
      po.gptq.damp = args.gptq_damp;
      po.batch = co.batch;
      SmallModelThreadGuard threads(m.model);
      a.report = quantize_llama(m.model, *sq, w.inputs, po);
      a.report["calibration"] = {{"text", path}, {"chars", w.n_chars}, {"windows", w.n_windows()}};
      if (args.transform != "none" || args.weights != "rtn")
        a.quant_label = fmt::format("{}{}{}", args.quant, args.transform != "none" ? "+" + po.transform.str() : "",
                                    args.weights != "rtn" ? "+" + args.weights : "");
    };
  } else {
    CATQ_CHECK(args.transform == "none" && args.weights == "rtn", Usage,
               "--transform / --weights need --quant (what to quantize to)");
  }
  return run_llm_eval(a, common);
}

}  // namespace

void register_eval(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("eval", "Evaluate a model: top-1/top-5 for CNNs, perplexity for LLMs; with "
                                         "--quant, also the quantized model against FP32");
  sub->footer(
      "Examples:\n"
      "  catq eval resnet20.onnx --data ../shared/assets/cifar10/test.bin --split eval\n"
      "  catq eval resnet20.onnx --data test.bin --quant w4a4-mse-fl8 --per-layer   (calibrates on --split calib)\n"
      "  catq eval resnet20.onnx --data test.bin --quant config.json --calib-data train.bin --calib-split all\n"
      "  catq eval r20_w2a2.catq --data test.bin --split eval --reference resnet20.onnx   (a quantized model)\n"
      "  catq eval stories260K.bin --tokenizer tok512.bin --text tinystories_valid_head.txt\n"
      "  catq eval stories260K.bin --tokenizer tok512.bin --text t.txt --quant w4a16g32\n"
      "  catq eval stories260K.bin --text t.txt --quant w4a4-tok-sym --transform blockcat:k=4 --weights gptq\n"
      "  catq eval model_w4a8.catq --text t.txt --runtime int   (integer kernels vs the simulation)\n"
      "  catq eval r56_w8a8.catq --data test.bin --split eval --runtime int\n");
  sub->add_option("model", args.model, "Model file (.onnx, llama2.c .bin, .gguf, safetensors folder)")->required();
  sub->add_option("--data", args.data, "CNN evaluation data: CIFAR-10 binary file");
  sub->add_option("--split", args.split, "all | calib | eval (project split of test.bin)")->capture_default_str();
  sub->add_option("--quant", args.quant, "Quantization config: JSON file or short form (w8a8, w4a4-mse-fl8, w4a16g32, "
                                         "w4a4-tok; see docs/quant_config.md)");
  sub->add_option("--calib-data", args.calib_data, "CNN calibration data (default: --data)");
  sub->add_option("--calib-split", args.calib_split, "Split of the calibration file")->capture_default_str();
  sub->add_option("--calib-size", args.calib_size, "Use only the first N calibration images (0 = all)");
  sub->add_option("--image-batch", args.batch, "CNN batch size (images per forward)")->capture_default_str();
  sub->add_option("--limit", args.limit, "Evaluate only the first N images (0 = all)")->capture_default_str();
  sub->add_option("--runtime", args.runtime, "sim (fake-quant simulation) | int (integer kernels: oneDNN int8 "
                  "convolutions, integer GEMM; compared with the simulation)")->check(CLI::IsMember({"sim", "int"}))->capture_default_str();
  sub->add_option("--reference", args.reference, "FP model to compare a quantized .catq model with (.onnx for a CNN: KL, "
                                                 "top-1 agreement; the original checkpoint for an LLM)");
  sub->add_flag("--no-fold-bn", args.no_fold_bn, "Keep BatchNormalization separate (default: fold into conv)");
  sub->add_flag("--per-layer", args.per_layer, "Print per-layer quantizers and output SQNR");
  sub->add_option("--text", args.text, "LLM evaluation text (UTF-8)");
  sub->add_option("--tokenizer", args.tokenizer, "llama2.c tokenizer (GGUF files carry their own)");
  sub->add_option("--calib-text", args.calib_text, "LLM calibration text (default: the --text file after the "
                                                   "scored characters)");
  sub->add_option("--calib-chars", args.calib_chars, "Characters of calibration text")->capture_default_str();
  sub->add_option("--transform", args.transform, "LLM transform before quantizing: none | smoothquant[:alpha=0.5] | "
                  "rms | quarot | rotation | blockcat[:k=16][:damp=0.01][:nohad] (docs/llm_ptq.md)")->capture_default_str();
  sub->add_option("--weights", args.weights, "LLM weight quantizer: rtn | gptq")->capture_default_str();
  sub->add_flag("--act-order", args.act_order, "GPTQ: quantize columns in descending Hessian-diagonal order");
  sub->add_option("--gptq-damp", args.gptq_damp, "GPTQ damping (fraction of the mean Hessian diagonal)")->capture_default_str();
  add_perplexity_options(sub, args.ppl);
  sub->callback([&common] {
    if (common.json || common.quiet) Progress::set_enabled(false);
    ModelFormat f = detect_model_format(args.model);
    switch (f) {
      case ModelFormat::Onnx: onnx_eval(common); break;
      case ModelFormat::CatqQuantized:
        if (catq_file_kind(args.model) == "llm") llm_eval(common);
        else catq_eval(common);
        break;
      case ModelFormat::Llama2c: case ModelFormat::Gguf: case ModelFormat::Safetensors: llm_eval(common); break;
      default: fail(ErrorKind::Unsupported, "{}: format '{}' is not supported by 'eval'", args.model, model_format_name(f));
    }
  });
}

}  // namespace catq::cli

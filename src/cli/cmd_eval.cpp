// `catq eval MODEL ...`: accuracy of a CNN on CIFAR-10 (FP32, or RTN-quantized with --quant, reporting
// agreement / KL vs FP32 and per-layer SQNR), or perplexity of a Llama model on text.
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/llm_cmds.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/catq_file.h"
#include "io/model_format.h"
#include "io/tflite.h"
#include "methods/cnn/eval_job.h"
#include "methods/llm/eval_job.h"

namespace catq::cli {

namespace {

// The command line fills both jobs (model, --quant, --reference and --runtime go to the CNN job and are copied to
// the LLM one when the model is a language model); the method layer runs them.
CnnEvalJob cnn;
LlmEvalJob llm;

void print_onnx_eval(const CnnEvalReport& rep) {
  const nlohmann::json& j = rep.json;
  if (!j.contains("quantized")) {
    const auto& fp = j["fp32"];
    std::cout << fmt::format("{} on {} ({} images): FP32 top-1 {:.2f} %  top-5 {:.2f} %  ({:.1f} s)\n", cnn.model,
                             j["data"].get<std::string>(), j["n"].get<int64_t>(), fp["top1"].get<double>(),
                             fp["top5"].get<double>(), fp["seconds"].get<double>());
    return;
  }
  const auto &fp = j["fp32"], &q = j["quantized"], &cal = j["calibration"];
  std::cout << fmt::format("{} on {} ({} images), calibrated on {} ({} images)\n", cnn.model,
                           j["data"].get<std::string>(), j["n"].get<int64_t>(), cal["data"].get<std::string>(),
                           cal["images"].get<int64_t>());
  std::cout << fmt::format("FP32              top-1 {:.2f} %  top-5 {:.2f} %\n", fp["top1"].get<double>(),
                           fp["top5"].get<double>());
  std::cout << fmt::format("{:<17} top-1 {:.2f} %  top-5 {:.2f} %  KL(FP||Q) {:.4f}  top-1 agreement {:.2f} %  "
                           "weights {} bytes\n", cnn.quant, q["top1"].get<double>(), q["top5"].get<double>(),
                           j["kl"].get<double>(), j["top1_agreement"].get<double>(), q["weight_bytes"].get<uint64_t>());
  if (cnn.per_layer) {
    std::cout << "\n" << rep.quantizer_table << "\nper-layer output SQNR (500 evaluation images):\n";
    for (const auto& [name, db] : rep.layer_sqnr) std::cout << fmt::format("  {:<45} {:8.2f} dB\n", name, db);
  }
}

void print_catq_eval(const nlohmann::json& j) {
  const nlohmann::json& md = j["metadata"];
  const bool has_fp = j.contains("fp32"), has_head = j.contains("with_head");
  std::cout << fmt::format("{} ({} {}) on {} ({} images)\n", cnn.model, md.value("method", "?"), md.value("bits", "?"),
                           j["data"].get<std::string>(), j["n"].get<int64_t>());
  if (has_fp)
    std::cout << fmt::format("FP32 reference    top-1 {:.2f} %  top-5 {:.2f} %\n", j["fp32"]["top1"].get<double>(),
                             j["fp32"]["top5"].get<double>());
  auto line = [&](const std::string& label, const char* key) {
    const auto& r = j[key];
    std::string extra;
    if (has_fp) extra = fmt::format("  KL(FP||Q) {:.4f}  top-1 agreement {:.2f} %", r.value("kl", 0.0),
                                    r.value("top1_agreement", 0.0));
    std::cout << fmt::format("{:<17} top-1 {:.2f} %  top-5 {:.2f} %{}\n", label, r["top1"].get<double>(),
                             r["top5"].get<double>(), extra);
  };
  line(has_head ? "quantized (base)" : "quantized", "quantized");
  if (j.contains("integer_runtime")) {
    const auto& ji = j["integer_runtime"];
    std::cout << fmt::format("integer runtime   top-1 {:.2f} %  top-5 {:.2f} %  top-1 decisions equal to the simulation "
                             "on {:.2f} %  ({} of {} layers integer; {:.0f} vs {:.0f} images/s simulated)\n",
                             ji["top1"].get<double>(), ji["top5"].get<double>(),
                             ji["top1_agreement_with_simulation"].get<double>(), ji["integer_layers"].get<int64_t>(),
                             ji["layers"].size(), ji["images_per_s"].get<double>(),
                             j["quantized"]["images_per_s"].get<double>());
  }
  if (has_head) {
    const auto& h = j["with_head"];
    line(fmt::format("+ {} head", h["k"].get<int64_t>() == 1 ? "affine" : "CAT"), "with_head");
  }
  std::cout << fmt::format("weights {} bytes", j["quantized"]["weight_bytes"].get<uint64_t>());
  if (has_head)
    std::cout << fmt::format("; head K = {}, alpha = {}, {} extra parameters", j["with_head"]["k"].get<int64_t>(),
                             j["with_head"]["alpha"].get<double>(), j["with_head"]["extra_params"].get<int64_t>());
  std::cout << "\n";
}

void print_tflite_int8_eval(const nlohmann::json& j) {
  std::cout << fmt::format("{} on {} ({} images)\n", cnn.model, j["data"].get<std::string>(), j["n"].get<int64_t>());
  if (j.contains("fp32"))
    std::cout << fmt::format("FP32 reference    top-1 {:.2f} %  top-5 {:.2f} %\n", j["fp32"]["top1"].get<double>(),
                             j["fp32"]["top5"].get<double>());
  const auto& q = j["int8"];
  std::string extra;
  if (q.contains("kl"))
    extra = fmt::format("  KL(FP||Q) {:.4f}  top-1 agreement {:.2f} %", q["kl"].get<double>(),
                        q["top1_agreement"].get<double>());
  std::cout << fmt::format("int8 (catq's TFLite integer executor)  top-1 {:.2f} %  top-5 {:.2f} %{}  ({:.0f} images/s)\n",
                           q["top1"].get<double>(), q["top5"].get<double>(), extra, q["images_per_s"].get<double>());
}

void print_llm_eval(const nlohmann::json& j) {
  const std::string model = j["model"], format = j["format"], summary = j["model_summary"];
  std::printf("%s (%s): %s\n", model.c_str(), format.c_str(), summary.c_str());
  if (j.contains("lean_runtime")) {
    const auto &fp = j["fp32_dequantized"], &ln = j["lean_runtime"];
    const std::string weights = j["lean_weights"];
    std::printf("lean runtime (%lld threads): %s\n", static_cast<long long>(j["lean_threads"].get<int64_t>()), weights.c_str());
    std::printf("fp32 forward of the file's weights  PPL %.4f  mean NLL %.5f nats  (%.1f s)\n", fp["ppl"].get<double>(),
                fp["mean_nll"].get<double>(), fp["seconds"].get<double>());
    std::printf("lean runtime                        PPL %.4f  mean NLL %.5f nats  (%.1f s, %.0f tokens/s)  PPL %+.3f %%  KL "
                "%.2e  top-1 agreement %.2f %%\n", ln["ppl"].get<double>(), ln["mean_nll"].get<double>(),
                ln["seconds"].get<double>(), j["lean_prefill_tokens_per_s"].get<double>(), 100 * j["ppl_rel_diff"].get<double>(),
                j["kl_mean"].get<double>(), 100 * j["top1_agreement"].get<double>());
    return;
  }
  if (j.contains("integer_runtime")) {
    const auto &sim = j["simulation"], &in = j["integer_runtime"], &dec = j["decode"];
    const std::string first = j["layers"].front()["runtime"];
    std::printf("layers: %lld integer GEMM, %lld weight-only packed, %lld simulated (first: %s)\n",
                static_cast<long long>(j["integer_layers"].get<int64_t>()),
                static_cast<long long>(j["weight_only_layers"].get<int64_t>()),
                static_cast<long long>(j["simulated_layers"].get<int64_t>()), first.c_str());
    std::printf("simulation       PPL %.4f  mean NLL %.5f nats  (%.1f s)\n", sim["ppl"].get<double>(),
                sim["mean_nll"].get<double>(), sim["seconds"].get<double>());
    std::printf("integer runtime  PPL %.4f  mean NLL %.5f nats  (%.1f s)  PPL %+.3f %%  KL %.2e  top-1 agreement %.2f %%\n",
                in["ppl"].get<double>(), in["mean_nll"].get<double>(), in["seconds"].get<double>(),
                100 * j["ppl_rel_diff"].get<double>(), j["kl_mean"].get<double>(), 100 * j["top1_agreement"].get<double>());
    std::printf("decoding (first window, %lld tokens through the KV cache): PPL %.4f vs %.4f (%+.3f %%)  KL %.2e  top-1 "
                "agreement %.2f %%\n", static_cast<long long>(dec["tokens"].get<int64_t>()),
                dec["ppl_integer_runtime"].get<double>(), dec["ppl_simulation"].get<double>(),
                100 * dec["ppl_rel_diff"].get<double>(), dec["kl_mean"].get<double>(),
                100 * dec["top1_agreement"].get<double>());
    return;
  }
  const auto &p = j["protocol"], &fp = j["fp32"];
  const std::string text = p["text"];
  std::printf("text %s: %lld chars -> %lld tokens; %lld windows of %lld (stride %lld, %s) -> %lld scored tokens\n",
              text.c_str(), static_cast<long long>(p["chars"].get<int64_t>()),
              static_cast<long long>(p["text_tokens"].get<int64_t>()), static_cast<long long>(fp["windows"].get<int64_t>()),
              static_cast<long long>(p["window"].get<int64_t>()), static_cast<long long>(p["stride"].get<int64_t>()),
              p["prepend_bos"].get<bool>() ? "BOS-prefixed" : "no BOS", static_cast<long long>(fp["scored_tokens"].get<int64_t>()));
  const bool fp_act = j.value("reference", "") == kOwnWeightsReference;
  std::printf("%s PPL %.4f  mean NLL %.5f nats\n", fp_act ? "FP-act    " : "FP32      ", fp["ppl"].get<double>(),
              fp["mean_nll"].get<double>());
  if (j.contains("quantized")) {
    const auto& q = j["quantized"];
    const std::string label = q["label"];
    std::printf("%-10s PPL %.4f  mean NLL %.5f nats  KL(FP||Q) %.5f (max %.4f)  top-1 agreement %.2f %%\n",
                label.empty() ? "quantized" : label.c_str(), q["ppl"].get<double>(), q["mean_nll"].get<double>(),
                j["kl_mean"].get<double>(), j["kl_max"].get<double>(), 100.0 * j["top1_agreement"].get<double>());
  }
}

void run_llm_eval(const Common& common) {
  llm.model = cnn.model;
  llm.quant = cnn.quant;
  llm.reference = cnn.reference;
  llm.runtime = cnn.runtime;
  const nlohmann::json j = run_llm_eval_job(llm);
  if (common.json) std::printf("%s\n", j.dump(2).c_str());
  else print_llm_eval(j);
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
      "  catq eval r56_w8a8.catq --data test.bin --split eval --runtime int\n"
      "  catq eval vww_mobilenetv1_int8.tflite --data vww_eval1000_u8hwc.bin --split eval --reference "
      "vww_mobilenetv1_float.tflite\n"
      "  catq eval model-q4_0.gguf --text t.txt --runtime lean   (the file on catq's lean runtime, as llama.cpp runs it)\n");
  sub->add_option("model", cnn.model, "Model file (.onnx, .tflite, .catq, llama2.c .bin, .gguf, safetensors folder)")
      ->required();
  sub->add_option("--data", cnn.data, "CNN evaluation data: CIFAR-10 binary file, or an EEMBC set of MLPerf Tiny "
                                       "(vww_*.bin, kws_*mfcc*.bin; docs/tflite.md)");
  sub->add_option("--split", cnn.split, "all | calib | eval (the project's split of each data file)")->capture_default_str();
  sub->add_option("--data-format", cnn.data_options.format, "auto | cifar10 | vww | kws (auto: from the file name)")
      ->capture_default_str();
  sub->add_option("--pixels", cnn.data_options.pixels, "Image scaling: auto | imagenet | unit (RGB/255) | raw (0..255); "
                  "auto: imagenet for ONNX on CIFAR-10, raw for TFLite on CIFAR-10, unit for VWW")->capture_default_str();
  sub->add_option("--quant", cnn.quant, "Quantization config: JSON file or short form (w8a8, w4a4-mse-fl8, w4a16g32, "
                                         "w4a4-tok; see docs/quant_config.md)");
  sub->add_option("--calib-data", cnn.calib_data, "CNN calibration data (default: --data)");
  sub->add_option("--calib-split", cnn.calib_split, "Split of the calibration file")->capture_default_str();
  sub->add_option("--calib-size", cnn.calib_size, "Use only the first N calibration images (0 = all)");
  sub->add_option("--image-batch", cnn.batch, "CNN batch size (images per forward)")->capture_default_str();
  sub->add_option("--limit", cnn.limit, "Evaluate only the first N images (0 = all)")->capture_default_str();
  sub->add_option("--runtime", cnn.runtime, "sim (fake-quant simulation) | int (integer kernels: oneDNN int8 "
                  "convolutions, integer GEMM; compared with the simulation) | lean (a GGUF LLM on catq's lean runtime, "
                  "compared with the file's fp32 forward)")->check(CLI::IsMember({"sim", "int", "lean"}))->capture_default_str();
  sub->add_option("--reference", cnn.reference, "FP model to compare a quantized .catq model with (.onnx for a CNN: KL, "
                                                 "top-1 agreement; the original checkpoint for an LLM)");
  sub->add_flag("--no-fold-bn", cnn.no_fold_bn, "Keep BatchNormalization separate (default: fold into conv)");
  sub->add_flag("--per-layer", cnn.per_layer, "Print per-layer quantizers and output SQNR");
  sub->add_option("--text", llm.text, "LLM evaluation text (UTF-8)");
  sub->add_option("--tokenizer", llm.tokenizer, "llama2.c tokenizer (GGUF files carry their own)");
  sub->add_option("--calib-text", llm.calib_text, "LLM calibration text (default: the --text file after the "
                                                   "scored characters)");
  sub->add_option("--calib-chars", llm.calib_chars, "Characters of calibration text")->capture_default_str();
  sub->add_option("--transform", llm.transform, "LLM transform before quantizing: none | smoothquant[:alpha=0.5] | "
                  "rms | quarot | rotation | blockcat[:k=16][:damp=0.01][:nohad] (docs/llm_ptq.md)")->capture_default_str();
  sub->add_option("--weights", llm.weights, "LLM weight quantizer: rtn | gptq")->capture_default_str();
  sub->add_flag("--act-order", llm.act_order, "GPTQ: quantize columns in descending Hessian-diagonal order");
  sub->add_option("--gptq-damp", llm.gptq_damp, "GPTQ damping (fraction of the mean Hessian diagonal)")->capture_default_str();
  add_perplexity_options(sub, llm.ppl);
  sub->callback([&common] {
    if (common.json || common.quiet) Progress::set_enabled(false);
    ModelFormat f = detect_model_format(cnn.model);
    switch (f) {
      case ModelFormat::Tflite:
        if (read_tflite(cnn.model).is_integer()) {
          const nlohmann::json j = run_tflite_int8_eval_job(cnn);
          if (common.json) std::cout << j.dump(2) << "\n";
          else print_tflite_int8_eval(j);
          break;
        }
        [[fallthrough]];
      case ModelFormat::Onnx: {
        const CnnEvalReport rep = run_onnx_eval_job(cnn);
        if (common.json) std::cout << rep.json.dump(2) << "\n";
        else print_onnx_eval(rep);
        break;
      }
      case ModelFormat::CatqQuantized:
        if (catq_file_kind(cnn.model) == "llm") {
          run_llm_eval(common);
        } else {
          const nlohmann::json j = run_catq_eval_job(cnn);
          if (common.json) std::cout << j.dump(2) << "\n";
          else print_catq_eval(j);
        }
        break;
      case ModelFormat::Llama2c: case ModelFormat::Gguf: case ModelFormat::Safetensors: run_llm_eval(common); break;
      default: fail(ErrorKind::Unsupported, "{}: format '{}' is not supported by 'eval'", cnn.model, model_format_name(f));
    }
  });
}

}  // namespace catq::cli

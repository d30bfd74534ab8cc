// `catq quantize MODEL ...`: post-training quantization of a CNN (ONNX) with RTN or a reconstruction method
// (AdaRound, BRECQ, QDrop, PD-Quant, weight-cluster affine), optionally followed by a CAT or plain-affine logit
// head, written to a self-contained .catq file that `catq eval` runs.
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/llm_loader.h"
#include "methods/cnn/quantize_job.h"
#include "methods/llm/quantize_job.h"

namespace catq::cli {

namespace {

// The command line fills the two jobs; the method layer runs them.
CnnQuantizeJob cnn;
LlmQuantizeJob llm;

void print_summary(const QuantizedCnn& m) {
  const auto& md = m.metadata;
  std::cout << fmt::format("method {}  bits {}  calibrated on {} ({} images)\n", md.value("method", "?"),
                           md.value("bits", "?"), md["calibration"].value("data", "?"),
                           md["calibration"].value("images", 0));
  if (md.contains("reconstruction")) {
    const auto& r = md["reconstruction"];
    std::cout << fmt::format("reconstruction: {} units, {} iterations per unit, {:.1f} s\n", r["units"].size(),
                             r.value("iters", 0), r.value("seconds", 0.0));
    for (const auto& u : r["units"])
      std::cout << fmt::format("  {:<11} {:<48} loss {:10.4f} -> {:10.4f}{}\n", u.value("pass", ""),
                               u.value("unit", "").substr(0, 48), u.value("loss_before", 0.0), u.value("loss_after", 0.0),
                               u.value("reverted", false) ? "  (worse: kept the start)" : "");
  }
  std::cout << fmt::format("weights: {} bytes\n", md.value("weight_bytes", 0));
  if (md.contains("head")) {
    const auto& h = md["head"];
    if (h.value("declined", false))
      std::cout << fmt::format("head {}: cross-validation on {} fitting points chose alpha = 0 (no correction); no head "
                               "stored\n", h.value("kind", ""), h.value("points", 0));
    else
      std::cout << fmt::format("head {}: K = {}, alpha = {}, {} extra parameters, {} MACs per image; fitted on {} "
                               "points ({}), fitting-set top-1 {:.2f} % -> {:.2f} %\n",
                               h.value("kind", ""), h.value("k", 0), h.value("alpha", 0.0), h.value("extra_params", 0),
                               h.value("macs_per_image", 0), h.value("points", 0), h.value("fit_data", ""),
                               100 * h.value("fit_accuracy_before", 0.0), 100 * h.value("fit_accuracy_after", 0.0));
  }
}

int run_quantize_llm(const Common& common) {
  llm.model = cnn.model;
  llm.config = cnn.config;
  llm.out = cnn.out;
  nlohmann::json meta = run_llm_quantize_job(llm);
  if ((!llm.gguf.empty() || llm.target_bpw != 0) && !common.json) {
    const auto& q = meta["quantization"];
    std::string types;
    for (const auto& [t, n] : meta["tensors_by_type"].items()) types += fmt::format(" {} {}", t, n.get<int64_t>());
    std::cout << fmt::format("{}: GGUF {} by {}{}; {:.3f} bits per weight, {} bytes (tensors:{}); {:.1f} s\n", llm.model,
                             meta.value("type", ""), q.value("weights", ""),
                             meta.contains("calibration")
                                 ? fmt::format(" calibrated on {} windows of {} tokens", meta["calibration"].value("windows", 0),
                                               meta["calibration"].value("window", 0))
                                 : std::string(),
                             meta.value("bits_per_weight", 0.0), meta.value("bytes", 0), types, q.value("seconds", 0.0));
    if (q.contains("allocation")) {
      std::string by;
      for (const auto& [t, n] : q["allocation"]["linears_by_type"].items()) by += fmt::format(" {} {}", t, n.get<int64_t>());
      std::cout << fmt::format("target {} bits per weight: linears by type{} (knapsack over each layer's imatrix "
                               "objective)\n", q["allocation"].value("target_bpw", 0.0), by);
    }
    if (q.contains("proxy_total"))
      std::cout << fmt::format("layer objective tr(ΔW H ΔWᵀ) summed: {:.4g} (plain encoder) -> {:.4g}\n",
                               q.value("proxy_rtn_total", 0.0), q.value("proxy_total", 0.0));
    std::cout << "wrote " << llm.out << "\n";
    return 0;
  }
  if (common.json) {
    meta["output"] = llm.out;
    std::cout << meta.dump(2) << "\n";
  } else if (meta["quantization"].value("streamed", false)) {
    const auto& q = meta["quantization"];
    const auto& w = q["weight_quantization"];
    const bool calibrated = meta.contains("calibration") && meta["calibration"].value("needed", false);
    const std::string calib = calibrated
        ? fmt::format(", calibrated on {} windows of {} tokens", meta["calibration"].value("windows", 0),
                      meta["calibration"].value("window", 0))
        : std::string(" (no calibration needed)");
    std::cout << fmt::format("{}: {} + transform {} + {} weights{}, streamed block by block: {} weights in {:.1f} s "
                             "({:.1f} M weights/s, {:.1f} s in all); {} weight bytes\nwrote {}\n", llm.model, llm.config,
                             q.value("transform", ""), q.value("weights", ""), calib, w.value("weights", 0), w.value("seconds", 0.0),
                             w.value("weights_per_second", 0.0) / 1e6, q.value("seconds", 0.0),
                             meta.value("weight_bytes", 0), llm.out);
  } else {
    const auto& q = meta["quantization"];
    const auto& c = meta["calibration"];
    std::cout << fmt::format("{}: {} + transform {} + {} weights, calibrated on {} windows of {} tokens; {} weight bytes"
                             " (+ {} embedding bytes)\nwrote {}\n", llm.model, llm.config, q.value("transform", ""),
                             q.value("weights", ""), c.value("windows", 0), c.value("window", 0),
                             meta.value("weight_bytes", 0), meta.value("embedding_bytes", 0), llm.out);
  }
  return 0;
}

int run_quantize(const Common& common) {
  split_method_head(cnn);
  CATQ_CHECK(!cnn.out.empty(), Usage, "quantize: -o OUT.catq is required");
  if (std::filesystem::exists(cnn.model) && is_llm_model_file(cnn.model)) return run_quantize_llm(common);
  QuantizedCnn m = run_cnn_quantize_job(cnn);
  if (common.json) {
    nlohmann::json j = m.metadata;
    j["output"] = cnn.out;
    std::cout << j.dump(2) << "\n";
  } else {
    print_summary(m);
    std::cout << "wrote " << cnn.out << "\n";
  }
  return 0;
}

// A reconstruction option given on the command line overrides that field of the method's preset (recon.h).
template <typename T>
CLI::Option* recon_option(CLI::App* sub, const std::string& flag, const std::string& field, const std::string& help) {
  return sub->add_option_function<T>(flag, [field](const T& v) { cnn.recon[field] = v; }, help);
}
CLI::Option* recon_flag(CLI::App* sub, const std::string& flag, const std::string& field, bool value,
                        const std::string& help) {
  return sub->add_flag_function(flag, [field, value](int64_t) { cnn.recon[field] = value; }, help);
}

}  // namespace

void register_quantize(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("quantize", "Post-training quantization of a CNN: RTN or reconstruction (AdaRound, "
                                             "BRECQ, QDrop, PD-Quant, weight-cluster affine), optionally + a CAT or "
                                             "plain-affine logit head; writes a self-contained .catq file");
  sub->footer(
      "Methods (--method): rtn, adaround, brecq, qdrop, pdquant, wca; append +cat or +affine for a logit head.\n"
      "Setting: BN folded, weights per output channel (asymmetric), activations per tensor, MSE-searched ranges\n"
      "(p = 2.4), first conv and last linear at 8 bits, logits not quantized (see docs/ptq.md).\n\n"
      "Examples:\n"
      "  catq quantize resnet20.onnx --method pdquant+cat --bits w2a2 --calib test.bin -o r20_w2a2.catq\n"
      "  catq quantize resnet20.onnx --method brecq --bits w4a4 --calib test.bin --iters 500 -o r20_brecq.catq\n"
      "  catq quantize resnet20.onnx --from r20_w2a2_pdquant.catq --head affine --calib test.bin -o with_affine.catq\n"
      "  catq quantize resnet20.onnx --method qdrop+cat --calib test.bin --fit-data train_jpeg10k.bin --cat-k 64 -o q.catq\n"
      "  catq eval r20_w2a2.catq --data test.bin --split eval --reference resnet20.onnx\n"
      "  catq quantize resnet20.onnx --method qdrop --budget-bops w3 --alloc knapsack --calib test.bin -o r20_mp.catq\n"
      "  catq quantize resnet20.onnx --budget-bops w4 --alloc-pairs w2a4,w4a4,w4a8,w8a8 --calib test.bin -o mp.catq\n"
      "  catq quantize vww_mobilenetv1_float.tflite --method qdrop+cat --bits w4a8 --calib vww_eval1000_u8hwc.bin "
      "-o vww_w4a8.catq\n"
      "  catq quantize stories260K.bin --text valid.txt --skip-chars 12000 --config bench/configs/llm_w4a4.json \\\n"
      "       --transform blockcat:k=4 --weights gptq -o s260k_w4a4.catq\n"
      "  catq eval s260k_w4a4.catq --text valid.txt --reference stories260K.bin\n"
      "  catq quantize model.gguf --text calib.txt --gguf q4_k --weights gptq -o model-q4_k.gguf   (for llama.cpp)\n"
      "  catq quantize model.gguf --text calib.txt --target-bpw 4.5 --weights gptq -o model-4.5bpw.gguf\n");
  sub->add_option("model", cnn.model, "FP model (.onnx or float .tflite CNN, or a Llama checkpoint: llama2.c .bin, .gguf, safetensors)")->required();
  sub->add_option("-o,--output", cnn.out, "Output .catq file");
  sub->add_option("--method", cnn.method, "rtn | adaround | brecq | qdrop | pdquant | wca, optionally +cat / +affine")
      ->capture_default_str();
  sub->add_option("--head", cnn.head.kind, "Logit head: cat | affine | none");
  sub->add_option("--bits", cnn.bits, "wWaA, e.g. w4a4, w2a2, w4a2 (the academic setting); wWaA-wsym for symmetric weights (w8a8-wsym: int8 deployment)")->capture_default_str();
  sub->add_option("--config", cnn.config, "Quantization config (JSON file or compact string) instead of --bits");
  sub->add_option("--calib", cnn.calib.path, "Calibration data: CIFAR-10 binary file or an EEMBC set (vww_*.bin, "
                                             "kws_*mfcc*.bin; docs/tflite.md)");
  sub->add_option("--data-format", cnn.calib.data.format, "auto | cifar10 | vww | kws (auto: from the file name)")
      ->capture_default_str();
  sub->add_option("--pixels", cnn.calib.data.pixels, "Image scaling: auto | imagenet | unit | raw (auto: imagenet for "
                  "ONNX on CIFAR-10, raw for TFLite on CIFAR-10, unit for VWW)")->capture_default_str();
  sub->add_option("--calib-split", cnn.calib.split, "all | calib (never eval)")->capture_default_str();
  sub->add_option("--calib-size", cnn.calib.limit, "Use a seeded random subset of N calibration images (0 = all)");
  sub->add_option("--from", cnn.from, "Start from this quantized .catq (of MODEL) and only fit the head");
  sub->add_option("--seed", cnn.seed, "Seed: batch sampling, drop masks, k-means, folds, augmentation")->capture_default_str();
  auto* r = "Reconstruction";
  recon_option<int64_t>(sub, "--iters", "iters", "Iterations per unit (default 1000; published 20000)")->group(r);
  recon_option<int64_t>(sub, "--act-iters", "act_iters", "BRECQ activation pass iterations (default iters/4)")->group(r);
  recon_option<int64_t>(sub, "--batch", "batch", "Reconstruction batch size (default 32)")->group(r);
  recon_option<double>(sub, "--drop-prob", "drop_prob", "QDrop drop probability (qdrop/pdquant default 0.5)")->group(r);
  recon_option<double>(sub, "--pd-weight", "pd_weight", "PD-Quant 1/lambda_r (default 10)")->group(r);
  recon_option<double>(sub, "--pd-temperature", "pd_temperature", "PD-Quant temperature T (default 4)")->group(r);
  recon_option<double>(sub, "--drift-weight", "drift_weight", "lambda_p of the activation-step drift regulariser (default 0)")->group(r);
  recon_option<double>(sub, "--w-lr", "w_lr", "Learning rate of rounding / cluster parameters (3e-3; wca 1e-2)")->group(r);
  recon_option<double>(sub, "--a-lr", "a_lr", "Learning rate of activation steps (4e-5)")->group(r);
  recon_option<double>(sub, "--round-weight", "round_weight", "AdaRound lambda (0.01)")->group(r);
  recon_option<int64_t>(sub, "--clusters", "clusters", "wca: clusters per weight tensor (default 4)")->group(r);
  recon_flag(sub, "--reinit-act", "reinit_act", true, "Re-initialise each unit's activation ranges on the quantized "
                "model's inputs (as the published code) instead of keeping the FP calibration")->group(r);
  recon_flag(sub, "--no-keep-best", "keep_best", false, "Commit a unit's learned parameters even when its calibration "
                "loss ends above its start")->group(r);
  auto* h = "Head (CAT / plain affine)";
  sub->add_option("--cat-k", cnn.head.k, "Clusters K (with --cat-alpha: no selection)")->group(h);
  sub->add_option("--cat-alpha", cnn.head.alpha, "Blend alpha in [0, 1] (with --cat-k: no selection)")->group(h);
  sub->add_option("--cat-ks", cnn.head.ks, "K candidates for cross-validation (default 1 4 8 16 32 64)")->group(h);
  sub->add_option("--cat-alphas", cnn.head.alphas, "alpha candidates (default 0 0.2 ... 1)")->group(h);
  sub->add_option("--cat-pca", cnn.head.pca, "PCA dims for clustering (0 = off)")->group(h);
  sub->add_option("--cat-folds", cnn.head.folds, "Cross-validation folds")->capture_default_str()->group(h);
  sub->add_option("--cat-metric", cnn.head.metric, "accuracy | kl")->capture_default_str()->group(h);
  sub->add_option("--fit-data", cnn.head.fit.path, "Fitting images for the head (default: the calibration images)")->group(h);
  sub->add_option("--fit-split", cnn.head.fit.split, "Split of --fit-data (default all)")->group(h);
  sub->add_option("--fit-augment", cnn.head.augment, "Extra random crop+flip copies per fitting image")->group(h);
  auto* mp = "Mixed precision (CNN)";
  sub->add_option("--budget-bops", cnn.budget.bops, "Per-layer bits under a BOPs budget (Σ MACs·bw·ba per image): a "
                  "number (k/M/G suffixes) or wN = what uniform N-bit costs")->group(mp);
  sub->add_option("--budget-bytes", cnn.budget.bytes, "Per-layer bits under a weight-bytes budget: a number or wN")
      ->group(mp);
  sub->add_option("--alloc", cnn.budget.alloc, "knapsack (sensitivity + exact knapsack) | gumbel (Gumbel-softmax search + "
                  "Lagrangian dual ascent)")->capture_default_str()->group(mp);
  sub->add_option("--alloc-bits", cnn.budget.bits, "Candidate bit widths (ascending; weights and activations alike)")
      ->group(mp);
  sub->add_option("--alloc-pairs", cnn.budget.pairs, "Decoupled candidates wWaA instead, e.g. w2a4 w4a4 w4a8 w8a8")
      ->delimiter(',')->group(mp);
  sub->add_option("--alloc-iters", cnn.budget.iters, "Gumbel search iterations")->capture_default_str()->group(mp);
  auto* lg = "Language models (llama2.c / GGUF / safetensors input)";
  sub->add_option("--text", llm.text, "Calibration text")->group(lg);
  sub->add_option("--tokenizer", llm.tokenizer, "llama2.c tokenizer (GGUF files carry their own)")->group(lg);
  sub->add_option("--skip-chars", llm.skip_chars, "Skip this many characters of --text first")->group(lg);
  sub->add_option("--calib-chars", llm.calib_chars, "Characters of calibration text")->capture_default_str()->group(lg);
  sub->add_option("--window", llm.window, "Tokens per calibration window")->capture_default_str()->group(lg);
  sub->add_option("--transform", llm.transform, "none | smoothquant[:alpha=..] | rms | quarot | rotation | "
                  "blockcat[:k=..][:damp=..][:nohad]")->capture_default_str()->group(lg);
  sub->add_option("--weights", llm.weights, "rtn | gptq; with --gguf also imatrix (importance-weighted scale search)")
      ->capture_default_str()->group(lg);
  sub->add_option("--gguf", llm.gguf, "Write a GGUF file of this type for llama.cpp instead of a .catq (q4_0 q4_1 q5_0 "
                  "q5_1 q8_0 q2_k q3_k q4_k q5_k q6_k iq4_nl f16 ...), every weight quantized in that format, or a recipe "
                  "mixing K-quants per tensor (q3_k_m q4_k_m q5_k_m: docs/llm.md); no --config")
      ->group(lg);
  sub->add_option("--target-bpw", llm.target_bpw, "Write a GGUF file whose tensors get per-tensor types (q2_k ... "
                  "q8_0) to this many bits per weight, from each layer's measured sensitivity (knapsack); needs --text")
      ->group(lg);
  sub->add_option("--name", llm.name, "GGUF general.name (with --gguf)")->capture_default_str()->group(lg);
  sub->add_flag("--act-order", llm.act_order, "GPTQ act-order")->group(lg);
  sub->add_option("--stream", llm.stream, "auto | always: block by block from the memory-mapped checkpoint (the "
                  "calibration states flow through one block at a time; weight-only RTN needs no --text); never: the "
                  "whole model in fp32 in memory")->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str()->group(lg);
  sub->add_option("--gptq-damp", llm.gptq_damp, "GPTQ damping")->capture_default_str()->group(lg);
  sub->callback([&common] {
    if (common.json || common.quiet) Progress::set_enabled(false);
    run_quantize(common);
  });
}

}  // namespace catq::cli

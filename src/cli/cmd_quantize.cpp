// `catq quantize MODEL ...`: post-training quantization of a CNN (ONNX) with RTN or a reconstruction method
// (AdaRound, BRECQ, QDrop, PD-Quant, weight-cluster affine), optionally followed by a CAT or plain-affine logit
// head, written to a self-contained .catq file that `catq eval` runs.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "io/catq_file.h"
#include "io/cifar.h"
#include "io/model_format.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"
#include "eval/perplexity.h"
#include "llm/loader.h"

#include "methods/cnn_ptq.h"
#include "methods/llm_ptq.h"
#include "methods/mixed_precision.h"
#include "core/file_util.h"

namespace catq::cli {

namespace {

struct QuantizeArgs {
  std::string model, method = "rtn", head, bits = "w4a4", config, calib, calib_split = "calib", out, from;
  int64_t calib_size = 0;
  // reconstruction overrides (negative / NaN = keep the preset)
  int64_t iters = -1, act_iters = -1, batch = -1, clusters = -1;
  double drop_prob = -1, pd_weight = -1, pd_temperature = -1, drift_weight = -1, w_lr = -1, a_lr = -1, round_weight = -1;
  uint64_t seed = 0;
  bool reinit_act = false, no_keep_best = false;
  // head
  int64_t cat_k = 0, cat_pca = 0, cat_folds = 5, fit_augment = 0;
  double cat_alpha = -1;
  std::vector<int64_t> cat_ks;
  std::vector<double> cat_alphas;
  std::string cat_metric = "accuracy", fit_data, fit_split;
  // LLM
  std::string text, tokenizer, transform = "none", weights = "rtn";
  int64_t skip_chars = 0, calib_chars = 24000, window = 256;
  bool act_order = false;
  double gptq_damp = 0.01;
  // mixed precision
  std::string budget_bops, budget_bytes, alloc = "knapsack";
  int64_t alloc_iters = 300;
  std::vector<int> alloc_bits = {2, 4, 8};
};
QuantizeArgs args;

ImageDataset load_images(const std::string& path, const std::string& split, int64_t limit, uint64_t seed) {
  ImageDataset d = load_cifar10(path, parse_cifar_split(split));
  if (limit > 0 && limit < d.size()) {
    // A seeded random subset (the split is sorted by class: a prefix would hold one class only).
    std::vector<int64_t> perm = seeded_permutation(d.size(), seed + 3);
    perm.resize(limit);
    at::Tensor idx = at::tensor(perm, at::kLong);
    d = {d.images.index_select(0, idx), d.labels.index_select(0, idx), fmt::format("{}[{} random]", d.name, limit)};
  }
  return d;
}

ReconOptions recon_options(const std::string& method) {
  ReconOptions o = recon_preset(method);
  if (args.iters >= 0) o.iters = args.iters;
  if (args.act_iters >= 0) o.act_iters = args.act_iters;
  if (args.batch >= 0) o.batch = args.batch;
  if (args.clusters >= 0) o.clusters = args.clusters;
  if (args.drop_prob >= 0) o.drop_prob = args.drop_prob;
  if (args.pd_weight >= 0) o.pd_weight = args.pd_weight;
  if (args.pd_temperature >= 0) o.pd_temperature = args.pd_temperature;
  if (args.drift_weight >= 0) o.drift_weight = args.drift_weight;
  if (args.w_lr >= 0) o.w_lr = args.w_lr;
  if (args.a_lr >= 0) o.a_lr = args.a_lr;
  if (args.round_weight >= 0) o.round_weight = args.round_weight;
  o.seed = args.seed;
  if (args.reinit_act) o.reinit_act = true;
  if (args.no_keep_best) o.keep_best = false;
  o.validate();
  return o;
}

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

// A Llama model: transform + RTN/GPTQ weights + static ranges, calibrated on --text; writes a quantized-LLM .catq.
int run_quantize_llm(const Common& common) {
  CATQ_CHECK(!args.text.empty(), Usage, "quantize: a language model needs calibration text (--text FILE)");
  CATQ_CHECK(!args.config.empty(), Usage, "quantize: a language model needs --config (e.g. bench/configs/llm_w4a4.json "
             "or w4a8-tok-sym)");
  LlmPtqOptions po;
  po.transform = parse_llm_transform(args.transform);
  po.weights = args.weights;
  po.gptq.act_order = args.act_order;
  po.gptq.damp = args.gptq_damp;
  SimQuant sq(QuantConfig::load(args.config));
  LoadedLlama m = load_llama(args.model, args.tokenizer);
  CATQ_CHECK(!m.quant, Usage, "{}: already quantized", args.model);
  const Tokenizer& tok = require_tokenizer(m);
  std::string text = read_file_text(args.text);
  text = text.substr(std::min(text.size(), truncate_utf8(text, args.skip_chars).size()));
  PerplexityOptions co;
  co.max_chars = args.calib_chars;
  co.window = std::min(args.window, m.model.cfg.seq_len);
  EvalWindows w = make_eval_windows(tok, text, co);
  CATQ_CHECK(w.n_windows() > 0, Data, "{}: too little calibration text for one window of {} tokens", args.text, co.window);
  SmallModelThreadGuard threads(m.model);
  nlohmann::json rep = quantize_llama(m.model, sq, w.inputs, po);
  {
    at::NoGradGuard ng;
    m.model.forward(w.inputs.slice(0, 0, 1), &sq);  // materialises the RTN weight params
  }
  nlohmann::json meta = {{"source_model", args.model}, {"config", args.config}, {"quantization", rep},
                         {"calibration", {{"text", args.text}, {"skip_chars", args.skip_chars}, {"chars", w.n_chars},
                                          {"windows", w.n_windows()}, {"window", co.window}}},
                         {"weight_bytes", sq.total_weight_bytes()}};
  // The token-embedding table at its configured bits (FP32 unless the config quantizes it).
  const uint64_t emb_bytes = storage_bits(m.model.tok_embeddings.sizes(), sq.config().embedding) / 8;
  meta["embedding_bytes"] = emb_bytes;
  write_catq_llm(args.out, m.model, sq, &tok, meta);
  if (common.json) {
    meta["output"] = args.out;
    std::cout << meta.dump(2) << "\n";
  } else {
    std::cout << fmt::format("{}: {} + transform {} + {} weights, calibrated on {} windows of {} tokens; {} weight bytes"
                             " (+ {} embedding bytes)\nwrote {}\n", args.model, args.config, po.transform.str(),
                             po.weights, w.n_windows(), co.window, sq.total_weight_bytes(), emb_bytes, args.out);
  }
  return 0;
}

int run_quantize(const Common& common) {
  std::string method = args.method, head = args.head;
  if (auto plus = method.find('+'); plus != std::string::npos) {
    CATQ_CHECK(head.empty(), Usage, "--method '{}' already names a head; drop --head", method);
    head = method.substr(plus + 1);
    method = method.substr(0, plus);
  }
  if (head == "none") head.clear();
  CATQ_CHECK(head.empty() || head == "cat" || head == "affine", Usage, "--head '{}': expected cat, affine or none", head);
  CATQ_CHECK(!args.out.empty(), Usage, "quantize: -o OUT.catq is required");
  // Options are checked before anything is loaded (a missing model then fails with the CNN checks done first).
  if (std::filesystem::exists(args.model) && is_llm_model_file(args.model)) return run_quantize_llm(common);
  if (args.from.empty()) {
    const auto& methods = cnn_ptq_methods();
    CATQ_CHECK(std::find(methods.begin(), methods.end(), method) != methods.end(), Config,
               "--method '{}': expected one of {} (optionally +cat or +affine)", method, fmt::join(methods, ", "));
    if (args.config.empty()) academic_config(args.bits);
    if (method != "rtn") recon_options(method);
  }
  CATQ_CHECK(args.budget_bops.empty() || args.budget_bytes.empty(), Usage,
             "give --budget-bops or --budget-bytes, not both");
  CATQ_CHECK(args.alloc == "knapsack" || args.alloc == "gumbel", Usage, "--alloc '{}': expected knapsack or gumbel",
             args.alloc);
  CATQ_CHECK((args.budget_bops.empty() && args.budget_bytes.empty()) || (args.from.empty() && args.config.empty()),
             Usage, "--budget-bops / --budget-bytes choose the bits themselves: drop --config / --from");
  ModelFormat f = detect_model_format(args.model);
  CATQ_CHECK(f == ModelFormat::Onnx, Unsupported, "{}: quantize handles ONNX CNNs and Llama models (this is {})",
             args.model, model_format_name(f));
  CATQ_CHECK(!args.calib.empty(), Usage, "quantize: --calib FILE is required (CIFAR-10 binary)");
  if (args.calib_split == "eval" || (args.fit_split == "eval"))
    fail(ErrorKind::Usage, "quantize: calibrating or fitting on the evaluation split is not allowed");

  Graph g = load_onnx(args.model);
  fold_constants(g);
  ImageDataset calib = load_images(args.calib, args.calib_split, args.calib_size, args.seed);

  QuantizedCnn m;
  std::optional<MixedPrecisionResult> mixed;
  std::unique_ptr<GraphExecutor> fp;  // the FP model for the head
  if (!args.from.empty()) {
    m = read_catq(args.from);
    Graph fg = std::move(g);
    fold_batchnorm(fg);
    fp = std::make_unique<GraphExecutor>(std::move(fg));
    CATQ_CHECK(fp->layers().size() == m.ex->layers().size(), Data, "--from {}: it has {} layers but {} has {} (not a "
               "quantization of this model?)", args.from, m.ex->layers().size(), args.model, fp->layers().size());
    for (size_t i = 0; i < fp->layers().size(); ++i)
      CATQ_CHECK(fp->layers()[i].name == m.ex->layers()[i].name && fp->layers()[i].weight_shape == m.ex->layers()[i].weight_shape,
                 Data, "--from {}: layer {} is '{}' there but '{}' in {}", args.from, i, m.ex->layers()[i].name,
                 fp->layers()[i].name, args.model);
    CATQ_CHECK(!head.empty(), Usage, "--from only adds a head: give --head cat|affine");
  } else {
    CnnPtqOptions o;
    o.method = method;
    o.bits = args.bits;
    o.config = args.config;
    if (!args.budget_bops.empty() || !args.budget_bytes.empty()) {
      // Bit widths per layer under the budget, on the calibration images; then the method runs with them.
      Graph fg = g;
      fold_batchnorm(fg);
      GraphExecutor fex(std::move(fg));
      MixedPrecisionOptions mo;
      mo.allocator = args.alloc;
      mo.candidates = args.alloc_bits;
      mo.kind = args.budget_bops.empty() ? BudgetKind::Bytes : BudgetKind::Bops;
      const auto layers = mp_layers(fex, calib.images);
      mo.budget = args.budget_bops.empty() ? parse_budget(args.budget_bytes, layers, mo.kind, "--budget-bytes")
                                           : parse_budget(args.budget_bops, layers, mo.kind, "--budget-bops");
      mo.iters = args.alloc_iters;
      mo.seed = args.seed;
      mixed = allocate_bits(fex, calib.images, mo);
      o.config_value = mixed->config;
    }
    if (method != "rtn") o.recon = recon_options(method);
    m = quantize_cnn(std::move(g), calib, o);
    if (mixed) m.metadata["mixed_precision"] = mixed->report;
  }
  if (!head.empty()) {
    HeadOptions ho;
    ho.kind = head;
    ho.seed = args.seed;
    ho.augment = args.fit_augment;
    ho.fit.pca_dims = args.cat_pca;
    if (args.cat_k > 0) ho.fit.k = args.cat_k;
    if (args.cat_alpha >= 0) ho.fit.alpha = args.cat_alpha;
    ho.select = !(args.cat_alpha >= 0 && (args.cat_k > 0 || head == "affine"));
    if (!args.cat_ks.empty()) ho.grid.ks = args.cat_ks;
    else if (args.cat_k > 0) ho.grid.ks = {args.cat_k};
    if (!args.cat_alphas.empty()) ho.grid.alphas = args.cat_alphas;
    else if (args.cat_alpha >= 0) ho.grid.alphas = {args.cat_alpha};
    ho.grid.folds = static_cast<int>(args.cat_folds);
    ho.grid.metric = args.cat_metric;
    ImageDataset fit = args.fit_data.empty()
                           ? calib
                           : load_images(args.fit_data, args.fit_split.empty() ? "all" : args.fit_split, 0, args.seed);
    fit_head(m, fp ? *fp : *m.ex, fit, ho);
  }
  write_catq(args.out, *m.ex, *m.sq, m.head ? &*m.head : nullptr, m.metadata);
  if (common.json) {
    nlohmann::json j = m.metadata;
    j["output"] = args.out;
    std::cout << j.dump(2) << "\n";
  } else {
    print_summary(m);
    std::cout << "wrote " << args.out << "\n";
  }
  return 0;
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
      "  catq quantize stories260K.bin --text valid.txt --skip-chars 12000 --config bench/configs/llm_w4a4.json \\\n"
      "       --transform blockcat:k=4 --weights gptq -o s260k_w4a4.catq\n"
      "  catq eval s260k_w4a4.catq --text valid.txt --reference stories260K.bin\n");
  sub->add_option("model", args.model, "FP model (.onnx CNN, or a Llama checkpoint: llama2.c .bin, .gguf, safetensors)")->required();
  sub->add_option("-o,--output", args.out, "Output .catq file");
  sub->add_option("--method", args.method, "rtn | adaround | brecq | qdrop | pdquant | wca, optionally +cat / +affine")
      ->capture_default_str();
  sub->add_option("--head", args.head, "Logit head: cat | affine | none");
  sub->add_option("--bits", args.bits, "wWaA, e.g. w4a4, w2a2, w4a2 (the academic setting); wWaA-wsym for symmetric weights (w8a8-wsym: int8 deployment)")->capture_default_str();
  sub->add_option("--config", args.config, "Quantization config (JSON file or compact string) instead of --bits");
  sub->add_option("--calib", args.calib, "Calibration data: CIFAR-10 binary file");
  sub->add_option("--calib-split", args.calib_split, "all | calib (never eval)")->capture_default_str();
  sub->add_option("--calib-size", args.calib_size, "Use a seeded random subset of N calibration images (0 = all)");
  sub->add_option("--from", args.from, "Start from this quantized .catq (of MODEL) and only fit the head");
  sub->add_option("--seed", args.seed, "Seed: batch sampling, drop masks, k-means, folds, augmentation")->capture_default_str();
  auto* r = "Reconstruction";
  sub->add_option("--iters", args.iters, "Iterations per unit (default 1000; published 20000)")->group(r);
  sub->add_option("--act-iters", args.act_iters, "BRECQ activation pass iterations (default iters/4)")->group(r);
  sub->add_option("--batch", args.batch, "Reconstruction batch size (default 32)")->group(r);
  sub->add_option("--drop-prob", args.drop_prob, "QDrop drop probability (qdrop/pdquant default 0.5)")->group(r);
  sub->add_option("--pd-weight", args.pd_weight, "PD-Quant 1/lambda_r (default 10)")->group(r);
  sub->add_option("--pd-temperature", args.pd_temperature, "PD-Quant temperature T (default 4)")->group(r);
  sub->add_option("--drift-weight", args.drift_weight, "lambda_p of the activation-step drift regulariser (default 0)")->group(r);
  sub->add_option("--w-lr", args.w_lr, "Learning rate of rounding / cluster parameters (3e-3; wca 1e-3)")->group(r);
  sub->add_option("--a-lr", args.a_lr, "Learning rate of activation steps (4e-5)")->group(r);
  sub->add_option("--round-weight", args.round_weight, "AdaRound lambda (0.01)")->group(r);
  sub->add_option("--clusters", args.clusters, "wca: clusters per weight tensor (default 4)")->group(r);
  sub->add_flag("--reinit-act", args.reinit_act, "Re-initialise each unit's activation ranges on the quantized "
                "model's inputs (as the published code) instead of keeping the FP calibration")->group(r);
  sub->add_flag("--no-keep-best", args.no_keep_best, "Commit a unit's learned parameters even when its calibration "
                "loss ends above its start")->group(r);
  auto* h = "Head (CAT / plain affine)";
  sub->add_option("--cat-k", args.cat_k, "Clusters K (with --cat-alpha: no selection)")->group(h);
  sub->add_option("--cat-alpha", args.cat_alpha, "Blend alpha in [0, 1] (with --cat-k: no selection)")->group(h);
  sub->add_option("--cat-ks", args.cat_ks, "K candidates for cross-validation (default 1 4 8 16 32 64)")->group(h);
  sub->add_option("--cat-alphas", args.cat_alphas, "alpha candidates (default 0 0.2 ... 1)")->group(h);
  sub->add_option("--cat-pca", args.cat_pca, "PCA dims for clustering (0 = off)")->group(h);
  sub->add_option("--cat-folds", args.cat_folds, "Cross-validation folds")->capture_default_str()->group(h);
  sub->add_option("--cat-metric", args.cat_metric, "accuracy | kl")->capture_default_str()->group(h);
  sub->add_option("--fit-data", args.fit_data, "Fitting images for the head (default: the calibration images)")->group(h);
  sub->add_option("--fit-split", args.fit_split, "Split of --fit-data (default all)")->group(h);
  sub->add_option("--fit-augment", args.fit_augment, "Extra random crop+flip copies per fitting image")->group(h);
  auto* mp = "Mixed precision (CNN)";
  sub->add_option("--budget-bops", args.budget_bops, "Per-layer bits under a BOPs budget (Σ MACs·bw·ba per image): a "
                  "number (k/M/G suffixes) or wN = what uniform N-bit costs")->group(mp);
  sub->add_option("--budget-bytes", args.budget_bytes, "Per-layer bits under a weight-bytes budget: a number or wN")
      ->group(mp);
  sub->add_option("--alloc", args.alloc, "knapsack (sensitivity + exact knapsack) | gumbel (Gumbel-softmax search + "
                  "Lagrangian dual ascent)")->capture_default_str()->group(mp);
  sub->add_option("--alloc-bits", args.alloc_bits, "Candidate bit widths (ascending)")->group(mp);
  sub->add_option("--alloc-iters", args.alloc_iters, "Gumbel search iterations")->capture_default_str()->group(mp);
  auto* lg = "Language models (llama2.c / GGUF / safetensors input)";
  sub->add_option("--text", args.text, "Calibration text")->group(lg);
  sub->add_option("--tokenizer", args.tokenizer, "llama2.c tokenizer (GGUF files carry their own)")->group(lg);
  sub->add_option("--skip-chars", args.skip_chars, "Skip this many characters of --text first")->group(lg);
  sub->add_option("--calib-chars", args.calib_chars, "Characters of calibration text")->capture_default_str()->group(lg);
  sub->add_option("--window", args.window, "Tokens per calibration window")->capture_default_str()->group(lg);
  sub->add_option("--transform", args.transform, "none | smoothquant[:alpha=..] | rms | quarot | rotation | "
                  "blockcat[:k=..][:damp=..][:nohad]")->capture_default_str()->group(lg);
  sub->add_option("--weights", args.weights, "rtn | gptq")->capture_default_str()->group(lg);
  sub->add_flag("--act-order", args.act_order, "GPTQ act-order")->group(lg);
  sub->add_option("--gptq-damp", args.gptq_damp, "GPTQ damping")->capture_default_str()->group(lg);
  sub->callback([&common] {
    if (common.json || common.quiet) Progress::set_enabled(false);
    run_quantize(common);
  });
}

}  // namespace catq::cli

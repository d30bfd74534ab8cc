// `catq analyze MODEL --text FILE`: per linear layer of a Llama model, why it quantizes badly — measured RTN
// SQNR at WbAb (per-token activations, per-channel weights), activation and weight concentration, alignment,
// the SQNR the decomposition predicts, and the best alignment any input transform could reach; before and after
// a transform. Table on stdout, JSON (--output or --json), SVG plot (--plot).
#include <cmath>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/progress.h"
#include "eval/perplexity.h"
#include "eval/plot.h"
#include "io/llm_loader.h"
#include "methods/llm/transforms.h"
#include "methods/llm/sqnr_analyzer.h"

namespace catq::cli {

namespace {

struct AnalyzeArgs {
  std::string model, tokenizer, text, transform = "none", output, plot;
  int bits = 4;
  bool asym = false;
  int64_t max_chars = 24000, skip_chars = 0, window = 256, max_tokens = 4096;
};
AnalyzeArgs args;

nlohmann::json stats_json(const SqnrStats& s) {
  return {{"layer", s.layer},
          {"measured_db", s.measured_db},
          {"predicted_db", s.predicted_db},
          {"act_concentration_db", to_db(s.act_concentration)},
          {"weight_concentration_db", to_db(s.weight_concentration)},
          {"alignment_db", to_db(s.alignment)},
          {"best_alignment_db", to_db(s.best_alignment)},
          {"tokens", s.tokens}};
}

struct Summary {
  double measured = 0, predicted = 0, abs_err = 0, alignment = 0, concentration = 0;
};
Summary summarize(const std::vector<SqnrStats>& v) {
  Summary s;
  for (const auto& x : v) {
    s.measured += x.measured_db;
    s.predicted += x.predicted_db;
    s.abs_err += std::abs(x.predicted_db - x.measured_db);
    s.alignment += to_db(x.alignment);
    s.concentration += to_db(1.0 / (1.0 / x.act_concentration + 1.0 / x.weight_concentration));
  }
  const double n = static_cast<double>(std::max<size_t>(v.size(), 1));
  s.measured /= n, s.predicted /= n, s.abs_err /= n, s.alignment /= n, s.concentration /= n;
  return s;
}

int run_analyze(const Common& common) {
  if (common.json || common.quiet) Progress::set_enabled(false);
  CATQ_CHECK(args.bits >= 2 && args.bits <= 8, Usage, "--bits {}: expected 2..8", args.bits);
  const LlmTransformOptions topt = parse_llm_transform(args.transform);
  LoadedLlama m = load_llama(args.model, args.tokenizer);
  const Tokenizer& tok = require_tokenizer(m);
  PerplexityOptions po;
  po.max_chars = args.max_chars;
  po.window = std::min(args.window, m.model.cfg.seq_len);
  std::string text = read_file_text(args.text);
  text = text.substr(std::min(text.size(), truncate_utf8(text, args.skip_chars).size()));
  EvalWindows w = make_eval_windows(tok, text, po);
  CATQ_CHECK(w.n_windows() > 0, Data, "{}: too little text for one window of {} tokens", args.text, po.window);
  SmallModelThreadGuard threads(m.model);
  const QuantSpec act = sqnr_act_spec(args.bits, !args.asym), weight = sqnr_weight_spec(args.bits, !args.asym);
  std::vector<SqnrStats> before = analyze_llama_sqnr(m.model, w.inputs, act, weight, args.max_tokens);
  std::vector<SqnrStats> after;
  if (topt.method != "none") {
    std::vector<BlockStats> stats;
    if (topt.method != "quarot" && topt.method != "rotation") stats = collect_llama_stats(m.model, w.inputs);
    apply_llm_transform(m.model, stats, topt);
    after = analyze_llama_sqnr(m.model, w.inputs, act, weight, args.max_tokens);
  }

  nlohmann::json j = {{"model", args.model},
                      {"text", args.text},
                      {"skip_chars", args.skip_chars},
                      {"chars", w.n_chars},
                      {"windows", w.n_windows()},
                      {"window", po.window},
                      {"bits", args.bits},
                      {"symmetric", !args.asym},
                      {"transform", topt.str()}};
  auto summary_json = [](const Summary& s) {
    return nlohmann::json{{"mean_measured_db", s.measured}, {"mean_predicted_db", s.predicted},
                          {"mean_abs_prediction_error_db", s.abs_err}, {"mean_alignment_db", s.alignment},
                          {"mean_concentration_db", s.concentration}};
  };
  for (const auto& s : before) j["before"].push_back(stats_json(s));
  j["before_summary"] = summary_json(summarize(before));
  for (const auto& s : after) j["after"].push_back(stats_json(s));
  if (!after.empty()) j["after_summary"] = summary_json(summarize(after));
  if (!args.output.empty()) write_file_atomic(args.output, j.dump(2) + "\n");
  if (!args.plot.empty()) {
    std::vector<std::string> names;
    std::vector<double> mb, pb, ma, pa;
    for (const auto& s : before) names.push_back(s.layer), mb.push_back(s.measured_db), pb.push_back(s.predicted_db);
    for (const auto& s : after) ma.push_back(s.measured_db), pa.push_back(s.predicted_db);
    std::vector<PlotSeries> series = {{"measured, no transform", mb, "#1f77b4", false},
                                      {"predicted, no transform", pb, "#1f77b4", true}};
    if (!after.empty()) {
      series.push_back({"measured, " + topt.str(), ma, "#d62728", false});
      series.push_back({"predicted, " + topt.str(), pa, "#d62728", true});
    }
    write_file_atomic(args.plot, line_plot_svg(fmt::format("{}: W{}A{} RTN output SQNR per linear layer", args.model,
                                                           args.bits, args.bits),
                                               "SQNR (dB)", names, series));
  }
  if (common.json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{}: W{}A{} RTN ({} per-token activations, per-channel weights) on {} windows of {} "
                           "tokens from {}\n", args.model, args.bits, args.bits, args.asym ? "asymmetric" : "symmetric",
                           w.n_windows(), po.window, args.text);
  std::cout << "dB: measured / predicted SQNR, concentration C(x), C(W), alignment A, best reachable A\n";
  auto table = [&](const std::vector<SqnrStats>& v, const std::string& title) {
    std::cout << "\n" << title << "\n";
    std::cout << fmt::format("{:<18} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}\n", "layer", "measured", "predict", "C(x)",
                             "C(W)", "A", "best A");
    for (const auto& s : v)
      std::cout << fmt::format("{:<18} {:>9.2f} {:>9.2f} {:>8.2f} {:>8.2f} {:>8.2f} {:>8.2f}\n", s.layer, s.measured_db,
                               s.predicted_db, to_db(s.act_concentration), to_db(s.weight_concentration),
                               to_db(s.alignment), to_db(s.best_alignment));
    Summary su = summarize(v);
    std::cout << fmt::format("mean: measured {:.2f} dB, predicted {:.2f} dB, |predicted - measured| {:.2f} dB\n",
                             su.measured, su.predicted, su.abs_err);
  };
  table(before, "no transform");
  if (!after.empty()) table(after, "after " + topt.str());
  if (!args.output.empty()) std::cout << "wrote " << args.output << "\n";
  if (!args.plot.empty()) std::cout << "wrote " << args.plot << "\n";
  return 0;
}

}  // namespace

void register_analyze(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("analyze", "Per-layer SQNR analysis of a Llama model: measured vs predicted RTN "
                                            "SQNR, concentration and alignment, before/after a transform");
  sub->footer(
      "Examples:\n"
      "  catq analyze stories260K.bin --text tinystories_valid_head.txt --bits 4\n"
      "  catq analyze stories260K.bin --text t.txt --transform blockcat:k=4 --plot sqnr.svg --output sqnr.json\n"
      "  catq --json analyze model.gguf --text t.txt --transform quarot\n");
  sub->add_option("model", args.model, "Llama model (llama2.c .bin, .gguf, safetensors folder)")->required();
  sub->add_option("--text", args.text, "Calibration / analysis text (UTF-8)")->required();
  sub->add_option("--tokenizer", args.tokenizer, "llama2.c tokenizer (GGUF files carry their own)");
  sub->add_option("--bits", args.bits, "Bits for weights and activations (WbAb)")->capture_default_str();
  sub->add_flag("--asym", args.asym, "Asymmetric quantizers (default symmetric)");
  sub->add_option("--transform", args.transform, "none | smoothquant[:alpha=..] | rms | quarot | rotation | "
                  "blockcat[:k=..][:damp=..][:nohad]")->capture_default_str();
  sub->add_option("--max-chars", args.max_chars, "Characters of text to use")->capture_default_str();
  sub->add_option("--skip-chars", args.skip_chars, "Skip this many characters first (e.g. 12000: the text after "
                  "the perplexity reference)")->capture_default_str();
  sub->add_option("--window", args.window, "Tokens per window")->capture_default_str();
  sub->add_option("--max-tokens", args.max_tokens, "Input rows kept per layer")->capture_default_str();
  sub->add_option("-o,--output", args.output, "Write the JSON report to this file");
  sub->add_option("--plot", args.plot, "Write an SVG plot of per-layer SQNR to this file");
  sub->callback([&common] { run_analyze(common); });
}

}  // namespace catq::cli

// `catq analyze MODEL --text FILE`: per linear layer of a Llama model, why it quantizes badly — measured RTN
// SQNR at WbAb (per-token activations, per-channel weights), activation and weight concentration, alignment,
// the SQNR the decomposition predicts, and the best alignment any input transform could reach; before and after
// a transform. Table on stdout, JSON (--output or --json), SVG plot (--plot).
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/progress.h"
#include "methods/llm/analyze_job.h"

namespace catq::cli {

namespace {

// The command line fills the job; the method layer runs it.
LlmAnalyzeJob args;

int run_analyze(const Common& common) {
  if (common.json || common.quiet) Progress::set_enabled(false);
  const LlmAnalyzeResult r = run_llm_analyze_job(args);
  if (common.json) {
    std::cout << r.report.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("{}: W{}A{} RTN ({} per-token activations, per-channel weights) on {} windows of {} "
                           "tokens from {}\n", args.model, args.weight_bits > 0 ? args.weight_bits : args.bits,
                           args.act_bits > 0 ? args.act_bits : args.bits, args.asym ? "asymmetric" : "symmetric",
                           r.windows, r.window, args.text);
  std::cout << "dB: measured / predicted SQNR, concentration C(x), C(W), alignment A, best reachable A\n";
  auto table = [&](const std::vector<SqnrStats>& v, const SqnrSummary& su, const std::string& title) {
    std::cout << "\n" << title << "\n";
    std::cout << fmt::format("{:<18} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}\n", "layer", "measured", "predict", "C(x)",
                             "C(W)", "A", "best A");
    for (const auto& s : v)
      std::cout << fmt::format("{:<18} {:>9.2f} {:>9.2f} {:>8.2f} {:>8.2f} {:>8.2f} {:>8.2f}\n", s.layer, s.measured_db,
                               s.predicted_db, to_db(s.act_concentration), to_db(s.weight_concentration),
                               to_db(s.alignment), to_db(s.best_alignment));
    std::cout << fmt::format("mean: measured {:.2f} dB, predicted {:.2f} dB, |predicted - measured| {:.2f} dB\n",
                             su.measured, su.predicted, su.abs_err);
  };
  table(r.before, r.before_summary, "no transform");
  if (!r.after.empty()) table(r.after, r.after_summary, "after " + r.transform);
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
      "  catq --json analyze model.gguf --text t.txt --transform quarot\n"
      "  catq analyze stories260K.bin --text t.txt --weight-bits 4 --act-bits 8\n");
  sub->add_option("model", args.model, "Llama model (llama2.c .bin, .gguf, safetensors folder)")->required();
  sub->add_option("--text", args.text, "Calibration / analysis text (UTF-8)")->required();
  sub->add_option("--tokenizer", args.tokenizer, "llama2.c tokenizer (GGUF files carry their own)");
  sub->add_option("--bits", args.bits, "Bits for weights and activations (WbAb)")->capture_default_str();
  sub->add_option("--weight-bits", args.weight_bits, "Weight bits when they differ from the activations' (WaAb)");
  sub->add_option("--act-bits", args.act_bits, "Activation bits when they differ from the weights' (WaAb)");
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

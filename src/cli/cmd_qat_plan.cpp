// `catq qat-plan --params N --tokens D --bits B [--law FILE]`: how much of a training budget QAT should take
// (methods.md §5; src/methods/co_qat.h).
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/file_util.h"
#include "methods/co_qat.h"

namespace catq::cli {

namespace {

struct QatPlanArgs {
  std::string params, tokens, law;
  double bits = 4;
};
QatPlanArgs args;

int run_qat_plan(const Common& common) {
  const double n = parse_count(args.params, "--params"), d = parse_count(args.tokens, "--tokens");
  QatLossLaw law;
  if (!args.law.empty()) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file_text(args.law));
    } catch (const nlohmann::json::parse_error& e) {
      fail(ErrorKind::Config, "{}: not valid JSON ({})", args.law, e.what());
    }
    law = QatLossLaw::from_json(j, args.law);
  }
  const QatPlan p = plan_qat(n, d, args.bits, args.law.empty() ? nullptr : &law);
  if (common.json) {
    std::cout << to_json(p).dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("N = {:.4g} parameters, D = {:.4g} tokens, {} bits: {:.4g} bytes quantized\n", n, d,
                           args.bits, n * args.bits / 8);
  std::cout << fmt::format("tokens per parameter-byte  S = D / (N·B/8) = {:.4g}\n", p.s);
  std::cout << fmt::format("optimal QAT fraction       f = exp(-6.7297 / ln S) = {:.3f}  ({:.4g} FP tokens, then "
                           "{:.4g} QAT tokens)\n", p.fraction, p.fp_tokens, p.qat_tokens);
  if (p.has_law) {
    std::cout << fmt::format("loss law ({}): L(f = {:.3f}) = {:.4f};  law's own optimum f = {:.3f}, L = {:.4f};  "
                             "L(f = 0.10) = {:.4f}\n", args.law, p.fraction, p.loss_at_fraction, p.law_best_fraction,
                             p.law_best_loss, p.loss_at_10pct);
  }
  return 0;
}

}  // namespace

void register_qat_plan(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("qat-plan", "How much of a training budget should be quantization-aware: "
                                             "tokens per parameter-byte and the compute-optimal QAT fraction");
  sub->footer(
      "The fraction comes from the published fit f = exp(-6.7297 / ln S) (arXiv 2509.22935; MAE 0.09), S = D / (N·B/8).\n"
      "--law FILE (JSON with E, A, alpha, B, beta, theta, kappa, phi, chi, psi, omega, lambda, mu, nu, xi, rho — e.g.\n"
      "fitted by bench/co_qat) adds the loss-law prediction and the law's own optimum (docs/qat.md).\n\n"
      "Examples:\n"
      "  catq qat-plan --params 1B --tokens 100B --bits 4\n"
      "  catq --json qat-plan --params 3.2M --tokens 50M --bits 2 --law fitted_law.json\n");
  sub->add_option("--params", args.params, "Model parameters N (e.g. 5M, 1.5e9)")->required();
  sub->add_option("--tokens", args.tokens, "Total training tokens D, FP + QAT (e.g. 100B)")->required();
  sub->add_option("--bits", args.bits, "Weight bits B of the quantized model")->capture_default_str();
  sub->add_option("--law", args.law, "Fitted loss-law constants (JSON)");
  sub->callback([&common] { run_qat_plan(common); });
}

}  // namespace catq::cli

// `catq qat-plan --params N --tokens D --bits B [--law FILE]`: how much of a training budget QAT should take
// (methods.md §5; src/methods/qat/co_qat.h),
// and `catq qat-fit RUNS... [-o LAW]`: fit the loss law to training runs (src/methods/qat/co_qat_job.h).
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "methods/qat/co_qat_job.h"

namespace catq::cli {

namespace {

// The command line fills the jobs; the method layer runs them.
QatPlanJob plan_job;
QatFitJob fit_job;

int run_qat_plan(const Common& common) {
  const QatPlan p = run_qat_plan_job(plan_job);
  if (common.json) {
    std::cout << to_json(p).dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("N = {:.4g} parameters, D = {:.4g} tokens, {} bits: {:.4g} bytes quantized\n", p.params,
                           p.tokens, plan_job.bits, p.params * plan_job.bits / 8);
  std::cout << fmt::format("tokens per parameter-byte  S = D / (N·B/8) = {:.4g}\n", p.s);
  std::cout << fmt::format("optimal QAT fraction       f = exp(-6.7297 / ln S) = {:.3f}  ({:.4g} FP tokens, then "
                           "{:.4g} QAT tokens)\n", p.fraction, p.fp_tokens, p.qat_tokens);
  if (p.has_law) {
    std::cout << fmt::format("loss law ({}): L(f = {:.3f}) = {:.4f};  law's own optimum f = {:.3f}, L = {:.4f};  "
                             "L(f = 0.10) = {:.4f}\n", plan_job.law, p.fraction, p.loss_at_fraction,
                             p.law_best_fraction, p.law_best_loss, p.loss_at_10pct);
  }
  return 0;
}

int run_qat_fit(const Common& common) {
  const nlohmann::json r = run_qat_fit_job(fit_job);
  if (common.json) {
    std::cout << r.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("fitted on {} runs ({}): mean |L̂ − L| / L = {:.4f}, Huber objective {:.4g}\n",
                           r["runs"].get<int>(), fit_job.schedule, r["mean_abs_rel_error"].get<double>(),
                           r["objective"].get<double>());
  std::cout << r["law"].dump() << "\n";
  std::cout << "| N | D | bits | S | best measured f | law's f* | formula f*(S) | loss by f |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& g : r["groups"]) {
    std::string losses;
    for (const auto& [f, l] : g["loss_by_fraction"].items()) losses += fmt::format("{}: {:.4f}  ", f, l.get<double>());
    std::cout << fmt::format("| {:.3g} | {:.3g} | {} | {:.3g} | {} | {:.3f} | {:.3f} | {} |\n", g["params"].get<double>(),
                             g["tokens"].get<double>(), g["bits"].get<double>(), g["S"].get<double>(),
                             g["measured_best_fraction"].get<double>(), g["law_best_fraction"].get<double>(),
                             g["formula_fraction"].get<double>(), losses);
  }
  if (!fit_job.out.empty()) std::cout << "wrote " << fit_job.out << "\n";
  return 0;
}

}  // namespace

void register_qat_plan(CLI::App& app, Common& common) {
  auto* fit = app.add_subcommand("qat-fit", "Fit the compute-optimal-QAT loss law (Huber loss on log L) to training "
                                            "runs, and compare optimal QAT fractions with the published formula");
  fit->footer(
      "Runs are the JSON records of `catq --json train-llm --qat-bits B --qat-fraction f ...` (bench/co_qat.sh writes\n"
      "them). Runs with f = 0 (RTN after FP) are shown in the table but not fitted (the law needs S_qat > 0).\n\n"
      "Examples:\n"
      "  catq qat-fit bench/results/co_qat/*.json -o law.json\n"
      "  catq qat-plan --params 3M --tokens 50M --bits 4 --law law.json\n");
  fit->add_option("runs", fit_job.runs, "Run records (JSON)")->required();
  fit->add_option("-o,--output", fit_job.out, "Write the fitted law (JSON, for qat-plan --law)");
  fit->add_option("--schedule", fit_job.schedule, "Fit runs of this schedule: fused | classic | any")->capture_default_str();
  fit->add_option("--restarts", fit_job.fit.restarts, "Random initialisations")->capture_default_str();
  fit->add_option("--iters", fit_job.fit.iters, "L-BFGS iterations per restart")->capture_default_str();
  fit->add_option("--delta", fit_job.fit.delta, "Huber threshold on log L")->capture_default_str();
  fit->add_option("--seed", fit_job.fit.seed, "Seed of the initialisations")->capture_default_str();
  fit->callback([&common] { run_qat_fit(common); });

  auto* sub = app.add_subcommand("qat-plan", "How much of a training budget should be quantization-aware: "
                                             "tokens per parameter-byte and the compute-optimal QAT fraction");
  sub->footer(
      "The fraction comes from the published fit f = exp(-6.7297 / ln S) (arXiv 2509.22935; MAE 0.09), S = D / (N·B/8).\n"
      "--law FILE (JSON with E, A, alpha, B, beta, theta, kappa, phi, chi, psi, omega, lambda, mu, nu, xi, rho — e.g.\n"
      "fitted by bench/co_qat) adds the loss-law prediction and the law's own optimum (docs/qat.md).\n\n"
      "Examples:\n"
      "  catq qat-plan --params 1B --tokens 100B --bits 4\n"
      "  catq --json qat-plan --params 3.2M --tokens 50M --bits 2 --law fitted_law.json\n");
  sub->add_option("--params", plan_job.params, "Model parameters N (e.g. 5M, 1.5e9)")->required();
  sub->add_option("--tokens", plan_job.tokens, "Total training tokens D, FP + QAT (e.g. 100B)")->required();
  sub->add_option("--bits", plan_job.bits, "Weight bits B of the quantized model")->capture_default_str();
  sub->add_option("--law", plan_job.law, "Fitted loss-law constants (JSON)");
  sub->callback([&common] { run_qat_plan(common); });
}

}  // namespace catq::cli

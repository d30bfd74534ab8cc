// `catq qat-plan --params N --tokens D --bits B [--law FILE]`: how much of a training budget QAT should take
// (methods.md §5; src/methods/co_qat.h).
#include <iostream>
#include <map>
#include <tuple>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/parse.h"
#include "methods/qat/co_qat.h"

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

struct QatFitArgs {
  std::vector<std::string> runs;
  std::string out, schedule = "fused";
  int restarts = 64, iters = 300;
  double delta = 1e-3;
  uint64_t seed = 0;
};
QatFitArgs fit_args;

// Records written by `catq --json train-llm --qat-bits ...` (bench/co_qat.sh).
int run_qat_fit(const Common& common) {
  struct Rec {
    QatRun run;
    std::string schedule, file;
  };
  std::vector<Rec> all;
  for (const std::string& f : fit_args.runs) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file_text(f));
    } catch (const nlohmann::json::parse_error& e) {
      fail(ErrorKind::Format, "{}: not valid JSON ({})", f, e.what());
    }
    for (const char* k : {"parameters", "tokens_seen", "bits", "qat_fraction", "val_nll", "schedule"})
      CATQ_CHECK(j.contains(k), Format, "{}: missing \"{}\" (expected a `catq --json train-llm --qat-bits` record)", f, k);
    Rec r;
    r.run = {j["parameters"].get<double>(), j["tokens_seen"].get<double>(), j["bits"].get<double>(),
             j["qat_fraction"].get<double>(), j["val_nll"].get<double>()};
    r.schedule = j["schedule"].get<std::string>();
    r.file = f;
    all.push_back(r);
  }
  std::vector<QatRun> fit_runs;
  for (const Rec& r : all)
    if ((fit_args.schedule == "any" || r.schedule == fit_args.schedule) && r.run.fraction > 0 && r.run.fraction < 1)
      fit_runs.push_back(r.run);
  QatFitOptions fo;
  fo.restarts = fit_args.restarts;
  fo.iters = fit_args.iters;
  fo.delta = fit_args.delta;
  fo.seed = fit_args.seed;
  const QatFit fit = fit_qat_law(fit_runs, fo);
  if (!fit_args.out.empty()) {
    nlohmann::json lj = fit.law.to_json();
    lj["description"] = fmt::format("fitted by catq qat-fit on {} runs ({} schedule), mean |rel. error| {:.4f}",
                                    fit.runs, fit_args.schedule, fit.mean_abs_rel);
    const std::string text = lj.dump(2) + "\n";
    write_file_atomic(fit_args.out, text.data(), text.size());
  }
  // Per (N, D, bits): the best measured fraction (f = 0 = RTN after a full FP run), the law's and the formula's.
  std::map<std::tuple<double, double, double>, std::vector<const Rec*>> groups;
  for (const Rec& r : all)
    if (fit_args.schedule == "any" || r.schedule == fit_args.schedule || r.run.fraction == 0)
      groups[{r.run.params, r.run.tokens, r.run.bits}].push_back(&r);
  nlohmann::json gj = nlohmann::json::array();
  for (const auto& [key, rs] : groups) {
    const auto [N, D, B] = key;
    const Rec* best = rs.front();
    for (const Rec* r : rs)
      if (r->run.loss < best->run.loss) best = r;
    const double s = tokens_per_param_byte(D, N, B);
    nlohmann::json fr = nlohmann::json::object();
    for (const Rec* r : rs) fr[fmt::format("{:g}", r->run.fraction)] = r->run.loss;
    gj.push_back({{"params", N}, {"tokens", D}, {"bits", B}, {"S", s}, {"measured_best_fraction", best->run.fraction},
                  {"measured_best_loss", best->run.loss}, {"law_best_fraction", fit.law.best_fraction(N, D, B)},
                  {"formula_fraction", s > 1 ? optimal_qat_fraction(s) : 0.0}, {"loss_by_fraction", fr}});
  }
  if (common.json) {
    std::cout << nlohmann::json{{"law", fit.law.to_json()}, {"objective", fit.objective},
                                {"mean_abs_rel_error", fit.mean_abs_rel}, {"runs", fit.runs}, {"groups", gj}}.dump(2) << "\n";
    return 0;
  }
  std::cout << fmt::format("fitted on {} runs ({}): mean |L̂ − L| / L = {:.4f}, Huber objective {:.4g}\n", fit.runs,
                           fit_args.schedule, fit.mean_abs_rel, fit.objective);
  std::cout << fit.law.to_json().dump() << "\n";
  std::cout << "| N | D | bits | S | best measured f | law's f* | formula f*(S) | loss by f |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& g : gj) {
    std::string losses;
    for (const auto& [f, l] : g["loss_by_fraction"].items()) losses += fmt::format("{}: {:.4f}  ", f, l.get<double>());
    std::cout << fmt::format("| {:.3g} | {:.3g} | {} | {:.3g} | {} | {:.3f} | {:.3f} | {} |\n", g["params"].get<double>(),
                             g["tokens"].get<double>(), g["bits"].get<double>(), g["S"].get<double>(),
                             g["measured_best_fraction"].get<double>(), g["law_best_fraction"].get<double>(),
                             g["formula_fraction"].get<double>(), losses);
  }
  if (!fit_args.out.empty()) std::cout << "wrote " << fit_args.out << "\n";
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
  fit->add_option("runs", fit_args.runs, "Run records (JSON)")->required();
  fit->add_option("-o,--output", fit_args.out, "Write the fitted law (JSON, for qat-plan --law)");
  fit->add_option("--schedule", fit_args.schedule, "Fit runs of this schedule: fused | classic | any")->capture_default_str();
  fit->add_option("--restarts", fit_args.restarts, "Random initialisations")->capture_default_str();
  fit->add_option("--iters", fit_args.iters, "L-BFGS iterations per restart")->capture_default_str();
  fit->add_option("--delta", fit_args.delta, "Huber threshold on log L")->capture_default_str();
  fit->add_option("--seed", fit_args.seed, "Seed of the initialisations")->capture_default_str();
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
  sub->add_option("--params", args.params, "Model parameters N (e.g. 5M, 1.5e9)")->required();
  sub->add_option("--tokens", args.tokens, "Total training tokens D, FP + QAT (e.g. 100B)")->required();
  sub->add_option("--bits", args.bits, "Weight bits B of the quantized model")->capture_default_str();
  sub->add_option("--law", args.law, "Fitted loss-law constants (JSON)");
  sub->callback([&common] { run_qat_plan(common); });
}

}  // namespace catq::cli

// run_qat_plan_job and run_qat_fit_job: the `catq qat-plan` / `catq qat-fit` jobs (co_qat_job.h).
#include "methods/qat/co_qat_job.h"

#include <map>
#include <tuple>

#include "core/error.h"
#include "core/file_util.h"
#include "core/parse.h"

namespace catq {

QatPlan run_qat_plan_job(const QatPlanJob& job) {
  const double n = parse_count(job.params, "--params"), d = parse_count(job.tokens, "--tokens");
  QatLossLaw law;
  if (!job.law.empty()) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(read_file_text(job.law));
    } catch (const nlohmann::json::parse_error& e) {
      fail(ErrorKind::Config, "{}: not valid JSON ({})", job.law, e.what());
    }
    law = QatLossLaw::from_json(j, job.law);
  }
  return plan_qat(n, d, job.bits, job.law.empty() ? nullptr : &law);
}

// Records written by `catq --json train-llm --qat-bits ...` (bench/co_qat.sh).
nlohmann::json run_qat_fit_job(const QatFitJob& job) {
  struct Rec {
    QatRun run;
    std::string schedule, file;
  };
  std::vector<Rec> all;
  for (const std::string& f : job.runs) {
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
    if ((job.schedule == "any" || r.schedule == job.schedule) && r.run.fraction > 0 && r.run.fraction < 1)
      fit_runs.push_back(r.run);
  const QatFit fit = fit_qat_law(fit_runs, job.fit);
  if (!job.out.empty()) {
    nlohmann::json lj = fit.law.to_json();
    lj["description"] = fmt::format("fitted by catq qat-fit on {} runs ({} schedule), mean |rel. error| {:.4f}",
                                    fit.runs, job.schedule, fit.mean_abs_rel);
    const std::string text = lj.dump(2) + "\n";
    write_file_atomic(job.out, text.data(), text.size());
  }
  // Per (N, D, bits): the best measured fraction (f = 0 = RTN after a full FP run), the law's and the formula's.
  std::map<std::tuple<double, double, double>, std::vector<const Rec*>> groups;
  for (const Rec& r : all)
    if (job.schedule == "any" || r.schedule == job.schedule || r.run.fraction == 0)
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
  return nlohmann::json{{"law", fit.law.to_json()}, {"objective", fit.objective},
                        {"mean_abs_rel_error", fit.mean_abs_rel}, {"runs", fit.runs}, {"groups", gj}};
}

}  // namespace catq

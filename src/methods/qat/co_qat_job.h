// The `catq qat-plan` and `catq qat-fit` jobs (compute-optimal QAT, co_qat.h), as data: the plan's budget and
// optional law file; the fit's run records, schedule and fitting options. The functions read the files, plan or
// fit, and (fit) write the law file. The CLI only fills the structs and prints.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "methods/qat/co_qat.h"

namespace catq {

struct QatPlanJob {
  std::string params;  // model parameters N, parse_count syntax (e.g. 5M, 1.5e9)
  std::string tokens;  // total training tokens D, FP + QAT (e.g. 100B)
  double bits = 4;     // weight bits B of the quantized model
  std::string law;     // fitted loss-law constants (JSON file); "" = none
};

// Parses N and D (Error(Usage) naming --params / --tokens), reads the law (Error(Config) for invalid JSON or
// constants) and plans (plan_qat's errors).
QatPlan run_qat_plan_job(const QatPlanJob& job);

struct QatFitJob {
  std::vector<std::string> runs;      // JSON records of `catq --json train-llm --qat-bits ...`
  std::string schedule = "fused";     // fit runs of this schedule: fused | classic | any
  QatFitOptions fit;                  // restarts, L-BFGS iterations, Huber delta, seed
  std::string out;                    // the fitted law's JSON file (for qat-plan --law); "" = not written
};

// Reads the records (Error(Format) naming the file for invalid JSON or a missing key), fits the law to the runs
// of the schedule with 0 < f < 1 (fit_qat_law's errors), writes job.out if given, and returns
// {law, objective, mean_abs_rel_error, runs, groups}: one group per (N, D, bits) with the best measured fraction
// (f = 0 runs included), the law's and the formula's, and the loss by fraction.
nlohmann::json run_qat_fit_job(const QatFitJob& job);

}  // namespace catq

#include "methods/llm/analyze_job.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/file_util.h"
#include "eval/perplexity.h"
#include "eval/plot.h"
#include "io/llm_loader.h"
#include "methods/llm/transforms.h"

namespace catq {

namespace {

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

SqnrSummary summarize(const std::vector<SqnrStats>& v) {
  SqnrSummary s;
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

nlohmann::json summary_json(const SqnrSummary& s) {
  return nlohmann::json{{"mean_measured_db", s.measured}, {"mean_predicted_db", s.predicted},
                        {"mean_abs_prediction_error_db", s.abs_err}, {"mean_alignment_db", s.alignment},
                        {"mean_concentration_db", s.concentration}};
}

}  // namespace

LlmAnalyzeResult run_llm_analyze_job(const LlmAnalyzeJob& job) {
  const int wbits = job.weight_bits > 0 ? job.weight_bits : job.bits, abits = job.act_bits > 0 ? job.act_bits : job.bits;
  CATQ_CHECK(wbits >= 2 && wbits <= 8 && abits >= 2 && abits <= 8, Usage,
             "bits W{}A{}: weight and activation bits must be 2..8", wbits, abits);
  const LlmTransformOptions topt = parse_llm_transform(job.transform);
  LoadedLlama m = load_llama(job.model, job.tokenizer);
  const Tokenizer& tok = require_tokenizer(m);
  PerplexityOptions po;
  po.max_chars = job.max_chars;
  po.window = std::min(job.window, m.model.cfg.seq_len);
  std::string text = read_file_text(job.text);
  text = utf8_skip(text, job.skip_chars);
  EvalWindows w = make_eval_windows(tok, text, po);
  CATQ_CHECK(w.n_windows() > 0, Data, "{}: too little text for one window of {} tokens", job.text, po.window);
  SmallModelThreadGuard threads(m.model);
  const QuantSpec act = sqnr_act_spec(abits, !job.asym), weight = sqnr_weight_spec(wbits, !job.asym);
  LlmAnalyzeResult r;
  r.before = analyze_llama_sqnr(m.model, w.inputs, act, weight, job.max_tokens);
  if (topt.method != "none") {
    std::vector<BlockStats> stats;
    if (topt.method != "quarot" && topt.method != "rotation") stats = collect_llama_stats(m.model, w.inputs);
    apply_llm_transform(m.model, stats, topt);
    r.after = analyze_llama_sqnr(m.model, w.inputs, act, weight, job.max_tokens);
  }
  r.transform = topt.str();
  r.windows = w.n_windows();
  r.window = po.window;
  r.before_summary = summarize(r.before);
  if (!r.after.empty()) r.after_summary = summarize(r.after);

  nlohmann::json& j = r.report;
  j = {{"model", job.model},
       {"text", job.text},
       {"skip_chars", job.skip_chars},
       {"chars", w.n_chars},
       {"windows", w.n_windows()},
       {"window", po.window},
       {"bits", wbits == abits ? nlohmann::json(wbits) : nlohmann::json(nullptr)},
       {"weight_bits", wbits},
       {"act_bits", abits},
       {"symmetric", !job.asym},
       {"transform", topt.str()}};
  for (const auto& s : r.before) j["before"].push_back(stats_json(s));
  j["before_summary"] = summary_json(r.before_summary);
  for (const auto& s : r.after) j["after"].push_back(stats_json(s));
  if (!r.after.empty()) j["after_summary"] = summary_json(r.after_summary);
  if (!job.output.empty()) write_file_atomic(job.output, j.dump(2) + "\n");
  if (!job.plot.empty()) {
    std::vector<std::string> names;
    std::vector<double> mb, pb, ma, pa;
    for (const auto& s : r.before) names.push_back(s.layer), mb.push_back(s.measured_db), pb.push_back(s.predicted_db);
    for (const auto& s : r.after) ma.push_back(s.measured_db), pa.push_back(s.predicted_db);
    std::vector<PlotSeries> series = {{"measured, no transform", mb, "#1f77b4", false},
                                      {"predicted, no transform", pb, "#1f77b4", true}};
    if (!r.after.empty()) {
      series.push_back({"measured, " + topt.str(), ma, "#d62728", false});
      series.push_back({"predicted, " + topt.str(), pa, "#d62728", true});
    }
    write_file_atomic(job.plot, line_plot_svg(fmt::format("{}: W{}A{} RTN output SQNR per linear layer", job.model,
                                                          wbits, abits),
                                              "SQNR (dB)", names, series));
  }
  return r;
}

}  // namespace catq

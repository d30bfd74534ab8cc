#include "methods/llm/eval_job.h"

#include <chrono>
#include <cstring>

#include <filesystem>
#include <limits>
#include <optional>

#include "core/error.h"
#include "core/file_util.h"
#include "io/llm_loader.h"
#include "methods/llm/pipeline.h"
#include "runtime/int_runtime.h"
#include "runtime/lean_llama.h"

namespace catq {

using json = nlohmann::json;

namespace {

json ppl_json(const PerplexityResult& r) {
  return {{"ppl", r.ppl}, {"mean_nll", r.mean_nll}, {"scored_tokens", r.n_scored}, {"windows", r.n_windows},
          {"seconds", r.seconds}};
}

// --quant: transform + RTN / GPTQ weights + static activation ranges, calibrated on text disjoint from the scored
// text (by default the characters that follow the scored prefix of the same file). Returns the report.
json quantize_for_eval(const LlmEvalJob& job, LoadedLlama& m, SimQuant& sq) {
  const std::string path = job.calib_text.empty() ? job.text : job.calib_text;
  std::string text = read_file_text(path);
  if (job.calib_text.empty()) {
    const size_t skip = job.ppl.max_chars > 0 ? truncate_utf8(text, job.ppl.max_chars).size() : text.size();
    CATQ_CHECK(skip < text.size(), Data, "{}: no text left after the {} scored characters for calibration; pass "
               "--calib-text FILE", path, job.ppl.max_chars);
    text = text.substr(skip);
  }
  PerplexityOptions co = job.ppl;
  co.max_chars = job.calib_chars;
  co.max_windows = 0;
  EvalWindows w = make_eval_windows(*m.tokenizer, text, co);
  CATQ_CHECK(w.n_windows() > 0, Data, "{}: too little calibration text for one window of {} tokens", path, co.window);
  LlmPtqOptions po;
  po.transform = parse_llm_transform(job.transform);
  po.weights = job.weights;
  po.gptq.act_order = job.act_order;
  po.gptq.damp = job.gptq_damp;
  po.batch = co.batch;
  SmallModelThreadGuard threads(m.model);
  json report = quantize_llama(m.model, sq, w.inputs, po);
  report["calibration"] = {{"text", path}, {"chars", w.n_chars}, {"windows", w.n_windows()}};
  return report;
}

// A quantized .catq file records the characters of text it was calibrated on; scoring any of them would report a
// perplexity measured on calibration data. Error(Usage) naming both ranges and the ways out.
void check_disjoint_from_calibration(const LlmEvalJob& job, const json& metadata) {
  if (!metadata.is_object() || !metadata.contains("calibration")) return;
  const json& c = metadata["calibration"];
  const std::string path = c.value("text", "");
  std::error_code ec;
  if (path.empty() || !std::filesystem::equivalent(path, job.text, ec) || ec) return;
  const int64_t cal_begin = c.value("skip_chars", int64_t{0}), cal_end = cal_begin + c.value("chars", int64_t{0});
  const int64_t scored_end = job.ppl.max_chars > 0 ? job.ppl.max_chars : std::numeric_limits<int64_t>::max();
  if (cal_end <= cal_begin || scored_end <= cal_begin) return;  // [0, scored_end) and [cal_begin, cal_end) disjoint
  fail(ErrorKind::Usage, "{}: the scored characters 0..{} overlap characters {}..{} that {} was calibrated on; score "
       "another text, lower --max-chars to {}, or quantize with --skip-chars {} (the reference protocol scores the "
       "first 12000)", job.text, job.ppl.max_chars > 0 ? std::to_string(scored_end) : std::string("end"), cal_begin,
       cal_end, job.model, cal_begin, job.ppl.max_chars > 0 ? scored_end : int64_t{12000});
}

std::string quant_label(const LlmEvalJob& job) {
  if (job.transform == "none" && job.weights == "rtn") return job.quant;
  return fmt::format("{}{}{}", job.quant, job.transform != "none" ? "+" + parse_llm_transform(job.transform).str() : "",
                     job.weights != "rtn" ? "+" + job.weights : "");
}

// runtime "lean": a GGUF file on the lean runtime (its own blocks on catq's kernels, Q8_0 activations as llama.cpp)
// against the libtorch forward of the same file's dequantized weights, or a quantized .catq against its simulation,
// on the same windows.
json eval_lean_runtime(const LlmEvalJob& job, LoadedLlama& m, const EvalWindows& w) {
  CATQ_CHECK(m.format == "gguf" || m.quant, Usage, "{}: --runtime lean runs a GGUF file or a quantized .catq (got {})",
             job.model, m.format);
  CATQ_CHECK(job.reference.empty(), Usage, "--runtime lean compares with the file's own fp32 forward; --reference does "
             "not apply");
  LeanLlamaOptions o;
  o.max_context = w.inputs.size(1);
  LeanLlama lean(job.model, o);
  int64_t tokens = 0;
  double seconds = 0;
  const LogitsFn lean_fn = [&](const at::Tensor& batch) {
    const at::Tensor ids = batch.to(at::kInt).contiguous();
    const int64_t B = ids.size(0), T = ids.size(1), V = lean.config().vocab_size;
    at::Tensor out = at::empty({B, T, V});
    std::vector<float> logits;
    for (int64_t b = 0; b < B; ++b) {
      const auto t0 = std::chrono::steady_clock::now();
      lean.reset();
      lean.eval(ids[b].data_ptr<int32_t>(), T, &logits, /*all_logits=*/true);
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      tokens += T;
      std::memcpy(out[b].data_ptr<float>(), logits.data(), logits.size() * sizeof(float));
    }
    return out;
  };
  const DistributionComparison cmp = compare_next_token(model_logits_fn(m.model, m.quant.get()), lean_fn, w, job.ppl.batch);
  return {{"model", job.model},
          {"format", m.format},
          {"model_summary", m.model.cfg.summary()},
          {"protocol", {{"text", job.text}, {"chars", w.n_chars}, {"window", job.ppl.window}}},
          {m.quant ? "simulation" : "fp32_dequantized", ppl_json(cmp.ref)},
          {"lean_runtime", ppl_json(cmp.test)},
          {"ppl_rel_diff", cmp.test.ppl / cmp.ref.ppl - 1.0},
          {"kl_mean", cmp.mean_kl},
          {"kl_max", cmp.max_kl},
          {"top1_agreement", cmp.top1_agreement},
          {"lean_weights", lean.describe()},
          {"lean_threads", lean.threads()},
          {"lean_prefill_tokens_per_s", seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0}};
}

// runtime "int": the integer runtime against the simulation it must reproduce, on the same windows.
json eval_integer_runtime(const LlmEvalJob& job, LoadedLlama& m, SimQuant* sim, const EvalWindows& w) {
  CATQ_CHECK(sim, Usage, "{}: --runtime int runs a quantized model: pass a .catq file or --quant", job.model);
  CATQ_CHECK(job.reference.empty(), Usage, "--runtime int compares with the simulation; --reference does not apply");
  IntegerRuntime rt(m.model, *sim);
  const DistributionComparison cmp =
      compare_next_token(model_logits_fn(m.model, sim), model_logits_fn(m.model, &rt), w, job.ppl.batch);
  const double rel = cmp.test.ppl / cmp.ref.ppl - 1.0;
  // Decoding: the first window token by token through the KV cache — the path `generate` takes (one row per call:
  // the GEMVs, e.g. the int16-activation and codebook kernels of weight-only layers), which the windowed
  // comparison above (prefill) does not exercise.
  auto decode_fn = [&](QuantContext* ctx) -> LogitsFn {
    return [&m, ctx](const at::Tensor& tokens) {
      at::NoGradGuard ng;
      KVCache cache = m.model.make_cache(tokens.size(0));
      std::vector<at::Tensor> steps;
      for (int64_t t = 0; t < tokens.size(1); ++t) steps.push_back(m.model.forward(tokens.slice(1, t, t + 1), cache, ctx));
      return at::cat(steps, 1);
    };
  };
  EvalWindows first;
  first.inputs = w.inputs.slice(0, 0, 1);
  first.targets = w.targets.slice(0, 0, 1);
  first.score = w.score.slice(0, 0, 1);
  const DistributionComparison dec = compare_next_token(decode_fn(sim), decode_fn(&rt), first, 1);
  json layers = json::array();
  for (const auto& e : rt.report()) layers.push_back({{"name", e.name}, {"runtime", e.how}});
  return {{"model", job.model},
          {"format", m.format},
          {"model_summary", m.model.cfg.summary()},
          {"protocol", {{"text", job.text}, {"chars", w.n_chars}, {"window", job.ppl.window}}},
          {"simulation", ppl_json(cmp.ref)},
          {"integer_runtime", ppl_json(cmp.test)},
          {"ppl_rel_diff", rel},
          {"kl_mean", cmp.mean_kl},
          {"kl_max", cmp.max_kl},
          {"top1_agreement", cmp.top1_agreement},
          {"decode", {{"tokens", dec.n_scored}, {"ppl_simulation", dec.ref.ppl}, {"ppl_integer_runtime", dec.test.ppl},
                      {"ppl_rel_diff", dec.test.ppl / dec.ref.ppl - 1.0}, {"kl_mean", dec.mean_kl},
                      {"top1_agreement", dec.top1_agreement}}},
          {"integer_layers", rt.num_integer()},
          {"weight_only_layers", rt.num_weight_only()},
          {"simulated_layers", static_cast<int64_t>(rt.report().size()) - rt.num_integer() - rt.num_weight_only()},
          {"packed_bytes", rt.packed_bytes()},
          {"layers", layers}};
}

}  // namespace

json run_llm_eval_job(const LlmEvalJob& job) {
  std::optional<SimQuant> sq;
  if (!job.quant.empty()) sq.emplace(QuantConfig::load(job.quant));
  else
    CATQ_CHECK(job.transform == "none" && job.weights == "rtn", Usage,
               "--transform / --weights need --quant (what to quantize to)");
  CATQ_CHECK(!job.text.empty(), Usage, "{}: evaluating a language model needs a text file (--text FILE)", job.model);
  LoadedLlama m = load_llama(job.model, job.tokenizer);
  const Tokenizer& tok = require_tokenizer(m);
  const std::string text = read_file_text(job.text);
  CATQ_CHECK(job.ppl.window <= m.model.cfg.seq_len, Usage, "--window {} exceeds the model context {}", job.ppl.window,
             m.model.cfg.seq_len);
  json report;
  if (sq) report = quantize_for_eval(job, m, *sq);
  SmallModelThreadGuard threads(m.model);
  // A quantized .catq model carries its own quantization; the reference is --reference (else its own weights).
  QuantContext* quant = sq ? &*sq : nullptr;
  std::string label = sq ? quant_label(job) : "";
  std::optional<LoadedLlama> ref;
  if (m.quant) {
    CATQ_CHECK(!sq, Usage, "{}: the model is already quantized; --quant does not apply", job.model);
    if (job.runtime == "sim") check_disjoint_from_calibration(job, m.metadata);
    quant = m.quant.get();
    label = "quantized";
    if (!job.reference.empty()) {
      ref = load_llama(job.reference, job.tokenizer);
      CATQ_CHECK(ref->model.cfg.vocab_size == m.model.cfg.vocab_size, Data, "--reference {}: vocabulary {} differs from "
                 "{}", job.reference, ref->model.cfg.vocab_size, m.model.cfg.vocab_size);
    }
  }
  const LlamaModel& ref_model = ref ? ref->model : m.model;
  EvalWindows w = make_eval_windows(tok, text, job.ppl);
  if (job.runtime == "lean") {
    CATQ_CHECK(!sq, Usage, "--runtime lean runs a GGUF file or a .catq as it is; --quant does not apply");
    return eval_lean_runtime(job, m, w);
  }
  if (job.runtime == "int") {
    json j = eval_integer_runtime(job, m, m.quant ? m.quant.get() : (sq ? &*sq : nullptr), w);
    if (!report.is_null()) j["quantization"] = report;
    return j;
  }
  CATQ_CHECK(job.runtime == "sim", Usage, "--runtime '{}': expected sim, int or lean", job.runtime);
  json proto = {{"text", job.text}, {"chars", w.n_chars}, {"text_tokens", w.n_text_tokens}, {"window", job.ppl.window},
                {"stride", job.ppl.stride > 0 ? job.ppl.stride : job.ppl.window}, {"prepend_bos", job.ppl.prepend_bos},
                {"max_chars", job.ppl.max_chars}};
  json j = {{"model", job.model}, {"format", m.format}, {"model_summary", m.model.cfg.summary()}, {"protocol", proto}};
  PerplexityResult fp;
  std::optional<DistributionComparison> cmp;
  if (!quant) {
    fp = perplexity(model_logits_fn(m.model, nullptr), w, job.ppl.batch, "FP32 perplexity");
  } else {
    cmp = compare_next_token(model_logits_fn(ref_model, nullptr), model_logits_fn(m.model, quant), w, job.ppl.batch);
    fp = cmp->ref;
    fp.seconds = cmp->seconds;
  }
  j["fp32"] = ppl_json(fp);
  if (cmp) {
    j["quantized"] = ppl_json(cmp->test);
    j["quantized"]["label"] = label;
    j["kl_mean"] = cmp->mean_kl;
    j["kl_max"] = cmp->max_kl;
    j["top1_agreement"] = cmp->top1_agreement;
  }
  if (!report.is_null()) j["quantization"] = report;
  if (m.quant) j["reference"] = job.reference.empty() ? kOwnWeightsReference : job.reference;
  return j;
}

}  // namespace catq

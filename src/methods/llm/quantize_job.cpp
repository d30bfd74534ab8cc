#include "methods/llm/quantize_job.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/file_util.h"
#include "eval/perplexity.h"
#include "io/catq_file.h"
#include "io/gguf.h"
#include "io/llm_loader.h"
#include "methods/llm/gguf_quantize.h"
#include "methods/llm/pipeline.h"
#include "methods/llm/quarot.h"
#include "methods/llm/stream_quantize.h"

namespace catq {

namespace {

// Params of every quantized weight that has none yet (RTN: the config's observer, e.g. the MSE clip search),
// computed here rather than inside the first quantized forward so their cost is measured on its own.
nlohmann::json rtn_weight_params(const LlamaModel& m, SimQuant& sq) {
  int64_t n = 0;
  double seconds = 0;
  for (const LayerInfo& l : m.layer_infos()) {
    const SimQuant::Layer& sl = sq.layer(l.name);
    if (!sl.weight_spec.enabled || sq.weight_params(l.name)) continue;  // FP, or GPTQ codes installed
    const at::Tensor& w = m.layer_weight(l.index);
    const auto t0 = std::chrono::steady_clock::now();
    QuantParams p;
    try {
      p = compute_params(sl.weight_spec, w.detach());
    } catch (const Error& e) {
      fail(e.kind(), "{}: layer '{}' weight: {}", sq.config().source, l.name, e.what());
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    n += w.numel();
    sq.set_weight_params(l.name, std::move(p), /*freeze=*/false);  // adopted by the next forward, not recomputed
  }
  return {{"weights", n}, {"seconds", seconds}, {"weights_per_second", seconds > 0 ? n / seconds : 0.0},
          {"threads", at::get_num_threads()}};
}

// Calibration windows from the job's text (Error(Data) for too little), and what the metadata says about them.
std::pair<at::Tensor, nlohmann::json> calibration_windows(const LlmQuantizeJob& job, const LoadedLlama& m) {
  CATQ_CHECK(!job.text.empty(), Usage, "quantize: this job needs calibration text (--text FILE)");
  const Tokenizer& tok = require_tokenizer(m);
  std::string text = read_file_text(job.text);
  text = utf8_skip(text, job.skip_chars);
  CATQ_CHECK(!text.empty(), Data, "{}: no text left after skipping {} characters (--skip-chars) for calibration",
             job.text, job.skip_chars);
  PerplexityOptions co;
  co.max_chars = job.calib_chars;
  co.window = std::min(job.window, m.model.cfg.seq_len);
  EvalWindows w = make_eval_windows(tok, text, co);
  CATQ_CHECK(w.n_windows() > 0, Data, "{}: too little calibration text for one window of {} tokens", job.text, co.window);
  return {w.inputs, {{"text", job.text}, {"skip_chars", job.skip_chars}, {"chars", w.n_chars},
                     {"windows", w.n_windows()}, {"window", co.window}}};
}

// --gguf T: the file llama.cpp runs, quantized in its own formats (methods/llm/gguf_quantize.h), weights streamed from
// the memory-mapped checkpoint block by block.
nlohmann::json run_gguf_quantize_job(const LlmQuantizeJob& job) {
  GgufQuantizeOptions go;
  if (job.target_bpw > 0) {
    CATQ_CHECK(job.gguf.empty(), Usage, "quantize: --gguf {} and --target-bpw {}: give one (--target-bpw chooses each "
               "tensor's type)", job.gguf, job.target_bpw);
    go.target_bpw = job.target_bpw;
  } else {
    CATQ_CHECK(job.target_bpw == 0, Usage, "quantize: --target-bpw {} must be positive", job.target_bpw);
    go.recipe = find_gguf_recipe(job.gguf);
    if (!go.recipe) {
      try {
        go.type = parse_gguf_weight_type(job.gguf);
      } catch (const Error& e) {
        std::string names;
        for (const GgufRecipe& r : gguf_recipes()) names += (names.empty() ? "" : ", ") + std::string(r.name);
        fail(e.kind(), "{}, or a recipe: {}", e.what(), names);
      }
    }
  }
  go.weights = job.weights;
  go.gptq.act_order = job.act_order;
  go.gptq.damp = job.gptq_damp;
  go.name = job.name;
  CATQ_CHECK(gguf_weight_method_known(go.weights), Usage, "quantize --gguf: --weights '{}': expected rtn, imatrix or "
             "gptq", go.weights);
  CATQ_CHECK(job.config.empty(), Usage, "quantize --gguf / --target-bpw: the file's types set every weight's format; "
             "--config (a catq simulation config) does not apply");
  // Transforms: only what llama.cpp's unchanged graph computes exactly (quarot_offline in methods/llm/quarot.h).
  const LlmTransformOptions tr = parse_llm_transform(job.transform);
  CATQ_CHECK(tr.method == "none" || tr.method == "quarot" || tr.method == "rotation" || tr.method == "awq", Unsupported,
             "quantize --gguf: --transform {} needs online work or activation scales that a GGUF file cannot hold; "
             "supported: none, awq (diagonal scales folded into the norms, ffn_up and V), quarot, rotation (their "
             "offline part: RMSNorm folded, residual and per-head V/O rotations; the online Hadamard before ffn_down is "
             "left out)", tr.str());
  const bool rotate = tr.method == "quarot" || tr.method == "rotation";
  if (tr.method == "awq") go.transform = tr;  // block by block, inside the quantization pass
  LlmLoadOptions lo;
  lo.keep_stored_dtype = !rotate;  // a rotation rewrites every weight: fp32 in memory
  LoadedLlama m = load_llama(job.model, job.tokenizer, lo);
  CATQ_CHECK(!m.quant, Usage, "{}: already quantized", job.model);
  if (rotate)
    apply_quarot_offline(m.model, tr.method == "quarot" ? RotationKind::Hadamard : RotationKind::RandomOrthogonal,
                         tr.seed);
  const Tokenizer& tok = require_tokenizer(m);
  nlohmann::json meta = {{"source_model", job.model}, {"output", job.out}, {"format", "gguf"}};
  at::Tensor calib;
  if (gguf_weight_method_needs_calibration(go.weights) || go.target_bpw > 0 || tr.method == "awq") {
    nlohmann::json cm;
    std::tie(calib, cm) = calibration_windows(job, m);
    meta["calibration"] = cm;
  }
  SmallModelThreadGuard threads(m.model);
  meta["quantization"] = quantize_llama_gguf(m.model, tok, calib, go, job.out);
  if (tr.method != "awq")  // awq: quantize_llama_gguf reports it with its per-block choices
    meta["quantization"]["transform"] = rotate ? tr.str() + " (offline part)" : std::string("none");
  const GgufFile written = read_gguf(job.out);
  meta["type"] = go.target_bpw > 0 ? fmt::format("target-bpw {}", go.target_bpw)
                 : go.recipe   ? std::string(go.recipe->name) : std::string(to_string(go.type));
  meta["bytes"] = file_size(job.out);
  meta["tensors_by_type"] = gguf_tensors_by_type(written);
  meta["bits_per_weight"] = gguf_bits_per_weight(written);
  meta["parameters"] = m.model.num_parameters();
  return meta;
}

}  // namespace

nlohmann::json run_llm_quantize_job(const LlmQuantizeJob& job) {
  if (!job.gguf.empty() || job.target_bpw != 0) return run_gguf_quantize_job(job);
  CATQ_CHECK(!job.config.empty(), Usage, "quantize: a language model needs --config (e.g. bench/configs/llm_w4a4.json "
             "or w4a8-tok-sym)");
  const QuantConfig qc = QuantConfig::load(job.config);
  CATQ_CHECK(job.weights == "rtn" || job.weights == "gptq", Config, "--weights '{}': expected rtn or gptq",
             job.weights);
  CATQ_CHECK(job.stream == "auto" || job.stream == "always" || job.stream == "never", Usage,
             "quantize --stream '{}': expected auto, always or never", job.stream);
  const LlmTransformOptions transform = parse_llm_transform(job.transform);
  if (job.stream != "never") {
    // Block by block from the memory-mapped checkpoint (methods/llm/stream_quantize.h); weight-only RTN reads no text.
    LlmLoadOptions lo;
    lo.keep_stored_dtype = true;
    LoadedLlama m = load_llama(job.model, job.tokenizer, lo);
    CATQ_CHECK(!m.quant, Usage, "{}: already quantized", job.model);
    SimQuant sq(qc);
    m.model.bind(&sq);  // resolves and checks every layer's specs
    BlockwiseOptions bo;
    bo.weights = job.weights;
    bo.gptq.act_order = job.act_order;
    bo.gptq.damp = job.gptq_damp;
    nlohmann::json meta = {{"source_model", job.model}, {"config", job.config},
                           {"quantization", {{"transform", transform.str()}, {"weights", job.weights}}}};
    at::Tensor calib;
    const bool needed = blockwise_needs_calibration(sq, bo, &transform);
    if (needed || !job.text.empty()) {
      // Text given to a job that needs none is still checked and recorded (eval then keeps its scored text apart
      // from it, as for any calibration text), marked needed: false.
      nlohmann::json cm;
      std::tie(calib, cm) = calibration_windows(job, m);
      cm["needed"] = needed;
      meta["calibration"] = cm;
      if (needed) meta["quantization"]["calibration_windows"] = calib.size(0);
      else calib = at::Tensor();
    }
    meta["embedding_bytes"] = storage_bits(m.model.tok_embeddings.sizes(), qc.embedding) / 8;
    SmallModelThreadGuard threads(m.model);
    return quantize_llama_streamed(m.model, sq, calib, bo, transform, m.tokenizer ? &*m.tokenizer : nullptr, job.out,
                                   meta);
  }
  LlmPtqOptions po;
  po.transform = transform;
  po.weights = job.weights;
  po.gptq.act_order = job.act_order;
  po.gptq.damp = job.gptq_damp;
  SimQuant sq(qc);
  LoadedLlama m = load_llama(job.model, job.tokenizer);
  CATQ_CHECK(!m.quant, Usage, "{}: already quantized", job.model);
  const Tokenizer& tok = require_tokenizer(m);
  auto [calib, calib_meta] = calibration_windows(job, m);
  SmallModelThreadGuard threads(m.model);
  nlohmann::json rep = quantize_llama(m.model, sq, calib, po);
  rep["weight_quantization"] = rtn_weight_params(m.model, sq);
  {
    at::NoGradGuard ng;
    m.model.forward(calib.slice(0, 0, 1), &sq);  // one quantized forward: binds the weights to their params
  }
  nlohmann::json meta = {{"source_model", job.model}, {"config", job.config}, {"quantization", rep},
                         {"calibration", calib_meta}, {"weight_bytes", sq.total_weight_bytes()}};
  // The token-embedding table at its configured bits (FP32 unless the config quantizes it).
  meta["embedding_bytes"] = storage_bits(m.model.tok_embeddings.sizes(), sq.config().embedding) / 8;
  write_catq_llm(job.out, m.model, sq, &tok, meta);
  return meta;
}

}  // namespace catq

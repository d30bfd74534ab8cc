#include "methods/llm/quantize_job.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/file_util.h"
#include "eval/perplexity.h"
#include "io/catq_file.h"
#include "io/llm_loader.h"
#include "methods/llm/pipeline.h"
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

}  // namespace

nlohmann::json run_llm_quantize_job(const LlmQuantizeJob& job) {
  CATQ_CHECK(!job.config.empty(), Usage, "quantize: a language model needs --config (e.g. bench/configs/llm_w4a4.json "
             "or w4a8-tok-sym)");
  const QuantConfig qc = QuantConfig::load(job.config);
  if (job.stream != "never") {
    // Weight-only RTN needs no calibration: quantize layer by layer from the memory-mapped checkpoint.
    LlmLoadOptions lo;
    lo.keep_stored_dtype = true;
    LoadedLlama m = load_llama(job.model, job.tokenizer, lo);
    CATQ_CHECK(!m.quant, Usage, "{}: already quantized", job.model);
    std::string why;
    if (can_stream_rtn(m.model, qc, job.transform, job.weights, &why)) {
      nlohmann::json meta = {{"source_model", job.model}, {"config", job.config},
                             {"quantization", {{"streamed", true}, {"weights", "rtn"}}}};
      nlohmann::json rep = quantize_llama_streamed_rtn(m.model, qc, m.tokenizer ? &*m.tokenizer : nullptr, job.out, meta);
      meta["quantization"] = {{"streamed", true}, {"weights", "rtn"}, {"transform", "none"}, {"weight_quantization", rep}};
      meta["weight_bytes"] = rep["weight_bytes"];
      return meta;
    }
    CATQ_CHECK(job.stream != "always", Usage, "quantize --stream always: cannot stream this job: {}", why);
  }
  CATQ_CHECK(!job.text.empty(), Usage, "quantize: a language model needs calibration text (--text FILE)");
  LlmPtqOptions po;
  po.transform = parse_llm_transform(job.transform);
  po.weights = job.weights;
  po.gptq.act_order = job.act_order;
  po.gptq.damp = job.gptq_damp;
  SimQuant sq(QuantConfig::load(job.config));
  LoadedLlama m = load_llama(job.model, job.tokenizer);
  CATQ_CHECK(!m.quant, Usage, "{}: already quantized", job.model);
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
  SmallModelThreadGuard threads(m.model);
  nlohmann::json rep = quantize_llama(m.model, sq, w.inputs, po);
  rep["weight_quantization"] = rtn_weight_params(m.model, sq);
  {
    at::NoGradGuard ng;
    m.model.forward(w.inputs.slice(0, 0, 1), &sq);  // one quantized forward: binds the weights to their params
  }
  nlohmann::json meta = {{"source_model", job.model}, {"config", job.config}, {"quantization", rep},
                         {"calibration", {{"text", job.text}, {"skip_chars", job.skip_chars}, {"chars", w.n_chars},
                                          {"windows", w.n_windows()}, {"window", co.window}}},
                         {"weight_bytes", sq.total_weight_bytes()}};
  // The token-embedding table at its configured bits (FP32 unless the config quantizes it).
  meta["embedding_bytes"] = storage_bits(m.model.tok_embeddings.sizes(), sq.config().embedding) / 8;
  write_catq_llm(job.out, m.model, sq, &tok, meta);
  return meta;
}

}  // namespace catq

#include "methods/llm/pipeline.h"

#include <chrono>

#include "core/error.h"
#include "core/progress.h"
#include "methods/llm/blockwise.h"

namespace catq {

using nlohmann::json;

json quantize_llama(LlamaModel& m, SimQuant& sq, const at::Tensor& calib, const LlmPtqOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  CATQ_CHECK(calib.defined() && calib.dim() == 2 && calib.size(0) > 0, Data,
             "LLM quantization: no calibration windows (too little calibration text?)");
  CATQ_CHECK(o.weights == "rtn" || o.weights == "gptq", Config, "--weights '{}': expected rtn or gptq", o.weights);
  json rep;
  rep["transform"] = o.transform.str();
  rep["weights"] = o.weights;
  rep["calibration_windows"] = calib.size(0);
  if (o.transform.method != "none") {
    std::vector<BlockStats> stats;
    if (llm_transform_needs_stats(o.transform))
      stats = collect_llama_stats(m, calib, o.batch, llm_transform_stats_block(o.transform));
    WeightQuantizer q;
    if (o.transform.method == "awq") {  // AWQ searches under the weights' quantizer: the specs of the bound layers
      m.bind(&sq);
      q = simquant_weight_quantizer(sq, m.layer_infos());
    }
    const json choices = apply_llm_transform(m, stats, o.transform, q);
    if (!choices.empty()) rep["transform_choices"] = choices;
  }
  m.bind(&sq);  // (re)announce the layers: resolves every layer's specs and checks them against the shapes
  at::NoGradGuard ng;
  if (o.weights == "gptq") {
    // Block by block (methods/llm/blockwise.h): the sequential GPTQ of each block from the states of the quantized
    // blocks before it; static inputs are calibrated below against the FP model.
    BlockwiseOptions bo;
    bo.weights = "gptq";
    bo.gptq = o.gptq;
    bo.calibrate_inputs = false;
    bo.batch = o.batch;
    json r = quantize_llama_blockwise(m, sq, calib, bo, [&](const BlockwiseLayer& l) {
      if (l.weight) sq.set_quantized_weight(l.info->name, l.codes, *l.weight);
    });
    rep["gptq"] = r["gptq"];
  }
  // Static activation ranges (per-token activations need none).
  bool static_inputs = false;
  for (const auto& l : sq.layers())
    static_inputs = static_inputs || (l.input_spec.enabled && l.input_spec.granularity != Granularity::PerToken);
  if (static_inputs) {
    sq.set_mode(SimQuant::Mode::Calibrate);
    for (int64_t i = 0; i < calib.size(0); i += o.batch) m.forward(calib.slice(0, i, i + o.batch), &sq);
    sq.finalize_calibration();
  }
  sq.set_mode(SimQuant::Mode::Quantize);
  rep["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return rep;
}

}  // namespace catq

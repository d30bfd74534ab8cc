#include "methods/llm/pipeline.h"

#include <chrono>
#include <set>

#include "core/error.h"
#include "core/progress.h"

namespace catq {

using nlohmann::json;

namespace {

// Weights: installed codes where present, FP otherwise. Inputs: FP; the inputs of `record` layers are summed
// into their Hessians.
class HessianContext : public QuantContext {
 public:
  explicit HessianContext(SimQuant& sq) : sq_(sq) {}
  std::set<std::string> record;
  std::map<std::string, at::Tensor> hessian;
  at::Tensor weight(const LayerInfo& l, const at::Tensor& w) override {
    return sq_.quantized_weight_codes(l.name).defined() ? sq_.weight(l, w) : w;
  }
  at::Tensor input(const LayerInfo& l, const at::Tensor& x) override {
    if (record.count(l.name)) {
      at::Tensor r = x.detach().reshape({-1, x.size(-1)}).to(at::kDouble);
      at::Tensor g = at::matmul(r.t(), r);
      auto it = hessian.find(l.name);
      if (it == hessian.end()) hessian.emplace(l.name, g);
      else it->second += g;
    }
    return x;
  }

 private:
  SimQuant& sq_;
};

}  // namespace

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
    if (o.transform.method != "quarot" && o.transform.method != "rotation") stats = collect_llama_stats(m, calib, o.batch);
    apply_llm_transform(m, stats, o.transform);
  }
  m.bind(&sq);  // (re)announce the layers: resolves every layer's specs and checks them against the shapes
  const auto infos = m.layer_infos();
  at::NoGradGuard ng;
  if (o.weights == "gptq") {
    rep["gptq"] = {{"damp", o.gptq.damp}, {"act_order", o.gptq.act_order}, {"block", o.gptq.block}};
    // Groups in execution order: per block {q,k,v}, {o}, {gate, up}, {down}; then the head.
    std::vector<std::vector<std::string>> groups;
    for (int64_t l = 0; l < m.cfg.n_layers; ++l) {
      auto n = [&](const char* s) { return fmt::format("blk.{}.{}", l, s); };
      groups.push_back({n("attn_q"), n("attn_k"), n("attn_v")});
      groups.push_back({n("attn_output")});
      groups.push_back({n("ffn_gate"), n("ffn_up")});
      groups.push_back({n("ffn_down")});
    }
    groups.push_back({"output"});
    HessianContext hc(sq);
    m.bind(&hc);
    json layers = json::object();
    Progress bar("GPTQ", static_cast<int64_t>(groups.size()));
    double rtn_total = 0, gptq_total = 0;
    for (const auto& grp : groups) {
      hc.record.clear();
      hc.hessian.clear();
      for (const auto& name : grp)
        if (sq.layer(name).weight_spec.enabled) hc.record.insert(name);
      if (hc.record.empty()) { bar.step(); continue; }
      for (int64_t i = 0; i < calib.size(0); i += o.batch) m.forward(calib.slice(0, i, i + o.batch), &hc);
      for (const auto& name : grp) {
        if (!hc.record.count(name)) continue;
        const SimQuant::Layer& sl = sq.layer(name);
        const LayerInfo& li = sl.info;
        const at::Tensor& w = m.layer_weight(li.index);
        GptqResult r;
        try {
          r = gptq_quantize(w, hc.hessian.at(name), sl.weight_spec, o.gptq);
        } catch (const Error& e) {
          fail(e.kind(), "layer '{}': {}", name, e.what());
        }
        sq.set_quantized_weight(name, r.codes, r.params);
        layers[name] = {{"proxy_rtn", r.proxy_rtn}, {"proxy_gptq", r.proxy_gptq}};
        rtn_total += r.proxy_rtn;
        gptq_total += r.proxy_gptq;
      }
      bar.step();
    }
    bar.finish();
    rep["gptq"]["layers"] = layers;
    rep["gptq"]["proxy_rtn_total"] = rtn_total;
    rep["gptq"]["proxy_gptq_total"] = gptq_total;
    m.bind(&sq);
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

#include "methods/llm/blockwise.h"

#include <chrono>
#include <map>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/memory_usage.h"
#include "core/progress.h"
#include "llm/llama_tensors.h"
#include "methods/llm/calib_stats.h"
#include "methods/llm/stream_quantize.h"

namespace catq {

using nlohmann::json;

namespace {

constexpr int kPerBlock = 7;  // layer_infos(): q, k, v, o, gate, up, down per block, then the head

bool static_input(const SimQuant::Layer& l) {
  return l.input_spec.enabled && l.input_spec.granularity != Granularity::PerToken;
}

// Thrown by StreamContext once the recorded input is seen: the rest of the block pass is not needed.
struct StopPass {};

// The weight-quantized stream's context: layers quantized so far in the current block use their dequantized weight;
// the inputs of `record` layers are summed into their Hessians (H = Σ x xᵀ). With stop_after_record the pass ends
// there (StopPass): a GPTQ group's pass computes the block only up to the group's input (for q/k/v that is one
// RMSNorm), which cuts the block passes' cost by about 2.5× on Llama shapes.
// Memory: a quantized layer is held as its codes and dequantized at each use (a [14336, 4096] weight is 59 MB of
// codes, 235 MB in fp32: the six fp32 copies of a block's q..up made 1.5 GB of the 8 B shape's peak), and H is
// accumulated in place in fp32 (the reference implementation's precision) — the former double accumulator plus each
// batch's fp32 product made 2.5 GB at the 14336-wide ffn_down input, the largest term of the peak.
class StreamContext : public QuantContext {
 public:
  std::map<int, at::Tensor> dequantized;                                // layer index -> fp32 weight (custom)
  std::map<int, const std::pair<QuantParams, at::Tensor>*> quantized;  // layer index -> params and codes
  std::set<int> record;
  std::map<int, at::Tensor> hessian;  // fp32 [in, in]
  bool stop_after_record = false;

  at::Tensor weight(const LayerInfo& l, const at::Tensor& w) override {
    if (auto it = dequantized.find(l.index); it != dequantized.end()) return it->second;
    if (auto it = quantized.find(l.index); it != quantized.end()) return dequantize(it->second->second, it->second->first);
    return w;
  }
  at::Tensor input(const LayerInfo& l, const at::Tensor& x) override {
    if (record.count(l.index)) {
      const at::Tensor r = x.detach().reshape({-1, x.size(-1)}).to(at::kFloat);
      auto it = hessian.find(l.index);
      if (it == hessian.end()) hessian.emplace(l.index, at::matmul(r.t(), r));
      else it->second.addmm_(r.t(), r);  // H += XᵀX without a product temporary
      if (stop_after_record) throw StopPass{};
    }
    return x;
  }
};

// Runs the head for its input only: the observing context sees the head's input, no logits are computed.
class HeadInputOnly : public QuantContext {
 public:
  explicit HeadInputOnly(QuantContext& inner) : inner_(inner) {}
  at::Tensor weight(const LayerInfo& l, const at::Tensor& w) override { return inner_.weight(l, w); }
  at::Tensor input(const LayerInfo& l, const at::Tensor& x) override { return inner_.input(l, x); }
  at::Tensor linear(const LayerInfo& l, const at::Tensor& x, const at::Tensor&) override {
    inner_.input(l, x);
    return at::Tensor();
  }

 private:
  QuantContext& inner_;
};

// GPTQ of one weight given its input's factor. Rows are independent given the factor, so a big weight (an 8 B
// model's 128256 × 4096 LM head: 2 GB in fp32, 2 GB more as int32 codes) goes in slices of rows whose codes are
// narrowed at once; the result equals the whole-weight one whenever the params are per row (rows_independent).
GptqResult gptq_weight(const at::Tensor& w, const GptqFactor& f, const QuantSpec& spec, GptqOptions go,
                       int64_t* peak_bytes) {
  const int64_t kSlice = 4 * go.row_slice;  // values per slice (default 128 MB in fp32)
  go.keep_dequantized = false;
  const int64_t rows = w.size(0), cols = w.size(1);
  if (w.numel() <= kSlice || !rows_independent(spec, w)) {
    *peak_bytes = std::max<int64_t>(*peak_bytes, w.numel() * 4);
    GptqResult g = gptq_quantize(w, f, spec, go);
    g.codes = g.codes.to(code_dtype(g.params));
    return g;
  }
  const int64_t per = std::max<int64_t>(1, kSlice / cols);
  std::vector<at::Tensor> scales, zeros, codes;
  GptqResult whole;
  for (int64_t r = 0; r < rows; r += per) {
    const int64_t n = std::min(per, rows - r);
    *peak_bytes = std::max<int64_t>(*peak_bytes, n * cols * 4);
    GptqResult g = gptq_quantize(w.narrow(0, r, n), f, spec, go);
    codes.push_back(g.codes.to(code_dtype(g.params)));
    scales.push_back(g.params.scale);
    zeros.push_back(g.params.zero_point);
    whole.proxy_rtn += g.proxy_rtn;
    whole.proxy_gptq += g.proxy_gptq;
    if (r == 0) whole.params = g.params;
  }
  whole.params.scale = at::cat(scales, 0);
  whole.params.zero_point = at::cat(zeros, 0);
  whole.codes = at::cat(codes, 0);
  return whole;
}

}  // namespace

bool blockwise_needs_calibration(const SimQuant& sq, const BlockwiseOptions& o, const LlmTransformOptions* t) {
  if ((o.custom ? o.custom_needs_hessian : o.weights == "gptq") || (t && llm_transform_needs_stats(*t))) return true;
  if (!o.calibrate_inputs) return false;
  for (const SimQuant::Layer& l : sq.layers())
    if (static_input(l)) return true;
  return false;
}

json quantize_llama_blockwise(LlamaModel& m, SimQuant& sq, const at::Tensor& calib, const BlockwiseOptions& o,
                              const BlockwiseSink& sink, const BlockwiseHooks& hooks) {
  CATQ_CHECK(o.weights == "rtn" || o.weights == "gptq", Config, "--weights '{}': expected rtn or gptq", o.weights);
  CATQ_CHECK(o.batch >= 1, Usage, "blockwise quantization: batch {} < 1", o.batch);
  at::NoGradGuard ng;
  const std::vector<LayerInfo> infos = m.layer_infos();
  const int64_t L = m.cfg.n_layers;
  const bool gptq = !o.custom && o.weights == "gptq";
  const bool hess = o.custom ? o.custom_needs_hessian : gptq;  // the X_q stream and per-group Hessians
  bool statics = false;
  if (o.calibrate_inputs)
    for (const LayerInfo& li : infos) statics = statics || static_input(sq.layer(li.name));
  const bool block_stats = hooks.transform && llm_transform_needs_stats(hooks.transform->options());
  const bool fp_stream = statics || block_stats;
  if (hess || fp_stream)
    CATQ_CHECK(calib.defined() && calib.dim() == 2 && calib.size(0) > 0, Data,
               "LLM quantization: no calibration windows (too little calibration text?)");

  // The streams, one tensor per batch of windows: X_q (after the quantized blocks, for GPTQ's Hessians) and X_fp
  // (the FP model's, for the static input ranges). Both start as the FP token embeddings.
  std::vector<at::Tensor> xq, xfp;
  int64_t state_bytes = 0;
  if (hess || fp_stream) {
    for (int64_t i = 0; i < calib.size(0); i += o.batch) {
      at::Tensor e = m.embed(calib.slice(0, i, i + o.batch));
      state_bytes += e.numel() * e.element_size();
      if (hess) xq.push_back(e);
      if (fp_stream) xfp.push_back(e);
    }
    if (hess && fp_stream) state_bytes *= 2;
  }
  // The embedding's mapped pages are read again only by a tied head (a view of the same table).
  if (!m.cfg.tied_head) release_mapped_pages(m.tok_embeddings);
  trace_memory("blockwise: calibration states built");

  json layers = json::object();
  double rtn_total = 0, gptq_total = 0, seconds = 0;
  int64_t n_weights = 0, peak_layer_bytes = 0;
  std::map<int, std::pair<QuantParams, at::Tensor>> done;  // quantized layers of the current block
  std::map<int, BlockwiseLayer> results;
  StreamContext ctx;
  const int head = static_cast<int>(L * kPerBlock);
  Progress bar(gptq ? "GPTQ (block by block)" : "quantize (block by block)", L + 1);

  // Quantizes the weights of `group` (layer indices): GPTQ from Hessians recorded by `pass`, else RTN.
  auto quantize_group = [&](const std::vector<int>& group, const std::function<void()>& pass) {
    std::vector<int> todo;
    for (int idx : group)
      if (o.custom || sq.layer(infos[idx].name).weight_spec.enabled) todo.push_back(idx);
    if (todo.empty()) return;
    // The layers of a group read the same input: one Hessian (of the first) and one factor serve them all.
    std::optional<GptqFactor> factor;
    at::Tensor h;  // kept for a custom quantizer
    if (hess) {
      ctx.record = {todo.front()};
      ctx.hessian.clear();
      pass();
      trace_memory("blockwise: hessian recorded for layer", todo.front());
      ctx.record.clear();
      const auto t0 = std::chrono::steady_clock::now();
      try {
        h = ctx.hessian.at(todo.front());
        ctx.hessian.clear();
        if (gptq || o.custom_needs_factor) factor = gptq_factor(h, o.gptq);
        trace_memory("blockwise: factored", todo.front());
        if (!o.custom) h = at::Tensor();
      } catch (const Error& e) {
        fail(e.kind(), "{}: layer '{}' input Hessian: {}", sq.config().source, infos[todo.front()].name, e.what());
      }
      ctx.hessian.clear();
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    for (int idx : todo) {
      const LayerInfo& li = infos[idx];
      const QuantSpec& spec = sq.layer(li.name).weight_spec;
      const at::Tensor& w = m.layer_weight(idx);
      const auto t0 = std::chrono::steady_clock::now();
      BlockwiseLayer& r = results[idx];
      try {
        if (o.custom) {
          at::Tensor d = o.custom(li, w, h, factor ? &*factor : nullptr);
          if (idx != head) ctx.dequantized[idx] = std::move(d);
        } else if (gptq) {
          GptqResult g = gptq_weight(w, *factor, spec, o.gptq, &peak_layer_bytes);
          // The later passes see what the written model computes (the runtime and SimQuant dequantize the stored
          // codes the same way); nothing runs after the head.
          done[idx] = {std::move(g.params), std::move(g.codes)};
          if (idx != head) ctx.quantized[idx] = &done[idx];
          r.gptq = true;
          r.proxy_rtn = g.proxy_rtn;
          r.proxy_gptq = g.proxy_gptq;
          layers[li.name] = {{"proxy_rtn", g.proxy_rtn}, {"proxy_gptq", g.proxy_gptq}};
          rtn_total += g.proxy_rtn;
          gptq_total += g.proxy_gptq;
        } else {
          done[idx] = rtn_quantize_weight(spec, w, &peak_layer_bytes);
        }
      } catch (const Error& e) {
        fail(e.kind(), "{}: layer '{}' weight: {}", sq.config().source, li.name, e.what());
      }
      seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      n_weights += w.numel();
      trace_memory("blockwise: quantized layer", idx);
    }
  };
  // Hands the layers [first, last) to the sink, with their static input params from the observers.
  auto emit = [&](int first, int last) {
    for (int idx = first; idx < last; ++idx) {
      const SimQuant::Layer& sl = sq.layer(infos[idx].name);
      BlockwiseLayer& r = results[idx];
      r.info = &infos[idx];
      auto it = done.find(idx);
      if (it != done.end()) r.weight = &it->second.first, r.codes = it->second.second;
      std::optional<QuantParams> ip;
      if (o.calibrate_inputs && static_input(sl)) {
        try {
          ip = sl.input_observer->compute();
        } catch (const Error& e) {
          fail(e.kind(), "{}: layer '{}' input: {}", sq.config().source, sl.info.name, e.what());
        }
        r.input = &*ip;
      }
      sink(r);
    }
    ctx.quantized.clear();
    done.clear();
    results.clear();
    ctx.dequantized.clear();
  };

  const SimQuant::Mode mode = sq.mode();
  for (int64_t l = 0; l < L; ++l) {
    const int base = static_cast<int>(l * kPerBlock);
    m.materialize_block(l);  // GGUF block-quantized weights are read (dequantized) only now
    if (hooks.transform) {
      // The block in fp32 (a mapped view's pages are dropped once copied), then transformed.
      LlamaBlock& b = m.blocks[l];
      for (const LlamaBlockTensor& t : llama_block_tensors()) {
        at::Tensor& x = b.*t.member;
        if (!x.defined()) continue;
        at::Tensor f = x.to(at::kFloat).contiguous();
        release_mapped_pages(x);
        x = std::move(f);
      }
      const BlockStats st = block_stats ? collect_block_stats(m, l, xfp, llm_transform_stats_block(hooks.transform->options())) : BlockStats{};
      hooks.transform->block(l, block_stats ? &st : nullptr);
    }
    auto pass_q = [&] {  // up to the recorded group's input only
      ctx.stop_after_record = true;
      for (const at::Tensor& x : xq) {
        try {
          m.block_forward(l, x, &ctx);
        } catch (const StopPass&) {
        }
      }
      ctx.stop_after_record = false;
    };
    for (const std::vector<int>& g : {std::vector<int>{0, 1, 2}, {3}, {4, 5}, {6}}) {
      std::vector<int> group;
      for (int j : g) group.push_back(base + j);
      quantize_group(group, pass_q);
    }
    if (fp_stream) {
      sq.set_mode(SimQuant::Mode::Calibrate);  // weights pass through, static inputs are observed
      for (at::Tensor& x : xfp) x = m.block_forward(l, x, statics ? &sq : nullptr);
      sq.set_mode(mode);
    }
    if (hess)
      for (at::Tensor& x : xq) x = m.block_forward(l, x, &ctx);
    trace_memory("blockwise: states advanced past block", l);
    emit(base, base + kPerBlock);
    if (hooks.block_done) hooks.block_done(l);
    for (int j = 0; j < kPerBlock; ++j) release_mapped_pages(m.layer_weight(base + j));
    if (hooks.release_blocks) m.blocks[l] = LlamaBlock{};
    trace_memory("blockwise: block written and released", l);
    bar.step();
  }
  // The LM head.
  quantize_group({head}, [&] {
    HeadInputOnly head_ctx(ctx);
    for (const at::Tensor& x : xq) m.head(x, &head_ctx);
  });
  if (statics && static_input(sq.layer(infos[head].name))) {
    sq.set_mode(SimQuant::Mode::Calibrate);
    HeadInputOnly head_ctx(sq);
    for (const at::Tensor& x : xfp) m.head(x, &head_ctx);
    sq.set_mode(mode);
  }
  emit(head, head + 1);
  trace_memory("blockwise: head written");
  bar.step();
  bar.finish();

  json rep = {{"weights", n_weights},
              {"seconds", seconds},
              {"weights_per_second", seconds > 0 ? n_weights / seconds : 0.0},
              {"peak_layer_bytes", peak_layer_bytes},
              {"state_bytes", state_bytes},
              {"threads", at::get_num_threads()}};
  if (gptq) {
    rep["gptq"] = {{"damp", o.gptq.damp}, {"act_order", o.gptq.act_order}, {"block", o.gptq.block},
                   {"layers", layers}, {"proxy_rtn_total", rtn_total}, {"proxy_gptq_total", gptq_total}};
  }
  return rep;
}

}  // namespace catq

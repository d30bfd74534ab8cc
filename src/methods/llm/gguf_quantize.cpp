#include "methods/llm/gguf_quantize.h"

#include <chrono>
#include <cmath>
#include <map>

#include "core/error.h"
#include "core/progress.h"
#include "io/gguf_blocks.h"
#include "llm/llama_tensors.h"
#include "methods/knapsack.h"
#include "methods/llm/blockwise.h"
#include "sim/sim_quant.h"

namespace catq {

namespace {

// tr((W − Ŵ) H (W − Ŵ)ᵀ), in double.
double proxy(const at::Tensor& w, const at::Tensor& wq, const at::Tensor& h) {
  const at::Tensor d = w - wq;
  return (at::matmul(d, h) * d).sum(at::kDouble).item<double>();
}

}  // namespace

bool gguf_weight_method_known(const std::string& m) { return m == "rtn" || m == "imatrix" || m == "gptq"; }
bool gguf_weight_method_needs_calibration(const std::string& m) { return m == "imatrix" || m == "gptq"; }

GgufWeightResult quantize_gguf_weight(const at::Tensor& w, GgufWeightType type, const std::string& method,
                                      const at::Tensor& h, const GptqFactor* f, const GptqOptions& o,
                                      const GgufEncoder& encoder) {
  CATQ_CHECK(gguf_weight_method_known(method), Config, "--weights '{}': expected rtn, imatrix or gptq", method);
  CATQ_CHECK(w.dim() == 2, Internal, "GGUF weight: expected 2-D, got [{}]", fmt::join(w.sizes(), ","));
  const int64_t rows = w.size(0), in = w.size(1);
  const bool calibrated = gguf_weight_method_needs_calibration(method);
  CATQ_CHECK(!calibrated || (h.defined() && h.size(0) == in), Internal, "GGUF weight: {} needs the input Hessian", method);
  CATQ_CHECK(method != "gptq" || f, Internal, "GGUF weight: gptq needs the Hessian's factor");
  const at::Tensor w32 = w.detach().to(at::kCPU, at::kFloat).contiguous();
  const GgufWeightType wt = gguf_row_type(type, in);
  GgufWeightResult r;
  r.ggml = gguf_weight_type_info(wt).ggml;
  if (gguf_type_is_plain(r.ggml)) {  // rows no 32-value block divides: F16 (or the plain type asked for)
    const at::ScalarType st = r.ggml == GGML_F32 ? at::kFloat : r.ggml == GGML_F16 ? at::kHalf : at::kBFloat16;
    const at::Tensor c = w32.to(st).contiguous();
    r.bytes.assign(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel() * c.element_size()));
    r.dequantized = c.to(at::kFloat);
    if (h.defined()) r.proxy_rtn = r.proxy = proxy(w32, r.dequantized, h);
    return r;
  }
  // importance: per input column; x_weighted: catq's encoder gets it per value times sqrt(σ² + w²) (below), a
  // replacement encoder (llama.cpp's) gets the column importance and applies its own weighting.
  auto encode = [&](const at::Tensor& importance, bool x_weighted = false) {
    if (encoder) return encoder(w32, r.ggml, importance);
    if (!x_weighted || !importance.defined()) return quantize_gguf_blocks(w32, r.ggml, importance);
    const at::Tensor sigma2 = (w32 * w32).mean(1, /*keepdim=*/true);
    return quantize_gguf_blocks(w32, r.ggml, (importance.unsqueeze(0) * at::sqrt(sigma2 + w32 * w32)).contiguous());
  };
  const std::string plain = encode(at::Tensor());
  if (!calibrated) {
    r.bytes = plain;
    r.dequantized = dequantize_gguf_blocks(r.bytes, r.ggml, rows, in);
    if (h.defined()) r.proxy_rtn = r.proxy = proxy(w32, r.dequantized, h);
    return r;
  }
  r.proxy_rtn = proxy(w32, dequantize_gguf_blocks(plain, r.ggml, rows, in), h);
  // imatrix: each value's squared error weighted by its input column's mean square activation (H's diagonal), times
  // sqrt(σ² + x²) with σ² the row's mean square weight — llama.cpp's weighting, which also favours large weights.
  const at::Tensor diag = h.diagonal().to(at::kFloat).clamp_min(0).contiguous();
  if (method == "imatrix") {
    r.bytes = encode(diag, /*x_weighted=*/true);
    r.dequantized = dequantize_gguf_blocks(r.bytes, r.ggml, rows, in);
    r.proxy = proxy(w32, r.dequantized, h);
    return r;
  }
  // gptq: the grid of an encoding weighted by diag(H) alone (GPTQ's own objective on the diagonal; starting from the
  // imatrix encoding instead lowered the summed objective but raised the perplexity on stories260K); the codes go
  // into that encoding's blocks.
  GptqOptions go = o;
  go.keep_dequantized = false;
  const std::string start = encode(diag);
  GgufGrid grid = gguf_block_grid(start, r.ggml, rows, in);
  GptqGrid g{std::move(grid.scale), std::move(grid.offset), grid.levels, std::move(grid.level_values)};
  const GptqGridResult q = gptq_quantize_grid(w32, *f, g, go);
  r.bytes = gguf_set_codes(start, r.ggml, q.codes);
  r.dequantized = dequantize_gguf_blocks(r.bytes, r.ggml, rows, in);
  r.proxy = proxy(w32, r.dequantized, h);
  return r;
}

namespace {

// Bits per value of a ggml type's blocks.
double type_bpw(uint32_t ggml) {
  const GgmlTypeTraits* tt = ggml_type_traits(ggml);
  return 8.0 * static_cast<double>(tt->bytes) / static_cast<double>(tt->block);
}

// The GGUF tensor a linear is written as.
std::string gguf_tensor_name(const LlamaModel& m, const LayerInfo& li, int64_t head) {
  if (li.index != head) return li.name + ".weight";
  return m.cfg.tied_head ? kLlamaTokenEmbd.gguf_name() : kLlamaOutput.gguf_name();
}

}  // namespace

const std::vector<GgufWeightType>& gguf_target_bpw_candidates() {
  static const std::vector<GgufWeightType> c = {GgufWeightType::Q2_K, GgufWeightType::Q3_K, GgufWeightType::Q4_K,
                                                GgufWeightType::Q5_K, GgufWeightType::Q6_K, GgufWeightType::Q8_0};
  return c;
}

nlohmann::json quantize_llama_gguf(LlamaModel& m, const Tokenizer& tok, const at::Tensor& calib,
                                   const GgufQuantizeOptions& o, const std::string& path) {
  CATQ_CHECK(gguf_weight_method_known(o.weights), Config, "--weights '{}': expected rtn, imatrix or gptq", o.weights);
  const auto t0 = std::chrono::steady_clock::now();
  const bool targeted = o.target_bpw > 0;
  const bool calibrated = gguf_weight_method_needs_calibration(o.weights) || targeted;
  CATQ_CHECK(!targeted || (calib.defined() && calib.size(0) > 0), Usage, "--target-bpw measures each layer's "
             "sensitivity on calibration text: pass --text");
  SimQuant sq(QuantConfig::fp());  // nothing simulated: the custom quantizer below does every linear
  m.bind(&sq);
  const std::vector<LayerInfo> infos = m.layer_infos();
  const int64_t head = static_cast<int64_t>(m.blocks.size()) * kLinearsPerBlock;
  // A tied head is token_embd: its codes also serve the lookup, so no GPTQ on it (imatrix from the head's inputs).
  auto method_of = [&](int64_t idx) {
    return idx == head && m.cfg.tied_head && o.weights == "gptq" ? std::string("imatrix") : o.weights;
  };
  std::map<int64_t, GgufWeightType> type_of;  // per linear; o.type unless --target-bpw chose
  GgufWeightType base = o.type;
  nlohmann::json allocation;
  BlockwiseOptions bo;
  bo.calibrate_inputs = false;
  bo.batch = o.batch;
  bo.gptq = o.gptq;
  bo.custom_needs_hessian = calibrated;

  if (targeted) {
    // Per-tensor types to a bits-per-weight target: each linear's sensitivity to each candidate type is the layer
    // objective tr(ΔW H ΔWᵀ) of its imatrix encoding (one calibration pass, the stream carrying the candidate nearest
    // the target); the multiple-choice knapsack (methods/knapsack.h) then minimizes the summed objective with the
    // file's tensor bytes within target · values / 8. Everything else (norms F32, token_embd at the candidate nearest
    // the target) is fixed cost.
    const std::vector<GgufWeightType>& cand = gguf_target_bpw_candidates();
    size_t near = 0;
    for (size_t c = 0; c < cand.size(); ++c)
      if (std::fabs(type_bpw(gguf_weight_type_info(cand[c]).ggml) - o.target_bpw) <
          std::fabs(type_bpw(gguf_weight_type_info(cand[near]).ggml) - o.target_bpw))
        near = c;
    base = cand[near];
    std::vector<std::vector<double>> cost(infos.size(), std::vector<double>(cand.size())), loss = cost;
    bo.custom_needs_factor = false;
    bo.custom = [&](const LayerInfo& li, const at::Tensor& w, const at::Tensor& h, const GptqFactor*) {
      at::Tensor carried;
      for (size_t c = 0; c < cand.size(); ++c) {
        GgufWeightResult r = quantize_gguf_weight(w, cand[c], "imatrix", h, nullptr, o.gptq, o.encoder);
        cost[li.index][c] = static_cast<double>(r.bytes.size());
        loss[li.index][c] = r.proxy;
        if (c == near) carried = r.dequantized;
      }
      return carried;
    };
    quantize_llama_blockwise(m, sq, calib, bo, [](const BlockwiseLayer&) {});
    double values = 0, fixed = 0;
    for (const auto& [name, t] : m.named_parameters()) {
      values += static_cast<double>(t.numel());
      if (t.dim() == 1) fixed += 4.0 * static_cast<double>(t.numel());
    }
    if (!m.cfg.tied_head)
      fixed += static_cast<double>(m.tok_embeddings.numel()) *
               type_bpw(gguf_weight_type_info(gguf_row_type(base, m.cfg.dim)).ggml) / 8;
    const double budget = o.target_bpw * values / 8 - fixed;
    std::vector<int> pick;
    try {
      pick = knapsack_choose(cost, loss, budget);
    } catch (const Error& e) {
      fail(ErrorKind::Usage, "--target-bpw {}: {} (the smallest file these types allow is larger)", o.target_bpw,
           e.what());
    }
    std::map<std::string, int64_t> chosen;
    for (size_t i = 0; i < infos.size(); ++i) {
      type_of[static_cast<int64_t>(i)] = cand[static_cast<size_t>(pick[i])];
      // As written: rows a type's block does not divide take its fallback (gguf_row_type).
      ++chosen[ggml_type_name(gguf_weight_type_info(gguf_row_type(cand[static_cast<size_t>(pick[i])],
                                                                  m.layer_weight(static_cast<int64_t>(i)).size(1))).ggml)];
    }
    allocation = {{"target_bpw", o.target_bpw}, {"candidates", nlohmann::json::array()}, {"linears_by_type", chosen},
                  {"budget_bytes", budget}, {"fixed_bytes", fixed}, {"sensitivity", "imatrix layer objective"}};
    for (GgufWeightType t : cand) allocation["candidates"].push_back(to_string(t));
  }

  std::map<std::string, GgufEncodedTensor> encoded;
  nlohmann::json layers = nlohmann::json::object();
  double rtn_total = 0, total = 0;
  bo.custom_needs_hessian = gguf_weight_method_needs_calibration(o.weights);
  bo.custom_needs_factor = o.weights == "gptq";
  bo.custom = [&](const LayerInfo& li, const at::Tensor& w, const at::Tensor& h, const GptqFactor* f) {
    const std::string method = method_of(li.index);
    const GgufWeightType t = targeted ? type_of.at(li.index) : o.type;
    GgufWeightResult r = quantize_gguf_weight(w, t, method, h, method == "gptq" ? f : nullptr, o.gptq, o.encoder);
    const std::string name = gguf_tensor_name(m, li, head);
    nlohmann::json jl = {{"type", ggml_type_name(r.ggml)}, {"method", method}};
    if (r.proxy >= 0) {
      jl["proxy_rtn"] = r.proxy_rtn;
      jl["proxy"] = r.proxy;
      rtn_total += r.proxy_rtn;
      total += r.proxy;
    }
    layers[name] = jl;
    encoded[name] = GgufEncodedTensor{r.ggml, std::move(r.bytes)};
    return r.dequantized;
  };
  const nlohmann::json rep = quantize_llama_blockwise(m, sq, calib, bo, [](const BlockwiseLayer&) {});
  if (!m.cfg.tied_head) {  // the lookup table: the encoder alone
    GgufWeightResult r = quantize_gguf_weight(m.tok_embeddings, base, "rtn", at::Tensor(), nullptr, o.gptq, o.encoder);
    layers[kLlamaTokenEmbd.gguf_name()] = {{"type", ggml_type_name(r.ggml)}, {"method", "rtn"}};
    encoded[kLlamaTokenEmbd.gguf_name()] = GgufEncodedTensor{r.ggml, std::move(r.bytes)};
  }
  GgufWriteOptions wo;
  wo.weights = base;
  wo.name = o.name;
  wo.encoded = &encoded;
  write_gguf_llama(m, &tok, path, wo);
  nlohmann::json out = {{"type", targeted ? fmt::format("target-bpw {}", o.target_bpw) : std::string(to_string(o.type))},
                        {"weights", o.weights},
                        {"layers", layers},
                        {"weight_quantization", rep},
                        {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
  if (targeted) out["allocation"] = allocation;
  if (gguf_weight_method_needs_calibration(o.weights)) out["proxy_rtn_total"] = rtn_total, out["proxy_total"] = total;
  if (o.weights == "gptq") out["gptq"] = {{"damp", o.gptq.damp}, {"act_order", o.gptq.act_order}, {"block", o.gptq.block}};
  return out;
}

}  // namespace catq

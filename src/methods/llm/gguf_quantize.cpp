#include "methods/llm/gguf_quantize.h"

#include <cctype>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>

#include "core/error.h"
#include "core/progress.h"
#include "quant/ggml_blocks.h"
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
  const uint32_t ggml = gguf_weight_type_info(wt).ggml;
  GgufWeightResult r;
  // The result's weight from its encoded bytes, with the decoder's values.
  auto set = [&](const std::string& bytes) {
    r.weight = ggml_weight(*weight_format_of_ggml(ggml), {rows, in}, reinterpret_cast<const uint8_t*>(bytes.data()),
                           bytes.size());
    r.dequantized = dequantize(r.weight);
  };
  // importance: per input column; x_weighted: catq's encoder gets it per value times sqrt(σ² + w²) (below), a
  // replacement encoder (llama.cpp's) gets the column importance and applies its own weighting.
  auto encode = [&](const at::Tensor& importance, bool x_weighted = false) {
    if (encoder) return encoder(w32, ggml, importance);
    if (!x_weighted || !importance.defined()) return quantize_gguf_blocks(w32, ggml, importance);
    const at::Tensor sigma2 = (w32 * w32).mean(1, /*keepdim=*/true);
    return quantize_gguf_blocks(w32, ggml, (importance.unsqueeze(0) * at::sqrt(sigma2 + w32 * w32)).contiguous());
  };
  const std::string plain = gguf_type_is_plain(ggml) ? quantize_gguf_blocks(w32, ggml) : encode(at::Tensor());
  if (!calibrated || gguf_type_is_plain(ggml)) {  // plain: rows no 32-value block divides, F16 (or the type asked for)
    set(plain);
    if (h.defined()) r.proxy_rtn = r.proxy = proxy(w32, r.dequantized, h);
    return r;
  }
  r.proxy_rtn = proxy(w32, dequantize_gguf_blocks(plain, ggml, rows, in), h);
  // imatrix: each value's squared error weighted by its input column's mean square activation (H's diagonal), times
  // sqrt(σ² + x²) with σ² the row's mean square weight — llama.cpp's weighting, which also favours large weights.
  const at::Tensor diag = h.diagonal().to(at::kFloat).clamp_min(0).contiguous();
  if (method == "imatrix") {
    set(encode(diag, /*x_weighted=*/true));
    r.proxy = proxy(w32, r.dequantized, h);
    return r;
  }
  // gptq: the grid of an encoding weighted by diag(H) alone (GPTQ's own objective on the diagonal; starting from the
  // imatrix encoding instead lowered the summed objective but raised the perplexity on stories260K); the codes go
  // into that encoding's blocks.
  GptqOptions go = o;
  go.keep_dequantized = false;
  const std::string start = encode(diag);
  GgufGrid grid = gguf_block_grid(start, ggml, rows, in);
  GptqGrid g{std::move(grid.scale), std::move(grid.offset), grid.levels, std::move(grid.level_values)};
  const GptqGridResult q = gptq_quantize_grid(w32, *f, g, go);
  set(gguf_set_codes(start, ggml, q.codes));
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

const std::vector<GgufRecipe>& gguf_recipes() {
  using T = GgufWeightType;
  static const std::vector<GgufRecipe> r = {
      {"q3_k_m", T::Q3_K, T::Q5_K, T::Q4_K, T::Q6_K, 12, "Q3_K; attn_v / ffn_down of important blocks Q5_K; attn_output Q4_K"},
      {"q4_k_m", T::Q4_K, T::Q6_K, T::Q4_K, T::Q6_K, 15, "Q4_K; attn_v / ffn_down of important blocks Q6_K"},
      {"q5_k_m", T::Q5_K, T::Q6_K, T::Q5_K, T::Q6_K, 17, "Q5_K; attn_v / ffn_down of important blocks Q6_K"},
  };
  return r;
}

const GgufRecipe* find_gguf_recipe(const std::string& name) {
  std::string lower = name;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const GgufRecipe& r : gguf_recipes())
    if (lower == r.name) return &r;
  return nullptr;
}

bool gguf_recipe_important_block(int64_t l, int64_t n) {
  const int64_t eighth = n / 8;
  return l < eighth || l >= n - eighth || (l >= eighth && (l - eighth) % 3 == 2);
}

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
  const bool awq = o.transform.method == "awq";
  CATQ_CHECK(o.transform.method == "none" || awq, Unsupported, "quantize --gguf: block transform {}: only awq runs "
             "block by block into a GGUF file", o.transform.str());
  const bool calibrated = gguf_weight_method_needs_calibration(o.weights) || targeted || awq;
  CATQ_CHECK(!targeted || (calib.defined() && calib.size(0) > 0), Usage, "--target-bpw measures each layer's "
             "sensitivity on calibration text: pass --text");
  CATQ_CHECK(!awq || (calib.defined() && calib.size(0) > 0), Usage, "--transform awq searches its scales on "
             "calibration text: pass --text");
  SimQuant sq(QuantConfig::fp());  // nothing simulated: the custom quantizer below does every linear
  m.bind(&sq);
  const std::vector<LayerInfo> infos = m.layer_infos();
  const int64_t head = static_cast<int64_t>(m.blocks.size()) * kLinearsPerBlock;
  // A tied head is token_embd: its codes also serve the lookup, so no GPTQ on it (imatrix from the head's inputs).
  auto method_of = [&](int64_t idx) {
    return idx == head && m.cfg.tied_head && o.weights == "gptq" ? std::string("imatrix") : o.weights;
  };
  std::map<int64_t, GgufWeightType> type_of;  // per linear; o.type unless --target-bpw or a recipe chose
  GgufWeightType base = o.recipe ? o.recipe->base : o.type;
  CATQ_CHECK(!(targeted && o.recipe), Usage, "--target-bpw {} and the recipe {}: give one", o.target_bpw, o.recipe ? o.recipe->name : "");
  if (o.recipe) {
    const int64_t n = static_cast<int64_t>(m.blocks.size());
    for (const LayerInfo& li : infos) {
      GgufWeightType t = o.recipe->base;
      if (li.index == head) {
        t = m.cfg.tied_head ? o.recipe->base : o.recipe->head;  // a tied head is token_embd: the lookup's type
      } else {
        const int64_t l = li.index / kLinearsPerBlock, j = li.index % kLinearsPerBlock;
        if ((j == kLinV || j == kLinDown) && gguf_recipe_important_block(l, n)) t = o.recipe->important;
        else if (j == kLinO) t = o.recipe->attn_output;
      }
      type_of[li.index] = t;
    }
  }
  const bool per_tensor = targeted || o.recipe;
  // AWQ's search quantizer: each linear's own type (the candidate nearest the target while --target-bpw measures),
  // its plain encoder.
  auto awq_quantizer = [&](int64_t idx, const at::Tensor& w) {
    const GgufWeightType t = type_of.count(idx) ? type_of.at(idx) : base;
    const uint32_t ggml = gguf_weight_type_info(gguf_row_type(t, w.size(1))).ggml;
    if (gguf_type_is_plain(ggml)) return w;
    return dequantize_gguf_blocks(quantize_gguf_blocks(w, ggml), ggml, w.size(0), w.size(1));
  };
  std::optional<LlmBlockTransformer> transformer;
  if (awq) transformer.emplace(m, o.transform, awq_quantizer);
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
        cost[li.index][c] = static_cast<double>(r.weight.data.size());
        loss[li.index][c] = r.proxy;
        if (c == near) carried = r.dequantized;
      }
      return carried;
    };
    BlockwiseHooks measure;
    measure.transform = transformer ? &*transformer : nullptr;  // AWQ once, here: the model keeps its scales
    quantize_llama_blockwise(m, sq, calib, bo, [](const BlockwiseLayer&) {}, measure);
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

  // The file is planned now (every linear's type is known) and each tensor is written the moment it exists: the
  // linears as the blockwise pass encodes them, a block's FP tensors when the block is done (then dropped), the rest
  // at the end. Memory holds one block and one encoded weight, not the model's encoding.
  std::map<std::string, uint32_t> types;
  for (const LayerInfo& li : infos) {
    const GgufWeightType t = per_tensor ? type_of.at(li.index) : o.type;
    types[gguf_tensor_name(m, li, head)] = gguf_weight_type_info(gguf_row_type(t, m.layer_weight(li.index).size(1))).ggml;
  }
  if (!m.cfg.tied_head)
    types[kLlamaTokenEmbd.gguf_name()] = gguf_weight_type_info(gguf_row_type(base, m.cfg.dim)).ggml;
  GgufWriteOptions wo;
  wo.weights = base;
  wo.name = o.name;
  if (o.recipe) wo.file_type = o.recipe->file_type;
  const GgufLlamaPlan plan = plan_gguf_llama(m, &tok, path, wo, types);
  GgufStreamWriter file(path, plan.builder, 3, plan.alignment);
  auto write_encoded = [&](const std::string& name, const QuantizedWeight& w) {
    file.write(name, gguf_llama_tensor_bytes(plan.tensor(name), &w));
  };
  auto write_fp = [&](const std::string& prefix) {  // every FP tensor whose name starts with prefix, not yet written
    for (const GgufLlamaTensor& t : plan.tensors)
      if (!t.encoded && t.name.rfind(prefix, 0) == 0 && !file.written(t.name)) file.write(t.name, gguf_llama_tensor_bytes(t));
  };

  nlohmann::json layers = nlohmann::json::object();
  double rtn_total = 0, total = 0;
  bo.custom_needs_hessian = gguf_weight_method_needs_calibration(o.weights);
  bo.custom_needs_factor = o.weights == "gptq";
  bo.custom = [&](const LayerInfo& li, const at::Tensor& w, const at::Tensor& h, const GptqFactor* f) {
    const std::string method = method_of(li.index);
    const GgufWeightType t = per_tensor ? type_of.at(li.index) : o.type;
    GgufWeightResult r = quantize_gguf_weight(w, t, method, h, method == "gptq" ? f : nullptr, o.gptq, o.encoder);
    const std::string name = gguf_tensor_name(m, li, head);
    nlohmann::json jl = {{"type", ggml_type_name(r.weight.traits().ggml)}, {"method", method}};
    if (r.proxy >= 0) {
      jl["proxy_rtn"] = r.proxy_rtn;
      jl["proxy"] = r.proxy;
      rtn_total += r.proxy_rtn;
      total += r.proxy;
    }
    layers[name] = jl;
    write_encoded(name, r.weight);
    return r.dequantized;
  };
  BlockwiseHooks hooks;
  hooks.transform = transformer && !targeted ? &*transformer : nullptr;
  hooks.block_done = [&](int64_t l) {  // the block's norms and biases as they are now (a transform may have changed them)
    for (const LlamaBlockTensor& t : llama_block_tensors()) {
      if (t.linear >= 0 || !t.present(m.cfg)) continue;
      GgufLlamaTensor e = plan.tensor(t.gguf_name(l));
      e.source = m.blocks[l].*t.member;
      file.write(e.name, gguf_llama_tensor_bytes(e));
    }
  };
  hooks.release_blocks = true;
  const nlohmann::json rep = quantize_llama_blockwise(m, sq, calib, bo, [](const BlockwiseLayer&) {}, hooks);
  if (!m.cfg.tied_head) {  // the lookup table: the encoder alone
    GgufWeightResult r = quantize_gguf_weight(m.tok_embeddings, base, "rtn", at::Tensor(), nullptr, o.gptq, o.encoder);
    layers[kLlamaTokenEmbd.gguf_name()] = {{"type", ggml_type_name(r.weight.traits().ggml)}, {"method", "rtn"}};
    write_encoded(kLlamaTokenEmbd.gguf_name(), r.weight);
  }
  write_fp("");  // output_norm, rope_freqs
  file.finish();
  const std::string type_name = targeted ? fmt::format("target-bpw {}", o.target_bpw)
                                : o.recipe ? std::string(o.recipe->name) : std::string(to_string(o.type));
  nlohmann::json out = {{"type", type_name},
                        {"weights", o.weights},
                        {"layers", layers},
                        {"weight_quantization", rep},
                        {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}};
  if (targeted) out["allocation"] = allocation;
  if (gguf_weight_method_needs_calibration(o.weights)) out["proxy_rtn_total"] = rtn_total, out["proxy_total"] = total;
  if (o.weights == "gptq") out["gptq"] = {{"damp", o.gptq.damp}, {"act_order", o.gptq.act_order}, {"block", o.gptq.block}};
  if (transformer) out["transform"] = {{"method", o.transform.str()}, {"choices", transformer->report()}};
  return out;
}

}  // namespace catq

#include "cli/llm_cmds.h"

#include <cstdio>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "core/progress.h"
#include "io/gguf.h"

#include "runtime/int_runtime.h"

namespace catq::cli {

using json = nlohmann::json;

void add_perplexity_options(CLI::App* sub, PerplexityOptions& o) {
  sub->add_option("--window", o.window, "Perplexity window length in tokens")->capture_default_str();
  sub->add_option("--stride", o.stride, "Window stride (0 = window: non-overlapping; < window: overlapping, "
                  "each later window scores only its last `stride` tokens)")->capture_default_str();
  sub->add_flag("!--no-bos", o.prepend_bos, "Do not prepend BOS to each window (then a window of W tokens "
                "predicts the next W)");
  sub->add_option("--max-chars", o.max_chars, "Score only the first N characters of the text (0 = all)")
      ->capture_default_str();
  sub->add_option("--max-windows", o.max_windows, "Score at most N windows (0 = all)")->capture_default_str();
  sub->add_option("--batch", o.batch, "Windows per forward pass")->capture_default_str();
}

static json config_json(const LlamaConfig& c) {
  return {{"dim", c.dim}, {"hidden_dim", c.hidden_dim}, {"n_layers", c.n_layers}, {"n_heads", c.n_heads},
          {"n_kv_heads", c.n_kv_heads}, {"head_dim", c.hd()}, {"vocab_size", c.vocab_size}, {"seq_len", c.seq_len},
          {"rope_theta", c.rope_theta}, {"norm_eps", c.norm_eps}, {"tied_head", c.tied_head}};
}

int run_llm_info(const std::string& model, const Common& common, const std::string& tokenizer) {
  LoadedLlama m = load_llama(model, tokenizer);
  const LlamaConfig& c = m.model.cfg;
  json j = {{"model", model}, {"format", m.format}, {"architecture", "llama"}, {"config", config_json(c)},
            {"parameters", m.model.num_parameters()}};
  j["tokenizer"] = m.tokenizer ? json{{"source", m.tokenizer_path}, {"vocab_size", m.tokenizer->vocab_size()},
                                      {"bos_id", m.tokenizer->bos_id()}, {"eos_id", m.tokenizer->eos_id()}}
                               : json{{"source", nullptr}, {"note", m.tokenizer_note}};
  json layers = json::array();
  for (const auto& li : m.model.layer_infos()) layers.push_back(li.name);
  j["quantizable_layers"] = layers.size();
  std::map<std::string, int64_t> types;
  if (m.format == "gguf") {
    GgufFile g = read_gguf(model);
    json meta = json::object();
    for (const auto& [k, v] : g.kv) meta[k] = v.describe();
    for (const auto& t : g.tensors) types[ggml_type_name(t.type)]++;
    j["gguf"] = {{"version", g.version}, {"alignment", g.alignment}, {"metadata", meta}, {"tensor_types", types},
                 {"tensors", g.tensors.size()}};
  }
  if (common.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s: %s Llama model, %.3f M parameters\n", model.c_str(), m.format.c_str(),
              m.model.num_parameters() / 1e6);
  std::printf("  %s\n", c.summary().c_str());
  std::printf("  quantizable linear layers: %zu (blk.{i}.attn_q/k/v/output, ffn_gate/up/down, output)\n",
              layers.size());
  if (m.tokenizer)
    std::printf("  tokenizer: %s, %lld tokens (BOS %d, EOS %d)\n", m.tokenizer_path.c_str(),
                static_cast<long long>(m.tokenizer->vocab_size()), m.tokenizer->bos_id(), m.tokenizer->eos_id());
  else
    std::printf("  tokenizer: none (%s)\n", m.tokenizer_note.c_str());
  if (!types.empty()) {
    std::printf("  GGUF v%u, tensor types:", j["gguf"]["version"].get<unsigned>());
    for (auto& [t, n] : types) std::printf(" %s x%lld", t.c_str(), static_cast<long long>(n));
    std::printf("\n");
  }
  return 0;
}

static json ppl_json(const PerplexityResult& r) {
  return {{"ppl", r.ppl}, {"mean_nll", r.mean_nll}, {"scored_tokens", r.n_scored}, {"windows", r.n_windows},
          {"seconds", r.seconds}};
}

// --runtime int: the integer runtime against the simulation it must reproduce, on the same windows.
static int eval_integer_runtime(const LlmEvalArgs& a, const Common& common, LoadedLlama& m, SimQuant* sim,
                                const EvalWindows& w) {
  CATQ_CHECK(sim, Usage, "{}: --runtime int runs a quantized model: pass a .catq file or --quant", a.model);
  CATQ_CHECK(a.reference.empty(), Usage, "--runtime int compares with the simulation; --reference does not apply");
  IntegerRuntime rt(m.model, *sim);
  const DistributionComparison cmp =
      compare_next_token(model_logits_fn(m.model, sim), model_logits_fn(m.model, &rt), w, a.ppl.batch);
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
  json j = {{"model", a.model},
            {"format", m.format},
            {"protocol", {{"text", a.text}, {"chars", w.n_chars}, {"window", a.ppl.window}}},
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
  if (!a.report.is_null()) j["quantization"] = a.report;
  if (common.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s (%s): %s\n", a.model.c_str(), m.format.c_str(), m.model.cfg.summary().c_str());
  std::printf("layers: %lld integer GEMM, %lld weight-only packed, %lld simulated (first: %s)\n",
              static_cast<long long>(rt.num_integer()), static_cast<long long>(rt.num_weight_only()),
              static_cast<long long>(j["simulated_layers"].get<int64_t>()), rt.report().front().how.c_str());
  std::printf("simulation       PPL %.4f  mean NLL %.5f nats  (%.1f s)\n", cmp.ref.ppl, cmp.ref.mean_nll,
              cmp.ref.seconds);
  std::printf("integer runtime  PPL %.4f  mean NLL %.5f nats  (%.1f s)  PPL %+.3f %%  KL %.2e  top-1 agreement %.2f %%\n",
              cmp.test.ppl, cmp.test.mean_nll, cmp.test.seconds, 100 * rel, cmp.mean_kl, 100 * cmp.top1_agreement);
  std::printf("decoding (first window, %lld tokens through the KV cache): PPL %.4f vs %.4f (%+.3f %%)  KL %.2e  top-1 "
              "agreement %.2f %%\n", static_cast<long long>(dec.n_scored), dec.test.ppl, dec.ref.ppl,
              100 * (dec.test.ppl / dec.ref.ppl - 1.0), dec.mean_kl, 100 * dec.top1_agreement);
  return 0;
}

int run_llm_eval(const LlmEvalArgs& a, const Common& common) {
  if (common.json || common.quiet) Progress::set_enabled(false);
  CATQ_CHECK(!a.text.empty(), Usage, "{}: evaluating a language model needs a text file (--text FILE)", a.model);
  LoadedLlama m = load_llama(a.model, a.tokenizer);
  const Tokenizer& tok = require_tokenizer(m);
  const std::string text = read_file_text(a.text);
  CATQ_CHECK(a.ppl.window <= m.model.cfg.seq_len, Usage, "--window {} exceeds the model context {}", a.ppl.window,
             m.model.cfg.seq_len);
  if (a.prepare) a.prepare(m);
  SmallModelThreadGuard threads(m.model);
  // A quantized .catq model carries its own quantization; the reference is --reference (else its own weights).
  QuantContext* quant = a.quant;
  std::string quant_label = a.quant_label;
  std::optional<LoadedLlama> ref;
  if (m.quant) {
    CATQ_CHECK(!a.quant, Usage, "{}: the model is already quantized; --quant does not apply", a.model);
    quant = m.quant.get();
    quant_label = "quantized";
    if (!a.reference.empty()) {
      ref = load_llama(a.reference, a.tokenizer);
      CATQ_CHECK(ref->model.cfg.vocab_size == m.model.cfg.vocab_size, Data, "--reference {}: vocabulary {} differs from "
                 "{}", a.reference, ref->model.cfg.vocab_size, m.model.cfg.vocab_size);
    }
  }
  const LlamaModel& ref_model = ref ? ref->model : m.model;
  EvalWindows w = make_eval_windows(tok, text, a.ppl);
  if (a.runtime == "int") return eval_integer_runtime(a, common, m, m.quant ? m.quant.get() : a.sim, w);
  CATQ_CHECK(a.runtime == "sim", Usage, "--runtime '{}': expected sim or int", a.runtime);
  json proto = {{"text", a.text}, {"chars", w.n_chars}, {"text_tokens", w.n_text_tokens}, {"window", a.ppl.window},
                {"stride", a.ppl.stride > 0 ? a.ppl.stride : a.ppl.window}, {"prepend_bos", a.ppl.prepend_bos},
                {"max_chars", a.ppl.max_chars}};
  json j = {{"model", a.model}, {"format", m.format}, {"protocol", proto}};
  PerplexityResult fp;
  std::optional<DistributionComparison> cmp;
  if (!quant) {
    fp = perplexity(model_logits_fn(m.model, nullptr), w, a.ppl.batch, "FP32 perplexity");
  } else {
    cmp = compare_next_token(model_logits_fn(ref_model, nullptr), model_logits_fn(m.model, quant), w, a.ppl.batch);
    fp = cmp->ref;
    fp.seconds = cmp->seconds;
  }
  j["fp32"] = ppl_json(fp);
  if (cmp) {
    j["quantized"] = ppl_json(cmp->test);
    j["quantized"]["label"] = quant_label;
    j["kl_mean"] = cmp->mean_kl;
    j["kl_max"] = cmp->max_kl;
    j["top1_agreement"] = cmp->top1_agreement;
  }
  if (!a.report.is_null()) j["quantization"] = a.report;
  if (m.quant) j["reference"] = a.reference.empty() ? "(the file's weights, activations in FP)" : a.reference;
  if (common.json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s (%s): %s\n", a.model.c_str(), m.format.c_str(), m.model.cfg.summary().c_str());
  std::printf("text %s: %lld chars -> %lld tokens; %lld windows of %lld (stride %lld, %s) -> %lld scored tokens\n",
              a.text.c_str(), static_cast<long long>(w.n_chars), static_cast<long long>(w.n_text_tokens),
              static_cast<long long>(fp.n_windows), static_cast<long long>(a.ppl.window),
              static_cast<long long>(a.ppl.stride > 0 ? a.ppl.stride : a.ppl.window),
              a.ppl.prepend_bos ? "BOS-prefixed" : "no BOS", static_cast<long long>(fp.n_scored));
  std::printf("%s PPL %.4f  mean NLL %.5f nats\n", m.quant && a.reference.empty() ? "FP-act    " : "FP32      ",
              fp.ppl, fp.mean_nll);
  if (cmp)
    std::printf("%-10s PPL %.4f  mean NLL %.5f nats  KL(FP||Q) %.5f (max %.4f)  top-1 agreement %.2f %%\n",
                quant_label.empty() ? "quantized" : quant_label.c_str(), cmp->test.ppl, cmp->test.mean_nll,
                cmp->mean_kl, cmp->max_kl, 100.0 * cmp->top1_agreement);
  return 0;
}

}  // namespace catq::cli

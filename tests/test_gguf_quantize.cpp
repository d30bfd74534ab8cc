// Format-aware quantization into GGUF (methods/llm/gguf_quantize.h): the grid an encoding fixes is the decoder's,
// codes written back keep every byte of the scales, GPTQ on that grid lowers the layer objective, and on
// stories260K the optimized q4_K file scores a lower perplexity than the round-to-nearest one — in catq and, when
// node-llama-cpp is installed, in llama.cpp on the same file.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/file_util.h"
#include "core/process.h"
#include "eval/perplexity.h"
#include "io/gguf.h"
#include "quant/ggml_blocks.h"
#include "io/llm_loader.h"
#include "methods/llm/export_job.h"
#include "methods/llm/gguf_quantize.h"
#include "methods/llm/quantize_job.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

namespace {

const GgufWeightType kCodedTypes[] = {GgufWeightType::Q8_0, GgufWeightType::Q4_0, GgufWeightType::Q4_1,
                                      GgufWeightType::Q5_0, GgufWeightType::Q5_1, GgufWeightType::IQ4_NL,
                                      GgufWeightType::Q2_K, GgufWeightType::Q3_K, GgufWeightType::Q4_K,
                                      GgufWeightType::Q5_K, GgufWeightType::Q6_K};

// The code of each value of y on the grid (nearest level of (y − offset) / scale).
at::Tensor codes_on_grid(const at::Tensor& y, const GgufGrid& g) {
  const at::Tensor t = (y - g.offset) / g.scale;
  if (g.level_values.empty()) return t.round().clamp(0, g.levels - 1).to(at::kByte);
  const at::Tensor lv = at::tensor(g.level_values);
  return (t.unsqueeze(-1) - lv).abs().argmin(-1).to(at::kByte);
}

// Calibration-like inputs with unequal, correlated columns (a few heavy ones), and their H = Σ x xᵀ.
at::Tensor correlated_hessian(int64_t in, uint64_t seed) {
  at::manual_seed(seed);
  at::Tensor mix = at::randn({in, in}) / std::sqrt(static_cast<double>(in)) + at::eye(in);
  at::Tensor x = at::matmul(at::randn({4 * in, in}), mix) * (at::rand({in}) * 3 + 0.2);
  return at::matmul(x.t(), x);
}

}  // namespace

TEST(GgufQuantize, GridIsTheDecodersAndCodesRewriteIdentically) {
  at::manual_seed(3);
  const at::Tensor w = at::randn({8, 512}) * 0.05;
  for (GgufWeightType t : kCodedTypes) {
    SCOPED_TRACE(to_string(t));
    const uint32_t ggml = gguf_weight_type_info(t).ggml;
    const std::string bytes = quantize_gguf_blocks(w, ggml);
    const at::Tensor y = dequantize_gguf_blocks(bytes, ggml, 8, 512);
    const GgufGrid g = gguf_block_grid(bytes, ggml, 8, 512);
    EXPECT_EQ(g.levels, ggml_type_traits(ggml)->levels);
    const at::Tensor c = codes_on_grid(y, g);
    const at::Tensor lv = g.level_values.empty() ? c.to(at::kFloat) : at::tensor(g.level_values).index({c.to(at::kLong)});
    // Every decoded value lies on its grid, and writing those codes back reproduces the file byte for byte.
    EXPECT_LE((g.scale * lv + g.offset - y).abs().max().item<double>(), 1e-6 * (1 + y.abs().max().item<double>()));
    EXPECT_EQ(gguf_set_codes(bytes, ggml, c), bytes);
    // Other codes change only the codes: decoding them gives their grid values.
    const at::Tensor c2 = at::randint(0, g.levels, {8, 512}).to(at::kByte);
    const at::Tensor y2 = dequantize_gguf_blocks(gguf_set_codes(bytes, ggml, c2), ggml, 8, 512);
    const at::Tensor lv2 = g.level_values.empty() ? c2.to(at::kFloat) : at::tensor(g.level_values).index({c2.to(at::kLong)});
    EXPECT_LE((g.scale * lv2 + g.offset - y2).abs().max().item<double>(), 1e-6 * (1 + y2.abs().max().item<double>()));
  }
}

TEST(GgufQuantize, GptqOnTheFormatsGridLowersTheLayerObjective) {
  const int64_t out = 48, in = 512;
  const at::Tensor h = correlated_hessian(in, 11);
  at::manual_seed(12);
  const at::Tensor w = at::randn({out, in}) * 0.04;
  GptqOptions o;
  for (bool act_order : {false, true})
    for (GgufWeightType t : {GgufWeightType::Q4_0, GgufWeightType::Q4_1, GgufWeightType::IQ4_NL, GgufWeightType::Q2_K,
                             GgufWeightType::Q3_K, GgufWeightType::Q4_K, GgufWeightType::Q6_K}) {
      SCOPED_TRACE(std::string(to_string(t)) + (act_order ? " act-order" : ""));
      o.act_order = act_order;
      const GptqFactor f = gptq_factor(h, o);
      const GgufWeightResult rtn = quantize_gguf_weight(w, t, "rtn", h, nullptr, o);
      const GgufWeightResult imx = quantize_gguf_weight(w, t, "imatrix", h, nullptr, o);
      const GgufWeightResult gq = quantize_gguf_weight(w, t, "gptq", h, &f, o);
      EXPECT_EQ(gq.weight.traits().ggml, gguf_weight_type_info(t).ggml);
      EXPECT_EQ(gq.weight.data.size(), rtn.weight.data.size());  // same format, same size
      EXPECT_DOUBLE_EQ(rtn.proxy, rtn.proxy_rtn);
      EXPECT_LT(imx.proxy, rtn.proxy);
      EXPECT_LT(gq.proxy, 0.8 * imx.proxy);
      // What it reports is what the file decodes to.
      const std::string bytes(gq.weight.data.begin(), gq.weight.data.end());
      EXPECT_TRUE(at::equal(gq.dequantized, dequantize_gguf_blocks(bytes, gq.weight.traits().ggml, out, in)));
      std::printf("[ gguf ] %-6s%s tr(dW H dW^T): rtn %.4g  imatrix %.4g  gptq %.4g\n", to_string(t),
                  act_order ? " act" : "    ", rtn.proxy, imx.proxy, gq.proxy);
    }
}

TEST(GgufQuantize, BadMethodAndConfigAreRefused) {
  const at::Tensor w = at::randn({4, 64});
  EXPECT_THROW(quantize_gguf_weight(w, GgufWeightType::Q4_0, "awq", at::Tensor(), nullptr, GptqOptions{}), Error);
  LlmQuantizeJob job;
  job.model = "missing.bin";
  job.gguf = "q4_k";
  job.weights = "adaround";
  job.out = "never.gguf";
  try {
    run_llm_quantize_job(job);
    ADD_FAILURE() << "accepted --weights adaround";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rtn, imatrix or gptq"), std::string::npos) << e.what();
  }
  job.weights = "gptq";
  job.gguf = "q4_km";
  try {
    run_llm_quantize_job(job);
    ADD_FAILURE() << "accepted type q4_km";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q4_k"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(file_exists("never.gguf"));
}

TEST(GgufQuantize, Stories260KGptqQ4KBeatsRoundToNearestInCatqAndLlamaCpp) {
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!have_stories() || !file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets (stories260K and text; absent)";
  TempDir d;
  LoadedLlama fp = load_llama(stories_bin(), stories_tok());
  const EvalWindows w = make_eval_windows(*fp.tokenizer, read_file_text(text_path), PerplexityOptions{});
  const double ppl_fp = perplexity(model_logits_fn(fp.model), w).ppl;
  std::map<std::string, double> ppl;
  std::map<std::string, std::string> path;
  for (const char* method : {"rtn", "imatrix", "gptq"}) {
    LlmQuantizeJob job;
    job.model = stories_bin();
    job.tokenizer = stories_tok();
    job.text = text_path;
    job.skip_chars = 12000;  // calibration after the scored text
    job.gguf = "q4_k";
    job.weights = method;
    job.out = path[method] = d / (std::string(method) + ".gguf");
    const nlohmann::json meta = run_llm_quantize_job(job);
    EXPECT_EQ(meta.at("type"), "q4_k");
    GgufLlama g = read_gguf_llama(job.out);
    ppl[method] = perplexity(model_logits_fn(g.model), w).ppl;
    std::printf("[ gguf ] stories260K q4_k %-7s: catq PPL %.4f (FP %.4f), %.3f bpw\n", method, ppl[method], ppl_fp,
                meta.at("bits_per_weight").get<double>());
  }
  EXPECT_EQ(file_size(path["gptq"]), file_size(path["rtn"]));
  EXPECT_LT(ppl["gptq"], ppl["rtn"]);
  EXPECT_GT(ppl["gptq"], ppl_fp * 0.99);  // a quantized model, not a copy of the FP one
  const std::string peers = std::getenv("CATQ_PEERS") && *std::getenv("CATQ_PEERS") ? std::getenv("CATQ_PEERS")
                                                                                   : std::string(CATQ_SOURCE_DIR) + "/.cache/peers";
  if (!file_exists(peers + "/node_modules/node-llama-cpp/dist/index.js") || std::system("node --version > /dev/null 2>&1") != 0) {
    std::printf("[ gguf ] node-llama-cpp not installed: llama.cpp's perplexity not checked\n");
    return;
  }
  nlohmann::json windows = nlohmann::json::array();
  for (int64_t i = 0; i < w.n_windows(); ++i) {
    std::vector<int64_t> seq = {w.inputs[i][0].item<int64_t>()};
    for (int64_t j = 0; j < w.targets.size(1) && w.score[i][j].item<bool>(); ++j) seq.push_back(w.targets[i][j].item<int64_t>());
    windows.push_back(seq);
  }
  std::ofstream(d / "windows.json") << windows.dump();
  std::map<std::string, double> llama;
  for (const char* method : {"rtn", "gptq"}) {
    int code = -1;
    const std::string out = run_capture("CATQ_PEERS='" + peers + "' node '" + CATQ_SOURCE_DIR +
                                        "/tests/peers/llama_cpp_check.mjs' '" + path[method] + "' '" + (d / "windows.json") +
                                        "' 20 2>&1", &code);
    ASSERT_EQ(code, 0) << out;
    llama[method] = nlohmann::json::parse(out.substr(out.find('{'))).at("ppl").get<double>();
    std::printf("[ peer ] llama.cpp stories260K q4_k %s: PPL %.4f (catq %.4f)\n", method, llama[method], ppl[method]);
    EXPECT_NEAR(llama[method] / ppl[method], 1.0, 0.005);
  }
  EXPECT_LT(llama["gptq"], llama["rtn"]);
}

// A quantized .catq whose codes map onto GGUF blocks (4-bit asymmetric groups of 32 -> Q4_1) is exported with those
// codes: llama.cpp's file decodes to catq's values up to the fp16 scales, and scores the same perplexity in catq.
// Layers that do not map are refused by name, and no file is left behind.
TEST(GgufExport, QuantizedCatqCodesMapExactlyOrAreRefusedByLayer) {
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!have_stories() || !file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets (stories260K and text; absent)";
  TempDir d;
  auto quantize = [&](const std::string& config_json, const std::string& name) {
    const std::string cfg = d / (name + ".json");
    write_file_atomic(cfg, config_json);
    LlmQuantizeJob job;
    job.model = stories_bin();
    job.tokenizer = stories_tok();
    job.text = text_path;
    job.skip_chars = 12000;
    job.config = cfg;
    job.out = d / (name + ".catq");
    run_llm_quantize_job(job);
    return job.out;
  };
  const std::string ok = quantize(R"({"defaults": {"weight": {"bits": 4, "group_size": 32, "symmetric": false}},
      "overrides": [{"pattern": "blk.*.ffn_down", "weight": null}, {"pattern": "output", "weight": null}]})", "w4g32");
  ExportJob ex;
  ex.model = ok;
  ex.out = d / "w4g32.gguf";
  const nlohmann::json r = run_export_job(ex);
  EXPECT_TRUE(r.at("from_quantized").get<bool>());
  EXPECT_EQ(r.at("tensors_by_type").at("Q4_1").get<int64_t>(), 5 * 6);  // q k v o gate up of 5 blocks
  EXPECT_LT(r.at("max_relative_deviation").get<double>(), 2e-3);        // fp16 scales
  const EvalWindows w = make_eval_windows(*load_llama(stories_bin(), stories_tok()).tokenizer, read_file_text(text_path),
                                          PerplexityOptions{});
  LoadedLlama q = load_llama(ok);
  const double ppl_catq = perplexity(model_logits_fn(q.model, q.quant.get()), w).ppl;
  const double ppl_gguf = perplexity(model_logits_fn(read_gguf_llama(ex.out).model), w).ppl;
  std::printf("[ gguf ] stories260K W4 g32 .catq PPL %.5f, exported Q4_1 GGUF %.5f\n", ppl_catq, ppl_gguf);
  EXPECT_NEAR(ppl_gguf / ppl_catq, 1.0, 5e-4);

  struct Bad { std::string config, name, layer, reason; };
  for (const Bad& b : {Bad{R"({"defaults": {"weight": {"bits": 4, "group_size": 32}, "input": {"bits": 8, "granularity": "token"}}, "overrides": [{"pattern": "blk.*.ffn_down", "weight": null}, {"pattern": "output", "weight": null, "input": null}]})",
                           "w4a8", "blk.0.attn_q", "input activations are quantized"},
                       Bad{R"({"defaults": {"weight": {"bits": 4, "group_size": 32}}, "overrides": [{"pattern": "blk.*.ffn_down", "weight": {"group_size": 43}}, {"pattern": "output", "weight": null}]})",
                           "g43", "blk.0.ffn_down", "groups of 43"},
                       Bad{R"({"defaults": {"weight": {"bits": 3, "group_size": 32}}, "overrides": [{"pattern": "blk.*.ffn_down", "weight": null}, {"pattern": "output", "weight": null}]})",
                           "w3", "blk.0.attn_q", "3-bit"}}) {
    SCOPED_TRACE(b.name);
    ExportJob e;
    e.model = quantize(b.config, b.name);
    e.out = d / (b.name + ".gguf");
    try {
      run_export_job(e);
      ADD_FAILURE() << "exported";
    } catch (const Error& err) {
      const std::string m = err.what();
      EXPECT_NE(m.find("'" + b.layer + "'"), std::string::npos) << m;
      EXPECT_NE(m.find(b.reason), std::string::npos) << m;
    }
    EXPECT_FALSE(file_exists(e.out));
  }
}

// --target-bpw: per-tensor types from the knapsack stay within the target, and a budget below the cheapest file is
// refused naming it. (stories260K's rows take the K-quants' fallback types; their sizes are what the knapsack sees.)
TEST(GgufQuantize, TargetBpwStaysWithinBudgetAndRefusesTheImpossible) {
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!have_stories() || !file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets (stories260K and text; absent)";
  TempDir d;
  LlmQuantizeJob job;
  job.model = stories_bin();
  job.tokenizer = stories_tok();
  job.text = text_path;
  job.skip_chars = 12000;
  job.weights = "imatrix";
  job.target_bpw = 8;
  job.out = d / "t8.gguf";
  const nlohmann::json meta = run_llm_quantize_job(job);
  EXPECT_LE(meta.at("bits_per_weight").get<double>(), 8.0);
  EXPECT_GT(meta.at("bits_per_weight").get<double>(), 7.5);  // it spends the budget
  EXPECT_GE(meta.at("tensors_by_type").size(), 4u);           // mixed: F32 norms, F16 rows and several block types
  job.target_bpw = 5;
  job.out = d / "t5.gguf";
  try {
    run_llm_quantize_job(job);
    ADD_FAILURE() << "accepted --target-bpw 5 on stories260K";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cheapest"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(file_exists(job.out));
}

// --gguf q4_k_m: every tensor gets the recipe's type (attn_v / ffn_down of the first and last eighth and every third
// block between them one step up, the untied head Q6_K), the file is written streamed and reads back with those types.
TEST(GgufQuantize, RecipeGivesEachTensorItsType) {
  EXPECT_TRUE(gguf_recipe_important_block(0, 8) && gguf_recipe_important_block(7, 8) && gguf_recipe_important_block(3, 8));
  EXPECT_FALSE(gguf_recipe_important_block(1, 8) || gguf_recipe_important_block(2, 8) || gguf_recipe_important_block(4, 8));
  EXPECT_EQ(find_gguf_recipe("Q4_K_M")->base, GgufWeightType::Q4_K);
  EXPECT_EQ(find_gguf_recipe("q4_k"), nullptr);
  const Tokenizer tok = tiny_tokenizer();
  LlamaConfig c = tiny_config(tok.vocab_size(), /*tied=*/false);
  c.dim = 256;
  c.hidden_dim = 512;
  c.n_layers = 8;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  LlamaModel m = LlamaModel::random(c, 3);
  const std::string wq = quantize_gguf_blocks(m.blocks[2].wq, GGML_Q4_K);  // the blocks are dropped as written
  TempDir d;
  GgufQuantizeOptions o;
  o.recipe = find_gguf_recipe("q4_k_m");
  o.weights = "rtn";
  const nlohmann::json rep = quantize_llama_gguf(m, tok, at::Tensor(), o, d / "m.gguf");
  EXPECT_EQ(rep.at("type"), "q4_k_m");
  const GgufFile g = read_gguf(d / "m.gguf");
  EXPECT_EQ(g.find("general.file_type")->as_int(), 15);
  std::map<std::string, uint32_t> type;
  for (const GgufTensorInfo& t : g.tensors) type[t.name] = t.type;
  for (int l = 0; l < 8; ++l) {
    const bool up = l == 0 || l == 3 || l == 6 || l == 7;
    EXPECT_EQ(type.at(fmt::format("blk.{}.attn_v.weight", l)), up ? GGML_Q6_K : GGML_Q4_K) << l;
    EXPECT_EQ(type.at(fmt::format("blk.{}.ffn_down.weight", l)), up ? GGML_Q6_K : GGML_Q4_K) << l;
    EXPECT_EQ(type.at(fmt::format("blk.{}.attn_q.weight", l)), GGML_Q4_K) << l;
    EXPECT_EQ(type.at(fmt::format("blk.{}.attn_norm.weight", l)), GGML_F32) << l;
  }
  EXPECT_EQ(type.at("output.weight"), GGML_Q6_K);
  EXPECT_EQ(type.at("token_embd.weight"), GGML_Q4_K);
  // The streamed file decodes to what the model's own round-to-nearest encoding gives for one of its tensors.
  const LoadedLlama back = load_llama(d / "m.gguf", "");
  EXPECT_TRUE(m.blocks[2].wq.defined() == false);
  EXPECT_TRUE(at::equal(back.model.blocks[2].wq, dequantize_gguf_blocks(wq, GGML_Q4_K, 256, 256)));
}

// --transform awq into a GGUF file: on stories260K's q3_k file (IQ4_NL throughout: its rows fit no K-quant
// super-block) the AWQ scales, folded into the norms / ffn_up / V, lower the perplexity of the round-to-nearest file
// (measured 4.690 → 4.595); the file keeps its size and reports the per-block choices.
TEST(GgufQuantize, Stories260KAwqLowersTheIq4nlFilesPerplexity) {
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!have_stories() || !file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets (stories260K and text; absent)";
  TempDir d;
  LoadedLlama fp = load_llama(stories_bin(), stories_tok());
  const EvalWindows w = make_eval_windows(*fp.tokenizer, read_file_text(text_path), PerplexityOptions{});
  std::map<std::string, double> ppl;
  std::map<std::string, nlohmann::json> meta;
  for (const char* tr : {"none", "awq"}) {
    LlmQuantizeJob job;
    job.model = stories_bin();
    job.tokenizer = stories_tok();
    job.text = text_path;
    job.skip_chars = 12000;
    job.gguf = "q3_k";
    job.weights = "rtn";
    job.transform = tr;
    job.out = d / (std::string(tr) + ".gguf");
    meta[tr] = run_llm_quantize_job(job);
    ppl[tr] = perplexity(model_logits_fn(read_gguf_llama(job.out).model), w).ppl;
    std::printf("[ gguf ] stories260K q3_k rtn, transform %s: catq PPL %.4f\n", tr, ppl[tr]);
  }
  EXPECT_EQ(meta["awq"].at("bytes"), meta["none"].at("bytes"));
  EXPECT_EQ(meta["awq"].at("quantization").at("transform").at("choices").size(), 5u);  // one per block
  EXPECT_LT(ppl["awq"], ppl["none"] * 0.99);
}

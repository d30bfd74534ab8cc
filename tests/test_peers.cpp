// Real peers verify catq's exported files. llama.cpp (npm node-llama-cpp, prebuilt CPU binary, driven by
// tests/peers/llama_cpp_check.mjs) loads a GGUF written by catq, generates from BOS, and scores the perplexity
// reference-protocol windows; its perplexity must be close to catq's own on the same file.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/process.h"
#include "eval/perplexity.h"
#include "io/catq_file.h"
#include "io/cifar.h"
#include "io/onnx_reader.h"
#include "io/onnx_writer.h"
#include "ir/passes.h"
#include "sim/fold_constants.h"
#include "methods/cnn/pipeline.h"
#include "io/gguf.h"
#include "runtime/int_conv.h"
#include "runtime/lean_llama.h"
#include "llm/generate.h"
#include "io/llm_loader.h"
#include "io/safetensors.h"
#include "llm/llama_tensors.h"
#include "methods/llm/quarot.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

namespace {

std::string peers_dir() {
  const char* e = std::getenv("CATQ_PEERS");
  return e && *e ? e : std::string(CATQ_SOURCE_DIR) + "/.cache/peers";
}

bool have_ort() {
  return file_exists(peers_dir() + "/node_modules/onnxruntime-node/dist/index.js") &&
         std::system("node --version > /dev/null 2>&1") == 0;
}

bool have_llama_cpp() {
  const std::string p = peers_dir() + "/node_modules/";
  return file_exists(p + "node-llama-cpp/dist/index.js") && file_exists(p + "@node-llama-cpp/linux-x64/package.json") &&
         std::system("node --version > /dev/null 2>&1") == 0;
}

// llama.cpp's raw next-token logits [ids, vocab] for the GGUF `model` (tests/peers/llama_cpp_logits.mjs).
at::Tensor llama_cpp_logits(const std::string& model, const std::vector<int64_t>& ids, int64_t vocab, const TempDir& d) {
  std::ofstream(d / "tokens.json") << nlohmann::json(ids).dump();
  int code = -1;
  const std::string out = run_capture("CATQ_PEERS='" + peers_dir() + "' node '" + CATQ_SOURCE_DIR +
                                      "/tests/peers/llama_cpp_logits.mjs' '" + model + "' '" + (d / "tokens.json") +
                                      "' 2>&1", &code);
  EXPECT_EQ(code, 0) << out;
  if (code != 0) return at::Tensor();
  const auto rows = nlohmann::json::parse(out.substr(out.find('{'))).at("logits").get<std::vector<std::vector<float>>>();
  EXPECT_EQ(rows.size(), ids.size());
  at::Tensor t = at::empty({static_cast<int64_t>(rows.size()), vocab});
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(static_cast<int64_t>(rows[i].size()), vocab);
    if (static_cast<int64_t>(rows[i].size()) == vocab) t[static_cast<int64_t>(i)] = at::tensor(rows[i]);
  }
  return t;
}

}  // namespace

TEST(PeerLlamaCpp, ExportedGgufLoadsGeneratesAndMatchesPerplexity) {
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!have_stories() || !file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets (stories260K and text; absent)";
  if (!have_llama_cpp())
    GTEST_SKIP() << "needs node and node-llama-cpp + @node-llama-cpp/linux-x64 in " << peers_dir()
                 << "/node_modules (scripts/setup.sh installs them)";
  LoadedLlama m = load_llama(stories_bin(), stories_tok());
  const Tokenizer& tok = *m.tokenizer;
  EvalWindows w = make_eval_windows(tok, read_file_text(text_path), PerplexityOptions{});
  ASSERT_GT(w.n_windows(), 0);
  // Windows as token lists [BOS, t0, ...]: every scored target follows (the protocol scores a prefix of each).
  nlohmann::json windows = nlohmann::json::array();
  for (int64_t i = 0; i < w.n_windows(); ++i) {
    std::vector<int64_t> seq = {w.inputs[i][0].item<int64_t>()};
    for (int64_t j = 0; j < w.targets.size(1) && w.score[i][j].item<bool>(); ++j) seq.push_back(w.targets[i][j].item<int64_t>());
    windows.push_back(seq);
  }
  TempDir d;
  {
    std::ofstream(d / "windows.json") << windows.dump();
  }
  GenerateOptions go;
  go.steps = 200;
  go.sampler.temperature = 0;
  const std::vector<int32_t> catq_greedy = generate(m.model, tok, "", go).tokens;

  struct Case { GgufWeightType type; double ppl_tol; int greedy_prefix; };
  // stories260K's rows (64, 172) fit no K-quant super-block: q4_k / q6_k / q2_k test the fallback types' tensors.
  for (Case c : {Case{GgufWeightType::F32, 0.002, 200}, Case{GgufWeightType::Q8_0, 0.01, 0},
                 Case{GgufWeightType::Q4_0, 0.02, 0}, Case{GgufWeightType::Q5_1, 0.02, 0},
                 Case{GgufWeightType::IQ4_NL, 0.02, 0}, Case{GgufWeightType::Q4_K, 0.02, 0},
                 Case{GgufWeightType::Q6_K, 0.02, 0}, Case{GgufWeightType::Q2_K, 0.02, 0}}) {
    SCOPED_TRACE(to_string(c.type));
    GgufWriteOptions o;
    o.weights = c.type;
    const std::string path = d / (std::string(to_string(c.type)) + ".gguf");
    write_gguf_llama(m.model, &tok, path, o);
    GgufLlama g = read_gguf_llama(path);  // catq's own view of the file (blocks dequantized)
    const double ppl_catq = perplexity(model_logits_fn(g.model), w).ppl;
    int code = -1;
    const std::string out = run_capture("CATQ_PEERS='" + peers_dir() + "' node '" + CATQ_SOURCE_DIR +
                                        "/tests/peers/llama_cpp_check.mjs' '" + path + "' '" + (d / "windows.json") +
                                        "' 200 2>&1", &code);
    ASSERT_EQ(code, 0) << out;
    nlohmann::json r = nlohmann::json::parse(out.substr(out.find('{')));
    const double ppl_llama = r.at("ppl").get<double>();
    std::printf("[ peer ] llama.cpp %s: perplexity %.4f (catq on the same file %.4f, %lld tokens); greedy: %s\n",
                to_string(c.type), ppl_llama, ppl_catq, static_cast<long long>(r.at("tokens_scored").get<int64_t>()),
                r.at("greedy_text").get<std::string>().substr(0, 60).c_str());
    EXPECT_EQ(r.at("tokens_scored").get<int64_t>(), w.n_scored());
    EXPECT_NEAR(ppl_llama / ppl_catq, 1.0, c.ppl_tol);
    const auto greedy = r.at("greedy_tokens").get<std::vector<int32_t>>();
    EXPECT_GE(greedy.size(), 20u);  // it generates
    if (c.greedy_prefix > 0) {
      // Same weights, same arithmetic up to float summation order: the same greedy story.
      ASSERT_GE(greedy.size(), static_cast<size_t>(c.greedy_prefix));
      EXPECT_EQ(std::vector<int32_t>(greedy.begin(), greedy.begin() + c.greedy_prefix),
                std::vector<int32_t>(catq_greedy.begin(), catq_greedy.begin() + c.greedy_prefix));
    }
  }
}

TEST(PeerOnnxRuntime, QdqExportMatchesSimulation) {
  const std::string onnx = asset("resnet-cifar10/resnet20.onnx"), data = asset("cifar10/test.bin");
  if (!file_exists(onnx) || !file_exists(data)) GTEST_SKIP() << "needs ../shared/assets (resnet20, cifar10; absent)";
  if (!have_ort())
    GTEST_SKIP() << "needs node and onnxruntime-node in " << peers_dir() << "/node_modules (scripts/setup.sh installs it)";
  // ONNX Runtime's u8×s8 kernels share the int16 saturation of CPUs without VNNI (its QDQ convs then differ from
  // exact integer arithmetic); the comparison is meaningful only where the dot products are exact.
  if (!onednn_int8_conv_exact())
    GTEST_SKIP() << "this CPU has no VNNI: ONNX Runtime's int8 convolutions saturate int16 pairs there";
  Graph g = load_onnx(onnx);
  fold_constants(g);
  ImageDataset calib = load_cifar10(data, CifarSplit::Calib).slice(0, 256);
  // Every 9th evaluation image: 1,000 images from all ten classes (test.bin is ordered by class).
  ImageDataset all_eval = load_cifar10(data, CifarSplit::Eval);
  ImageDataset eval{all_eval.images.slice(0, 0, 9000, 9).contiguous(), all_eval.labels.slice(0, 0, 9000, 9).contiguous(),
                    all_eval.name};
  TempDir d;
  {
    at::Tensor x = eval.images.contiguous();
    write_file_atomic(d / "images.f32", x.data_ptr(), x.numel() * sizeof(float));
  }
  for (const char* bits : {"w8a8", "w4a4", "w2a2", "w8a8-wsym"}) {
    SCOPED_TRACE(bits);
    CnnPtqOptions o;
    o.method = "rtn";
    o.bits = bits;
    QuantizedCnn q0 = quantize_cnn(g, calib, o);
    const std::string qpath = d / (std::string(bits) + ".catq"), opath = d / (std::string(bits) + ".onnx");
    write_catq(qpath, *q0.ex, *q0.sq, nullptr, q0.metadata);
    QuantizedCnn q = read_catq(qpath);  // export what the file holds, as `catq export` does
    const Graph qdq = qdq_graph(*q.ex, *q.sq);
    // Symmetric weights: the Relu after the stem and after each block's first conv folds into the output quantizer (Conv → Q, the form
    // ORT fuses into QLinearConv); asymmetric ones keep every Relu (ORT's QLinearConv refuses their zero-points).
    int conv_q = 0, relus = 0;
    for (const Node& n : qdq.nodes) {
      relus += n.op_type == "Relu";
      if (n.op_type != "QuantizeLinear") continue;
      for (const Node& p : qdq.nodes)
        if (p.op_type == "Conv" && p.outputs[0] == n.inputs[0]) ++conv_q;
    }
    EXPECT_EQ(conv_q, std::string(bits) == "w8a8-wsym" ? 10 : 0);  // the stem and the 9 blocks' first convs
    EXPECT_EQ(relus, std::string(bits) == "w8a8-wsym" ? 9 : 19);
    write_onnx(qdq, opath, 13);
    at::Tensor sim;
    {
      at::NoGradGuard ng;
      sim = q.base_logits(eval.images);
    }
    int code = -1;
    const std::string out = run_capture("CATQ_PEERS='" + peers_dir() + "' node '" + CATQ_SOURCE_DIR +
                                        "/tests/peers/ort_check.mjs' '" + opath + "' '" + (d / "images.f32") + "' " +
                                        fmt::format("{} 3 32 32 '{}'", eval.size(), d / "logits.f32") + " 2>&1", &code);
    ASSERT_EQ(code, 0) << out;
    std::vector<uint8_t> bytes = read_file_bytes(d / "logits.f32");
    ASSERT_EQ(bytes.size(), static_cast<size_t>(sim.numel()) * 4) << out;
    at::Tensor ort = at::from_blob(bytes.data(), sim.sizes(), at::kFloat).clone();
    const double agree = sim.argmax(1).eq(ort.argmax(1)).to(at::kDouble).mean().item<double>();
    const double max_diff = (sim - ort).abs().max().item<double>();
    const double top1_sim = sim.argmax(1).eq(eval.labels).to(at::kDouble).mean().item<double>();
    const double top1_ort = ort.argmax(1).eq(eval.labels).to(at::kDouble).mean().item<double>();
    std::printf("[ peer ] ONNX Runtime %s QDQ: top-1 %.2f %% (catq simulation %.2f %%), decisions identical on %.2f %% "
                "of %lld images, max |logit diff| %.3g\n", bits, 100 * top1_ort, 100 * top1_sim, 100 * agree,
                static_cast<long long>(eval.size()), max_diff);
    EXPECT_GE(agree, 0.995);
  }
}

// For every architecture catq reads (a random model in HF layout -> catq -> GGUF with that architecture's metadata),
// llama.cpp's logits on the same tokens equal catq's up to float summation order.
TEST(PeerLlamaCpp, EveryArchitectureLogitsMatch) {
  if (!have_llama_cpp())
    GTEST_SKIP() << "needs node and node-llama-cpp + @node-llama-cpp/linux-x64 in " << peers_dir()
                 << "/node_modules (scripts/setup.sh installs them)";
  const Tokenizer tok = tiny_tokenizer();
  const at::Tensor t = sample_tokens(tok.vocab_size(), 1, 24, 13);
  std::vector<int64_t> ids(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  ids[0] = tok.bos_id();
  const at::Tensor tokens = at::tensor(ids, at::kLong).unsqueeze(0);
  for (const ArchCase& a : arch_cases(tok.vocab_size())) {
    SCOPED_TRACE(a.name);
    TempDir d;
    write_hf_llama(LlamaModel::random(a.cfg, 17), d / "hf");
    LoadedLlama m = load_llama(d / "hf");  // what a user's HF checkpoint becomes
    write_gguf_llama(m.model, &tok, d / "m.gguf");
    const at::Tensor theirs = llama_cpp_logits(d / "m.gguf", ids, tok.vocab_size(), d);
    ASSERT_TRUE(theirs.defined() && theirs.size(0) == static_cast<int64_t>(ids.size()));
    at::Tensor ours;
    {
      at::NoGradGuard ng;
      ours = m.model.forward(tokens).squeeze(0);
    }
    // Per position: ‖Δ‖/‖ours‖ (the model's logits are O(1..10), so this is the relative error that matters).
    at::Tensor per = (theirs - ours).norm(2, 1) / ours.norm(2, 1);
    // llama.cpp's llama graph has no sliding window (the GGUF's context length is the window): exact up to it.
    if (a.cfg.sliding_window > 0) per = per.narrow(0, 0, a.cfg.sliding_window);
    const double worst = per.max().item<double>();
    std::printf("[ peer ] llama.cpp %-30s (%s): worst per-position relative logit error %.2e\n", a.name.c_str(),
                llama_arch_traits(a.cfg.arch).gguf, worst);
    EXPECT_LE(worst, 1e-3);
  }
}

// The offline rotation (`quantize --gguf --transform quarot / rotation`): the rotated FP model, written as F32 GGUF,
// gives llama.cpp's unchanged graph the original model's logits (every architecture; QuaRot's Hadamards where the
// dimensions allow them). Without llama.cpp, catq's own forward is checked the same way.
TEST(PeerLlamaCpp, OfflineRotationIsExactInLlamaCppsGraph) {
  const Tokenizer tok = tiny_tokenizer();
  const at::Tensor t = sample_tokens(tok.vocab_size(), 1, 24, 7);
  std::vector<int64_t> ids(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  ids[0] = tok.bos_id();
  const at::Tensor tokens = at::tensor(ids, at::kLong).unsqueeze(0);
  const bool peer = have_llama_cpp();
  if (!peer) std::printf("[ peer ] node-llama-cpp not installed: only catq's forward of the rotated model is checked\n");
  for (const ArchCase& a : arch_cases(tok.vocab_size())) {
    for (RotationKind kind : {RotationKind::Hadamard, RotationKind::RandomOrthogonal}) {
      SCOPED_TRACE(a.name + (kind == RotationKind::Hadamard ? " quarot" : " rotation"));
      TempDir d;
      write_hf_llama(LlamaModel::random(a.cfg, 23), d / "hf");
      LoadedLlama m = load_llama(d / "hf");
      at::Tensor ref;
      {
        at::NoGradGuard ng;
        ref = m.model.forward(tokens).squeeze(0);
      }
      try {
        apply_quarot_offline(m.model, kind, 5);
      } catch (const Error& e) {  // QuaRot's Hadamard needs dimensions it can factor; the random rotation any
        ASSERT_EQ(kind, RotationKind::Hadamard) << e.what();
        continue;
      }
      at::Tensor ours;
      {
        at::NoGradGuard ng;
        ours = m.model.forward(tokens).squeeze(0);
      }
      at::Tensor per = (ours - ref).norm(2, 1) / ref.norm(2, 1);
      if (a.cfg.sliding_window > 0) per = per.narrow(0, 0, a.cfg.sliding_window);
      EXPECT_LE(per.max().item<double>(), 1e-5) << "catq's forward of the rotated model";
      if (!peer) continue;
      write_gguf_llama(m.model, &tok, d / "m.gguf");
      const at::Tensor theirs = llama_cpp_logits(d / "m.gguf", ids, tok.vocab_size(), d);
      ASSERT_TRUE(theirs.defined() && theirs.size(0) == static_cast<int64_t>(ids.size()));
      at::Tensor pl = (theirs - ref).norm(2, 1) / ref.norm(2, 1);
      if (a.cfg.sliding_window > 0) pl = pl.narrow(0, 0, a.cfg.sliding_window);
      std::printf("[ peer ] llama.cpp %-30s %-8s rotated offline: worst relative logit error vs the unrotated model %.2e\n",
                  a.name.c_str(), kind == RotationKind::Hadamard ? "quarot" : "rotation", pl.max().item<double>());
      EXPECT_LE(pl.max().item<double>(), 1e-4);
    }
  }
}

// catq's lean runtime on a Q4_0 / Q8_0 GGUF computes what llama.cpp computes on the same file: both quantize the
// activations to Q8_0 and sum each block in integers, so their logits agree far more closely than either agrees
// with the file's dequantized weights in fp32. On Q4_K (llama.cpp: Q8_K activations) catq is the closer of the two.
TEST(PeerLlamaCpp, LeanRuntimeMatchesLlamaCppOnTheSameGguf) {
  if (!have_llama_cpp())
    GTEST_SKIP() << "needs node and node-llama-cpp + @node-llama-cpp/linux-x64 in " << peers_dir()
                 << "/node_modules (scripts/setup.sh installs them)";
  const Tokenizer tok = tiny_tokenizer();
  LlamaConfig c = tiny_config(tok.vocab_size(), /*tied=*/false);
  c.dim = 256, c.hidden_dim = 512, c.n_heads = 8, c.n_kv_heads = 2;
  const LlamaModel model = LlamaModel::random(c, 31);
  const at::Tensor t = sample_tokens(tok.vocab_size(), 1, 24, 17);
  std::vector<int64_t> ids(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
  ids[0] = tok.bos_id();
  const std::vector<int32_t> ids32(ids.begin(), ids.end());
  for (GgufWeightType type : {GgufWeightType::Q4_0, GgufWeightType::Q8_0, GgufWeightType::Q4_K}) {
    SCOPED_TRACE(to_string(type));
    TempDir d;
    GgufWriteOptions o;
    o.weights = type;
    write_gguf_llama(model, &tok, d / "m.gguf", o);
    const at::Tensor theirs = llama_cpp_logits(d / "m.gguf", ids, tok.vocab_size(), d);
    ASSERT_TRUE(theirs.defined() && theirs.size(0) == static_cast<int64_t>(ids.size()));
    LeanLlamaOptions lo;
    lo.threads = 2;
    LeanLlama lean(d / "m.gguf", lo);
    std::vector<float> logits;
    lean.eval(ids32.data(), static_cast<int64_t>(ids32.size()), &logits, /*all_logits=*/true);
    const at::Tensor ours = at::from_blob(logits.data(), theirs.sizes(), at::kFloat).clone();
    at::Tensor fp;
    {
      at::NoGradGuard ng;
      fp = load_llama(d / "m.gguf").model.forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0);
    }
    const double vs_llama = rel_error(ours, theirs), fp_vs_llama = rel_error(fp, theirs), ours_vs_fp = rel_error(ours, fp);
    std::printf("[ peer ] llama.cpp vs catq lean runtime on %s: relative logit error %.2e (the dequantized fp32 model: "
                "%.2e; catq lean vs that model %.2e)\n", to_string(type), vs_llama, fp_vs_llama, ours_vs_fp);
    if (type == GgufWeightType::Q4_K) {
      // llama.cpp quantizes K-quant activations to Q8_K (one scale per 256 values), catq to Q8_0 (per 32): not the
      // same arithmetic, and catq's is the closer one to the file's exact function.
      EXPECT_LT(ours_vs_fp, fp_vs_llama);
      continue;
    }
    EXPECT_LT(vs_llama, 1e-3);
    EXPECT_LT(vs_llama, 0.2 * fp_vs_llama);
  }
}

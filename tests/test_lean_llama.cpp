// The lean LLM runtime (runtime/lean_llama.h) and its GGUF-block kernels (runtime/block_matvec.h): every kernel
// against the dequantized reference, the Q8 activations against ggml's reference Q8_0 encoder, whole-model logits
// against LlamaModel's libtorch forward for every architecture, decode == prefill, results identical across
// thread counts, and clear errors for bad input.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "core/process.h"
#include "core/thread_pool.h"
#include "eval/perplexity.h"
#include "io/catq_file.h"
#include "io/gguf.h"
#include "quant/ggml_blocks.h"
#include "io/llm_loader.h"
#include "runtime/block_matvec.h"
#include "runtime/lean_llama.h"
#include "runtime/vec_ops.h"
#include "methods/llm/pipeline.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

namespace {

std::vector<float> randn(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// The activations ActQ8 represents, back in natural order.
std::vector<double> dequantized_acts(const ActQ8& a) {
  const int64_t nb = a.blocks();
  std::vector<double> x(static_cast<size_t>(a.tokens * a.cols));
  for (int64_t t = 0; t < a.tokens; ++t)
    for (int64_t b = 0; b < nb; ++b)
      for (int j = 0; j < 32; ++j)
        x[static_cast<size_t>(t * a.cols + 32 * b + j)] =
            static_cast<double>(a.q[static_cast<size_t>(t * a.cols + 32 * b + j)]) * a.d[static_cast<size_t>(t * nb + b)];
  return x;
}

}  // namespace

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      std::vector<int> hits(static_cast<size_t>(n), 0);
      for (int rep = 0; rep < 50; ++rep)
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)] += 1;
        });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)], 50) << threads << " threads, n " << n;
    }
  }
}

// ActQ8 is llama.cpp's Q8_0 activation quantization: the same codes and fp16 scales as ggml's reference encoder.
TEST(BlockMatmul, ActivationsAreGgmlQ8_0) {
  const int64_t cols = 32 * 7;
  std::vector<float> x = randn(2 * cols, 3);
  x[5] = 0.0f;
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero block
  ActQ8 a;
  quantize_act_q8(x.data(), 2, cols, a);
  const std::string ref = quantize_q8_0(at::from_blob(x.data(), {2, cols}, at::kFloat).clone());
  for (int64_t t = 0; t < 2; ++t)
    for (int64_t b = 0; b < cols / 32; ++b) {
      const BlockQ8_0 blk = load_block<BlockQ8_0>(reinterpret_cast<const uint8_t*>(ref.data()) + (t * 7 + b) * sizeof(BlockQ8_0));
      EXPECT_EQ(a.d[static_cast<size_t>(t * 7 + b)], half_value(blk.d));
      int32_t sum = 0;
      for (int j = 0; j < 32; ++j) {
        EXPECT_EQ(a.q[static_cast<size_t>(t * cols + 32 * b + j)], blk.qs[j]) << "token " << t << " block " << b;
        sum += blk.qs[j];
      }
      EXPECT_FLOAT_EQ(a.dsum[static_cast<size_t>(t * 7 + b)], half_value(blk.d) * static_cast<float>(sum));
    }
}

// The SIMD activation quantization gives the scalar path's codes and scales exactly (same IEEE operations).
TEST(BlockMatmul, SimdActivationQuantizationIsExact) {
  const int64_t cols = 32 * 9, T = 5;
  std::vector<float> x = randn(T * cols, 8, 3.0f);
  x[7] = 0.5f * 3.0f / 127.0f;  // near a rounding tie
  ActQ8 a, b;
  quantize_act_q8(x.data(), T, cols, a, KernelIsa::Scalar);
  ThreadPool pool(2);
  quantize_act_q8(x.data(), T, cols, b, best_isa(), &pool);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.d, b.d);
  EXPECT_EQ(a.dsum, b.dsum);
  EXPECT_EQ(a.dsum16, b.dsum16);
}

// The elementwise / attention passes' SIMD paths against their scalar references.
TEST(VecOps, SimdMatchesScalar) {
  for (int64_t n : {1, 15, 64, 100, 1000}) {
    SCOPED_TRACE(n);
    std::vector<float> a = randn(n, 1, 4.0f), b = randn(n, 2), g = randn(n, 3);
    const KernelIsa simd = best_isa();
    EXPECT_NEAR(vec_dot(a.data(), b.data(), n, simd), vec_dot(a.data(), b.data(), n, KernelIsa::Scalar), 1e-4 * n);
    std::vector<float> y1 = b, y2 = b;
    vec_axpy(y1.data(), 0.3f, a.data(), n, KernelIsa::Scalar);
    vec_axpy(y2.data(), 0.3f, a.data(), n, simd);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y1[i], y2[i], 1e-6f * (1 + std::fabs(y1[i])));
    vec_rms_norm(a.data(), g.data(), n, 1e-5, y1.data(), KernelIsa::Scalar);
    vec_rms_norm(a.data(), g.data(), n, 1e-5, y2.data(), simd);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y1[i], y2[i], 1e-5f * (1 + std::fabs(y1[i])));
    std::vector<float> s1 = a, s2 = a;
    s1[0] = s2[0] = -100.0f;  // saturating exponentials
    if (n > 1) s1[1] = s2[1] = 90.0f;
    vec_silu_mul(s1.data(), b.data(), n, KernelIsa::Scalar);
    vec_silu_mul(s2.data(), b.data(), n, simd);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(s1[i], s2[i], 1e-6f * (1 + std::fabs(s1[i]))) << i;
    s1 = a, s2 = a;
    vec_softmax(s1.data(), n, KernelIsa::Scalar);
    vec_softmax(s2.data(), n, simd);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(s1[i], s2[i], 1e-6f * (1 + s1[i]));
  }
}

// Every kernel (scalar and the CPU's SIMD path) equals the dequantized weights times the dequantized activations, up
// to float summation order — for the native types and the fp32 conversion of the others, on shapes that exercise the
// 16-block main loop, the pair tail and an unpaired last block, for 1..6 tokens.
TEST(BlockMatmul, KernelsMatchDequantizedReference) {
  const std::vector<std::pair<uint32_t, const char*>> types = {
      {GGML_Q4_0, "q4_0"}, {GGML_Q4_1, "q4_1"}, {GGML_Q8_0, "q8_0"}, {GGML_Q4_K, "q4_k"}, {GGML_F16, "f16"}, {GGML_Q6_K, "q6_k"}, {GGML_Q5_K, "q5_k"}, {GGML_F32, "f32"}};
  for (const auto& [type, name] : types) {
    for (int64_t cols : {int64_t{512}, int64_t{32 * 37}, int64_t{256 * 3}}) {
      if (ggml_type_traits(type)->block > 32 && cols % ggml_type_traits(type)->block != 0) continue;
      const int64_t rows = 19;
      SCOPED_TRACE(std::string(name) + " cols " + std::to_string(cols));
      at::Tensor w = at::from_blob(randn(rows * cols, 7, 0.05f).data(), {rows, cols}, at::kFloat).clone();
      std::string bytes;
      if (type == GGML_F32) bytes.assign(reinterpret_cast<const char*>(w.data_ptr<float>()), static_cast<size_t>(rows * cols * 4));
      else if (type == GGML_F16) {
        at::Tensor h = w.to(at::kHalf).contiguous();
        bytes.assign(reinterpret_cast<const char*>(h.data_ptr()), static_cast<size_t>(rows * cols * 2));
      } else bytes = quantize_gguf_blocks(w, type);
      const at::Tensor wd = type == GGML_F32 ? w : type == GGML_F16 ? w.to(at::kHalf).to(at::kFloat)
                                                 : dequantize_gguf_blocks(bytes, type, rows, cols);
      const auto wa = wd.accessor<float, 2>();
      const BlockMatrix m = block_matrix(type, rows, cols, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
      // The types with a kernel run on their own codes; the others in fp32.
      EXPECT_EQ(m.quantized(), type == GGML_Q4_0 || type == GGML_Q4_1 || type == GGML_Q8_0 || type == GGML_Q4_K || type == GGML_Q6_K);
      for (int64_t T : {1, 6, 15}) {
        std::vector<float> x = randn(T * cols, 11 + static_cast<uint64_t>(T));
        ActQ8 xq;
        quantize_act_q8(x.data(), T, cols, xq);
        const std::vector<double> xd = dequantized_acts(xq);
        for (KernelIsa isa : {KernelIsa::Scalar, best_isa()}) {
          std::vector<float> y(static_cast<size_t>(T * rows), -1.0f);
          block_matmul(m, x.data(), xq, T, y.data(), rows, 0, m.row_groups(), isa);
          for (int64_t t = 0; t < T; ++t)
            for (int64_t r = 0; r < rows; ++r) {
              double ref = 0, mag = 0;
              for (int64_t j = 0; j < cols; ++j) {
                const double xv = m.quantized() ? xd[static_cast<size_t>(t * cols + j)] : x[static_cast<size_t>(t * cols + j)];
                ref += wa[r][j] * xv;
                mag += std::fabs(wa[r][j] * xv);
              }
              ASSERT_NEAR(y[static_cast<size_t>(t * rows + r)], ref, 2e-6 * mag + 1e-6)
                  << to_string(block_matmul_isa(isa)) << " token " << t << " row " << r;
            }
        }
      }
    }
  }
}

namespace {

at::Tensor lean_logits(const std::string& path, const std::vector<int32_t>& ids, int threads, bool one_by_one) {
  LeanLlamaOptions o;
  o.threads = threads;
  o.max_context = static_cast<int64_t>(ids.size());  // the sliding-window case's GGUF declares a context of 8
  LeanLlama m(path, o);
  const int64_t V = m.config().vocab_size, T = static_cast<int64_t>(ids.size());
  at::Tensor out = at::empty({T, V});
  std::vector<float> logits;
  if (one_by_one) {
    for (int64_t t = 0; t < T; ++t) {
      m.eval(&ids[static_cast<size_t>(t)], 1, &logits);
      std::memcpy(out[t].data_ptr<float>(), logits.data(), static_cast<size_t>(V) * 4);
    }
  } else {
    m.eval(ids.data(), T, &logits, /*all_logits=*/true);
    std::memcpy(out.data_ptr<float>(), logits.data(), static_cast<size_t>(T * V) * 4);
  }
  return out;
}

// LlamaModel's libtorch forward of a GGUF's (dequantized) weights: logits [T, vocab] of tokens [1, T].
at::Tensor file_forward_logits(const std::string& gguf, const at::Tensor& tokens) {
  LoadedLlama ref = load_llama(gguf);
  at::NoGradGuard ng;
  return ref.model.forward(tokens).squeeze(0);
}

std::vector<int32_t> ids_of(const at::Tensor& t) {
  const at::Tensor i = t.to(at::kInt).contiguous();
  return std::vector<int32_t>(i.data_ptr<int32_t>(), i.data_ptr<int32_t>() + i.numel());
}

}  // namespace

// An F32 GGUF on the lean runtime computes the model's function: logits equal LlamaModel's libtorch forward (of the
// same file) for every architecture, in prefill and token by token.
TEST(LeanLlama, EveryArchitectureMatchesTheLibtorchForward) {
  const Tokenizer tok = tiny_tokenizer();
  const at::Tensor tokens = sample_tokens(tok.vocab_size(), 1, 20, 5);
  for (const ArchCase& a : arch_cases(tok.vocab_size())) {
    SCOPED_TRACE(a.name);
    TempDir d;
    write_gguf_llama(LlamaModel::random(a.cfg, 19), &tok, d / "m.gguf");
    const at::Tensor want = file_forward_logits(d / "m.gguf", tokens);
    const at::Tensor prefill = lean_logits(d / "m.gguf", ids_of(tokens), 1, false);
    const at::Tensor decode = lean_logits(d / "m.gguf", ids_of(tokens), 2, true);
    EXPECT_LT(rel_error(prefill, want), 1e-5);
    EXPECT_LT(rel_error(decode, want), 1e-5);
  }
}

// Quantized GGUFs: the lean runtime equals LlamaModel on the file's dequantized weights up to the 8-bit activation
// quantization (as llama.cpp computes them); its logits are bit-identical across thread counts, and decoding token by
// token agrees with the batched prefill up to float order.
TEST(LeanLlama, QuantizedFilesMatchAndAreThreadCountInvariant) {
  const Tokenizer tok = tiny_tokenizer();
  LlamaConfig c = tiny_config(tok.vocab_size(), /*tied=*/false);
  // 8 and 17 blocks per row (ffn_down's 544 columns are no multiple of 256: its Q4_K falls back to Q5_0, run in fp32)
  c.dim = 256, c.hidden_dim = 544, c.n_heads = 8, c.n_kv_heads = 2;
  const LlamaModel model = LlamaModel::random(c, 23);
  const at::Tensor tokens = sample_tokens(tok.vocab_size(), 1, 12, 9);
  for (GgufWeightType t : {GgufWeightType::Q4_0, GgufWeightType::Q4_1, GgufWeightType::Q8_0, GgufWeightType::Q4_K,
                          GgufWeightType::Q6_K}) {
    SCOPED_TRACE(to_string(t));
    TempDir d;
    GgufWriteOptions o;
    o.weights = t;
    write_gguf_llama(model, &tok, d / "m.gguf", o);
    const at::Tensor want = file_forward_logits(d / "m.gguf", tokens);
    const at::Tensor one = lean_logits(d / "m.gguf", ids_of(tokens), 1, false);
    const at::Tensor two = lean_logits(d / "m.gguf", ids_of(tokens), 2, false);
    const at::Tensor three = lean_logits(d / "m.gguf", ids_of(tokens), 3, false);
    EXPECT_TRUE(at::equal(one, two));
    EXPECT_TRUE(at::equal(one, three));
    const double err = rel_error(one, want);
    std::printf("[ lean ] %s: relative logit error vs the dequantized model %.2e\n", to_string(t), err);
    EXPECT_LT(err, 2e-2);
    EXPECT_GT(err, 1e-7);  // the activations really are quantized
    EXPECT_LT(rel_error(lean_logits(d / "m.gguf", ids_of(tokens), 2, true), one), 1e-5);
  }
}

// A quantized .catq on the lean runtime: its integer layers (W8A8, W4A8, W4A4 per token, W4A8 in groups, static
// calibrated activations, W4A4 after QuaRot with its online Hadamard) reproduce the fake-quant simulation, weight-only
// layers run their dequantized weights; bit-identical across thread counts, decode == prefill; KV-cache quantization is
// refused by name.
TEST(LeanLlama, QuantizedCatqFilesReproduceTheSimulation) {
  const Tokenizer tok = tiny_tokenizer();
  LlamaConfig c = tiny_config(tok.vocab_size(), /*tied=*/false);
  c.dim = 128, c.hidden_dim = 256, c.n_heads = 4, c.n_kv_heads = 2;
  LlamaModel base = LlamaModel::random(c, 31);
  for (auto& [name, t] : base.named_parameters())
    if (t.dim() == 2) t.mul_(4);  // activations that change from layer to layer
  const at::Tensor tokens = sample_tokens(tok.vocab_size(), 1, 16, 3);
  const at::Tensor calib = sample_tokens(tok.vocab_size(), 4, 16, 4);
  struct Case {
    const char* label;
    std::string input, weight, transform;
    const char* kernel;
  };
  const std::vector<Case> cases = {
      {"W8A8", R"({"bits": 8, "granularity": "token"})", R"({"bits": 8})", "none", "W8A8 int"},
      {"W4A8", R"({"bits": 8, "granularity": "token"})", R"({"bits": 4, "observer": "mse"})", "none", "W4A8 int"},
      {"W4A4", R"({"bits": 4, "granularity": "token"})", R"({"bits": 4})", "none", "W4A4 int"},
      {"W4A8 g64 asym", R"({"bits": 8, "granularity": "token"})", R"({"bits": 4, "group_size": 64, "symmetric": false})",
       "none", "W4A8 int"},
      {"W8A8 static", R"({"bits": 8, "symmetric": false, "signed": false})", R"({"bits": 8})", "none", "W8A8 int"},
      {"W4A4 quarot", R"({"bits": 4, "granularity": "token"})", R"({"bits": 4})", "quarot", "W4A4 int"},
      {"W4A16 g32", "null", R"({"bits": 4, "group_size": 32})", "none", "W4A16 packed"},
      {"W8A16", "null", R"({"bits": 8})", "none", "W8A16 packed"},
      {"W2A16 g64 asym", "null", R"({"bits": 2, "group_size": 64, "symmetric": false})", "none", "W2A16 packed"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.label);
    LlamaModel m = base;
    SimQuant sq(QuantConfig::from_json(R"({"defaults": {"weight": )" + k.weight + R"(, "input": )" + k.input +
                                           R"(}, "overrides": [{"pattern": "output", "weight": null, "input": null}]})",
                                       "test"));
    LlmPtqOptions po;
    po.transform = parse_llm_transform(k.transform);
    quantize_llama(m, sq, calib, po);
    at::NoGradGuard ng;
    const at::Tensor want = m.forward(tokens, &sq).squeeze(0);
    TempDir d;
    write_catq_llm(d / "m.catq", m, sq, &tok, nlohmann::json::object());
    LeanLlamaOptions lo;
    LeanLlama lean(d / "m.catq", lo);
    EXPECT_NE(lean.describe().find(k.kernel), std::string::npos) << lean.describe();
    const at::Tensor one = lean_logits(d / "m.catq", ids_of(tokens), 1, false);
    const at::Tensor two = lean_logits(d / "m.catq", ids_of(tokens), 2, false);
    EXPECT_TRUE(at::equal(one, two));
    const double err = rel_error(one, want);
    std::printf("[ lean ] .catq %s: relative logit error vs the simulation %.2e (%s)\n", k.label, err,
                lean.describe().c_str());
    EXPECT_LT(err, 2e-3);
    EXPECT_GE(one.argmax(-1).eq(want.argmax(-1)).to(at::kFloat).mean().item<double>(), 0.9);
    EXPECT_LT(rel_error(lean_logits(d / "m.catq", ids_of(tokens), 2, true), one), 1e-4);
  }
  // The KV cache quantized: refused by name.
  LlamaModel m = base;
  SimQuant sq(QuantConfig::from_string("w4a8-tok-kv8"));
  m.forward(tokens, &sq);
  TempDir d;
  write_catq_llm(d / "kv.catq", m, sq, &tok, nlohmann::json::object());
  try {
    LeanLlama lean(d / "kv.catq");
    ADD_FAILURE() << "a KV-cache-quantized .catq was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("KV cache"), std::string::npos) << e.what();
  }
}

TEST(LeanLlama, BadInputGetsClearErrors) {
  TempDir d;
  std::ofstream(d / "x.gguf") << "NOT A GGUF FILE AT ALL";
  expect_error([&] { LeanLlama m(d / "x.gguf"); }, ErrorKind::Format, "x.gguf");
  const Tokenizer tok = tiny_tokenizer();
  write_gguf_llama(LlamaModel::random(tiny_config(tok.vocab_size()), 1), &tok, d / "m.gguf");
  LeanLlamaOptions o;
  o.max_context = 4;
  LeanLlama m(d / "m.gguf", o);
  std::vector<int32_t> ids = {1, 2, 3};
  expect_error([&] { m.eval(ids.data(), 5, nullptr); }, ErrorKind::Usage, "context");
  ids[1] = static_cast<int32_t>(tok.vocab_size());
  expect_error([&] { m.eval(ids.data(), 3, nullptr); }, ErrorKind::Usage, "vocabulary");
}

// The real model: stories260K exported to Q8_0 and Q4_0 GGUF runs on the lean runtime at the perplexity of the file's
// fp32 forward (Q8 activations cost at most a fraction of a percent), on held-out TinyStories text.
TEST(LeanLlama, Stories260KPerplexityMatchesTheFileForward) {
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!have_stories() || !file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets (stories260K and text; absent)";
  LoadedLlama src = load_llama(stories_bin(), stories_tok());
  PerplexityOptions po;
  po.max_chars = 6000;
  const EvalWindows w = make_eval_windows(*src.tokenizer, read_file_text(text_path), po);
  ASSERT_GT(w.n_windows(), 0);
  for (GgufWeightType t : {GgufWeightType::Q8_0, GgufWeightType::Q4_0}) {
    SCOPED_TRACE(to_string(t));
    TempDir d;
    GgufWriteOptions o;
    o.weights = t;
    write_gguf_llama(src.model, &*src.tokenizer, d / "s.gguf", o);
    LoadedLlama g = load_llama(d / "s.gguf");
    LeanLlamaOptions lo;
    lo.max_context = w.inputs.size(1);
    LeanLlama lean(d / "s.gguf", lo);
    const LogitsFn lean_fn = [&](const at::Tensor& batch) {
      const at::Tensor ids = batch.to(at::kInt).contiguous();
      at::Tensor out = at::empty({ids.size(0), ids.size(1), lean.config().vocab_size});
      std::vector<float> logits;
      for (int64_t b = 0; b < ids.size(0); ++b) {
        lean.reset();
        lean.eval(ids[b].data_ptr<int32_t>(), ids.size(1), &logits, true);
        std::memcpy(out[b].data_ptr<float>(), logits.data(), logits.size() * sizeof(float));
      }
      return out;
    };
    const DistributionComparison c = compare_next_token(model_logits_fn(g.model, nullptr), lean_fn, w);
    std::printf("[ lean ] stories260K %s: PPL %.4f on the lean runtime vs %.4f (fp32 forward of the file), top-1 "
                "agreement %.2f %%\n", to_string(t), c.test.ppl, c.ref.ppl, 100 * c.top1_agreement);
    EXPECT_LT(std::fabs(c.test.ppl / c.ref.ppl - 1.0), 0.005);
    EXPECT_GT(c.top1_agreement, 0.95);
  }
}

namespace {
struct CliOut {
  int code = -1;
  std::string out;
};
CliOut catq_cli(const std::string& args) {
  int code = -1;
  const std::string out = run_capture(std::string(CATQ_CLI_PATH) + " -q " + args + " 2>&1", &code);
  return {code >= 0 && WIFEXITED(code) ? WEXITSTATUS(code) : -1, out};
}
}  // namespace

// `catq bench` (llama-bench style) and `catq eval --runtime lean` from the command line: JSON fields, and bad input
// answered with the usual exit codes and messages naming the file.
TEST(CliBench, GgufJsonEvalAndBadInput) {
  const Tokenizer tok = tiny_tokenizer();
  TempDir d;
  GgufWriteOptions o;
  o.weights = GgufWeightType::Q8_0;
  write_gguf_llama(LlamaModel::random(tiny_config(tok.vocab_size()), 5), &tok, d / "m.gguf", o);
  CliOut r = catq_cli("--json bench " + d / "m.gguf" + " -p 8 -n 4 -t 1,2 -r 2");
  ASSERT_EQ(r.code, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j.at("runtime"), "lean");
  ASSERT_EQ(j.at("results").size(), 4u);
  for (const auto& row : j.at("results")) {
    EXPECT_GT(row.at("tokens_per_s").get<double>(), 0.0);
    EXPECT_EQ(row.at("samples").size(), 2u);
  }
  EXPECT_EQ(j["results"][0]["test"], "pp8");
  EXPECT_EQ(j["results"][1]["test"], "tg4");
  EXPECT_EQ(j["results"][2]["threads"], 2);

  std::ofstream(d / "text.txt") << "Once upon a time there was a little cat. It liked to play in the sun all day long.";
  r = catq_cli("eval " + d / "m.gguf" + " --text " + d / "text.txt" + " --window 16 --runtime lean");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("lean runtime"), std::string::npos) << r.out;

  r = catq_cli("--json generate " + d / "m.gguf" + " --runtime lean --steps 5 --temperature 0");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"runtime\": \"lean\""), std::string::npos) << r.out;

  r = catq_cli("bench " + d / "missing.gguf");
  EXPECT_EQ(r.code, static_cast<int>(ErrorKind::Io)) << r.out;
  EXPECT_NE(r.out.find("missing.gguf"), std::string::npos) << r.out;
  {
    const std::vector<uint8_t> bytes = read_file_bytes(d / "m.gguf");
    std::ofstream(d / "cut.gguf", std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                          static_cast<std::streamsize>(bytes.size() / 2));
  }
  r = catq_cli("bench " + d / "cut.gguf");
  EXPECT_EQ(r.code, static_cast<int>(ErrorKind::Format)) << r.out;
  EXPECT_NE(r.out.find("cut.gguf"), std::string::npos) << r.out;
  r = catq_cli("bench " + d / "m.gguf" + " -p 0 -n 0");
  EXPECT_EQ(r.code, static_cast<int>(ErrorKind::Usage)) << r.out;
  r = catq_cli("bench " + d / "text.txt");
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("text.txt"), std::string::npos) << r.out;
}

// A quantized .catq through the commands: bench picks the lean runtime (int when asked, or when auto meets a
// KV-cache-quantized file), eval --runtime lean reports the lean perplexity next to the simulation's, generate runs.
TEST(CliBench, QuantizedCatqOnTheLeanAndIntegerRuntimes) {
  const Tokenizer tok = tiny_tokenizer();
  TempDir d;
  LlamaModel m = LlamaModel::random(tiny_config(tok.vocab_size()), 7);
  const at::Tensor calib = sample_tokens(tok.vocab_size(), 2, 16, 4);
  SimQuant sq(QuantConfig::from_string("w4a8-tok"));
  {
    at::NoGradGuard ng;
    m.forward(calib, &sq);  // weight and activation ranges
  }
  write_catq_llm(d / "m.catq", m, sq, &tok, nlohmann::json::object());
  CliOut r = catq_cli("--json bench " + d / "m.catq" + " -p 8 -n 4 -r 1");
  ASSERT_EQ(r.code, 0) << r.out;
  nlohmann::json j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j.at("runtime"), "lean") << r.out;
  EXPECT_NE(j.at("weights").get<std::string>().find("W4A8 int"), std::string::npos) << r.out;
  r = catq_cli("--json bench " + d / "m.catq" + " -p 8 -n 4 -r 1 --runtime int");
  ASSERT_EQ(r.code, 0) << r.out;
  j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j.at("runtime"), "int") << r.out;

  LlamaModel kvm = LlamaModel::random(tiny_config(tok.vocab_size()), 7);
  SimQuant kv(QuantConfig::from_string("w4a8-tok-kv8"));
  {
    at::NoGradGuard ng;
    kvm.forward(calib, &kv);
  }
  write_catq_llm(d / "kv.catq", kvm, kv, &tok, nlohmann::json::object());
  r = catq_cli("--json bench " + d / "kv.catq" + " -p 8 -n 4 -r 1");
  ASSERT_EQ(r.code, 0) << r.out;
  j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j.at("runtime"), "int") << r.out;
  EXPECT_NE(j.at("note").get<std::string>().find("KV cache"), std::string::npos) << r.out;
  r = catq_cli("bench " + d / "kv.catq" + " -p 8 -n 4 -r 1 --runtime lean");
  EXPECT_EQ(r.code, static_cast<int>(ErrorKind::Unsupported)) << r.out;
  r = catq_cli("bench " + d / "m.catq" + " --runtime fast");
  EXPECT_EQ(r.code, static_cast<int>(ErrorKind::Usage)) << r.out;

  std::ofstream(d / "text.txt") << "Once upon a time there was a little cat. It liked to play in the sun all day long.";
  r = catq_cli("--json eval " + d / "m.catq" + " --text " + d / "text.txt" + " --window 16 --runtime lean");
  ASSERT_EQ(r.code, 0) << r.out;
  j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  const double lean_ppl = j.at("lean_runtime").at("ppl").get<double>();
  const double sim_ppl = j.at("simulation").at("ppl").get<double>();
  EXPECT_NEAR(lean_ppl / sim_ppl, 1.0, 1e-3) << r.out;

  r = catq_cli("--json generate " + d / "m.catq" + " --runtime lean --steps 5 --temperature 0");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"runtime\": \"lean\""), std::string::npos) << r.out;
}

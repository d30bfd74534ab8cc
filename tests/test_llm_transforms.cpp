// LLM transforms (src/methods/llm_transforms.h) and the SQNR analyzer (src/methods/sqnr.h) on a small random
// Llama model: every transform preserves the model's function in FP; rotations change concentration but never
// alignment; block CAT raises alignment; the SQNR decomposition predicts RTN's measured SQNR.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "core/file_util.h"
#include "io/catq_file.h"
#include "methods/llm/gptq.h"
#include "methods/llm/pipeline.h"
#include "methods/llm/transforms.h"
#include "methods/llm/sqnr_analyzer.h"

using namespace catq;

namespace {

LlamaConfig small_config() {
  LlamaConfig c;
  c.dim = 32;
  c.hidden_dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 50;
  c.seq_len = 64;
  return c;
}

// A random model whose residual stream has a few outlier channels (as real LLMs do), so the transforms have
// something to fix.
LlamaModel outlier_model(uint64_t seed = 1) {
  LlamaModel m = LlamaModel::random(small_config(), seed);
  at::NoGradGuard ng;
  m.tok_embeddings.select(1, 3).mul_(20);
  m.tok_embeddings.select(1, 17).mul_(8);
  for (auto& b : m.blocks) b.attn_norm.select(0, 5).mul_(6);
  return m;
}

at::Tensor tokens(int64_t n, int64_t t, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 50, {n, t}, at::TensorOptions().dtype(at::kLong));
}

double rel_diff(const at::Tensor& a, const at::Tensor& b) { return ((a - b).norm() / b.norm()).item<double>(); }

}  // namespace

class LlmTransform : public ::testing::TestWithParam<std::string> {};

TEST_P(LlmTransform, PreservesTheFunctionInFp) {
  LlamaModel m = outlier_model();
  at::Tensor calib = tokens(6, 16, 2), probe = tokens(3, 24, 3);
  at::Tensor before = m.forward(probe);
  auto stats = collect_llama_stats(m, calib);
  apply_llm_transform(m, stats, parse_llm_transform(GetParam()));
  EXPECT_LT(rel_diff(m.forward(probe), before), 1e-4) << GetParam();
  // The incremental (KV cache) path sees the same transforms.
  KVCache cache = m.make_cache(3, 32);
  at::Tensor inc = at::cat({m.forward(probe.slice(1, 0, 10), cache), m.forward(probe.slice(1, 10, 24), cache)}, 1);
  EXPECT_LT(rel_diff(inc, before), 1e-4) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Methods, LlmTransform,
                         ::testing::Values("smoothquant", "smoothquant:alpha=0.8", "rms", "quarot", "rotation",
                                           "blockcat:k=1", "blockcat:k=4", "blockcat:k=8:nohad", "blockcat:k=16"));

TEST(Hadamard, FastTransformMatchesTheMatrixAndMatricesAreOrthogonal) {
  at::Tensor x = torch::randn({5, 16}, at::kDouble);
  at::Tensor y = x.clone();
  fwht_(y);
  EXPECT_TRUE(at::allclose(y / 4.0, at::matmul(x, hadamard_matrix(16).t())));
  for (int64_t n : {1, 8, 12, 64, 172}) {
    at::Tensor h = hadamard_matrix(n, true, 3);
    EXPECT_TRUE(at::allclose(at::matmul(h, h.t()), at::eye(n, at::kDouble), 1e-9, 1e-9)) << n;
  }
  // Power-of-two orders are true Hadamard matrices: every entry ±1/√n.
  at::Tensor h = hadamard_matrix(32);
  EXPECT_TRUE(at::allclose(h.abs(), at::full_like(h, 1.0 / std::sqrt(32.0))));
}

TEST(Sqnr, RotationChangesConcentrationNotAlignment) {
  torch::manual_seed(4);
  at::Tensor x = torch::randn({512, 64});
  x.select(1, 7).mul_(30);  // an outlier channel: poor activation concentration
  at::Tensor w = torch::randn({48, 64}) * 0.1;
  auto act = sqnr_act_spec(4), wt = sqnr_weight_spec(4);
  SqnrStats before = linear_sqnr(x, w, act, wt);
  at::Tensor q = hadamard_matrix(64, true, 1).to(at::kFloat);
  SqnrStats after = linear_sqnr(at::matmul(x, q), at::matmul(w, q), act, wt);  // x' = x·Q, W' = W·Q: same y
  EXPECT_NEAR(after.alignment, before.alignment, 1e-6 * before.alignment);
  EXPECT_NEAR(after.best_alignment, before.best_alignment, 1e-4 * before.best_alignment);
  EXPECT_GT(after.act_concentration, 3 * before.act_concentration);  // the outlier is spread out
  EXPECT_GT(after.measured_db, before.measured_db + 3);
  // Random orthogonal rotations likewise never change alignment.
  at::Tensor r = random_orthogonal(64, 9).to(at::kFloat);
  EXPECT_NEAR(linear_sqnr(at::matmul(x, r), at::matmul(w, r), act, wt).alignment, before.alignment, 1e-5 * before.alignment);
}

TEST(Sqnr, DecompositionPredictsMeasuredSqnr) {
  torch::manual_seed(5);
  at::Tensor x = torch::randn({1024, 128}), w = torch::randn({96, 128});
  for (int bits : {4, 6, 8}) {
    SqnrStats s = linear_sqnr(x, w, sqnr_act_spec(bits), sqnr_weight_spec(bits));
    EXPECT_NEAR(s.predicted_db, s.measured_db, 1.0) << bits << " bits";
    EXPECT_GT(s.alignment, 0);
    EXPECT_LE(s.alignment, s.best_alignment + 1e-9);
    EXPECT_LE(s.best_alignment, 1.0 + 1e-9);
  }
  // Different bits for activations and weights (WaAb, a != b): the noises add, 12·A·(N_x²C(x) ∥ N_w²C(W)).
  for (auto [wb, ab] : {std::pair{4, 8}, std::pair{8, 4}, std::pair{3, 6}}) {
    SqnrStats s = linear_sqnr(x, w, sqnr_act_spec(ab), sqnr_weight_spec(wb));
    EXPECT_NEAR(s.predicted_db, s.measured_db, 1.0) << "W" << wb << "A" << ab;
  }
  // Each bit is worth about 6 dB.
  double d4 = linear_sqnr(x, w, sqnr_act_spec(4), sqnr_weight_spec(4)).measured_db;
  double d6 = linear_sqnr(x, w, sqnr_act_spec(6), sqnr_weight_spec(6)).measured_db;
  EXPECT_NEAR(d6 - d4, 12.0, 1.5);
}

TEST(BlockCat, BalancesAndRaisesAlignmentOnEveryLayer) {
  // The alignment-optimal transform balances the two Gram matrices: M Σx M = M⁻¹ Σw M⁻¹.
  torch::manual_seed(6);
  at::Tensor a = torch::randn({200, 8}, at::kDouble) * at::linspace(0.1, 5, 8, at::kDouble);
  at::Tensor sx = at::matmul(a.t(), a) / 200, wm = torch::randn({12, 8}, at::kDouble);
  at::Tensor sw = at::matmul(wm.t(), wm);
  at::Tensor mt = block_alignment_transform(sx, sw, 8, 0.0);
  at::Tensor mi = at::linalg_inv(mt);
  EXPECT_TRUE(at::allclose(at::matmul(at::matmul(mt, sx), mt), at::matmul(at::matmul(mi, sw), mi), 1e-6, 1e-8));

  LlamaModel m = outlier_model(2);
  at::Tensor calib = tokens(8, 16, 7);
  auto act = sqnr_act_spec(4), wt = sqnr_weight_spec(4);
  auto before = analyze_llama_sqnr(m, calib, act, wt);
  auto stats = collect_llama_stats(m, calib);
  apply_llm_transform(m, stats, parse_llm_transform("blockcat:k=8"));
  auto after = analyze_llama_sqnr(m, calib, act, wt);
  ASSERT_EQ(before.size(), after.size());
  double gain = 0;
  for (size_t i = 0; i + 1 < before.size(); ++i) {  // the LM head has no transform
    EXPECT_GE(after[i].alignment, before[i].alignment * 0.999) << before[i].layer;
    gain += to_db(after[i].alignment / before[i].alignment);
  }
  EXPECT_GT(gain, 0.0);
}

TEST(BadInputLlmTransform, ClearErrors) {
  LlamaModel m = outlier_model();
  auto stats = collect_llama_stats(m, tokens(2, 8, 1));
  // k = 5 divides neither 32 nor 64 nor the head size 8.
  try {
    apply_llm_transform(m, stats, parse_llm_transform("blockcat:k=5"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config);
    EXPECT_NE(std::string(e.what()).find("5"), std::string::npos) << e.what();
  }
  for (const char* bad : {"magic", "blockcat:k=x", "smoothquant:alpha=2", "blockcat:k=0", "rms:alpha=0.5"})
    EXPECT_THROW(parse_llm_transform(bad), Error) << bad;
  EXPECT_THROW(apply_llm_transform(m, {}, parse_llm_transform("smoothquant")), Error);  // no statistics
  // A singular covariance (a dead input channel) is handled by the damping: finite results, function preserved.
  at::Tensor sx = at::eye(4, at::kDouble);
  sx[2][2] = 0;
  at::Tensor mt = block_alignment_transform(sx, at::eye(4, at::kDouble), 4, 0.01);
  EXPECT_TRUE(at::isfinite(mt).all().item<bool>());
  EXPECT_THROW(block_alignment_transform(sx, at::eye(4, at::kDouble), 3, 0.01), Error);
}

TEST(BlockCat, DiagonalBlockStatisticsGiveTheSameTransformAsFullOnes) {
  // Block CAT reads only Σ's diagonal k×k blocks; collecting only those (issue 15: 1 MB instead of 512 MB for an
  // 8192-wide input at k = 16) must not change the transform.
  LlamaModel full = outlier_model(2), blocked = outlier_model(2);
  at::Tensor calib = tokens(6, 16, 9);
  auto sf = collect_llama_stats(full, calib);
  for (int64_t k : {1, 4, 8}) {
    auto sb = collect_llama_stats(full, calib, 8, k);
    const at::Tensor& a = sf[1].down.sigma;
    const at::Tensor& b = sb[1].down.sigma;
    ASSERT_EQ(b.dim(), 3) << k;
    EXPECT_EQ(b.size(1), k);
    for (int64_t i = 0; i < a.size(0); i += k)
      EXPECT_TRUE(at::allclose(diagonal_block(b, i, k), a.slice(0, i, i + k).slice(1, i, i + k), 1e-10, 1e-12));
    EXPECT_TRUE(at::allclose(sigma_diagonal(b), a.diagonal(), 1e-10, 1e-12));
    EXPECT_EQ(sb[0].attn.count, sf[0].attn.count);
    EXPECT_THROW(diagonal_block(b, 0, 2 * k), Error);  // a block the storage does not hold
  }
  const LlmTransformOptions o = parse_llm_transform("blockcat:k=4");
  EXPECT_EQ(llm_transform_stats_block(o), 4);
  EXPECT_EQ(llm_transform_stats_block(parse_llm_transform("rms")), 1);
  EXPECT_EQ(llm_transform_stats_block(parse_llm_transform("quarot")), 0);
  apply_llm_transform(full, sf, o);
  apply_llm_transform(blocked, collect_llama_stats(blocked, calib, 8, 4), o);
  at::Tensor probe = tokens(2, 12, 3);
  EXPECT_TRUE(at::allclose(blocked.forward(probe), full.forward(probe), 1e-5, 1e-5));
  ASSERT_TRUE(full.blocks[0].down_in.defined());
  EXPECT_TRUE(at::allclose(blocked.blocks[0].down_in.matrix(), full.blocks[0].down_in.matrix(), 1e-6, 1e-7));
}

TEST(Gptq, LowerOutputErrorThanRtnAtTheSameBits) {
  torch::manual_seed(11);
  // Correlated inputs (as real activations are): GPTQ can move rounding error into directions the data ignores.
  at::Tensor mix = torch::randn({64, 64}) * 0.3 + at::eye(64);
  at::Tensor x = at::matmul(torch::randn({2048, 64}), mix);
  at::Tensor w = torch::randn({32, 64});
  at::Tensor h = at::matmul(x.t(), x).to(at::kDouble);
  auto out_err = [&](const at::Tensor& wq) {
    return (at::matmul(x, (w - wq).t())).square().sum().item<double>();
  };
  for (int bits : {3, 4}) {
    for (bool act_order : {false, true}) {
      for (int64_t group : {int64_t{0}, int64_t{16}}) {
        QuantSpec s;
        s.bits = bits;
        s.symmetric = false;
        s.granularity = group ? Granularity::PerGroup : Granularity::PerChannel;
        s.group_size = group;
        GptqOptions o;
        o.act_order = act_order;
        o.block = 16;  // several lazy batches
        GptqResult r = gptq_quantize(w, h, s, o);
        at::Tensor rtn = fake_quantize(w, r.params);
        const double e_rtn = out_err(rtn), e_gptq = out_err(r.dequantized);
        EXPECT_LT(e_gptq, 0.9 * e_rtn) << bits << " bits, act_order " << act_order << ", group " << group;
        EXPECT_LT(r.proxy_gptq, r.proxy_rtn);
        // The codes are in range and dequantize to the returned weight with the returned params.
        EXPECT_GE(r.codes.min().item<int>(), r.params.qmin);
        EXPECT_LE(r.codes.max().item<int>(), r.params.qmax);
        EXPECT_TRUE(at::allclose(dequantize(r.codes, r.params), r.dequantized, 1e-5, 1e-6));
        // Row slices (5 rows at a time here, the last one partial) give exactly the whole-weight result.
        GptqOptions sliced = o;
        sliced.row_slice = 5 * 64;
        const GptqResult rs = gptq_quantize(w, h, s, sliced);
        EXPECT_TRUE(at::equal(rs.codes, r.codes));
        EXPECT_TRUE(at::equal(rs.dequantized, r.dequantized));
        EXPECT_NEAR(rs.proxy_gptq, r.proxy_gptq, 1e-5 * r.proxy_gptq);
        EXPECT_NEAR(rs.proxy_rtn, r.proxy_rtn, 1e-5 * r.proxy_rtn);
      }
    }
  }
}

TEST(BadInputGptq, DegenerateHessianAndBadSpecs) {
  at::Tensor w = torch::randn({4, 8});
  QuantSpec s;
  s.bits = 4;
  s.granularity = Granularity::PerChannel;
  // A dead input (zero row/column of H) is handled: its weights become 0, no NaN.
  at::Tensor h = at::eye(8, at::kDouble);
  h[3][3] = 0;
  GptqResult r = gptq_quantize(w, h, s, {});
  EXPECT_TRUE(at::isfinite(r.dequantized).all().item<bool>());
  EXPECT_EQ(r.dequantized.select(1, 3).abs().sum().item<double>(), 0.0);
  // A zero Hessian (no calibration signal at all) falls back on the damping only: still finite.
  EXPECT_TRUE(at::isfinite(gptq_quantize(w, at::zeros({8, 8}, at::kDouble), s, {}).dequantized).all().item<bool>());
  at::Tensor bad = at::eye(8, at::kDouble);
  bad[0][0] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(gptq_quantize(w, bad, s, {}), Error);
  EXPECT_THROW(gptq_quantize(w, at::eye(7, at::kDouble), s, {}), Error);
  QuantSpec g = s;
  g.granularity = Granularity::PerGroup;
  g.group_size = 3;  // does not divide 8
  EXPECT_THROW(gptq_quantize(w, at::eye(8, at::kDouble), g, {}), Error);
}

TEST(CatqLlmFile, RoundTripsTransformsCodesAndTokenizer) {
  LlamaModel m = outlier_model(3);
  at::Tensor calib = tokens(6, 16, 4), probe = tokens(2, 20, 5);
  QuantConfig cfg = QuantConfig::from_json(R"({"defaults": {"weight": {"bits": 4, "observer": "mse"},
      "input": {"bits": 8}}, "overrides": [{"pattern": "output", "weight": null, "input": null}]})", "test");
  SimQuant sq(cfg);
  LlmPtqOptions po;
  po.transform = parse_llm_transform("blockcat:k=4");
  po.weights = "gptq";
  quantize_llama(m, sq, calib, po);  // static 8-bit inputs: calibrated ranges are stored too
  at::Tensor expect = m.forward(probe, &sq);
  std::vector<std::string> pieces;
  std::vector<float> scores;
  for (int i = 0; i < 50; ++i) pieces.push_back(i < 3 ? std::string(i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>") : fmt::format("p{}", i)), scores.push_back(-i);
  Tokenizer tok(pieces, scores, {}, 1, 2, 0);
  const std::string path = ::testing::TempDir() + "catq_llm_roundtrip.catq";
  write_catq_llm(path, m, sq, &tok, {{"method", "test"}});
  EXPECT_EQ(catq_file_kind(path), "llm");
  QuantizedLlama q = read_catq_llm(path);
  EXPECT_TRUE(at::allclose(q.model.forward(probe, q.sq.get()), expect, 1e-4, 1e-4));
  ASSERT_TRUE(q.tokenizer.has_value());
  EXPECT_EQ(q.tokenizer->pieces(), pieces);
  EXPECT_EQ(q.metadata.at("method"), "test");
  EXPECT_TRUE(q.model.blocks[1].attn_in.defined());
  // A CNN reader refuses it with a clear error, and a truncated copy is a format error.
  EXPECT_THROW(read_catq(path), Error);
  std::vector<uint8_t> bytes = read_file_bytes(path);
  bytes.resize(bytes.size() / 2);
  const std::string bad = ::testing::TempDir() + "catq_llm_bad.catq";
  write_file_atomic(bad, bytes.data(), bytes.size());
  try {
    read_catq_llm(bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Format) << e.what();
  }
}

TEST(KvCacheQuant, ConfigRoundTripsAndErrorGrowsAsBitsShrink) {
  // Compact "-kv<bits>" and JSON "kv_cache" give a per-token (per position and head) dynamic quantizer.
  QuantConfig c = QuantConfig::from_string("w8a8-tok-kv4");
  ASSERT_TRUE(c.kv_cache.enabled);
  EXPECT_EQ(c.kv_cache.bits, 4);
  EXPECT_EQ(c.kv_cache.granularity, Granularity::PerToken);
  QuantConfig back = QuantConfig::from_json(c.to_json().dump(), "round trip");
  EXPECT_EQ(back.kv_cache.bits, 4);
  EXPECT_EQ(back.kv_cache.granularity, Granularity::PerToken);
  EXPECT_THROW(QuantConfig::from_json(R"({"kv_cache": {"bits": 4, "granularity": "tensor"}})", "bad"), Error);
  EXPECT_THROW(QuantConfig::from_string("w8a8-kv0"), Error);

  LlamaModel m = outlier_model(5);
  at::Tensor probe = tokens(2, 24, 6);
  at::NoGradGuard ng;
  at::Tensor fp = m.forward(probe);
  auto err = [&](int kv_bits) {
    // Weights and inputs in FP: only the cache is quantized.
    QuantConfig k = QuantConfig::from_json(fmt::format(R"({{"defaults": {{"weight": null, "input": null}},
        "kv_cache": {{"bits": {}}}}})", kv_bits), "kv");
    SimQuant sq(k);
    at::Tensor full = m.forward(probe, &sq);
    // The incremental path quantizes the same keys and values, so it gives the same logits.
    KVCache cache = m.make_cache(2, 32);
    at::Tensor inc = at::cat({m.forward(probe.slice(1, 0, 9), cache, &sq), m.forward(probe.slice(1, 9, 24), cache, &sq)}, 1);
    EXPECT_LT(rel_diff(inc, full), 1e-4) << kv_bits;
    return rel_diff(full, fp);
  };
  double e8 = err(8), e4 = err(4), e2 = err(2);
  EXPECT_GT(e8, 0.0);
  EXPECT_LT(e8, 0.02);
  EXPECT_LT(e8, e4);
  EXPECT_LT(e4, e2);
}

// AWQ: the scaled model computes the same function in FP (Llama, and Qwen2 whose V bias turns with V's rows), the
// chosen α never raises the search objective, and the outlier channels get α > 0 somewhere. (On a random model the
// end-to-end error barely moves either way; GgufQuantize.Stories260KAwq… checks perplexity on a real model.)
TEST(Awq, PreservesTheFunctionAndNeverRaisesTheObjective) {
  for (LlamaArch arch : {LlamaArch::Llama, LlamaArch::Qwen2}) {
    SCOPED_TRACE(to_string(arch));
    LlamaConfig c = small_config();
    c.arch = arch;
    LlamaModel m = LlamaModel::random(c, 1);
    {
      at::NoGradGuard ng;
      m.tok_embeddings.select(1, 3).mul_(20);
      for (auto& b : m.blocks) b.attn_norm.select(0, 5).mul_(6);
    }
    at::Tensor calib = tokens(6, 16, 2), probe = tokens(3, 24, 3);
    const at::Tensor before = m.forward(probe);
    SimQuant sq(QuantConfig::from_string("w3a16-fl8"));  // the head at 8 bits: AWQ does not touch it
    m.bind(&sq);
    const auto stats = collect_llama_stats(m, calib, 8, kAwqStatsBlock);
    const nlohmann::json rep =
        apply_llm_transform(m, stats, parse_llm_transform("awq"), simquant_weight_quantizer(sq, m.layer_infos()));
    EXPECT_LT(rel_diff(m.forward(probe), before), 1e-4);
    ASSERT_EQ(rep.size(), 2u);
    bool scaled = false;
    for (const auto& blk : rep)
      for (const auto& [pos, r] : blk.items()) {
        EXPECT_LE(r.at("error_after").get<double>(), r.at("error_before").get<double>()) << pos;
        scaled = scaled || r.at("alpha").get<double>() > 0;
      }
    EXPECT_TRUE(scaled);
  }
  // Without a quantizer AWQ has nothing to search under.
  LlamaModel m = outlier_model();
  EXPECT_THROW(apply_llm_transform(m, collect_llama_stats(m, tokens(2, 8, 1), 8, kAwqStatsBlock),
                                   parse_llm_transform("awq")), Error);
  EXPECT_EQ(parse_llm_transform("awq:grid=10").grid, 10);
  EXPECT_THROW(parse_llm_transform("awq:grid=0"), Error);
}

// Token-embedding quantization (QuantConfig::embedding, QuantContext::embedding): the config forms, the equivalence
// of quantizing gathered rows and quantizing the table, the straight-through gradient, the quantized-LLM file round
// trip and the QAT config.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>

#include "core/error.h"
#include "io/catq_file.h"
#include "llm/llama.h"
#include "methods/qat/llm_qat.h"
#include "sim/quant_config.h"
#include "sim/sim_quant.h"

using namespace catq;

namespace {
LlamaModel small_model() {
  LlamaConfig c;
  c.dim = 32; c.hidden_dim = 64; c.n_layers = 1; c.n_heads = 2; c.n_kv_heads = 2; c.vocab_size = 30; c.seq_len = 16;
  LlamaModel m = LlamaModel::random(c, 5);
  m.tok_embeddings.mul_(20);  // rows of clearly different ranges
  return m;
}
}  // namespace

TEST(EmbeddingQuant, ConfigForms) {
  const QuantConfig c = QuantConfig::from_string("w4a8-emb4");
  EXPECT_TRUE(c.embedding.enabled);
  EXPECT_EQ(c.embedding.bits, 4);
  EXPECT_EQ(c.embedding.granularity, Granularity::PerChannel);
  EXPECT_FALSE(QuantConfig::from_string("w4a8").embedding.enabled);
  const QuantConfig g = QuantConfig::from_json(
      R"({"embedding": {"bits": 3, "granularity": "group", "group_size": 16, "symmetric": false}})", "g.json");
  EXPECT_EQ(g.embedding.granularity, Granularity::PerGroup);
  const QuantConfig back = QuantConfig::from_json(g.to_json().dump(), "round trip");
  EXPECT_EQ(back.embedding, g.embedding);
  EXPECT_THROW(QuantConfig::from_json(R"({"embedding": {"bits": 4, "granularity": "tensor"}})", "t.json"), Error);
  EXPECT_THROW(QuantConfig::from_json(R"({"embedding": {"bits": 4, "granularity": "channel", "axis": 1}})", "a.json"),
               Error);
}

TEST(EmbeddingQuant, GatheredRowsEqualTheQuantizedTable) {
  LlamaModel m = small_model();
  const at::Tensor tokens = at::randint(0, 30, {2, 12}, at::TensorOptions().dtype(at::kLong));
  SimQuant sq(QuantConfig::from_json(R"({"embedding": {"bits": 3}})", "emb3"));
  const at::Tensor fp = m.forward(tokens), q = m.forward(tokens, &sq);
  EXPECT_GT((fp - q).abs().max().item<double>(), 1e-3);  // the embedding is quantized
  // The same model with its table quantized row by row, run without a context.
  LlamaModel m2 = m;
  m2.tok_embeddings = fake_quantize(m.tok_embeddings, compute_params(sq.config().embedding, m.tok_embeddings));
  EXPECT_TRUE(at::allclose(m2.forward(tokens), q, 1e-5, 1e-5));
  // Straight-through gradient to the rows.
  at::Tensor rows = m.tok_embeddings.index_select(0, tokens.reshape({-1})).clone().requires_grad_(true);
  sq.embedding(rows).sum().backward();
  EXPECT_TRUE(at::allclose(rows.grad(), at::ones_like(rows)));
}

TEST(EmbeddingQuant, RoundTripsThroughTheQuantizedLlmFile) {
  LlamaModel m = small_model();
  const at::Tensor tokens = at::randint(0, 30, {1, 10}, at::TensorOptions().dtype(at::kLong));
  SimQuant sq(QuantConfig::from_string("w8a16-emb4"));
  const at::Tensor ref = m.forward(tokens, &sq);
  const std::string path = ::testing::TempDir() + "catq_emb.catq";
  write_catq_llm(path, m, sq, nullptr, {});
  QuantizedLlama q = read_catq_llm(path);
  std::remove(path.c_str());
  EXPECT_EQ(q.sq->config().embedding.bits, 4);
  EXPECT_TRUE(at::allclose(q.model.forward(tokens, q.sq.get()), ref, 1e-5, 1e-5));
}

TEST(EmbeddingQuant, QatConfig) {
  EXPECT_EQ(weight_only_qat_config(2, 0, 4).embedding.bits, 4);
  EXPECT_FALSE(weight_only_qat_config(2).embedding.enabled);
  EXPECT_THROW(weight_only_qat_config(2, 0, 1), Error);
}

// LlamaModel forward: KV cache vs full forward, causality, autograd, QuantContext seam, RoPE permutation.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "llm/llama.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

TEST(LlamaModel, CachedDecodingMatchesFullForward) {
  for (bool tied : {true, false}) {
    LlamaModel m = LlamaModel::random(tiny_config(50, tied), 1);
    torch::NoGradGuard ng;
    at::Tensor tok = sample_tokens(50, 2, 12, 3);
    at::Tensor full = m.forward(tok);
    ASSERT_EQ(full.sizes().vec(), (std::vector<int64_t>{2, 12, 50}));
    // One token at a time.
    KVCache c = m.make_cache(2);
    std::vector<at::Tensor> steps;
    for (int64_t t = 0; t < 12; ++t) steps.push_back(m.forward(tok.narrow(1, t, 1), c));
    EXPECT_LT(max_abs_diff(at::cat(steps, 1), full), 1e-4);
    // A chunked prefill then single steps.
    KVCache c2 = m.make_cache(2, 16);
    at::Tensor a = m.forward(tok.narrow(1, 0, 7), c2);
    at::Tensor b = m.forward(tok.narrow(1, 7, 5), c2);
    EXPECT_EQ(c2.pos, 12);
    EXPECT_LT(max_abs_diff(at::cat({a, b}, 1), full), 1e-4);
  }
}

TEST(LlamaModel, IsCausalAndPositionDependent) {
  LlamaModel m = LlamaModel::random(tiny_config(50), 2);
  torch::NoGradGuard ng;
  at::Tensor tok = sample_tokens(50, 1, 10, 4);
  at::Tensor tok2 = tok.clone();
  tok2[0][7] = (tok[0][7].item<int64_t>() + 1) % 50;
  at::Tensor l1 = m.forward(tok), l2 = m.forward(tok2);
  EXPECT_LT(max_abs_diff(l1.narrow(1, 0, 7), l2.narrow(1, 0, 7)), 1e-6);  // the past ignores the future
  EXPECT_GT(max_abs_diff(l1.narrow(1, 7, 3), l2.narrow(1, 7, 3)), 1e-4);
  // RoPE: without positions, attention from the last token would not care about the order of the
  // tokens before it; with RoPE, [a, b, c] and [b, a, c] give different logits at c.
  at::Tensor abc = at::tensor(std::vector<int64_t>{5, 9, 13}, at::kLong).view({1, 3});
  at::Tensor bac = at::tensor(std::vector<int64_t>{9, 5, 13}, at::kLong).view({1, 3});
  EXPECT_GT(max_abs_diff(m.forward(abc)[0][2], m.forward(bac)[0][2]), 1e-4);
}

TEST(LlamaModel, GradientsReachEveryWeight) {
  for (bool tied : {true, false}) {
    LlamaModel m = LlamaModel::random(tiny_config(50, tied), 3);
    for (auto& [n, t] : m.named_parameters()) t.set_requires_grad(true);
    at::Tensor tok = sample_tokens(50, 2, 8, 5);
    at::Tensor logits = m.forward(tok);
    at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, 50}), tok.reshape({-1}));
    loss.backward();
    for (auto& [n, t] : m.named_parameters()) {
      ASSERT_TRUE(t.grad().defined()) << n;
      EXPECT_GT(t.grad().abs().sum().item<double>(), 0) << n;
    }
  }
}

namespace {
// Records bind/weight/input calls; optionally perturbs one layer's weight.
struct RecordingContext : QuantContext {
  std::vector<LayerInfo> bound;
  int binds = 0;
  std::vector<std::string> weight_calls, input_calls;
  std::string perturb;
  void bind(const std::vector<LayerInfo>& l) override {
    bound = l;
    ++binds;
  }
  at::Tensor weight(const LayerInfo& li, const at::Tensor& w) override {
    weight_calls.push_back(li.name);
    return li.name == perturb ? w * 0.5 : w;
  }
  at::Tensor input(const LayerInfo& li, const at::Tensor& x) override {
    input_calls.push_back(li.name);
    EXPECT_EQ(x.size(-1), li.weight_shape[1]) << li.name;
    return x;
  }
};
}  // namespace

TEST(LlamaModel, AnnouncesEveryLinearLayerToQuantContext) {
  LlamaModel m = LlamaModel::random(tiny_config(50), 4);
  torch::NoGradGuard ng;
  at::Tensor tok = sample_tokens(50, 1, 6, 6);
  RecordingContext ctx;
  at::Tensor ref = m.forward(tok);
  at::Tensor got = m.forward(tok, &ctx);
  EXPECT_LT(max_abs_diff(ref, got), 1e-6);  // identity context = FP32
  ASSERT_EQ(ctx.bound.size(), 2u * 7 + 1);
  const std::vector<std::string> expect0 = {"blk.0.attn_q",   "blk.0.attn_k",  "blk.0.attn_v",   "blk.0.attn_output",
                                            "blk.0.ffn_gate", "blk.0.ffn_up", "blk.0.ffn_down"};
  for (size_t i = 0; i < expect0.size(); ++i) EXPECT_EQ(ctx.bound[i].name, expect0[i]);
  EXPECT_EQ(ctx.bound.back().name, "output");
  EXPECT_TRUE(ctx.bound.front().is_first);
  EXPECT_TRUE(ctx.bound.back().is_last);
  EXPECT_EQ(ctx.bound.back().weight_shape, (std::vector<int64_t>{50, 64}));
  EXPECT_EQ(ctx.bound[1].weight_shape, (std::vector<int64_t>{32, 64}));  // GQA: kv_dim 32
  EXPECT_EQ(ctx.bound[6].weight_shape, (std::vector<int64_t>{64, 96}));  // ffn_down
  for (size_t i = 0; i < ctx.bound.size(); ++i) EXPECT_EQ(ctx.bound[i].index, static_cast<int>(i));
  // Every layer used once per forward, in execution order.
  std::vector<std::string> names;
  for (auto& li : ctx.bound) names.push_back(li.name);
  EXPECT_EQ(ctx.weight_calls, names);
  EXPECT_EQ(ctx.input_calls, names);
  // A second forward does not re-bind; a perturbed layer changes the output.
  ctx.perturb = "blk.1.ffn_down";
  at::Tensor pert = m.forward(tok, &ctx);
  EXPECT_EQ(ctx.binds, 1);
  EXPECT_GT(max_abs_diff(ref, pert), 1e-4);
  // Alternating between two contexts binds each exactly once.
  RecordingContext other;
  m.forward(tok, &other);
  m.forward(tok, &ctx);
  m.forward(tok, &other);
  EXPECT_EQ(ctx.binds, 1);
  EXPECT_EQ(other.binds, 1);
}

// Rotate-half RoPE as Hugging Face applies it to q [T, heads, hd].
static at::Tensor rope_rotate_half(const at::Tensor& x, double theta) {
  const int64_t T = x.size(0), hd = x.size(2);
  auto inv = at::pow(theta, -at::arange(0, hd, 2, at::kDouble) / static_cast<double>(hd));
  auto ang = at::outer(at::arange(0, T, at::kDouble), inv);
  auto emb = at::cat({ang, ang}, -1).to(at::kFloat).unsqueeze(1);  // [T, 1, hd]
  auto x1 = x.narrow(-1, 0, hd / 2), x2 = x.narrow(-1, hd / 2, hd / 2);
  auto rot = at::cat({-x2, x1}, -1);
  return x * emb.cos() + rot * emb.sin();
}

TEST(LlamaModel, HfPermutationMatchesRotateHalfConvention) {
  // Attention scores with interleaved RoPE on W must equal rotate-half RoPE on the HF-permuted W:
  // this pins down the direction of the permutation (what a wrong direction would silently break).
  LlamaModel m = LlamaModel::random(tiny_config(50), 5);
  torch::NoGradGuard ng;
  const int64_t H = 4, KV = 2, hd = 16, T = 9;
  const auto& b = m.blocks[0];
  at::Tensor x = at::randn({T, 64});
  auto interleaved = [&](const at::Tensor& w, int64_t heads) {
    at::Tensor y = at::linear(x, w).view({T, heads, hd / 2, 2});
    auto inv = at::pow(10000.0, -at::arange(0, hd, 2, at::kDouble) / static_cast<double>(hd));
    auto ang = at::outer(at::arange(0, T, at::kDouble), inv).to(at::kFloat).unsqueeze(1);
    auto a = y.select(-1, 0), c = y.select(-1, 1);
    return at::stack({a * ang.cos() - c * ang.sin(), a * ang.sin() + c * ang.cos()}, -1).view({T, heads, hd});
  };
  at::Tensor q1 = interleaved(b.wq, H), k1 = interleaved(b.wk, KV);
  at::Tensor q2 = rope_rotate_half(at::linear(x, rope_permute_interleaved_to_hf(b.wq, H)).view({T, H, hd}), 10000.0);
  at::Tensor k2 = rope_rotate_half(at::linear(x, rope_permute_interleaved_to_hf(b.wk, KV)).view({T, KV, hd}), 10000.0);
  for (int64_t h = 0; h < H; ++h) {
    at::Tensor s1 = at::matmul(q1.select(1, h), k1.select(1, h / 2).t());
    at::Tensor s2 = at::matmul(q2.select(1, h), k2.select(1, h / 2).t());
    EXPECT_LT(max_abs_diff(s1, s2), 1e-4) << "head " << h;
  }
  // And the two permutations are inverse to each other.
  EXPECT_TRUE(at::equal(rope_permute_hf_to_interleaved(rope_permute_interleaved_to_hf(b.wq, H), H), b.wq));
}

TEST(LlamaModel, RejectsOutOfRangeTokensAndOverfullCache) {
  LlamaModel m = LlamaModel::random(tiny_config(50), 6);
  torch::NoGradGuard ng;
  expect_error([&] { m.forward(at::full({1, 3}, 50, at::kLong)); }, ErrorKind::Data, "vocabulary");
  KVCache c = m.make_cache(1, 4);
  m.forward(sample_tokens(50, 1, 3, 1), c);
  expect_error([&] { m.forward(sample_tokens(50, 1, 2, 1), c); }, ErrorKind::Data, "KV cache");
}

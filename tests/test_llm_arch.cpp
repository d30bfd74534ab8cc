// The Llama-family architectures (llm/llama_tensors.h): Llama with Llama-3.1 RoPE scaling, Mistral's sliding window,
// Qwen2's q/k/v biases, Qwen3's q/k RMSNorm with an explicit head_dim. Each round-trips exactly through Hugging Face
// safetensors and GGUF; the RoPE factors follow the published formula; transforms keep the function. (llama.cpp's
// logits on catq's GGUF of each architecture: PeerLlamaCpp.EveryArchitectureLogitsMatch in test_peers.cpp.)
#include <gtest/gtest.h>

#include <cmath>

#include "io/gguf.h"
#include "io/llama_config_json.h"
#include "io/llm_loader.h"
#include "io/safetensors.h"
#include "llm/llama_tensors.h"
#include "methods/llm/transform_ops.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

namespace {

at::Tensor logits(const LlamaModel& m, const at::Tensor& tok) {
  at::NoGradGuard ng;
  return m.forward(tok);
}

}  // namespace

namespace catq::testing_llm {

std::vector<ArchCase> arch_cases(int64_t vocab) {
  std::vector<ArchCase> v;
  LlamaConfig base = tiny_config(vocab, /*tied=*/false);
  {
    ArchCase a{"llama", base};
    v.push_back(a);
  }
  {
    ArchCase a{"llama3.1 rope scaling, tied", base};
    a.cfg.tied_head = true;
    a.cfg.rope_theta = 500000.0;
    a.cfg.rope_scaling.type = "llama3";
    a.cfg.rope_scaling.factor = 8.0;
    a.cfg.rope_scaling.low_freq_factor = 1.0;
    a.cfg.rope_scaling.high_freq_factor = 4.0;
    a.cfg.rope_scaling.original_max_position = 16;  // small, so the tiny head's frequencies span all three bands
    v.push_back(a);
  }
  {
    ArchCase a{"mistral sliding window", base};
    a.cfg.sliding_window = 8;
    v.push_back(a);
  }
  {
    ArchCase a{"qwen2 biases, tied", base};
    a.cfg.arch = LlamaArch::Qwen2;
    a.cfg.tied_head = true;
    a.cfg.rope_theta = 1000000.0;
    a.cfg.norm_eps = 1e-6;
    v.push_back(a);
  }
  {
    ArchCase a{"qwen3 q/k norm, head_dim 32", base};
    a.cfg.arch = LlamaArch::Qwen3;
    a.cfg.head_dim = 32;  // q_dim 128 != dim 64, as Qwen3-0.6B (16 x 128 over 1024)
    a.cfg.norm_eps = 1e-6;
    v.push_back(a);
  }
  return v;
}

}  // namespace catq::testing_llm

TEST(LlmArch, EveryArchitectureRoundTripsThroughHfAndGguf) {
  const Tokenizer tok = tiny_tokenizer();
  at::Tensor t = sample_tokens(tok.vocab_size(), 2, 20, 5);
  for (const ArchCase& a : arch_cases(tok.vocab_size())) {
    SCOPED_TRACE(a.name);
    LlamaModel m = LlamaModel::random(a.cfg, 11);
    const at::Tensor ref = logits(m, t);
    TempDir d;
    write_hf_llama(m, d / "hf", SafetensorsDtype::F32, 2);
    LoadedLlama h = load_llama(d / "hf");
    EXPECT_EQ(h.model.cfg.arch, a.cfg.arch);
    EXPECT_EQ(h.model.cfg.rope_scaling.type, a.cfg.rope_scaling.type);
    EXPECT_EQ(h.model.cfg.sliding_window, a.cfg.sliding_window);
    EXPECT_EQ(h.model.cfg.hd(), a.cfg.hd());
    EXPECT_TRUE(at::equal(logits(h.model, t), ref));

    write_gguf_llama(m, &tok, d / "m.gguf");
    GgufFile g = read_gguf(d / "m.gguf");
    EXPECT_EQ(g.find("general.architecture")->s, llama_arch_traits(a.cfg.arch).gguf);
    GgufLlama r = read_gguf_llama(d / "m.gguf");
    EXPECT_EQ(r.model.cfg.arch, a.cfg.arch);
    EXPECT_EQ(r.model.cfg.tied_head, a.cfg.tied_head);
    EXPECT_NEAR(r.model.cfg.norm_eps, a.cfg.norm_eps, 1e-12);
    if (a.cfg.sliding_window > 0) {
      // llama.cpp has no window for the llama architecture: the GGUF's context stops at the window.
      EXPECT_EQ(r.model.cfg.seq_len, a.cfg.sliding_window);
      r.model.cfg.sliding_window = a.cfg.sliding_window;
    }
    if (a.cfg.rope_scaling.type == "llama3") {
      EXPECT_EQ(r.model.cfg.rope_scaling.type, "factors");  // rope_freqs.weight, stored as F32
      EXPECT_LT(rel_error(logits(r.model, t), ref), 1e-5);
    } else {
      EXPECT_TRUE(at::equal(logits(r.model, t), ref));
    }

    // The architecture's own tensors are in both files under their names; Qwen's GGUF keeps HF's q/k row order.
    SafetensorsFile f0 = read_safetensors(d / "hf/model-00001-of-00002.safetensors");
    const GgufTensorInfo* q = g.find_tensor("blk.0.attn_q.weight");
    ASSERT_NE(q, nullptr);
    const bool hf_order = llama_arch_traits(a.cfg.arch).gguf_rope_hf_order;
    EXPECT_TRUE(at::equal(g.tensor_f32(*q), hf_order ? rope_permute_interleaved_to_hf(m.blocks[0].wq, a.cfg.n_heads)
                                                     : m.blocks[0].wq));
    EXPECT_EQ(g.find_tensor("blk.0.attn_q.bias") != nullptr, a.cfg.qkv_bias());
    EXPECT_EQ(g.find_tensor("blk.1.attn_k_norm.weight") != nullptr, a.cfg.qk_norm());
    EXPECT_EQ(f0.tensors.count("model.layers.0.self_attn.q_proj.bias") > 0, a.cfg.qkv_bias());
    EXPECT_EQ(f0.tensors.count("model.layers.0.self_attn.q_norm.weight") > 0, a.cfg.qk_norm());
    EXPECT_EQ(g.find_tensor("rope_freqs.weight") != nullptr, a.cfg.rope_scaling.type == "llama3");

    // The .catq config JSON keeps everything.
    LlamaConfig back = llama_config_from_json(llama_config_to_json(a.cfg), "test");
    EXPECT_EQ(back.summary(), a.cfg.summary());
  }
}

TEST(LlmArch, ArchitectureTensorsChangeTheFunction) {
  // Guards against a reader or forward that silently ignores biases or q/k norms.
  const int64_t vocab = 300;
  at::Tensor t = sample_tokens(vocab, 1, 12, 2);
  for (const ArchCase& a : arch_cases(vocab)) {
    if (!a.cfg.qkv_bias() && !a.cfg.qk_norm()) continue;
    SCOPED_TRACE(a.name);
    LlamaModel m = LlamaModel::random(a.cfg, 4);
    const at::Tensor ref = logits(m, t);
    for (LlamaBlock& b : m.blocks) {
      if (b.bq.defined()) b.bq = at::zeros_like(b.bq), b.bk = at::zeros_like(b.bk), b.bv = at::zeros_like(b.bv);
      if (b.q_norm.defined()) b.q_norm = at::ones_like(b.q_norm), b.k_norm = at::ones_like(b.k_norm);
    }
    EXPECT_GT(rel_error(logits(m, t), ref), 1e-3);
  }
}

TEST(LlmArch, Llama3RopeFactorsFollowTheFormula) {
  // Llama 3.1 8B: theta 500000, head 128, factor 8, low 1, high 4, original context 8192.
  LlamaConfig c = tiny_config(300);
  c.dim = 512;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.rope_theta = 500000.0;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position = 8192;
  c.validate("test");
  const std::vector<double> f = c.rope_freq_factors();
  ASSERT_EQ(f.size(), 64u);
  int ones = 0, full = 0, mid = 0;
  for (int i = 0; i < 64; ++i) {
    const double wavelen = 2 * M_PI * std::pow(500000.0, 2.0 * i / 128.0);
    if (wavelen < 8192.0 / 4) {
      EXPECT_EQ(f[i], 1.0) << i;
      ++ones;
    } else if (wavelen > 8192.0) {
      EXPECT_EQ(f[i], 8.0) << i;
      ++full;
    } else {
      const double s = (8192.0 / wavelen - 1.0) / 3.0;
      EXPECT_NEAR(f[i], 1.0 / ((1 - s) / 8.0 + s), 1e-12) << i;
      EXPECT_GT(f[i], 1.0);
      EXPECT_LT(f[i], 8.0);
      ++mid;
    }
  }
  EXPECT_GT(ones, 0);
  EXPECT_GT(full, 0);
  EXPECT_GT(mid, 0);
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 4.0;
  EXPECT_EQ(c.rope_freq_factors(), std::vector<double>(64, 4.0));
  c.rope_scaling.type = "none";
  EXPECT_TRUE(c.rope_freq_factors().empty());
}

TEST(LlmArch, SlidingWindowMasksOnlyDistantKeys) {
  const int64_t vocab = 300;
  LlamaConfig c = tiny_config(vocab);
  LlamaModel full = LlamaModel::random(c, 8);
  LlamaModel win = full;
  win.cfg.sliding_window = 6;
  at::Tensor t = sample_tokens(vocab, 2, 16, 1);
  const at::Tensor a = logits(full, t), b = logits(win, t);
  // Positions 0..5 see at most 6 keys: identical; later ones lose keys and differ.
  EXPECT_TRUE(at::equal(a.narrow(1, 0, 6), b.narrow(1, 0, 6)));
  EXPECT_GT((a.narrow(1, 6, 10) - b.narrow(1, 6, 10)).abs().max().item<double>(), 1e-4);
  // Decoding with the KV cache one token at a time applies the same window.
  KVCache cache = win.make_cache(2);
  std::vector<at::Tensor> steps;
  at::NoGradGuard ng;
  for (int64_t i = 0; i < 16; ++i) steps.push_back(win.forward(t.narrow(1, i, 1), cache));
  EXPECT_LT(max_abs_diff(at::cat(steps, 1), b), 1e-4);
}

TEST(LlmArch, OTransformKeepsQwen2FunctionWithBiases) {
  const int64_t vocab = 300;
  LlamaConfig c = tiny_config(vocab);
  c.arch = LlamaArch::Qwen2;
  LlamaModel m = LlamaModel::random(c, 3);
  at::Tensor t = sample_tokens(vocab, 1, 10, 6);
  const at::Tensor ref = logits(m, t);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  at::Tensor r = std::get<0>(at::linalg_qr(at::randn({c.hd(), c.hd()}, gen, at::kDouble)));
  for (int64_t l = 0; l < c.n_layers; ++l) apply_transform(m, l, TransformPosition::O, r, -1);
  EXPECT_LT(rel_error(logits(m, t), ref), 1e-5);
}

TEST(BadInputLlmArch, UnsupportedArchitecturesAndOptionsAreNamed) {
  TempDir d;
  LlamaConfig c = tiny_config(300);
  c.arch = LlamaArch::Qwen2;
  write_hf_llama(LlamaModel::random(c, 1), d / "hf");
  const std::string cfg = read_file_text(d / "hf/config.json");
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = cfg;
    const size_t p = s.find(from);
    ASSERT_NE(p, std::string::npos) << from;
    s.replace(p, from.size(), to);
    write_file_atomic(d / "hf/config.json", s);
  };
  with("\"model_type\": \"qwen2\"", "\"model_type\": \"gpt_neox\"");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Unsupported, "qwen3", "lists the supported set");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Unsupported, "gpt_neox");
  with("\"use_sliding_window\": false", "\"use_sliding_window\": true");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Unsupported, "use_sliding_window");
  with("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 2.0}");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Unsupported, "only for the llama architecture");
  // A bias missing from the files of an architecture that has them.
  write_file_atomic(d / "hf/config.json", cfg);
  {
    SafetensorsFile f = read_safetensors(d / "hf/model.safetensors");
    std::vector<std::pair<std::string, at::Tensor>> ts;
    for (const auto& [name, e] : f.tensors)
      if (name != "model.layers.1.self_attn.k_proj.bias") ts.emplace_back(name, f.tensor_f32(name));
    write_safetensors(d / "hf/model.safetensors", ts, SafetensorsDtype::F32, {});
  }
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Format, "model.layers.1.self_attn.k_proj.bias");

  // GGUF: unknown architecture, RoPE factors of the wrong size, unsupported scaling.
  LlamaModel llama = LlamaModel::random(tiny_config(300), 2);
  write_gguf_llama(llama, nullptr, d / "l.gguf");
  GgufFile g = read_gguf(d / "l.gguf");
  auto rebuild = [&](const std::string& arch, bool bad_freqs, const std::string& scaling) {
    GgufBuilder b;
    b.add_string("general.architecture", arch);
    for (const char* k : {"context_length", "embedding_length", "block_count", "feed_forward_length",
                          "attention.head_count", "attention.head_count_kv"})
      b.add_u32(arch + "." + k, static_cast<uint32_t>(g.find(std::string("llama.") + k)->as_int()));
    if (!scaling.empty()) b.add_string(arch + ".rope.scaling.type", scaling);
    for (const auto& [name, t] : llama.named_parameters()) {
      at::Tensor f = t.contiguous();
      std::vector<int64_t> ne(f.sizes().rbegin(), f.sizes().rend());
      b.add_tensor(name, ne, GGML_F32, std::string(static_cast<const char*>(f.data_ptr()), f.numel() * 4));
    }
    if (bad_freqs) b.add_tensor("rope_freqs.weight", {3}, GGML_F32, std::string(12, '\0'));
    write_file_atomic(d / "x.gguf", b.build());
  };
  rebuild("falcon", false, "");
  expect_error([&] { read_gguf_llama(d / "x.gguf"); }, ErrorKind::Unsupported, "llama, qwen2, qwen3");
  rebuild("llama", true, "");
  expect_error([&] { read_gguf_llama(d / "x.gguf"); }, ErrorKind::Format, "rope_freqs.weight");
  rebuild("llama", false, "yarn");
  expect_error([&] { read_gguf_llama(d / "x.gguf"); }, ErrorKind::Unsupported, "yarn");
  rebuild("llama", false, "");
  EXPECT_NO_THROW(read_gguf_llama(d / "x.gguf"));
  // A model with online transforms cannot be written to GGUF (llama.cpp's graph has no place for them).
  LlamaModel t = llama;
  t.blocks[0].down_in.then(OnlineFactor::dense(at::eye(t.cfg.hidden_dim)));
  expect_error([&] { write_gguf_llama(t, nullptr, d / "t.gguf"); }, ErrorKind::Unsupported, "online transforms");
  EXPECT_FALSE(file_exists(d / "t.gguf"));
}

TEST(LlmArch, BlockByBlockForwardAndStoredDtypeWeights) {
  const int64_t vocab = 300;
  at::Tensor t = sample_tokens(vocab, 2, 12, 9);
  for (const ArchCase& a : arch_cases(vocab)) {
    SCOPED_TRACE(a.name);
    LlamaModel m = LlamaModel::random(a.cfg, 21);
    at::NoGradGuard ng;
    const at::Tensor ref = m.forward(t);
    at::Tensor x = m.embed(t);
    for (int64_t l = 0; l < m.cfg.n_layers; ++l) x = m.block_forward(l, x);
    EXPECT_TRUE(at::equal(m.head(x), ref));
    // Weights held as bf16 (as a memory-mapped bf16 checkpoint would be): fp32 compute on the rounded weights.
    LlamaModel r = m;  // the same weights rounded to bf16 and back, in fp32
    LlamaModel h = m;  // held as bf16
    auto each = [](LlamaModel& mm, auto&& f) {
      f(mm.tok_embeddings), f(mm.norm);
      if (!mm.cfg.tied_head) f(mm.output);
      for (LlamaBlock& b : mm.blocks)
        for (const LlamaBlockTensor& bt : llama_block_tensors())
          if (bt.present(mm.cfg)) f(b.*bt.member);
      if (mm.cfg.tied_head) mm.output = mm.tok_embeddings;
    };
    each(r, [](at::Tensor& w) { w = w.to(at::kBFloat16).to(at::kFloat); });
    each(h, [](at::Tensor& w) { w = w.to(at::kBFloat16); });
    EXPECT_TRUE(at::equal(h.forward(t), r.forward(t)));
  }
}

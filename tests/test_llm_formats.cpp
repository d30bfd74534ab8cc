// Readers/writers: llama2.c, GGUF (f32/f16/bf16/q8_0), HF safetensors (single/sharded, tied/untied).
// Fixtures: a random tiny model, and stories260K when ../shared exists.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <functional>

#include "core/file_util.h"
#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "io/llm_loader.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

namespace {
at::Tensor logits_of(const LlamaModel& m, const at::Tensor& tok) {
  torch::NoGradGuard ng;
  return m.forward(tok);
}
// Relative error of logits (max |diff| / max |ref|).
double rel_err(const at::Tensor& a, const at::Tensor& ref) {
  return max_abs_diff(a, ref) / ref.abs().max().item<double>();
}
LlamaModel untied(const LlamaModel& m, uint64_t seed) {
  LlamaModel u = m;
  u.cfg.tied_head = false;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  u.output = m.tok_embeddings + at::normal(0.0, 0.01, m.tok_embeddings.sizes(), gen);
  return u;
}
}  // namespace

TEST(LlmFormats, Llama2cRoundTrip) {
  for (const ModelAndTok& mt : models_for_format_tests()) {
    SCOPED_TRACE(mt.name);
    TempDir d;
    at::Tensor tok = sample_tokens(mt.model.cfg.vocab_size, 2, 16, 1);
    for (bool tie : {true, false}) {
      LlamaModel m = tie ? mt.model : untied(mt.model, 3);
      write_llama2c(m, d / "m.bin");
      LlamaModel r = read_llama2c(d / "m.bin");
      EXPECT_EQ(r.cfg.tied_head, tie);
      EXPECT_TRUE(at::equal(logits_of(r, tok), logits_of(m, tok)));
    }
    if (mt.real) {
      // Our writer reproduces the original file byte for byte up to the legacy RoPE tables, which the
      // reader ignores and which may differ in the last bit (float cos/sin of another implementation).
      write_llama2c(mt.model, d / "copy.bin");
      auto ours = read_file_bytes(d / "copy.bin"), orig = read_file_bytes(stories_bin());
      ASSERT_EQ(ours.size(), orig.size());
      const size_t tables = 2 * mt.model.cfg.seq_len * (mt.model.cfg.hd() / 2) * 4;
      EXPECT_TRUE(std::equal(ours.begin(), ours.end() - tables, orig.begin()));
      for (size_t i = ours.size() - tables; i < ours.size(); i += 4) {
        float x, y;
        std::memcpy(&x, &ours[i], 4);
        std::memcpy(&y, &orig[i], 4);
        ASSERT_NEAR(x, y, 1e-5) << "RoPE table float at byte " << i;
      }
    }
  }
}

TEST(LlmFormats, GgufRoundTripAllTypes) {
  for (const ModelAndTok& mt : models_for_format_tests()) {
    SCOPED_TRACE(mt.name);
    TempDir d;
    at::Tensor tok = sample_tokens(mt.model.cfg.vocab_size, 2, 24, 2);
    at::Tensor ref = logits_of(mt.model, tok);
    struct Case { GgufWeightType t; double tol; const char* name; };
    for (Case c : {Case{GgufWeightType::F32, 0.0, "f32"}, Case{GgufWeightType::F16, 3e-3, "f16"},
                   Case{GgufWeightType::BF16, 3e-2, "bf16"}, Case{GgufWeightType::Q8_0, 3e-2, "q8_0"},
                   Case{GgufWeightType::Q4_0, 0.35, "q4_0"}, Case{GgufWeightType::Q4_1, 0.35, "q4_1"}}) {
      GgufWriteOptions o;
      o.weights = c.t;
      const std::string p = d / (std::string(c.name) + ".gguf");
      write_gguf_llama(mt.model, &mt.tok, p, o);
      GgufLlama g = read_gguf_llama(p);
      EXPECT_EQ(g.model.cfg.dim, mt.model.cfg.dim);
      EXPECT_EQ(g.model.cfg.n_kv_heads, mt.model.cfg.n_kv_heads);
      EXPECT_EQ(g.model.cfg.tied_head, mt.model.cfg.tied_head);
      at::Tensor got = logits_of(g.model, tok);
      if (c.tol == 0) EXPECT_TRUE(at::equal(got, ref)) << c.name;
      else EXPECT_LT(rel_err(got, ref), c.tol) << c.name;
      ASSERT_TRUE(g.tokenizer.has_value()) << g.tokenizer_note;
      EXPECT_EQ(g.tokenizer->pieces(), mt.tok.pieces());
      EXPECT_EQ(g.tokenizer->scores(), mt.tok.scores());
      EXPECT_EQ(g.tokenizer->encode("Once upon a time, Lily saw a cat.", true, false),
                mt.tok.encode("Once upon a time, Lily saw a cat.", true, false));
      GgufFile f = read_gguf(p);
      EXPECT_EQ(f.version, 3u);
      EXPECT_EQ(f.alignment, 32u);
      if (c.t == GgufWeightType::Q8_0) {
        EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->type, GGML_Q8_0);
        EXPECT_EQ(f.find_tensor("blk.0.attn_norm.weight")->type, GGML_F32);
        // Q8_0 error per weight: half a step (amax/127/2 per block of 32) plus 127 x the fp16 rounding of the
        // step (<= 2^-11 relative), i.e. below 0.57 steps.
        at::Tensor w = mt.model.blocks[0].wq, q = g.model.blocks[0].wq;
        at::Tensor step = w.reshape({-1, 32}).abs().amax(1, true) / 127;
        EXPECT_TRUE(((q - w).reshape({-1, 32}).abs() <= step * 0.57 + 1e-7).all().item<bool>());
      }
      if (c.t == GgufWeightType::Q4_0 || c.t == GgufWeightType::Q4_1) {
        EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->type, c.t == GgufWeightType::Q4_0 ? GGML_Q4_0 : GGML_Q4_1);
        at::Tensor w = mt.model.blocks[0].wq.reshape({-1, 32}), q = g.model.blocks[0].wq.reshape({-1, 32});
        at::Tensor err = (q - w).abs();
        if (c.t == GgufWeightType::Q4_0) {
          // d = amax/8; the value opposite the extreme can sit a whole step from level 7·d; fp16 d adds 8·2^-11·d.
          EXPECT_TRUE((err <= w.abs().amax(1, true) / 8 * 1.01 + 1e-7).all().item<bool>());
        } else {
          // d = (max − min)/15: half a step, plus the fp16 rounding of d (15 steps) and of the minimum.
          at::Tensor lo = std::get<0>(w.min(1, true)), hi = std::get<0>(w.max(1, true));
          EXPECT_TRUE((err <= (hi - lo) / 15 * 0.52 + lo.abs() * 1e-3 + 1e-7).all().item<bool>());
        }
      }
    }
    // Non-default alignment is written as general.alignment and honoured.
    GgufWriteOptions o;
    o.alignment = 64;
    write_gguf_llama(mt.model, &mt.tok, d / "a64.gguf", o);
    GgufFile f = read_gguf(d / "a64.gguf");
    EXPECT_EQ(f.alignment, 64u);
    EXPECT_EQ(f.data_offset % 64, 0u);
    EXPECT_TRUE(at::equal(logits_of(read_gguf_llama(d / "a64.gguf").model, tok), ref));
    // Through the generic loader (format detection), untied head.
    LlamaModel u = untied(mt.model, 5);
    write_gguf_llama(u, &mt.tok, d / "u.gguf");
    LoadedLlama l = load_llama(d / "u.gguf");
    EXPECT_EQ(l.format, "gguf");
    EXPECT_FALSE(l.model.cfg.tied_head);
    EXPECT_TRUE(l.tokenizer.has_value());
    EXPECT_TRUE(at::equal(logits_of(l.model, tok), logits_of(u, tok)));
  }
}

TEST(LlmFormats, GgufMetadataOfAllValueTypes) {
  GgufBuilder b;
  b.add_string("general.architecture", "test");
  b.add_u32("a.u32", 7);
  b.add_i32("a.i32", -7);
  b.add_u64("a.u64", 1ull << 40);
  b.add_f32("a.f32", 0.5f);
  b.add_bool("a.bool", true);
  b.add_string_array("a.strs", {"x", "", "yz"});
  b.add_f32_array("a.f32s", {1, 2, 3});
  b.add_i32_array("a.i32s", {});
  b.add_tensor("t", {4, 2}, GGML_F32, std::string(32, '\0'));
  TempDir d;
  std::string s = b.build(3, 32);
  write_file_atomic(d / "x.gguf", s);
  GgufFile f = read_gguf(d / "x.gguf");
  EXPECT_EQ(f.find("a.u32")->as_int(), 7);
  EXPECT_EQ(f.find("a.i32")->as_int(), -7);
  EXPECT_EQ(f.find("a.u64")->as_int(), int64_t(1) << 40);
  EXPECT_DOUBLE_EQ(f.find("a.f32")->as_double(), 0.5);
  EXPECT_EQ(f.find("a.bool")->u, 1u);
  EXPECT_EQ(f.find("a.strs")->arr.size(), 3u);
  EXPECT_EQ(f.find("a.strs")->arr[2].s, "yz");
  EXPECT_EQ(f.find("a.f32s")->arr[1].as_double(), 2.0);
  EXPECT_TRUE(f.find("a.i32s")->arr.empty());
  ASSERT_EQ(f.tensors.size(), 1u);
  EXPECT_EQ(f.tensors[0].shape(), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(f.tensor_f32(f.tensors[0]).sizes().vec(), (std::vector<int64_t>{2, 4}));
  // Version 2 has the same layout.
  write_file_atomic(d / "v2.gguf", b.build(2, 32));
  EXPECT_EQ(read_gguf(d / "v2.gguf").version, 2u);
}

TEST(LlmFormats, SafetensorsRoundTrip) {
  for (const ModelAndTok& mt : models_for_format_tests()) {
    SCOPED_TRACE(mt.name);
    TempDir d;
    at::Tensor tok = sample_tokens(mt.model.cfg.vocab_size, 2, 24, 3);
    LlamaModel u = untied(mt.model, 9);
    struct Case { SafetensorsDtype t; int shards; bool tie; double tol; const char* name; };
    for (Case c : {Case{SafetensorsDtype::F32, 1, true, 0.0, "f32"}, Case{SafetensorsDtype::F32, 3, false, 0.0, "f32x3"},
                   Case{SafetensorsDtype::F16, 1, false, 3e-3, "f16"}, Case{SafetensorsDtype::BF16, 2, true, 3e-2, "bf16x2"}}) {
      const LlamaModel& m = c.tie ? mt.model : u;
      const std::string folder = d / c.name;
      write_hf_llama(m, folder, c.t, c.shards);
      EXPECT_EQ(file_exists(folder + "/model.safetensors.index.json"), c.shards > 1);
      LoadedLlama l = load_llama(folder);
      EXPECT_EQ(l.format, "safetensors");
      EXPECT_EQ(l.model.cfg.tied_head, c.tie);
      EXPECT_EQ(l.model.cfg.n_kv_heads, m.cfg.n_kv_heads);
      EXPECT_DOUBLE_EQ(l.model.cfg.norm_eps, m.cfg.norm_eps);
      at::Tensor ref = logits_of(m, tok), got = logits_of(l.model, tok);
      if (c.tol == 0) EXPECT_TRUE(at::equal(got, ref)) << c.name;
      else EXPECT_LT(rel_err(got, ref), c.tol) << c.name;
    }
    // config.json names the tokenizer's special ids (Llama-2's 1 / 2 by default; none = null).
    EXPECT_NE(read_file_text(d / "f32/config.json").find("\"bos_token_id\": 1"), std::string::npos);
    write_hf_llama(mt.model, d / "ids", SafetensorsDtype::F32, 1, {128000, -1});
    const std::string cj = read_file_text(d / "ids/config.json");
    EXPECT_NE(cj.find("\"bos_token_id\": 128000"), std::string::npos) << cj;
    EXPECT_NE(cj.find("\"eos_token_id\": null"), std::string::npos) << cj;
    // q_proj/k_proj are stored in HF (rotate-half) row order, v_proj unchanged.
    SafetensorsFile f = read_safetensors(d / "f32/model.safetensors");
    const int64_t H = mt.model.cfg.n_heads, KV = mt.model.cfg.n_kv_heads;
    EXPECT_TRUE(at::equal(f.tensor_f32("model.layers.0.self_attn.q_proj.weight"),
                          rope_permute_interleaved_to_hf(mt.model.blocks[0].wq, H)));
    EXPECT_TRUE(at::equal(f.tensor_f32("model.layers.0.self_attn.k_proj.weight"),
                          rope_permute_interleaved_to_hf(mt.model.blocks[0].wk, KV)));
    EXPECT_TRUE(at::equal(f.tensor_f32("model.layers.0.self_attn.v_proj.weight"), mt.model.blocks[0].wv));
    EXPECT_FALSE(at::equal(f.tensor_f32("model.layers.0.self_attn.q_proj.weight"), mt.model.blocks[0].wq));
    // A .safetensors file path next to config.json works too.
    LlamaModel direct = read_hf_llama(d / "f32/model.safetensors");
    EXPECT_TRUE(at::equal(logits_of(direct, tok), logits_of(mt.model, tok)));
  }
}

TEST(LlmFormats, GgufQ4BlocksHaveGgmlLayout) {
  // Q4_0: x_j = (j mod 16) − 8, so −8 (first at j = 0) is the extreme: d = −8/−8 = 1 and q_j = x_j + 8; x_31 = 8
  // has the same magnitude but comes later, and its code 16 is clamped to 15 (decoded 7).
  at::Tensor x = at::arange(32, at::kFloat).remainder(16) - 8;
  x[31] = 8;
  std::string q40 = quantize_q4_0(x);
  ASSERT_EQ(q40.size(), 18u);
  EXPECT_EQ(static_cast<uint8_t>(q40[0]) | static_cast<uint8_t>(q40[1]) << 8, c10::Half(1.0f).x);
  for (int j = 0; j < 16; ++j) {
    const int lo = j, hi = j == 15 ? 15 : j;  // codes of x_j and x_{j+16} (low nibble first)
    EXPECT_EQ(static_cast<uint8_t>(q40[2 + j]), lo | hi << 4) << j;
  }
  // Q4_1 over [−8, 23]: m = −8, d = 31/15.
  at::Tensor y = at::arange(32, at::kFloat) - 8;
  std::string q41 = quantize_q4_1(y);
  ASSERT_EQ(q41.size(), 20u);
  EXPECT_EQ(static_cast<uint8_t>(q41[2]) | static_cast<uint8_t>(q41[3]) << 8, c10::Half(-8.0f).x);
  EXPECT_EQ(static_cast<uint8_t>(q41[4]) & 0x0F, 0);       // the minimum
  EXPECT_EQ(static_cast<uint8_t>(q41[4 + 15]) >> 4, 15);   // the maximum (x_31)
  // Decoding through the reader gives back the levels.
  GgufBuilder b;
  b.add_tensor("a", {32}, GGML_Q4_0, q40);
  b.add_tensor("b", {32}, GGML_Q4_1, q41);
  TempDir d;
  write_file_atomic(d / "q4.gguf", b.build());
  GgufFile f = read_gguf(d / "q4.gguf");
  at::Tensor a = f.tensor_f32(*f.find_tensor("a")), bb = f.tensor_f32(*f.find_tensor("b"));
  at::Tensor want_a = x.clamp_max(7);  // level 15 − 8 = 7 is the top of Q4_0's grid
  EXPECT_TRUE(at::allclose(a, want_a)) << a;
  EXPECT_LT((bb - y).abs().max().item<float>(), 31.0f / 15 / 2 + 0.02f);
  // The reader refuses a Q4 tensor whose payload is short (64 values need 36 bytes, the file holds 18).
  GgufBuilder bad;
  bad.add_tensor("a", {64}, GGML_Q4_0, q40);
  write_file_atomic(d / "bad.gguf", bad.build());
  try {
    read_gguf(d / "bad.gguf");
    FAIL() << "short Q4_0 payload accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Format) << e.what();
  }
}

// The streaming writer: declared tensors written in any order give the same bytes as the in-memory builder; a missing,
// repeated, unknown or mis-sized tensor is refused and an unfinished writer leaves neither the file nor its temp.
TEST(LlmFormats, GgufStreamWriterWritesTheBuildersBytesInAnyOrder) {
  auto data = [](size_t n, char c) { return std::string(n, c); };
  GgufBuilder full, plan;
  for (GgufBuilder* b : {&full, &plan}) {
    b->add_string("general.architecture", "test");
    b->add_tensor("fixed", {8}, GGML_F32, data(32, 'f'));
  }
  full.add_tensor("a", {32, 2}, GGML_Q8_0, data(68, 'a'));
  full.add_tensor("b", {7}, GGML_F32, data(28, 'b'));  // ends unaligned: padding follows
  full.add_tensor("c", {64}, GGML_Q4_0, data(36, 'c'));
  plan.declare_tensor("a", {32, 2}, GGML_Q8_0);
  plan.declare_tensor("b", {7}, GGML_F32);
  plan.declare_tensor("c", {64}, GGML_Q4_0);
  TempDir d;
  {
    GgufStreamWriter w(d / "s.gguf", plan);
    w.write("c", data(36, 'c'));
    w.write("a", data(68, 'a'));
    EXPECT_FALSE(w.written("b"));
    w.write("b", data(28, 'b'));
    EXPECT_TRUE(w.written("b"));
    w.finish();
  }
  EXPECT_EQ(read_file_text(d / "s.gguf"), full.build());
  EXPECT_EQ(read_gguf(d / "s.gguf").tensors.size(), 4u);
  // Misuse: nothing at the path, no temp file left.
  auto refused = [&](const std::function<void(GgufStreamWriter&)>& f, const std::string& what) {
    {
      GgufStreamWriter w(d / "bad.gguf", plan);
      try {
        f(w);
        ADD_FAILURE() << "no error for " << what;
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Internal);
        EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
      }
    }
    EXPECT_FALSE(file_exists(d / "bad.gguf"));
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(d.path), {}), 1);  // s.gguf only
  };
  refused([&](GgufStreamWriter& w) { w.write("a", data(67, 'a')); }, "declared 68");
  refused([&](GgufStreamWriter& w) { w.write("z", data(4, 'z')); }, "was not declared");
  refused([&](GgufStreamWriter& w) { w.write("b", data(28, 'b')), w.write("b", data(28, 'b')); }, "written twice");
  refused([&](GgufStreamWriter& w) { w.write("a", data(68, 'a')), w.finish(); }, "never written");
  EXPECT_THROW(plan.build(), Error);  // declared tensors have no bytes to build from
}

// GGUF block formats against llama.cpp itself: the ggml library that the npm package node-llama-cpp installs
// (scripts/setup.sh) quantizes rows into every format catq reads; catq's decoder must reproduce ggml's own decoder
// bit for bit, and catq's encoders (Q8_0, Q4_0, Q4_1) must write ggml's bytes. Skips when the library is absent.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "core/process.h"
#include "io/gguf.h"
#include "quant/ggml_blocks.h"
#include "test_llm_util.h"

namespace {

using ToFloat = void (*)(const void*, float*, int64_t);
using QuantizeChunk = size_t (*)(int, const float*, void*, int64_t, int64_t, int64_t, const float*);
using QuantizeInit = void (*)(int);
using GetTraits = const void* (*)(int);

// ggml_type_traits has gained fields over time; both layouts seen in ggml's history are recognised by checking the
// block size and byte size they report against the format's (a wrong guess is never used).
struct TraitsWithInterleave {
  const char* type_name;
  int64_t blck_size, blck_size_interleave;
  size_t type_size;
  bool is_quantized;
  ToFloat to_float;
};
struct TraitsPlain {
  const char* type_name;
  int64_t blck_size;
  size_t type_size;
  bool is_quantized;
  ToFloat to_float;
};

struct Ggml {
  void* lib = nullptr;
  QuantizeChunk quantize = nullptr;
  QuantizeInit init = nullptr;
  GetTraits traits = nullptr;

  Ggml() {
    const char* e = std::getenv("CATQ_PEERS");
    const std::string peers = e && *e ? e : std::string(CATQ_SOURCE_DIR) + "/.cache/peers";
    const std::string path = peers + "/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
    if (!catq::file_exists(path)) return;
    lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    quantize = reinterpret_cast<QuantizeChunk>(dlsym(lib, "ggml_quantize_chunk"));
    init = reinterpret_cast<QuantizeInit>(dlsym(lib, "ggml_quantize_init"));
    traits = reinterpret_cast<GetTraits>(dlsym(lib, "ggml_get_type_traits"));
  }
  bool ok() const { return quantize && init && traits; }
  // ggml's decoder for `type`, or null when the traits layout is not recognised.
  ToFloat to_float(int type, int64_t block, int64_t bytes) const {
    const void* t = traits(type);
    const auto* a = static_cast<const TraitsWithInterleave*>(t);
    if (a->blck_size == block && static_cast<int64_t>(a->type_size) == bytes && a->is_quantized) return a->to_float;
    const auto* b = static_cast<const TraitsPlain*>(t);
    if (b->blck_size == block && static_cast<int64_t>(b->type_size) == bytes && b->is_quantized) return b->to_float;
    return nullptr;
  }
};

const Ggml& ggml() {
  static Ggml g;
  return g;
}

// Rows of Gaussian weights with a few outliers and an all-zero stretch (the edge cases of every scale search).
std::vector<float> test_rows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng);
  for (int64_t i = 0; i < n; i += 97) x[i] *= 12.0f;
  for (int64_t i = 256; i < 320 && i < n; ++i) x[i] = 0.0f;
  return x;
}

}  // namespace

TEST(GgufBlocks, DecodersMatchLlamaCppBitForBit) {
  if (!ggml().ok()) GTEST_SKIP() << "needs node-llama-cpp's libggml-base.so in .cache/peers (scripts/setup.sh)";
  const int64_t rows = 4, per_row = 1024, n = rows * per_row;
  const std::vector<float> x = test_rows(n, 7);
  for (int type : {2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 20}) {
    const catq::GgmlTypeTraits* tt = catq::ggml_type_traits(type);
    ASSERT_NE(tt, nullptr) << type;
    ASSERT_NE(tt->dequantize, nullptr) << tt->name;
    ToFloat ref = ggml().to_float(type, tt->block, tt->bytes);
    if (!ref) GTEST_SKIP() << "ggml_type_traits layout not recognised (type " << tt->name << ")";
    ggml().init(type);
    std::vector<uint8_t> blocks(static_cast<size_t>(n / tt->block * tt->bytes));
    const size_t written = ggml().quantize(type, x.data(), blocks.data(), 0, rows, per_row, nullptr);
    ASSERT_EQ(written, blocks.size()) << tt->name << ": block size / bytes per block differ from ggml's";
    std::vector<float> ours(n), theirs(n);
    for (int64_t b = 0; b < n / tt->block; ++b) tt->dequantize(&blocks[b * tt->bytes], &ours[b * tt->block]);
    ref(blocks.data(), theirs.data(), n);
    EXPECT_EQ(std::memcmp(ours.data(), theirs.data(), n * sizeof(float)), 0) << tt->name;
    double err = 0, energy = 0;
    for (int64_t i = 0; i < n; ++i) err += (ours[i] - x[i]) * (ours[i] - x[i]), energy += x[i] * x[i];
    EXPECT_LT(err / energy, 0.2) << tt->name << ": decoded values are far from the input (layout?)";
  }
}

TEST(GgufBlocks, EncodersWriteLlamaCppBytes) {
  if (!ggml().ok()) GTEST_SKIP() << "needs node-llama-cpp's libggml-base.so in .cache/peers (scripts/setup.sh)";
  const int64_t n = 4096;
  const std::vector<float> x = test_rows(n, 11);
  for (int type : {2, 3, 6, 7, 8}) {  // the plain round-to-nearest formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
    const catq::GgmlTypeTraits* tt = catq::ggml_type_traits(type);
    ASSERT_NE(tt->quantize, nullptr) << tt->name;
    std::vector<uint8_t> ours(static_cast<size_t>(n / tt->block * tt->bytes)), theirs(ours.size());
    for (int64_t b = 0; b < n / tt->block; ++b) tt->quantize(&x[b * tt->block], nullptr, &ours[b * tt->bytes]);
    ggml().init(type);
    ASSERT_EQ(ggml().quantize(type, x.data(), theirs.data(), 0, 1, n, nullptr), theirs.size()) << tt->name;
    EXPECT_EQ(ours, theirs) << tt->name;
  }
}

// The searched formats (IQ4_NL, Q2_K … Q6_K) have no single reference byte stream: catq's encoder must write blocks
// that llama.cpp decodes to exactly the values catq intended (its own decoder, bit for bit, which the test above ties
// to ggml's), with a squared error no worse than ggml's own reference quantizer on the same rows (ggml weighs its
// search by x², catq by plain squared error, so catq should be at least as good in plain error), and the importance
// weights must steer the error towards the weighted values.
TEST(GgufBlocks, SearchedEncodersRoundTripThroughLlamaCppAtLeastAsWell) {
  if (!ggml().ok()) GTEST_SKIP() << "needs node-llama-cpp's libggml-base.so in .cache/peers (scripts/setup.sh)";
  const int64_t rows = 8, per_row = 1024, n = rows * per_row;
  const std::vector<float> x = test_rows(n, 23);
  for (int type : {10, 11, 12, 13, 14, 20}) {
    const catq::GgmlTypeTraits* tt = catq::ggml_type_traits(type);
    ASSERT_NE(tt->quantize, nullptr) << tt->name;
    ToFloat ref = ggml().to_float(type, tt->block, tt->bytes);
    if (!ref) GTEST_SKIP() << "ggml_type_traits layout not recognised (type " << tt->name << ")";
    std::vector<uint8_t> ours(static_cast<size_t>(n / tt->block * tt->bytes)), theirs(ours.size());
    for (int64_t b = 0; b < n / tt->block; ++b) tt->quantize(&x[b * tt->block], nullptr, &ours[b * tt->bytes]);
    ggml().init(type);
    ASSERT_EQ(ggml().quantize(type, x.data(), theirs.data(), 0, rows, per_row, nullptr), theirs.size()) << tt->name;
    std::vector<float> ours_dec(n), ours_by_ggml(n), theirs_dec(n);
    for (int64_t b = 0; b < n / tt->block; ++b) tt->dequantize(&ours[b * tt->bytes], &ours_dec[b * tt->block]);
    ref(ours.data(), ours_by_ggml.data(), n);
    ref(theirs.data(), theirs_dec.data(), n);
    EXPECT_EQ(std::memcmp(ours_dec.data(), ours_by_ggml.data(), n * sizeof(float)), 0) << tt->name;
    double e_ours = 0, e_theirs = 0, energy = 0;
    for (int64_t i = 0; i < n; ++i) {
      e_ours += (ours_dec[i] - x[i]) * (ours_dec[i] - x[i]);
      e_theirs += (theirs_dec[i] - x[i]) * (theirs_dec[i] - x[i]);
      energy += x[i] * x[i];
    }
    std::printf("[ gguf ] %-6s relative squared error: catq %.5f, ggml reference %.5f\n", tt->name, e_ours / energy,
                e_theirs / energy);
    EXPECT_LE(e_ours, 1.01 * e_theirs) << tt->name;
    EXPECT_LT(e_ours / energy, 0.2) << tt->name;

    // Importance: the first half of every block weighted 100×; its error must drop, the total stays sane.
    std::vector<float> imp(per_row);
    for (int64_t i = 0; i < per_row; ++i) imp[i] = (i % tt->block) < tt->block / 2 ? 100.0f : 1.0f;
    std::vector<uint8_t> weighted(ours.size());
    std::vector<float> wdec(n);
    for (int64_t b = 0; b < n / tt->block; ++b)
      tt->quantize(&x[b * tt->block], &imp[(b * tt->block) % per_row], &weighted[b * tt->bytes]);
    ref(weighted.data(), wdec.data(), n);
    double first_plain = 0, first_weighted = 0;
    for (int64_t i = 0; i < n; ++i)
      if ((i % tt->block) < tt->block / 2) {
        first_plain += (ours_dec[i] - x[i]) * (ours_dec[i] - x[i]);
        first_weighted += (wdec[i] - x[i]) * (wdec[i] - x[i]);
      }
    EXPECT_LT(first_weighted, first_plain) << tt->name << ": importance weights do not steer the error";
  }
}

// catq reads GGUF files of every block type that llama.cpp itself wrote (rows quantized by ggml_quantize_chunk) and
// scores them as llama.cpp does: perplexity on the same token windows within 0.5 % (llama.cpp also quantizes the
// activations to 8 bits inside its quantized dot products; catq runs the dequantized weights in fp32).
TEST(PeerLlamaCpp, EveryGgufTypeReadsWithLlamaCppsPerplexity) {
  using namespace catq;
  using namespace catq::testing_llm;
  const std::string peers = [] {
    const char* e = std::getenv("CATQ_PEERS");
    return e && *e ? std::string(e) : std::string(CATQ_SOURCE_DIR) + "/.cache/peers";
  }();
  if (!ggml().ok() || !file_exists(peers + "/node_modules/node-llama-cpp/dist/index.js") ||
      std::system("node --version > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "needs node, node-llama-cpp and its libggml-base.so in " << peers << " (scripts/setup.sh)";
  const Tokenizer tok = tiny_tokenizer();
  LlamaConfig c = tiny_config(tok.vocab_size(), /*tied=*/false);
  c.dim = 256, c.hidden_dim = 512, c.n_heads = 4, c.n_kv_heads = 2;  // rows a multiple of 256 (K-quant super-blocks)
  LlamaModel m = LlamaModel::random(c, 31);
  {
    at::NoGradGuard ng;
    m.output = m.output * 7.5;  // logits of std ~2-3: a perplexity that reacts to weight errors
  }
  TempDir d;
  // Token windows [BOS, t1..t32] of random tokens (the same for both).
  nlohmann::json windows = nlohmann::json::array();
  at::Tensor toks = sample_tokens(tok.vocab_size(), 8, 33, 4);
  toks.select(1, 0).fill_(tok.bos_id());
  for (int64_t i = 0; i < toks.size(0); ++i)
    windows.push_back(std::vector<int64_t>(toks[i].data_ptr<int64_t>(), toks[i].data_ptr<int64_t>() + 33));
  std::ofstream(d / "windows.json") << windows.dump();

  for (int type : {2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 20}) {
    const GgmlTypeTraits* tt = ggml_type_traits(type);
    SCOPED_TRACE(tt->name);
    ggml().init(type);
    GgufBuilder b;
    b.add_string("general.architecture", "llama");
    b.add_u32("llama.context_length", static_cast<uint32_t>(c.seq_len));
    b.add_u32("llama.embedding_length", static_cast<uint32_t>(c.dim));
    b.add_u32("llama.block_count", static_cast<uint32_t>(c.n_layers));
    b.add_u32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
    b.add_u32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
    b.add_u32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
    b.add_f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.norm_eps));
    b.add_f32("llama.rope.freq_base", static_cast<float>(c.rope_theta));
    add_gguf_tokenizer(b, tok);
    for (const auto& [name, t0] : m.named_parameters()) {
      at::Tensor t = t0.detach().contiguous();
      std::vector<int64_t> ne(t.sizes().rbegin(), t.sizes().rend());
      // Norms and the embedding table (looked up, not multiplied) stay F32, as llama.cpp's mixes keep them high.
      if (t.dim() == 1 || name == "token_embd.weight") {
        b.add_tensor(name, ne, GGML_F32, std::string(static_cast<const char*>(t.data_ptr()), t.numel() * 4));
        continue;
      }
      std::string blocks(static_cast<size_t>(t.numel() / tt->block * tt->bytes), '\0');
      ASSERT_EQ(ggml().quantize(type, t.data_ptr<float>(), blocks.data(), 0, t.size(0), t.size(1), nullptr),
                blocks.size());
      b.add_tensor(name, ne, static_cast<uint32_t>(type), std::move(blocks));
    }
    const std::string ggml_path = d / (std::string(tt->name) + ".gguf");
    write_file_atomic(ggml_path, b.build());
    // The same type written by catq's own encoder (catq export), every 2-D weight in it (rows are multiples of 256).
    const std::string catq_path = d / (std::string(tt->name) + "-catq.gguf");
    GgufWriteOptions wo;
    for (const auto& wi : gguf_weight_types())
      if (wi.ggml == static_cast<uint32_t>(type)) wo.weights = wi.type;
    ASSERT_EQ(gguf_weight_type_info(wo.weights).ggml, static_cast<uint32_t>(type));
    write_gguf_llama(m, &tok, catq_path, wo);
    EXPECT_EQ(read_gguf(catq_path).find_tensor("blk.0.ffn_down.weight")->type, static_cast<uint32_t>(type));
   for (const std::string& path : {ggml_path, catq_path}) {
    GgufLlama g = read_gguf_llama(path);
    double nll = 0;
    {
      at::NoGradGuard ng;
      at::Tensor lp = at::log_softmax(g.model.forward(toks.narrow(1, 0, 32)), -1);
      nll = -lp.gather(2, toks.narrow(1, 1, 32).unsqueeze(2)).mean().item<double>();
    }
    int code = -1;
    const std::string out = run_capture("CATQ_PEERS='" + peers + "' node '" + CATQ_SOURCE_DIR +
                                        "/tests/peers/llama_cpp_check.mjs' '" + path + "' '" + (d / "windows.json") +
                                        "' 0 2>&1", &code);
    ASSERT_EQ(code, 0) << out;
    nlohmann::json r = nlohmann::json::parse(out.substr(out.find('{')));
    const double ppl_catq = std::exp(nll), ppl_llama = r.at("ppl").get<double>();
    std::printf("[ peer ] %-7s %s-written: llama.cpp perplexity %.4f, catq %.4f on the same file (ratio %.5f)\n",
                tt->name, path == catq_path ? "catq" : "ggml", ppl_llama, ppl_catq, ppl_llama / ppl_catq);
    EXPECT_EQ(r.at("tokens_scored").get<int64_t>(), 8 * 32);
    EXPECT_NEAR(ppl_llama / ppl_catq, 1.0, 0.005) << path;
   }
  }
}

// Rows the type's block does not divide fall back as llama.cpp's quantizer does; unknown names list the known ones.
TEST(GgufBlocks, RowFallbackAndTypeNames) {
  using catq::GgufWeightType;
  EXPECT_EQ(catq::gguf_row_type(GgufWeightType::Q4_K, 512), GgufWeightType::Q4_K);
  EXPECT_EQ(catq::gguf_row_type(GgufWeightType::Q4_K, 64), GgufWeightType::Q5_0);
  EXPECT_EQ(catq::gguf_row_type(GgufWeightType::Q5_K, 96), GgufWeightType::Q5_1);
  EXPECT_EQ(catq::gguf_row_type(GgufWeightType::Q6_K, 64), GgufWeightType::Q8_0);
  EXPECT_EQ(catq::gguf_row_type(GgufWeightType::Q2_K, 64), GgufWeightType::IQ4_NL);
  EXPECT_EQ(catq::gguf_row_type(GgufWeightType::Q3_K, 172), GgufWeightType::F16);
  EXPECT_EQ(catq::gguf_row_type(GgufWeightType::Q4_0, 172), GgufWeightType::F16);
  for (const auto& i : catq::gguf_weight_types()) {
    EXPECT_EQ(catq::parse_gguf_weight_type(i.name), i.type);
    const catq::GgmlTypeTraits* tt = catq::ggml_type_traits(i.ggml);
    ASSERT_NE(tt, nullptr) << i.name;
    if (tt->block > 1) EXPECT_NE(tt->quantize, nullptr) << i.name << ": a writable type without an encoder";
  }
  EXPECT_EQ(catq::parse_gguf_weight_type("Q4_K"), GgufWeightType::Q4_K);
  try {
    catq::parse_gguf_weight_type("q4_k_m");
    ADD_FAILURE() << "q4_k_m accepted";
  } catch (const catq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("q6_k"), std::string::npos) << e.what();
  }
}

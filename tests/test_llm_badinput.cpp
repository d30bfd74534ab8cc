// Malformed LLM files: every case must be a catq::Error of the right kind naming the file; never a crash,
// hang or giant allocation. (Suites start with BadInput: CI runs them under ASan+UBSan.)
#include <gtest/gtest.h>

#include <cstring>

#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "io/llm_loader.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

namespace {

std::string read_str(const std::string& p) { return read_file_text(p); }
void write_str(const std::string& p, const std::string& s) { write_file_atomic(p, s); }

template <typename T>
void patch(std::string& s, size_t off, T v) {
  ASSERT_LE(off + sizeof(T), s.size());
  std::memcpy(&s[off], &v, sizeof(T));
}

std::vector<size_t> cut_points(size_t n) {
  return {0, 1, 3, 4, 7, 8, 20, 27, 28, 64, n / 3, n / 2, n - 33, n - 1};
}

LlamaModel small_model() { return LlamaModel::random(tiny_config(tiny_tokenizer().vocab_size()), 21); }

// A GGUF llama file with knobs for breaking it.
struct GgufKnobs {
  std::string arch = "llama";
  std::string skip_tensor;
  std::string q4k_tensor;  // declare this tensor as Q4_K (with correctly sized data)
  int64_t embedding_length = 0;  // 0 = the model's
};
std::string build_gguf(const LlamaModel& m, const GgufKnobs& k) {
  GgufBuilder b;
  b.add_string("general.architecture", k.arch);
  const auto& c = m.cfg;
  b.add_u32(k.arch + ".context_length", c.seq_len);
  b.add_u32(k.arch + ".embedding_length", k.embedding_length ? k.embedding_length : c.dim);
  b.add_u32(k.arch + ".block_count", c.n_layers);
  b.add_u32(k.arch + ".feed_forward_length", c.hidden_dim);
  b.add_u32(k.arch + ".attention.head_count", c.n_heads);
  b.add_u32(k.arch + ".attention.head_count_kv", c.n_kv_heads);
  for (auto& [name, t] : m.named_parameters()) {
    if (name == k.skip_tensor) continue;
    std::vector<int64_t> ne(t.sizes().rbegin(), t.sizes().rend());
    if (name == k.q4k_tensor) {
      ne = {256, 1};
      b.add_tensor(name, ne, GGML_Q4_K, std::string(144, '\0'));
      continue;
    }
    at::Tensor f = t.contiguous();
    b.add_tensor(name, ne, GGML_F32, std::string(static_cast<const char*>(f.data_ptr()), f.numel() * 4));
  }
  return b.build();
}

}  // namespace

// ---------------------------------------------------------------------------------------------------

TEST(BadInputLlama2c, TruncatedAtManyPoints) {
  TempDir d;
  write_llama2c(small_model(), d / "m.bin");
  const std::string full = read_str(d / "m.bin");
  for (size_t cut : cut_points(full.size())) {
    write_str(d / "cut.bin", full.substr(0, cut));
    expect_error([&] { read_llama2c(d / "cut.bin"); }, ErrorKind::Format, "cut.bin", fmt::format("cut {}", cut));
  }
  write_str(d / "long.bin", full + "xxxx");
  expect_error([&] { read_llama2c(d / "long.bin"); }, ErrorKind::Format, "long.bin");
}

TEST(BadInputLlama2c, ImpossibleHeaders) {
  TempDir d;
  write_llama2c(small_model(), d / "m.bin");
  const std::string full = read_str(d / "m.bin");
  struct Case { int field; int32_t value; const char* needle; };
  for (Case c : {Case{0, 0, "dim"}, Case{0, -64, "dim"}, Case{0, 1 << 30, "dim"}, Case{1, 1 << 30, "hidden"},
                 Case{2, 100000, "n_layers"}, Case{3, 3, "n_heads"}, Case{4, 3, "n_kv_heads"}, Case{4, 8, "n_kv_heads"},
                 Case{5, 0, "vocab"}, Case{5, 1 << 30, "vocab"}, Case{6, 1 << 30, "seq_len"}, Case{6, 65, "bytes"},
                 Case{5, -300, "bytes"}}) {
    std::string s = full;
    patch<int32_t>(s, 4 * c.field, c.value);
    write_str(d / "h.bin", s);
    expect_error([&] { read_llama2c(d / "h.bin"); }, ErrorKind::Format, "h.bin",
                 fmt::format("field {} = {}", c.field, c.value));
    expect_error([&] { read_llama2c(d / "h.bin"); }, ErrorKind::Format, c.needle,
                 fmt::format("field {} = {}", c.field, c.value));
  }
}

TEST(BadInputLlama2c, MissingFileAndGenericLoader) {
  TempDir d;
  expect_error([&] { read_llama2c(d / "nope.bin"); }, ErrorKind::Io, "nope.bin");
  expect_error([&] { load_llama(d / "nope.bin"); }, ErrorKind::Io, "nope.bin");
  write_str(d / "junk.bin", std::string(100, '\xff'));
  expect_error([&] { load_llama(d / "junk.bin"); }, ErrorKind::Format, "junk.bin");
}

// ---------------------------------------------------------------------------------------------------

TEST(BadInputTokenizer, MalformedFiles) {
  TempDir d;
  Tokenizer t = tiny_tokenizer();
  write_llama2c_tokenizer(t, d / "tok.bin");
  const std::string full = read_str(d / "tok.bin");
  for (size_t cut : {size_t(0), size_t(2), size_t(4), size_t(9), size_t(13), full.size() / 2, full.size() - 1}) {
    write_str(d / "cut.bin", full.substr(0, cut));
    expect_error([&] { read_llama2c_tokenizer(d / "cut.bin", t.vocab_size()); }, ErrorKind::Format, "cut.bin",
                 fmt::format("cut {}", cut));
  }
  std::string s = full;
  patch<int32_t>(s, 0, -1);  // max_token_length
  write_str(d / "neg.bin", s);
  expect_error([&] { read_llama2c_tokenizer(d / "neg.bin"); }, ErrorKind::Format, "neg.bin");
  s = full;
  patch<int32_t>(s, 8, 1 << 30);  // first token length
  write_str(d / "len.bin", s);
  expect_error([&] { read_llama2c_tokenizer(d / "len.bin"); }, ErrorKind::Format, "len.bin");
  expect_error([&] { read_llama2c_tokenizer(d / "tok.bin", int64_t(1) << 40); }, ErrorKind::Format, "tok.bin");
  expect_error([&] { read_llama2c_tokenizer(d / "missing.bin"); }, ErrorKind::Io, "missing.bin");
  // A tokenizer that does not fit the model.
  write_llama2c(LlamaModel::random(tiny_config(t.vocab_size() + 5), 1), d / "m.bin");
  expect_error([&] { load_llama(d / "m.bin", d / "tok.bin"); }, ErrorKind::Format, "tok.bin");
}

// ---------------------------------------------------------------------------------------------------

TEST(BadInputGguf, TruncatedAtManyPoints) {
  TempDir d;
  LlamaModel m = small_model();
  Tokenizer t = tiny_tokenizer();
  write_gguf_llama(m, &t, d / "m.gguf");
  const std::string full = read_str(d / "m.gguf");
  for (size_t cut : cut_points(full.size())) {
    write_str(d / "cut.gguf", full.substr(0, cut));
    expect_error([&] { read_gguf_llama(d / "cut.gguf"); }, ErrorKind::Format, "cut.gguf", fmt::format("cut {}", cut));
  }
}

TEST(BadInputGguf, HeaderFields) {
  TempDir d;
  LlamaModel m = small_model();
  write_gguf_llama(m, nullptr, d / "m.gguf");
  const std::string full = read_str(d / "m.gguf");
  std::string s = full;
  s[0] = 'X';
  write_str(d / "magic.gguf", s);
  expect_error([&] { read_gguf(d / "magic.gguf"); }, ErrorKind::Format, "magic.gguf");
  for (uint32_t v : {0u, 1u, 4u, 0x03000000u}) {
    s = full;
    patch<uint32_t>(s, 4, v);
    write_str(d / "ver.gguf", s);
    expect_error([&] { read_gguf(d / "ver.gguf"); }, ErrorKind::Unsupported, "version", fmt::format("version {}", v));
  }
  for (size_t off : {size_t(8), size_t(16)})
    for (uint64_t n : {uint64_t(1) << 40, ~uint64_t(0), uint64_t(100000)}) {
      s = full;
      patch<uint64_t>(s, off, n);
      write_str(d / "count.gguf", s);
      expect_error([&] { read_gguf(d / "count.gguf"); }, ErrorKind::Format, "count.gguf",
                   fmt::format("count at {} = {}", off, n));
    }
  // The first key's length (offset 24) declared huge.
  s = full;
  patch<uint64_t>(s, 24, uint64_t(1) << 62);
  write_str(d / "key.gguf", s);
  expect_error([&] { read_gguf(d / "key.gguf"); }, ErrorKind::Format, "key.gguf");
}

TEST(BadInputGguf, HugeArrayAndBadValues) {
  TempDir d;
  auto base = [] {
    GgufBuilder b;
    b.add_string("general.architecture", "llama");
    b.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
    return b;
  };
  std::string s = base().build();
  // Locate the array count: after key "tokenizer.ggml.tokens", type u32 (9), element type u32 (8).
  size_t k = s.find("tokenizer.ggml.tokens");
  ASSERT_NE(k, std::string::npos);
  size_t count_off = k + std::strlen("tokenizer.ggml.tokens") + 8;
  for (uint64_t n : {uint64_t(1) << 40, ~uint64_t(0), uint64_t(1000)}) {
    std::string t = s;
    patch<uint64_t>(t, count_off, n);
    write_str(d / "arr.gguf", t);
    expect_error([&] { read_gguf(d / "arr.gguf"); }, ErrorKind::Format, "arr.gguf", fmt::format("count {}", n));
  }
  std::string t = s;
  patch<uint32_t>(t, count_off - 4, 99);  // element type
  write_str(d / "et.gguf", t);
  expect_error([&] { read_gguf(d / "et.gguf"); }, ErrorKind::Format, "et.gguf");
  t = s;
  patch<uint32_t>(t, count_off - 8, 13);  // value type
  write_str(d / "vt.gguf", t);
  expect_error([&] { read_gguf(d / "vt.gguf"); }, ErrorKind::Format, "vt.gguf");
  // Nested arrays deeper than the limit.
  {
    GgufBuilder b;
    b.add_string("general.architecture", "llama");
    std::string deep = b.build();
    // Append one kv by hand: key "x", type array, 20 levels of [array, count 1], ending in u8.
    std::string kv;
    auto put64 = [&](uint64_t v) { kv.append(reinterpret_cast<const char*>(&v), 8); };
    auto put32 = [&](uint32_t v) { kv.append(reinterpret_cast<const char*>(&v), 4); };
    put64(1);
    kv += "x";
    put32(9);
    for (int i = 0; i < 20; ++i) {
      put32(i == 19 ? 0 : 9);
      put64(1);
    }
    kv += '\0';
    patch<uint64_t>(deep, 16, 2);
    deep.insert(24 + 8 + std::strlen("general.architecture") + 4 + 8 + 5, kv);
    write_str(d / "deep.gguf", deep);
    expect_error([&] { read_gguf(d / "deep.gguf"); }, ErrorKind::Format, "deep.gguf");
  }
  // A bad alignment value.
  {
    GgufBuilder b;
    b.add_u32("general.alignment", 24);
    write_str(d / "al.gguf", b.build());
    expect_error([&] { read_gguf(d / "al.gguf"); }, ErrorKind::Format, "alignment");
  }
}

TEST(BadInputGguf, TensorInfos) {
  TempDir d;
  auto one = [](std::vector<int64_t> ne, uint32_t type, size_t bytes) {
    GgufBuilder b;
    b.add_string("general.architecture", "llama");
    b.add_tensor("w", ne, type, std::string(bytes, '\0'));
    return b.build();
  };
  std::string ok = one({32, 2}, GGML_F32, 256);
  write_str(d / "ok.gguf", ok);
  EXPECT_NO_THROW(read_gguf(d / "ok.gguf"));
  // Header 24 bytes, the architecture kv 45 bytes, then the tensor name's 8-byte length and "w".
  const size_t w = 24 + 45 + 8;
  ASSERT_EQ(ok[w], 'w');
  const size_t nd_off = w + 1, ne0_off = nd_off + 4, type_off = ne0_off + 16, off_off = type_off + 4;
  struct Case { size_t off; uint64_t v; int bytes; const char* what; };
  for (Case c : {Case{nd_off, 5, 4, "n_dims 5"}, Case{nd_off, 0, 4, "n_dims 0"}, Case{ne0_off, uint64_t(1) << 50, 8, "huge dim"},
                 Case{ne0_off, 33, 8, "size mismatch"}, Case{type_off, 31, 4, "retired type id"},
                 Case{type_off, 1000, 4, "unknown type"}, Case{type_off, GGML_Q4_K, 4, "row not whole blocks"},
                 Case{off_off, 32, 8, "offset past end"}, Case{off_off, 4, 8, "misaligned offset"},
                 Case{off_off, uint64_t(1) << 63, 8, "giant offset"}}) {
    std::string s = ok;
    if (c.bytes == 4) patch<uint32_t>(s, c.off, static_cast<uint32_t>(c.v));
    else patch<uint64_t>(s, c.off, c.v);
    write_str(d / "ti.gguf", s);
    // "size mismatch": ne0 = 33 makes the tensor larger than the data; n_dims changes shift the parse.
    expect_error([&] { read_gguf(d / "ti.gguf"); }, ErrorKind::Format, "ti.gguf", c.what);
  }
}

TEST(BadInputGguf, LlamaLevelProblems) {
  TempDir d;
  LlamaModel m = small_model();
  auto check = [&](const GgufKnobs& k, ErrorKind kind, const std::string& needle, const char* what) {
    write_str(d / "l.gguf", build_gguf(m, k));
    expect_error([&] { read_gguf_llama(d / "l.gguf"); }, kind, needle, what);
    expect_error([&] { read_gguf_llama(d / "l.gguf"); }, kind, "l.gguf", what);
  };
  GgufKnobs k;
  write_str(d / "good.gguf", build_gguf(m, k));
  EXPECT_NO_THROW(read_gguf_llama(d / "good.gguf"));
  k.arch = "gpt2";
  check(k, ErrorKind::Unsupported, "gpt2", "architecture");
  k = {};
  k.skip_tensor = "blk.1.ffn_up.weight";
  check(k, ErrorKind::Format, "blk.1.ffn_up.weight", "missing tensor");
  k = {};
  k.q4k_tensor = "blk.0.attn_v.weight";
  check(k, ErrorKind::Format, "blk.0.attn_v.weight", "q4k shape");  // shape [1,256] disagrees first
  k = {};
  k.embedding_length = 32;
  check(k, ErrorKind::Format, "token_embd.weight", "shape mismatch vs metadata");
  // A tensor type catq does not decode, with the right element count: an IQ2_XXS (ggml type 16, 66 bytes per 256)
  // attn_k of the right shape; the same tensor as Q4_K (all-zero blocks) reads, as zeros.
  {
    LlamaConfig c = tiny_config(256);
    c.dim = 256;
    c.n_heads = 4;
    c.n_kv_heads = 4;
    c.hidden_dim = 256;
    c.n_layers = 1;
    LlamaModel big = LlamaModel::random(c, 3);
    GgufBuilder b;
    b.add_string("general.architecture", "llama");
    b.add_u32("llama.context_length", 64);
    b.add_u32("llama.embedding_length", 256);
    b.add_u32("llama.block_count", 1);
    b.add_u32("llama.feed_forward_length", 256);
    b.add_u32("llama.attention.head_count", 4);
    for (auto& [name, t] : big.named_parameters()) {
      std::vector<int64_t> ne(t.sizes().rbegin(), t.sizes().rend());
      if (name == "blk.0.attn_k.weight") continue;
      at::Tensor f = t.contiguous();
      b.add_tensor(name, ne, GGML_F32, std::string(static_cast<const char*>(f.data_ptr()), f.numel() * 4));
    }
    GgufBuilder q4k = b, iq2 = b;
    q4k.add_tensor("blk.0.attn_k.weight", {256, 256}, GGML_Q4_K, std::string(256 * 144, '\0'));
    iq2.add_tensor("blk.0.attn_k.weight", {256, 256}, 16, std::string(256 * 66, '\0'));
    write_str(d / "q4k.gguf", q4k.build());
    write_str(d / "iq2.gguf", iq2.build());
    EXPECT_EQ(read_gguf_llama(d / "q4k.gguf").model.blocks[0].wk.abs().sum().item<double>(), 0.0);
    expect_error([&] { read_gguf_llama(d / "iq2.gguf"); }, ErrorKind::Unsupported, "IQ2_XXS");
    expect_error([&] { read_gguf_llama(d / "iq2.gguf"); }, ErrorKind::Unsupported, "blk.0.attn_k.weight");
  }
  // Missing required metadata.
  {
    GgufBuilder b;
    b.add_string("general.architecture", "llama");
    write_str(d / "meta.gguf", b.build());
    expect_error([&] { read_gguf_llama(d / "meta.gguf"); }, ErrorKind::Format, "llama.embedding_length");
  }
  expect_error([&] { read_gguf_llama(d / "absent.gguf"); }, ErrorKind::Io, "absent.gguf");
}

// ---------------------------------------------------------------------------------------------------

TEST(BadInputSafetensors, TruncatedAndCorruptHeader) {
  TempDir d;
  LlamaModel m = small_model();
  write_hf_llama(m, d / "hf");
  const std::string st = d / "hf/model.safetensors";
  const std::string full = read_str(st);
  for (size_t cut : cut_points(full.size())) {
    write_str(st, full.substr(0, cut));
    expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Format, "model.safetensors", fmt::format("cut {}", cut));
  }
  uint64_t n;
  std::memcpy(&n, full.data(), 8);
  for (uint64_t bad : {uint64_t(1) << 40, ~uint64_t(0), n + 1, uint64_t(0)}) {
    std::string s = full;
    patch<uint64_t>(s, 0, bad);
    write_str(st, s);
    expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Format, "model.safetensors", fmt::format("N = {}", bad));
  }
  auto with_header = [&](const std::string& h) {
    std::string s(8, '\0');
    patch<uint64_t>(s, 0, h.size());
    write_str(st, s + h + full.substr(8 + n));
  };
  const std::string head = full.substr(8, n);
  // Data offsets past the buffer, wrong byte span, unknown dtype, invalid JSON, bad shape entry.
  struct Case { std::string from, to; ErrorKind kind; const char* what; };
  std::vector<Case> cases = {
      {"\"F32\"", "\"F3X\"", ErrorKind::Unsupported, "unknown dtype"},
      {"\"F32\"", "\"I32\"", ErrorKind::Unsupported, "integer weights"},
      {"{", "[", ErrorKind::Format, "invalid JSON"},
      {"\"shape\":[", "\"shape\":[-1,", ErrorKind::Format, "negative dim"},
      {"\"shape\":[", "\"shape\":[2,", ErrorKind::Format, "span mismatch"},
      {"\"data_offsets\":[0,", "\"data_offsets\":[99999999999,", ErrorKind::Format, "offset past end"},
  };
  for (const Case& c : cases) {
    std::string h = head;
    size_t p = h.find(c.from);
    ASSERT_NE(p, std::string::npos) << c.what;
    h.replace(p, c.from.size(), c.to);
    with_header(h);
    expect_error([&] { read_hf_llama(d / "hf"); }, c.kind, "model.safetensors", c.what);
  }
  write_str(st, full);
  EXPECT_NO_THROW(read_hf_llama(d / "hf"));
}

TEST(BadInputSafetensors, FolderProblems) {
  TempDir d;
  LlamaModel m = small_model();
  write_hf_llama(m, d / "hf");
  const std::string cfg = read_str(d / "hf/config.json");
  auto set_cfg = [&](const std::string& from, const std::string& to) {
    std::string c = cfg;
    size_t p = c.find(from);
    ASSERT_NE(p, std::string::npos) << from;
    c.replace(p, from.size(), to);
    write_str(d / "hf/config.json", c);
  };
  set_cfg("\"hidden_size\": 64", "\"hidden_size\": 128");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Format, "model.embed_tokens.weight", "shape mismatch");
  set_cfg("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Format, "model.layers.2", "missing tensor");
  set_cfg("\"LlamaForCausalLM\"", "\"GPT2LMHeadModel\"");
  {
    std::string c = read_str(d / "hf/config.json");
    const std::string from = "\"model_type\": \"llama\"";
    size_t p = c.find(from);
    ASSERT_NE(p, std::string::npos);
    c.replace(p, from.size(), "\"model_type\": \"gpt2\"");
    write_str(d / "hf/config.json", c);
  }
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Unsupported, "GPT2LMHeadModel");
  set_cfg("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 2.0}");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Unsupported, "rope_scaling");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Unsupported, "llama3");  // names the supported set
  set_cfg("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Format, "low_freq_factor");
  set_cfg("\"attention_bias\": false", "\"attention_bias\": true");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Unsupported, "attention_bias");
  set_cfg("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Unsupported, "hidden_act");
  set_cfg(fmt::format("\"vocab_size\": {}", m.cfg.vocab_size), "\"vocab_size\": \"many\"");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Format, "vocab_size");
  write_str(d / "hf/config.json", "{not json");
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Format, "config.json");
  write_str(d / "hf/config.json", cfg);
  EXPECT_NO_THROW(read_hf_llama(d / "hf"));
  // Missing weights / config.
  std::remove((d / "hf/model.safetensors").c_str());
  expect_error([&] { read_hf_llama(d / "hf"); }, ErrorKind::Io, "hf");
  std::remove((d / "hf/config.json").c_str());
  expect_error([&] { load_llama(d / "hf"); }, ErrorKind::Format, "config.json");
  // Sharded: a shard missing, a tensor missing from a shard, a bad file name.
  write_hf_llama(m, d / "sh", SafetensorsDtype::F32, 2);
  const std::string idx = read_str(d / "sh/model.safetensors.index.json");
  std::rename((d / "sh/model-00002-of-00002.safetensors").c_str(), (d / "sh/moved").c_str());
  expect_error([&] { read_hf_llama(d / "sh"); }, ErrorKind::Io, "model-00002-of-00002.safetensors");
  std::rename((d / "sh/moved").c_str(), (d / "sh/model-00002-of-00002.safetensors").c_str());
  {
    std::string s = idx;
    const std::string from = "\"model.norm.weight\": \"model-00002", to = "\"model.norm.weight\": \"model-00001";
    size_t p = s.find(from);
    ASSERT_NE(p, std::string::npos);
    s.replace(p, from.size(), to);
    write_str(d / "sh/model.safetensors.index.json", s);
    expect_error([&] { read_hf_llama(d / "sh"); }, ErrorKind::Format, "model.norm.weight");
  }
  {
    std::string s = idx;
    const std::string from = "model-00001-of-00002.safetensors";
    size_t p = s.find(from);
    ASSERT_NE(p, std::string::npos);
    s.replace(p, from.size(), "../outside.safetensors");
    write_str(d / "sh/model.safetensors.index.json", s);
    expect_error([&] { read_hf_llama(d / "sh"); }, ErrorKind::Format, "index.json");
  }
}

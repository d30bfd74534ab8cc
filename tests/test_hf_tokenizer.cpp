// Hugging Face / byte-level BPE tokenizers: pre-tokenizer splits, byte-level mapping, encode/decode round trips on
// a torture string and random UTF-8, the trainer (determinism, merge order, speed), tokenizer.json and GGUF
// round trips, bad input (BadInputHfTokenizer.*, run under ASan), and llama.cpp as the peer on the ids
// (PeerLlamaCppTokenizer.*, tests/peers/llama_cpp_tokenize.mjs).
#include <gtest/gtest.h>

#include <algorithm>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "core/process.h"
#include "io/gguf.h"
#include "io/hf_tokenizer.h"
#include "io/llm_loader.h"
#include "llm/bpe.h"
#include "llm/pretokenize.h"
#include "llm/tokenizer.h"
#include "llm/train_tokenizer.h"
#include "methods/llm/train_tokenizer_job.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;
using json = nlohmann::json;

namespace {

std::vector<std::string> split(const std::string& text, PreTokenizer p) {
  std::vector<std::string> out;
  for (auto v : pre_tokenize(text, p)) out.emplace_back(v);
  return out;
}

// Whitespace runs, tabs, CR/LF, digits, punctuation, contractions, emoji (with ZWJ and modifiers), CJK, Cyrillic,
// Greek, combining marks, NBSP / ideographic space.
const std::string kTorture =
    "Hello, World! It's   a test.\t\tTabs\tand\n\nnewlines\r\n  trailing   \n"
    "Numbers: 1234567 89 0.5 3,141,592 \xC2\xBD \xC2\xB2 \xD9\xA3\xD9\xA4\xD9\xA5\n"
    "Punctuation!!! ??? ... --- (()) [[x]] {y} <z> @#$%^&*_+=|\\/~`\n"
    "Contractions: I'm you're he's she'd we'll they've DON'T WE'LL It'S 'tis\n"
    "Emoji: \xF0\x9F\x98\x80\xF0\x9F\x8E\x89\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD "
    "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 \xE2\x9D\xA4\xEF\xB8\x8F\n"
    "CJK: \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88 "
    "\xE4\xB8\xAD\xE6\x96\x87 \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4\n"
    "Cyrillic: \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, \xD0\xBC\xD0\xB8\xD1\x80! \xD0\x81\xD0\xBB\xD0\xBA\xD0\xB0\n"
    "Greek: \xCE\x9A\xCE\xB1\xCE\xBB\xCE\xB7\xCE\xBC\xCE\xAD\xCF\x81\xCE\xB1\n"
    "Combining: e\xCC\x81 n\xCC\x83 a\xCC\x88\xCC\x84 Z\xCD\x91\xCD\xAB\xCC\x93\n"
    "Mixed: abc123def 12abc ab12 x1y2z3 \xE2\x80\x99quotes\xE2\x80\x99 \xE2\x80\x9C" "double\xE2\x80\x9D \xE2\x80\x94 "
    "dash\xC2\xA0nbsp\xE3\x80\x80ideographic\n\n\n"
    "   leading and trailing spaces   ";

std::string utf8(uint32_t c) {
  std::string s;
  if (c < 0x80) s += static_cast<char>(c);
  else if (c < 0x800) s += static_cast<char>(0xC0 | (c >> 6)), s += static_cast<char>(0x80 | (c & 0x3F));
  else if (c < 0x10000)
    s += static_cast<char>(0xE0 | (c >> 12)), s += static_cast<char>(0x80 | ((c >> 6) & 0x3F)),
        s += static_cast<char>(0x80 | (c & 0x3F));
  else
    s += static_cast<char>(0xF0 | (c >> 18)), s += static_cast<char>(0x80 | ((c >> 12) & 0x3F)),
        s += static_cast<char>(0x80 | ((c >> 6) & 0x3F)), s += static_cast<char>(0x80 | (c & 0x3F));
  return s;
}

// Random valid UTF-8 from fully assigned ranges (so every implementation agrees on the categories).
std::string random_utf8(std::mt19937& rng, size_t n_cp) {
  static const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
      {0x20, 0x7E}, {0x20, 0x7E}, {0x20, 0x7E}, {0x61, 0x7A}, {0x30, 0x39}, {0xA0, 0xFF},   {0x300, 0x36F},
      {0x400, 0x4FF}, {0x4E00, 0x4FFF}, {0x3041, 0x3096}, {0x1F600, 0x1F64F}, {0x660, 0x669}, {0x2000, 0x200A}};
  static const char* ws[] = {" ", " ", "  ", "\n", "\t", "\r\n", "\n\n", "   "};
  std::string s;
  for (size_t i = 0; i < n_cp; ++i) {
    if (rng() % 6 == 0) {
      s += ws[rng() % 8];
      continue;
    }
    auto [lo, hi] = ranges[rng() % ranges.size()];
    s += utf8(lo + rng() % (hi - lo + 1));
  }
  return s;
}

// English-like training text from a fixed generator (the tests make their own text), plus the shared TinyStories
// head when present.
std::string corpus(size_t bytes, uint64_t seed = 1) {
  static const std::vector<std::string> words = {
      "the", "a", "little", "girl", "boy", "dog", "cat", "said", "was", "happy", "sad", "went", "to", "park", "and",
      "they", "played", "with", "ball", "mom", "It's", "don't", "I'm", "we'll", "one", "day", "saw", "big", "tree",
      "Lily", "Tom", "Ben", "very", "fun", "friends", "in", "of", "her", "his", "on", "sun", "\xD0\xBC\xD0\xB8\xD1\x80",
      "\xE6\x97\xA5\xE6\x9C\xAC", "caf\xC3\xA9", "na\xC3\xAFve", "\xF0\x9F\x98\x80"};
  static const std::vector<std::string> seps = {" ", " ", " ", " ", ", ", ". ", "! ", "? ", ".\n", "\n\n", "  ", "\t"};
  static const std::vector<std::string> syllables = {
      "ka", "lo", "mi", "ne", "ru", "sta", "ver", "tion", "ing", "pre", "con", "al", "ent", "ly", "ba", "do",
      "fi", "gu", "ho", "jam", "ze", "qui", "xo", "wa", "th", "sch", "Ã¤", "Ã±o", "ÐºÐ°",
      "æ¬", "er", "ou", "ia", "st", "pl", "gr", "ck", "mb", "nd", "ow"};
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::string s;
  while (s.size() < bytes) {
    const uint32_t r = rng() % 17;
    if (r == 0) {
      s += std::to_string(rng() % 100000);
    } else if (r < 7) {  // a made-up word: many distinct words, as real text has
      for (uint32_t k = 0, n = 1 + rng() % 4; k < n; ++k) s += syllables[rng() % syllables.size()];
    } else {
      s += words[rng() % words.size()];
    }
    s += seps[rng() % seps.size()];
  }
  return s;
}

std::string training_text() {
  std::string t = corpus(200000);
  const std::string p = asset("text/tinystories_valid_head.txt");
  if (file_exists(p)) t += "\n" + read_file_text(p).substr(0, 200000);
  return t;
}

Tokenizer trained(PreTokenizer pre, int64_t vocab = 1024) {
  BpeTrainOptions o;
  o.vocab_size = vocab;
  o.pre = pre;
  o.progress = false;
  return train_byte_level_bpe({training_text()}, o);
}

void expect_same(const Tokenizer& a, const Tokenizer& b) {
  BpeSpec x = a.spec(), y = b.spec();
  EXPECT_EQ(x.kind, y.kind);
  EXPECT_EQ(x.pieces, y.pieces);
  EXPECT_EQ(x.types, y.types);
  EXPECT_EQ(x.merges, y.merges);
  EXPECT_EQ(x.pre, y.pre);
  EXPECT_EQ(x.ignore_merges, y.ignore_merges);
  EXPECT_EQ(x.byte_fallback, y.byte_fallback);
  EXPECT_EQ(x.dummy_prefix, y.dummy_prefix);
  EXPECT_EQ(x.prefix_first_only, y.prefix_first_only);
  EXPECT_EQ(x.nfc, y.nfc);
  EXPECT_EQ(x.bos, y.bos);
  EXPECT_EQ(x.eos, y.eos);
  EXPECT_EQ(x.unk, y.unk);
  EXPECT_EQ(x.add_bos, y.add_bos);
  EXPECT_EQ(x.add_eos, y.add_eos);
}

void write_text(const std::string& path, const std::string& s) { std::ofstream(path, std::ios::binary) << s; }

// A small hand-written byte-level tokenizer.json (GPT-2 style: ByteLevel with its regex, "a b" merges).
std::string gpt2_style_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_level_char(static_cast<uint8_t>(b))] = b;
  vocab["\xC4\xA0t"] = 256;       // "Ġt"
  vocab["he"] = 257;
  vocab["\xC4\xA0the"] = 258;     // "Ġthe"
  vocab["<|endoftext|>"] = 259;
  json j = {{"version", "1.0"},
            {"added_tokens", {{{"id", 259}, {"content", "<|endoftext|>"}, {"special", true}}}},
            {"normalizer", nullptr},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                               {"use_regex", true}}},
            {"post_processor", {{"type", "ByteLevel"}, {"trim_offsets", false}}},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model", {{"type", "BPE"}, {"vocab", vocab},
                       {"merges", {"\xC4\xA0 t", "h e", "\xC4\xA0t he"}}}}};
  return j.dump();
}

std::string peers_dir() {  // as tests/test_peers.cpp finds them
  const char* e = std::getenv("CATQ_PEERS");
  return e && *e ? e : std::string(CATQ_SOURCE_DIR) + "/.cache/peers";
}

bool have_llama_cpp() {
  const std::string p = peers_dir() + "/node_modules/";
  return file_exists(p + "node-llama-cpp/dist/index.js") && file_exists(p + "@node-llama-cpp/linux-x64/package.json") &&
         std::system("node --version > /dev/null 2>&1") == 0;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Pre-tokenizers and the byte-level alphabet.

TEST(HfTokenizer, ByteLevelAlphabet) {
  EXPECT_EQ(byte_level_char(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(byte_level_char('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(byte_level_char('A'), "A");
  EXPECT_EQ(byte_level_char(0xAD), "\xC5\x83");  // the last of the 68 remapped bytes: U+0143
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  std::string back;
  ASSERT_TRUE(byte_level_to_bytes(bytes_to_byte_level(all), back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(byte_level_to_bytes("\xE6\x97\xA5", back));  // not in the alphabet
}

TEST(HfTokenizer, PreTokenizerSplits) {
  using V = std::vector<std::string>;
  const PreTokenizer G = PreTokenizer::Gpt2, L = PreTokenizer::Llama3, Q = PreTokenizer::Qwen2, S = PreTokenizer::SmolLm;
  EXPECT_EQ(split("Hello world's", G), (V{"Hello", " world", "'s"}));
  EXPECT_EQ(split("a   b", G), (V{"a", "  ", " b"}));
  EXPECT_EQ(split("x\n\ny", G), (V{"x", "\n", "\n", "y"}));
  EXPECT_EQ(split("HELLO'S", G), (V{"HELLO", "'", "S"}));  // case-sensitive contractions
  EXPECT_EQ(split("HELLO'S", L), (V{"HELLO", "'S"}));
  EXPECT_EQ(split("1234567", G), (V{"1234567"}));
  EXPECT_EQ(split("1234567", L), (V{"123", "456", "7"}));
  EXPECT_EQ(split("123", Q), (V{"1", "2", "3"}));
  EXPECT_EQ(split(" 12ab 3", S), (V{" ", "1", "2", "ab", " ", "3"}));
  EXPECT_EQ(split("a  \n\n  b", L), (V{"a", "  \n\n", " ", " b"}));
  EXPECT_EQ(split("...\n\nabc", L), (V{"...\n\n", "abc"}));
  EXPECT_EQ(split("\tword $x 'quoted", L), (V{"\tword", " $", "x", " '", "quoted"}));
  EXPECT_EQ(split("\tword $x 'quoted", G), (V{"\t", "word", " $", "x", " '", "quoted"}));
  EXPECT_EQ(split("end   ", G), (V{"end", "   "}));
  EXPECT_EQ(split("e\xCC\x81t\xC3\xA9", L), (V{"e", "\xCC\x81t\xC3\xA9"}));  // U+0301 is Mn: not a letter
  EXPECT_EQ(split("\xD0\x9F\xD1\x80\xD0\xB8 \xE4\xB8\xAD\xE6\x96\x87", G), (V{"\xD0\x9F\xD1\x80\xD0\xB8", " \xE4\xB8\xAD\xE6\x96\x87"}));
  // Every split is a partition of the text, also for arbitrary bytes.
  std::mt19937 rng(5);
  for (int i = 0; i < 200; ++i) {
    std::string s = i % 2 ? random_utf8(rng, 40) : std::string();
    if (i % 2 == 0)
      for (int k = 0; k < 60; ++k) s.push_back(static_cast<char>(rng()));
    for (PreTokenizer p : {G, L, Q, S}) {
      std::string cat;
      for (auto& piece : split(s, p)) {
        EXPECT_FALSE(piece.empty());
        cat += piece;
      }
      EXPECT_EQ(cat, s);
    }
  }
  EXPECT_EQ(pre_tokenizer_from_regex(pre_tokenizer_regex(L)), L);
  EXPECT_EQ(pre_tokenizer_from_gguf_name("llama-bpe"), L);
  EXPECT_EQ(std::string(pre_tokenizer_gguf_name(G)), "gpt-2");
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding.

TEST(HfTokenizer, HandWrittenGpt2JsonEncodes) {
  Tokenizer t = parse_hf_tokenizer(gpt2_style_json(), "", "gpt2.json");
  EXPECT_EQ(t.kind(), TokenizerKind::ByteLevelBpe);
  EXPECT_EQ(t.pre_tokenizer(), PreTokenizer::Gpt2);
  EXPECT_EQ(t.bos_id(), 259);  // <|endoftext|> by name
  EXPECT_EQ(t.eos_id(), 259);
  EXPECT_FALSE(t.add_bos());
  // " the" -> Ġ t h e -> Ġt h e -> Ġt he -> Ġthe; "the" -> t he; "<|endoftext|>" is special.
  EXPECT_EQ(t.encode("the the", false, false), (std::vector<int32_t>{'t', 257, 258}));
  EXPECT_EQ(t.encode("a<|endoftext|> the", false, false), (std::vector<int32_t>{'a', 259, 258}));
  std::vector<int32_t> plain = t.encode("<|endoftext|>", false, false, /*special=*/false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(t.decode(plain), "<|endoftext|>");
  EXPECT_EQ(t.decode({'a', 259, 258}), "a the");  // Control tokens decode to nothing
}

TEST(HfTokenizer, TrainedRoundTripTortureAndRandom) {
  for (PreTokenizer pre : {PreTokenizer::Gpt2, PreTokenizer::Llama3, PreTokenizer::Qwen2, PreTokenizer::SmolLm}) {
    Tokenizer t = trained(pre, 600);
    SCOPED_TRACE(pre_tokenizer_gguf_name(pre));
    EXPECT_EQ(t.vocab_size(), 600);
    std::vector<int32_t> ids = t.encode(kTorture, true, true);
    EXPECT_EQ(ids.front(), t.bos_id());
    EXPECT_EQ(ids.back(), t.eos_id());
    EXPECT_EQ(t.decode(ids), kTorture);
    EXPECT_LT(ids.size(), kTorture.size());  // merges apply
    std::string by_piece;
    for (size_t i = 0; i < ids.size(); ++i) by_piece += t.decode_piece(i ? ids[i - 1] : -1, ids[i]);
    EXPECT_EQ(by_piece, kTorture);
    std::mt19937 rng(11);
    for (int i = 0; i < 100; ++i) {
      std::string s = random_utf8(rng, 1 + rng() % 80);
      EXPECT_EQ(t.decode(t.encode(s, false, false)), s);
    }
    for (int i = 0; i < 50; ++i) {  // any bytes, valid UTF-8 or not
      std::string s;
      for (int k = 0, n = 1 + rng() % 50; k < n; ++k) s.push_back(static_cast<char>(rng()));
      EXPECT_EQ(t.decode(t.encode(s, false, false, false)), s);
    }
    EXPECT_TRUE(t.encode("", false, false).empty());
  }
}

TEST(HfTokenizer, TrainerIsDeterministicAndMergesMostFrequentFirst) {
  BpeTrainOptions o;
  o.vocab_size = 256 + 2 + 5;
  o.pre = PreTokenizer::Gpt2;
  o.progress = false;
  // Words " ab" x6 and " cd" x3: pair counts (Ġ,a) 6, (a,b) 6, (Ġ,c) 3, (c,d) 3. The tie between (Ġ,a) and
  // (a,b) goes to the smaller left id: Ġ is byte ' ' = id 32 < 'a' = 97.
  Tokenizer t = train_byte_level_bpe({" ab ab ab ab ab ab cd cd cd"}, o);
  ASSERT_GE(t.merges().size(), 2u);
  EXPECT_EQ(t.merges()[0], std::make_pair(int32_t{' '}, int32_t{'a'}));
  EXPECT_EQ(t.piece(t.merges()[1].first) + t.piece(t.merges()[1].second), "\xC4\xA0" "ab");
  Tokenizer u = train_byte_level_bpe({" ab ab ab ab ab ab cd cd cd"}, o);
  expect_same(t, u);
  // A realistic run: twice the same.
  Tokenizer a = trained(PreTokenizer::Llama3, 800), b = trained(PreTokenizer::Llama3, 800);
  expect_same(a, b);
  EXPECT_TRUE(a.ignore_merges());
  EXPECT_EQ(a.piece(a.bos_id()), "<|begin_of_text|>");
  EXPECT_EQ(a.piece(a.eos_id()), "<|end_of_text|>");
  EXPECT_EQ(a.bos_id(), 798);
}

TEST(HfTokenizer, TrainerIsFastOnMegabytes) {
  const std::string text = corpus(4 << 20, 3);
  BpeTrainOptions o;
  o.vocab_size = 4096;
  o.progress = false;
  auto t0 = std::chrono::steady_clock::now();
  BpeTrainStats st;
  Tokenizer t = train_byte_level_bpe({text}, o, &st);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ info ] trained %lld merges on %.1f MB in %.2f s (%lld unique words)\n",
              static_cast<long long>(st.merges), text.size() / 1e6, s, static_cast<long long>(st.unique_words));
  EXPECT_LT(s, 30.0);  // 10 MB must stay well under a minute
  EXPECT_EQ(t.decode(t.encode(text.substr(0, 100000), false, false)), text.substr(0, 100000));
}

TEST(HfTokenizer, SpmBpeFromScoresMatchesLlama2cEncoding) {
  std::vector<Tokenizer> srcs = {tiny_tokenizer()};
  if (have_stories()) srcs.push_back(read_llama2c_tokenizer(stories_tok(), 512));
  for (const Tokenizer& src : srcs) {
    Tokenizer t = spm_bpe_from_scores(src);
    EXPECT_EQ(t.kind(), TokenizerKind::SpmBpe);
    std::mt19937 rng(9);
    for (int i = 0; i < 200; ++i) {
      std::string s = i < 100 ? corpus(20 + rng() % 200, i) : random_utf8(rng, 1 + rng() % 60);
      // Same ids as the score-based encoder (no special tokens in the text), and decode inverts it.
      EXPECT_EQ(t.encode(s, true, false), src.encode(s, true, false)) << s;
      EXPECT_EQ(t.decode(t.encode(s, true, false)), s);
    }
    EXPECT_EQ(t.decode(t.encode(kTorture, true, false)), kTorture);
  }
}

Tokenizer trained_spm(int64_t vocab = 1000) {
  BpeTrainOptions o;
  o.vocab_size = vocab;
  o.special_tokens = {"<s>", "</s>"};
  o.progress = false;
  return train_spm_bpe({training_text()}, o);
}

TEST(HfTokenizer, SpmTrainerLayoutAndRoundTrip) {
  Tokenizer t = trained_spm(1000);
  EXPECT_EQ(t.kind(), TokenizerKind::SpmBpe);
  EXPECT_EQ(t.vocab_size(), 1000);
  EXPECT_EQ(t.piece(0), "<unk>");
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.piece(t.bos_id()), "<s>");
  EXPECT_EQ(t.piece(t.eos_id()), "</s>");
  EXPECT_EQ(t.piece(3), "<0x00>");
  EXPECT_EQ(t.type(3), static_cast<int32_t>(TokenType::Byte));
  EXPECT_GE(t.lookup(" the"), 0);  // a merged word with its leading space
  EXPECT_EQ(t.decode(t.encode(kTorture, true, false)), kTorture);
  std::mt19937 rng(17);
  for (int i = 0; i < 100; ++i) {
    std::string s = random_utf8(rng, 1 + rng() % 80);
    EXPECT_EQ(t.decode(t.encode(s, true, false, false)), s);
  }
  BpeTrainOptions o;
  o.vocab_size = 1000;
  o.special_tokens = {"<s>", "</s>"};
  o.progress = false;
  expect_same(t, train_spm_bpe({training_text()}, o));  // deterministic
  // tokenizer.json and GGUF "llama" (score = -rank) round trips.
  Tokenizer back = parse_hf_tokenizer(hf_tokenizer_json(t), hf_tokenizer_config_json(t), "spm.json");
  expect_same(t, back);
  TempDir d;
  write_gguf_llama(LlamaModel::random(tiny_config(t.vocab_size()), 2), &t, d / "spm.gguf");
  GgufLlama g = read_gguf_llama(d / "spm.gguf");
  ASSERT_TRUE(g.tokenizer.has_value());
  for (int i = 0; i < 50; ++i) {
    std::string s = i ? corpus(20 + rng() % 300, 300 + i) : kTorture;
    EXPECT_EQ(g.tokenizer->encode(s, true, false), t.encode(s, true, false, false)) << s;
  }
  o.vocab_size = 300;  // smaller than <unk> + bytes + the alphabet
  expect_error([&] { train_spm_bpe({training_text()}, o); }, ErrorKind::Config, "too small");
}

// ---------------------------------------------------------------------------------------------------------------
// tokenizer.json and GGUF round trips.

TEST(HfTokenizer, JsonRoundTripIsExact) {
  TempDir d;
  std::vector<Tokenizer> toks;
  for (PreTokenizer p : {PreTokenizer::Gpt2, PreTokenizer::Llama3, PreTokenizer::Qwen2, PreTokenizer::SmolLm})
    toks.push_back(trained(p, 400));
  toks.push_back(spm_bpe_from_scores(tiny_tokenizer()));
  toks.push_back(parse_hf_tokenizer(gpt2_style_json(), "", "gpt2.json"));
  for (size_t i = 0; i < toks.size(); ++i) {
    const std::string dir = d / std::to_string(i);
    std::system(("mkdir -p '" + dir + "'").c_str());
    write_hf_tokenizer(toks[i], dir + "/tokenizer.json");
    ASSERT_TRUE(file_exists(dir + "/tokenizer_config.json"));
    Tokenizer back = read_hf_tokenizer(dir);  // the folder form
    expect_same(toks[i], back);
    EXPECT_EQ(back.encode(kTorture, true, false), toks[i].encode(kTorture, true, false));
    // The file is plain tokenizers JSON: model.type BPE, vocab holding every id.
    json j = json::parse(read_file_text(dir + "/tokenizer.json"));
    EXPECT_EQ(j["model"]["type"], "BPE");
    EXPECT_EQ(static_cast<int64_t>(j["model"]["vocab"].size()), toks[i].vocab_size());
    // Writing again gives the same bytes.
    EXPECT_EQ(hf_tokenizer_json(back), read_file_text(dir + "/tokenizer.json"));
  }
  // Llama-3-style post_processor: BOS added, read back from the template alone (no tokenizer_config.json).
  Tokenizer l3 = trained(PreTokenizer::Llama3, 300);
  Tokenizer r = parse_hf_tokenizer(hf_tokenizer_json(l3), "", "l3.json");
  EXPECT_TRUE(r.add_bos());
  EXPECT_EQ(r.bos_id(), l3.bos_id());
  // tokenizer_config.json overrides the template.
  Tokenizer r2 = parse_hf_tokenizer(hf_tokenizer_json(l3),
                                    R"({"add_bos_token": false, "add_eos_token": true, "eos_token": {"content": "<|begin_of_text|>"}})",
                                    "l3.json");
  EXPECT_FALSE(r2.add_bos());
  EXPECT_TRUE(r2.add_eos());
  EXPECT_EQ(r2.eos_id(), l3.bos_id());
}

TEST(HfTokenizer, NfcNormalizerComposesBeforeTokenizing) {
  // Qwen2's tokenizer.json has normalizer NFC: "e" + U+0301 (combining acute) tokenizes as U+00E9, and so do the
  // compatibility-free singletons NFC maps (U+212B ANGSTROM SIGN -> U+00C5).
  Tokenizer plain = trained(PreTokenizer::Qwen2, 400);
  json j = json::parse(hf_tokenizer_json(plain));
  j["normalizer"] = {{"type", "NFC"}};
  Tokenizer t = parse_hf_tokenizer(j.dump(), "", "qwen2.json");
  EXPECT_TRUE(t.nfc());
  const std::string composed = "caf\xC3\xA9 \xC3\x85ngstr\xC3\xB6m", decomposed = "cafe\xCC\x81 \xE2\x84\xABngstro\xCC\x88m";
  EXPECT_EQ(nfc_normalize(decomposed), composed);
  EXPECT_EQ(nfc_normalize(composed), composed);
  EXPECT_EQ(nfc_normalize("ascii only"), "ascii only");
  EXPECT_EQ(nfc_normalize("bad \xFF utf8 e\xCC\x81"), "bad \xFF utf8 e\xCC\x81");  // invalid: left alone
  EXPECT_EQ(t.encode(decomposed, false, false), t.encode(composed, false, false));
  EXPECT_EQ(t.encode(composed, false, false), plain.encode(composed, false, false));
  EXPECT_NE(plain.encode(decomposed, false, false), plain.encode(composed, false, false));
  // Written back with its NFC normalizer.
  const std::string again = hf_tokenizer_json(t);
  EXPECT_NE(again.find("\"NFC\""), std::string::npos);
  expect_same(t, parse_hf_tokenizer(again, "", "again.json"));
}

TEST(HfTokenizer, MetaspaceVariantReadsAsSentencePiece) {
  // Mistral-style tokenizer.json: no normalizer, pre_tokenizer Metaspace (prepend, no split).
  Tokenizer spm = trained_spm(600);
  json j = json::parse(hf_tokenizer_json(spm));
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"},
                        {"split", false}};
  Tokenizer t = parse_hf_tokenizer(j.dump(), hf_tokenizer_config_json(spm), "mistral.json");
  expect_same(spm, t);
  // prepend_scheme "first" (current Llama-2 / Mistral files): the "▁" prefix only at the start of the text, not
  // after an added token; "always" prefixes every segment.
  j["pre_tokenizer"]["prepend_scheme"] = "first";
  Tokenizer first = parse_hf_tokenizer(j.dump(), hf_tokenizer_config_json(spm), "mistral.json");
  EXPECT_TRUE(first.prefix_first_only());
  const std::string eos = spm.piece(spm.eos_id());
  const std::string text = "the end" + eos + "the start";
  const std::vector<int32_t> a = t.encode(text, false, false), f = first.encode(text, false, false);
  EXPECT_EQ(first.encode("the end", false, false), t.encode("the end", false, false));
  EXPECT_NE(a, f);
  auto after_eos = [&](const std::vector<int32_t>& v) {
    return std::vector<int32_t>(std::find(v.begin(), v.end(), spm.eos_id()) + 1, v.end());
  };
  BpeSpec bare = spm.spec();
  bare.dummy_prefix = false;
  EXPECT_EQ(after_eos(f), Tokenizer(bare).encode("the start", false, false));
  EXPECT_EQ(after_eos(a), t.encode("the start", false, false));
  EXPECT_EQ(first.decode(first.encode("the end", false, false)), "the end");
  // Written back as Metaspace "first" and read again: the same tokenizer.
  const std::string again = hf_tokenizer_json(first);
  EXPECT_NE(again.find("\"prepend_scheme\": \"first\""), std::string::npos);
  expect_same(first, parse_hf_tokenizer(again, hf_tokenizer_config_json(first), "again.json"));
  j["pre_tokenizer"]["prepend_scheme"] = "sometimes";
  expect_error([&] { parse_hf_tokenizer(j.dump(), "", "mistral.json"); }, ErrorKind::Format, "prepend_scheme");
  j["pre_tokenizer"]["prepend_scheme"] = "always";
  j["pre_tokenizer"]["split"] = true;
  expect_error([&] { parse_hf_tokenizer(j.dump(), "", "mistral.json"); }, ErrorKind::Unsupported, "Metaspace");
  // Invalid UTF-8 in the training text falls back to byte tokens, and the result is still valid tokenizer.json.
  BpeTrainOptions o;
  o.vocab_size = 400;
  o.special_tokens = {"<s>", "</s>"};
  o.progress = false;
  Tokenizer b = train_spm_bpe({corpus(20000, 9) + "\xFF\xFE broken \xC3"}, o);
  EXPECT_EQ(b.decode(b.encode("x\xFFy \xC3", true, false)), "x\xFFy \xC3");
  expect_same(b, parse_hf_tokenizer(hf_tokenizer_json(b), hf_tokenizer_config_json(b), "b.json"));
}

TEST(HfTokenizer, MergesAsPairsAndLlama3Layout) {
  // Llama-3 layout: added tokens not in model.vocab (ids after it), merges as [a, b] pairs, ignore_merges.
  Tokenizer src = trained(PreTokenizer::Llama3, 300);
  json j = json::parse(hf_tokenizer_json(src));
  json merges = json::array();
  for (auto& m : j["model"]["merges"]) {
    std::string s = m.get<std::string>();
    merges.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = merges;
  for (auto& a : j["added_tokens"]) j["model"]["vocab"].erase(a["content"].get<std::string>());
  Tokenizer t = parse_hf_tokenizer(j.dump(), "", "l3.json");
  expect_same(src, t);
}

TEST(HfTokenizer, GgufRoundTripAndLoader) {
  TempDir d;
  for (PreTokenizer p : {PreTokenizer::Gpt2, PreTokenizer::Llama3, PreTokenizer::Qwen2, PreTokenizer::SmolLm}) {
    Tokenizer t = trained(p, 320);
    LlamaModel m = LlamaModel::random(tiny_config(t.vocab_size()), 3);
    const std::string path = d / "bl.gguf";
    write_gguf_llama(m, &t, path);
    GgufFile g = read_gguf(path);
    EXPECT_EQ(g.find("tokenizer.ggml.model")->s, "gpt2");
    EXPECT_EQ(g.find("tokenizer.ggml.pre")->s, pre_tokenizer_gguf_name(p));
    GgufLlama back = read_gguf_llama(path);
    ASSERT_TRUE(back.tokenizer.has_value()) << back.tokenizer_note;
    expect_same(t, *back.tokenizer);
  }
  // An SPM-BPE tokenizer goes to GGUF "llama" with scores -rank; read back (score-based) it encodes the same.
  Tokenizer spm = spm_bpe_from_scores(tiny_tokenizer());
  LlamaModel m = LlamaModel::random(tiny_config(spm.vocab_size()), 3);
  write_gguf_llama(m, &spm, d / "spm.gguf");
  GgufLlama back = read_gguf_llama(d / "spm.gguf");
  ASSERT_TRUE(back.tokenizer.has_value());
  EXPECT_EQ(back.tokenizer->kind(), TokenizerKind::Llama2c);
  std::mt19937 rng(4);
  for (int i = 0; i < 50; ++i) {
    std::string s = corpus(30 + rng() % 100, 100 + i);
    EXPECT_EQ(back.tokenizer->encode(s, true, false), spm.encode(s, true, false)) << s;
  }
  // The loader: --tokenizer tokenizer.json, and tokenizer.json found next to a llama2.c checkpoint.
  Tokenizer t = trained(PreTokenizer::Llama3, 300);
  LlamaModel lm = LlamaModel::random(tiny_config(t.vocab_size()), 5);
  write_llama2c(lm, d / "m.bin");
  write_hf_tokenizer(t, d / "tokenizer.json");
  LoadedLlama a = load_llama(d / "m.bin");
  ASSERT_TRUE(a.tokenizer.has_value()) << a.tokenizer_note;
  EXPECT_EQ(a.tokenizer_path, d / "tokenizer.json");
  expect_same(t, *a.tokenizer);
  LoadedLlama b = load_llama(d / "m.bin", d / "tokenizer.json");
  expect_same(t, *b.tokenizer);
  // A model whose embedding is larger than the tokenizer (Hugging Face padding): unused [PAD{id}] tokens.
  LlamaModel big = LlamaModel::random(tiny_config(t.vocab_size() + 4), 5);
  write_llama2c(big, d / "big.bin");
  LoadedLlama c = load_llama(d / "big.bin", d / "tokenizer.json");
  ASSERT_EQ(c.tokenizer->vocab_size(), t.vocab_size() + 4);
  EXPECT_EQ(c.tokenizer->piece(static_cast<int32_t>(t.vocab_size())), fmt::format("[PAD{}]", t.vocab_size()));
  EXPECT_EQ(c.tokenizer->encode(kTorture, true, false), t.encode(kTorture, true, false));
}

TEST(HfTokenizer, CliTrainTokenizer) {
  TempDir d;
  write_text(d / "t.txt", corpus(30000, 5));
  const std::string cli = std::string(CATQ_CLI_PATH) + " -q ";
  int code = 0;
  std::string out = run_capture(cli + "--json train-tokenizer '" + (d / "t.txt") + "' --vocab 300 --pre gpt-2 --bos "
                                "'<|endoftext|>' --eos '<|endoftext|>' --no-add-bos -o '" + (d / "tok.json") + "' 2>&1",
                                &code);
  ASSERT_EQ(code, 0) << out;
  json r = json::parse(out);
  EXPECT_EQ(r["vocab_size"], 300);
  EXPECT_EQ(r["bos_id"], 299);
  EXPECT_EQ(r["eos_id"], 299);
  Tokenizer t = read_hf_tokenizer(d / "tok.json");
  EXPECT_EQ(t.vocab_size(), 300);
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.pre_tokenizer(), PreTokenizer::Gpt2);
  run_capture(cli + "train-tokenizer '" + (d / "t.txt") + "' --pre bert -o '" + (d / "x.json") + "' 2>&1", &code);
  EXPECT_TRUE(WIFEXITED(code) && WEXITSTATUS(code) == 2) << code;  // Usage
  run_capture(cli + "train-tokenizer '" + (d / "missing.txt") + "' -o '" + (d / "x.json") + "' 2>&1", &code);
  EXPECT_TRUE(WIFEXITED(code) && WEXITSTATUS(code) == 3) << code;  // Io
}

TEST(HfTokenizer, TrainTokenizerJob) {
  TempDir d;
  write_text(d / "a.txt", corpus(50000, 7));
  TrainTokenizerJob job;
  job.texts = {d / "a.txt"};
  job.out = d / "tok.json";
  job.vocab = 400;
  job.pre = "qwen2";
  job.progress = false;
  TrainTokenizerResult r = run_train_tokenizer_job(job);
  EXPECT_FALSE(r.stopped_early);
  EXPECT_EQ(r.vocab_size, 400);
  EXPECT_EQ(r.report["vocab_size"], 400);
  EXPECT_GT(r.tokens_per_byte, 0.0);
  EXPECT_LT(r.tokens_per_byte, 0.6);
  Tokenizer t = read_hf_tokenizer(d / "tok.json");
  EXPECT_EQ(t.pre_tokenizer(), PreTokenizer::Qwen2);
  EXPECT_TRUE(t.add_bos());
  {  // padded with reserved special tokens: the same learned part, then the reserved ids at the end
    TrainTokenizerJob pad = job;
    pad.vocab = 400 + 3000;
    pad.reserved = 3000;
    pad.out = d / "pad.json";
    EXPECT_EQ(run_train_tokenizer_job(pad).vocab_size, 3400);
    const Tokenizer tp = read_hf_tokenizer(d / "pad.json");
    EXPECT_EQ(tp.piece(3399), "<|reserved_special_token_2999|>");
    EXPECT_EQ(tp.encode("the cat", false, false, false), t.encode("the cat", false, false, false));
  }
  job.model = "spm";
  job.bos = "<s>";
  job.eos = "</s>";
  job.out = d / "spm/tokenizer.json";  // the folder is created
  TrainTokenizerResult rs = run_train_tokenizer_job(job);
  EXPECT_EQ(rs.vocab_size, 400);
  EXPECT_EQ(read_hf_tokenizer(d / "spm").kind(), TokenizerKind::SpmBpe);
  job.model = "wordpiece";
  expect_error([&] { run_train_tokenizer_job(job); }, ErrorKind::Usage, "wordpiece");
  job.model = "byte-level";
  job.pre = "bert";
  expect_error([&] { run_train_tokenizer_job(job); }, ErrorKind::Usage, "bert");
  job.pre = "gpt-2";
  job.vocab = 100;
  expect_error([&] { run_train_tokenizer_job(job); }, ErrorKind::Config, "too small");
}

// ---------------------------------------------------------------------------------------------------------------
// Bad input: every malformed tokenizer is a catq::Error naming the file and the field, never a crash.

TEST(BadInputHfTokenizer, MalformedTokenizerJson) {
  auto bad = [](const std::string& text, ErrorKind kind, const std::string& needle) {
    expect_error([&] { parse_hf_tokenizer(text, "", "t.json"); }, kind, needle, text.substr(0, 80));
  };
  json good = json::parse(gpt2_style_json());
  bad("{\"model\": ", ErrorKind::Format, "t.json: not valid JSON");
  bad("[1, 2]", ErrorKind::Format, "top level");
  bad("{}", ErrorKind::Format, "no \"model\"");
  for (const char* type : {"WordPiece", "Unigram", "WordLevel"}) {
    json j = good;
    j["model"]["type"] = type;
    bad(j.dump(), ErrorKind::Format, type);
  }
  {
    json j = good;
    j["model"]["merges"].push_back("\xC4\xA0the zz");
    bad(j.dump(), ErrorKind::Format, "\"zz\" is not in model.vocab");
  }
  {
    json j = good;
    j["model"]["merges"].push_back("onlyone");
    bad(j.dump(), ErrorKind::Format, "model.merges[3]");
  }
  {
    json j = good;
    j["model"]["merges"].push_back(42);
    bad(j.dump(), ErrorKind::Format, "model.merges[3]");
  }
  {
    json j = good;
    j["model"]["vocab"]["extra"] = 100000;
    bad(j.dump(), ErrorKind::Format, "out of range");
  }
  {
    json j = good;
    j["model"]["vocab"]["extra"] = -1;
    bad(j.dump(), ErrorKind::Format, "out of range");
  }
  {
    json j = good;
    j["model"]["vocab"]["extra"] = 5;  // id 5 is a byte token already
    bad(j.dump(), ErrorKind::Format, "both have id 5");
  }
  {
    json j = good;
    j["model"]["vocab"]["extra"] = "7";
    bad(j.dump(), ErrorKind::Format, "must be an integer id");
  }
  {
    json j = good;
    j["model"]["vocab"].erase("he");  // id 257 missing
    bad(j.dump(), ErrorKind::Format, "id 257 has no token");
  }
  {
    json j = good;
    j["model"]["vocab"]["gap"] = 261;  // 260 is missing
    bad(j.dump(), ErrorKind::Format, "not dense");
  }
  {
    json j = good;
    j["added_tokens"][0]["id"] = 3;
    bad(j.dump(), ErrorKind::Format, "added_tokens[0]");
  }
  {
    json j = good;
    j["added_tokens"] = {{{"id", "x"}}};
    bad(j.dump(), ErrorKind::Format, "added_tokens[0]");
  }
  {
    json j = good;
    j["model"]["vocab"] = json::array();
    bad(j.dump(), ErrorKind::Format, "model.vocab must be an object");
  }
  {
    json j = good;
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}},
                                             {{"type", "ByteLevel"}, {"use_regex", false}}}}};
    bad(j.dump(), ErrorKind::Unsupported, "\\\\w+");
  }
  {
    json j = good;
    j["pre_tokenizer"] = {{"type", "Whitespace"}};
    bad(j.dump(), ErrorKind::Unsupported, "Whitespace");
  }
  {
    json j = good;
    j["pre_tokenizer"] = nullptr;
    j["decoder"] = nullptr;
    bad(j.dump(), ErrorKind::Unsupported, "neither byte-level");
  }
  expect_error([&] { parse_hf_tokenizer(gpt2_style_json(), "{\"bos_token\": \"<nope>\"}", "t.json"); },
               ErrorKind::Format, "bos_token");
  expect_error([&] { parse_hf_tokenizer(gpt2_style_json(), "{\"bos_token\": 3}", "t.json"); }, ErrorKind::Format,
               "bos_token");
  expect_error([&] { parse_hf_tokenizer(gpt2_style_json(), "{\"add_bos_token\": \"yes\"}", "t.json"); },
               ErrorKind::Format, "add_bos_token");
  expect_error([&] { parse_hf_tokenizer(gpt2_style_json(), "not json", "t.json"); }, ErrorKind::Format,
               "tokenizer_config.json");
  expect_error([&] { read_hf_tokenizer("/nonexistent/tokenizer.json"); }, ErrorKind::Io, "/nonexistent");
}

TEST(BadInputHfTokenizer, MutatedFilesNeverCrash) {
  Tokenizer t = trained(PreTokenizer::Llama3, 300);
  const std::string text = hf_tokenizer_json(t);
  std::mt19937 rng(13);
  int errors = 0;
  for (int i = 0; i < 300; ++i) {
    std::string s = text;
    if (i % 3 == 0) s.resize(rng() % s.size());  // truncated
    else
      for (int k = 0; k < 1 + i % 5; ++k) s[rng() % s.size()] = " {}[]\",:0129azĠ\\"[rng() % 17];
    try {
      Tokenizer u = parse_hf_tokenizer(s, "", "mut.json");
      (void)u.decode(u.encode(kTorture, true, true));
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GE(errors, 100);
}

TEST(BadInputHfTokenizer, MalformedGgufTokenizer) {
  TempDir d;
  Tokenizer t = trained(PreTokenizer::Gpt2, 300);
  auto build = [&](auto&& tweak) {
    GgufBuilder b;
    b.add_string("general.architecture", "llama");
    tweak(b);
    write_file_atomic(d / "t.gguf", b.build());
    return read_gguf(d / "t.gguf");
  };
  std::vector<std::string> merges;
  for (auto [l, r] : t.merges()) merges.push_back(t.piece(l) + " " + t.piece(r));
  std::string note;
  {
    GgufFile g = build([&](GgufBuilder& b) {
      b.add_string("tokenizer.ggml.model", "gpt2");
      b.add_string("tokenizer.ggml.pre", "gpt-2");
      b.add_string_array("tokenizer.ggml.tokens", t.pieces());
    });
    expect_error([&] { read_gguf_tokenizer(g, t.vocab_size(), note); }, ErrorKind::Format, "tokenizer.ggml.merges");
  }
  {
    std::vector<std::string> bad = merges;
    bad.push_back("nothere x");
    GgufFile g = build([&](GgufBuilder& b) {
      b.add_string("tokenizer.ggml.model", "gpt2");
      b.add_string("tokenizer.ggml.pre", "gpt-2");
      b.add_string_array("tokenizer.ggml.tokens", t.pieces());
      b.add_string_array("tokenizer.ggml.merges", bad);
    });
    expect_error([&] { read_gguf_tokenizer(g, t.vocab_size(), note); }, ErrorKind::Format, "nothere");
  }
  {
    GgufFile g = build([&](GgufBuilder& b) {
      b.add_string("tokenizer.ggml.model", "gpt2");
      b.add_string("tokenizer.ggml.pre", "gpt-2");
      b.add_string_array("tokenizer.ggml.tokens", t.pieces());
      b.add_string_array("tokenizer.ggml.merges", {"nospace"});
    });
    expect_error([&] { read_gguf_tokenizer(g, t.vocab_size(), note); }, ErrorKind::Format, "merges[0]");
  }
  {
    std::vector<std::string> dup = t.pieces();
    dup[290] = dup[289];
    GgufFile g = build([&](GgufBuilder& b) {
      b.add_string("tokenizer.ggml.model", "gpt2");
      b.add_string("tokenizer.ggml.pre", "gpt-2");
      b.add_string_array("tokenizer.ggml.tokens", dup);
      b.add_string_array("tokenizer.ggml.merges", merges);
    });
    expect_error([&] { read_gguf_tokenizer(g, t.vocab_size(), note); }, ErrorKind::Format, "twice");
  }
  {
    GgufFile g = build([&](GgufBuilder& b) {
      b.add_string("tokenizer.ggml.model", "gpt2");
      b.add_string("tokenizer.ggml.pre", "deepseek-coder");
      b.add_string_array("tokenizer.ggml.tokens", t.pieces());
      b.add_string_array("tokenizer.ggml.merges", merges);
    });
    EXPECT_FALSE(read_gguf_tokenizer(g, t.vocab_size(), note).has_value());
    EXPECT_NE(note.find("deepseek-coder"), std::string::npos) << note;
  }
  {
    GgufFile g = build([&](GgufBuilder& b) {
      b.add_string("tokenizer.ggml.model", "gpt2");
      b.add_string("tokenizer.ggml.pre", "gpt-2");
      b.add_string_array("tokenizer.ggml.tokens", t.pieces());
      b.add_string_array("tokenizer.ggml.merges", merges);
      b.add_u32("tokenizer.ggml.bos_token_id", 99999);
    });
    expect_error([&] { read_gguf_tokenizer(g, t.vocab_size(), note); }, ErrorKind::Format, "bos_token_id");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// llama.cpp as the peer: the same ids for the same text.

namespace {

struct PeerIds {
  json plain, special, detok;
};

PeerIds llama_cpp_tokenize(const std::string& gguf, const std::vector<std::string>& texts, const TempDir& d) {
  write_text(d / "texts.json", json(texts).dump());
  int code = 0;
  const std::string out = run_capture("CATQ_PEERS='" + peers_dir() + "' node '" + CATQ_SOURCE_DIR +
                                          "/tests/peers/llama_cpp_tokenize.mjs' '" + gguf + "' '" + (d / "texts.json") +
                                          "' 2>&1",
                                      &code);
  if (code != 0) throw std::runtime_error("llama_cpp_tokenize.mjs failed: " + out);
  json r = json::parse(out.substr(out.rfind("\n{") == std::string::npos ? 0 : out.rfind("\n{") + 1));
  return {r["plain"], r["special"], r["detok"]};
}

std::vector<std::string> peer_texts() {
  std::vector<std::string> v = {kTorture, "Hello world", " leading space", "trailing space ", "a\n\n\nb",
                                "<|begin_of_text|>Hello<|end_of_text|> again <|end_of_text|>", "1234567890",
                                "I'M DON'T we'LL", "\xF0\x9F\x98\x80\xF0\x9F\x98\x80 \xE6\x97\xA5\xE6\x9C\xAC"};
  // Each line of the torture string alone, and random UTF-8.
  size_t a = 0;
  for (size_t b; (b = kTorture.find('\n', a)) != std::string::npos; a = b + 1) v.push_back(kTorture.substr(a, b - a + 1));
  std::mt19937 rng(21);
  for (int i = 0; i < 40; ++i) v.push_back(random_utf8(rng, 1 + rng() % 100));
  v.push_back(corpus(3000, 77));
  return v;
}

void compare_with_llama_cpp(const Tokenizer& tok, const std::string& label, bool check_special) {
  TempDir d;
  LlamaModel m = LlamaModel::random(tiny_config(tok.vocab_size()), 1);
  const std::string path = d / "tok.gguf";
  write_gguf_llama(m, &tok, path);
  const std::vector<std::string> texts = peer_texts();
  PeerIds r = llama_cpp_tokenize(path, texts, d);
  ASSERT_EQ(r.plain.size(), texts.size());
  int same = 0, same_detok = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> ours = tok.encode(texts[i], false, false, false);
    std::vector<int32_t> theirs = r.plain[i].get<std::vector<int32_t>>();
    EXPECT_EQ(ours, theirs) << label << " text " << i << ": " << json(texts[i]).dump();
    if (check_special) {
      EXPECT_EQ(tok.encode(texts[i], false, false, true), r.special[i].get<std::vector<int32_t>>())
          << label << " (special) text " << i << ": " << json(texts[i]).dump();
    }
    same += ours == theirs;
    // llama.cpp's detokenizer cleans up spaces for some pre-tokenizers (clean_spaces): reported, not asserted.
    same_detok += r.detok[i].get<std::string>() == texts[i];
  }
  std::printf("[ peer ] llama.cpp %s: %d/%zu texts tokenized identically; its detokenizer gave back %d of them\n",
              label.c_str(), same, texts.size(), same_detok);
}

}  // namespace

TEST(PeerLlamaCppTokenizer, ByteLevelBpeIdsMatch) {
  if (!have_llama_cpp())
    GTEST_SKIP() << "needs node and node-llama-cpp + @node-llama-cpp/linux-x64 in " << peers_dir()
                 << "/node_modules (scripts/setup.sh installs them)";
  for (PreTokenizer p : {PreTokenizer::Llama3, PreTokenizer::Qwen2, PreTokenizer::Gpt2, PreTokenizer::SmolLm})
    compare_with_llama_cpp(trained(p, 2000), pre_tokenizer_gguf_name(p), true);
}

TEST(PeerLlamaCppTokenizer, SpmBpeIdsMatch) {
  if (!have_llama_cpp())
    GTEST_SKIP() << "needs node and node-llama-cpp + @node-llama-cpp/linux-x64 in " << peers_dir()
                 << "/node_modules (scripts/setup.sh installs them)";
  // GGUF "llama": llama.cpp merges by score (-rank); its special-token parsing of "\n<s>\n" differs, so only
  // plain tokenization is compared.
  compare_with_llama_cpp(spm_bpe_from_scores(tiny_tokenizer()), "spm tiny", false);
  compare_with_llama_cpp(trained_spm(2000), "spm trained", false);
  if (have_stories()) compare_with_llama_cpp(spm_bpe_from_scores(read_llama2c_tokenizer(stories_tok(), 512)), "spm tok512", false);
}

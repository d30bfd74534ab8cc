// Tokenizer: heap-based encode equals llama2.c's quadratic loop; decode round trip; file round trip.
#include <gtest/gtest.h>

#include <random>

#include "llm/tokenizer.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

// llama2.c's encode() transcribed literally (O(n^2)): the reference for Tokenizer::encode.
static std::vector<int32_t> encode_reference(const Tokenizer& t, const std::string& text, bool bos, bool eos) {
  std::vector<int32_t> ids;
  if (bos) ids.push_back(t.bos_id());
  auto byte_id = [&](uint8_t b) { return t.lookup(fmt::format("<0x{:02X}>", b)); };
  if (!text.empty()) ids.push_back(t.lookup(" "));
  std::string buf;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<uint8_t>(text[i]) & 0xC0) != 0x80) buf.clear();
    buf += text[i];
    uint8_t next = i + 1 < text.size() ? static_cast<uint8_t>(text[i + 1]) : 0;
    if ((next & 0xC0) == 0x80 && buf.size() < 4) continue;
    int32_t id = t.lookup(buf);
    if (id != -1) ids.push_back(id);
    else
      for (char c : buf) ids.push_back(byte_id(static_cast<uint8_t>(c)));
    buf.clear();
  }
  while (true) {
    float best = -1e10f;
    int32_t best_id = -1, best_idx = -1;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
      int32_t id = t.lookup(t.piece(ids[i]) + t.piece(ids[i + 1]));
      if (id != -1 && t.score(id) > best) {
        best = t.score(id);
        best_id = id;
        best_idx = static_cast<int32_t>(i);
      }
    }
    if (best_idx == -1) break;
    ids[best_idx] = best_id;
    ids.erase(ids.begin() + best_idx + 1);
  }
  if (eos) ids.push_back(t.eos_id());
  return ids;
}

static std::string random_text(std::mt19937& rng, size_t len) {
  static const std::vector<std::string> atoms = {"the", " ", "a", "t", "h", "e", "in", "g", " and", "s", "r", "o",
                                                 ".", "\n", "\xC3\xA9", "\xE2\x80\x99", "\xF0\x9F\x98\x80", "Q",
                                                 "is ", "ll", "x", "\x01", "\xFF", "\x80"};
  std::string s;
  while (s.size() < len) s += atoms[rng() % atoms.size()];
  return s;
}

TEST(LlmTokenizer, HeapEncodeEqualsLlama2cLoopSynthetic) {
  Tokenizer t = tiny_tokenizer();
  std::mt19937 rng(1);
  for (int i = 0; i < 200; ++i) {
    std::string s = random_text(rng, rng() % 60);
    for (bool bos : {false, true})
      EXPECT_EQ(t.encode(s, bos, !bos), encode_reference(t, s, bos, !bos)) << "text: " << s;
  }
}

TEST(LlmTokenizer, DecodeRoundTripSynthetic) {
  Tokenizer t = tiny_tokenizer();
  std::mt19937 rng(2);
  for (int i = 0; i < 100; ++i) {
    std::string s = random_text(rng, 1 + rng() % 80);
    // BOS strips the dummy-prefix space again, so decode(encode(s)) == s byte for byte (bytes via <0xXX>).
    EXPECT_EQ(t.decode(t.encode(s, true, false)), s);
  }
  EXPECT_EQ(t.encode("", true, false), std::vector<int32_t>{1});
  EXPECT_TRUE(t.encode("", false, false).empty());
}

TEST(LlmTokenizer, FileRoundTrip) {
  Tokenizer t = tiny_tokenizer();
  TempDir d;
  write_llama2c_tokenizer(t, d / "tok.bin");
  Tokenizer u = read_llama2c_tokenizer(d / "tok.bin");
  EXPECT_EQ(u.pieces(), t.pieces());
  EXPECT_EQ(u.scores(), t.scores());
  EXPECT_EQ(u.types(), t.types());
}

TEST(LlmTokenizer, Tok512MatchesReference) {
  if (!have_stories()) GTEST_SKIP() << "needs ../shared/assets/llama2c (absent)";
  Tokenizer t = read_llama2c_tokenizer(stories_tok(), 512);
  ASSERT_EQ(t.vocab_size(), 512);
  EXPECT_EQ(t.max_token_length(), 7);
  const std::string text_path = asset("text/tinystories_valid_head.txt");
  if (!file_exists(text_path)) GTEST_SKIP() << "needs ../shared/assets/text (absent)";
  std::string text = read_file_text(text_path).substr(0, 12000);  // ASCII: chars == bytes here
  auto ids = t.encode(text, false, false);
  EXPECT_EQ(ids.size(), 5774u);  // shared/README.md
  EXPECT_EQ(t.decode(ids), " " + text);  // no BOS: the dummy space stays
  // The quadratic reference on a prefix (it is too slow for the whole text).
  std::string head = text.substr(0, 1500);
  EXPECT_EQ(t.encode(head, true, false), encode_reference(t, head, true, false));
  std::mt19937 rng(3);
  for (int i = 0; i < 50; ++i) {
    std::string s = random_text(rng, rng() % 100);
    EXPECT_EQ(t.encode(s, true, false), encode_reference(t, s, true, false)) << s;
    EXPECT_EQ(t.decode(t.encode(s, true, false)), s);
  }
}

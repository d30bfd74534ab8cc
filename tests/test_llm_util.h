// Shared helpers of the tests/test_llm*.cpp files: asset paths, temp folders, a tiny synthetic
// tokenizer and model for machines without ../shared.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"
#include "io/llama2c.h"
#include "llm/tokenizer.h"
#include "llm/llama.h"

namespace catq::testing_llm {

inline std::string asset(const std::string& rel) { return std::string(CATQ_SOURCE_DIR) + "/../shared/assets/" + rel; }
inline std::string stories_bin() { return asset("llama2c/stories260K.bin"); }
inline std::string stories_tok() { return asset("llama2c/tok512.bin"); }
inline bool have_stories() { return file_exists(stories_bin()) && file_exists(stories_tok()); }

// A fresh empty folder under $TMPDIR, removed at destruction.
struct TempDir {
  std::string path;
  TempDir() {
    const char* t = std::getenv("TMPDIR");
    std::string tmpl = std::string(t && *t ? t : "/tmp") + "/catq_llm_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path = buf.data();
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

// <unk>, BOS, EOS, 256 byte tokens, then a few merges (higher score = merged first) and single letters.
inline Tokenizer tiny_tokenizer() {
  std::vector<std::string> p = {"<unk>", "\n<s>\n", "\n</s>\n"};
  for (int b = 0; b < 256; ++b) p.push_back(fmt::format("<0x{:02X}>", b));
  std::vector<float> s(p.size(), 0.0f);
  const std::vector<std::string> merges = {" t", "he", " a", " the", "in", " s", "er", "an", " w", "on", "re",
                                           "at", "ing", " th", "ed", "nd", " and", "ou", " o", "it", "es", " h",
                                           "en", " b", "ll", "ar", " c", "or", "is", " i", "\xC3\xA9", "is "};
  float sc = 0;
  for (auto& m : merges) {
    p.push_back(m);
    s.push_back(sc);
    sc -= 1;
  }
  const std::string letters = " etaoinshrdlcumwfgypbvkjxqzTOS.,!'\"\n";
  for (char c : letters) {
    p.push_back(std::string(1, c));
    s.push_back(sc);
    sc -= 1;
  }
  return Tokenizer(p, s, {}, 1, 2, 0);
}

inline LlamaConfig tiny_config(int64_t vocab, bool tied = true) {
  LlamaConfig c;
  c.dim = 64;
  c.hidden_dim = 96;  // multiple of 32 so every weight can be Q8_0
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = vocab;
  c.seq_len = 64;
  c.tied_head = tied;
  return c;
}

// A random tiny model + synthetic tokenizer, and stories260K + tok512 when ../shared exists.
struct ModelAndTok {
  LlamaModel model;
  Tokenizer tok;
  bool real = false;
  std::string name;
};
inline std::vector<ModelAndTok> models_for_format_tests() {
  std::vector<ModelAndTok> v(1);
  v[0].tok = tiny_tokenizer();
  v[0].model = LlamaModel::random(tiny_config(v[0].tok.vocab_size()), 7);
  v[0].name = "random tiny";
  if (have_stories()) {
    ModelAndTok r;
    r.model = read_llama2c(stories_bin());
    r.tok = read_llama2c_tokenizer(stories_tok(), 512);
    r.real = true;
    r.name = "stories260K";
    v.push_back(std::move(r));
  }
  return v;
}

inline at::Tensor sample_tokens(int64_t vocab, int64_t B, int64_t T, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(3, vocab, {B, T}, gen, at::kLong);
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }
// ‖a − ref‖ / ‖ref‖.
inline double rel_error(const at::Tensor& a, const at::Tensor& ref) {
  return ((a - ref).norm() / ref.norm().clamp_min(1e-30)).item<double>();
}

// One small random model config per supported architecture and option (defined in test_llm_arch.cpp).
struct ArchCase {
  std::string name;
  LlamaConfig cfg;
};
std::vector<ArchCase> arch_cases(int64_t vocab);

// Expects `f` to throw catq::Error of `kind` whose message mentions `needle`.
template <typename F>
void expect_error(F&& f, ErrorKind kind, const std::string& needle, const std::string& what = "") {
  try {
    f();
    ADD_FAILURE() << "expected catq::Error " << static_cast<int>(kind) << " (" << what << ")";
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << what << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << what << ": message should mention '" << needle << "': " << e.what();
  }
}

}  // namespace catq::testing_llm

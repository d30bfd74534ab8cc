// Tokenizers embedded in GGUF files (tokenizer.ggml.*): read into a Tokenizer and added to a GgufBuilder.
#include "io/gguf.h"

#include "core/error.h"

namespace catq {

namespace {

const std::string kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

}  // namespace

std::optional<Tokenizer> read_gguf_tokenizer(const GgufFile& g, int64_t vocab, std::string& note) {
  const GgufValue* model = g.find("tokenizer.ggml.model");
  if (!model) {
    note = "the file has no tokenizer.ggml.model";
    return std::nullopt;
  }
  if (model->type != GgufType::String)
    fail(ErrorKind::Format, "{}: tokenizer.ggml.model must be a string", g.path);
  if (model->s != "llama" && model->s != "gpt2") {
    note = fmt::format("tokenizer model \"{}\" is not supported (catq implements \"llama\" (SentencePiece) and "
                       "\"gpt2\" (byte-level BPE))", model->s);
    return std::nullopt;
  }
  const GgufValue* toks = g.find("tokenizer.ggml.tokens");
  if (!toks || toks->type != GgufType::Array || toks->elem_type != GgufType::String)
    fail(ErrorKind::Format, "{}: tokenizer.ggml.tokens is missing or not an array of strings", g.path);
  const size_t n = toks->arr.size();
  if (static_cast<int64_t>(n) != vocab)
    fail(ErrorKind::Format, "{}: tokenizer has {} tokens but the model's vocabulary is {}", g.path, n, vocab);
  std::vector<int32_t> types;
  if (const GgufValue* ty = g.find("tokenizer.ggml.token_type")) {
    if (ty->type != GgufType::Array || ty->arr.size() != n || (n && !ty->arr[0].is_integer()))
      fail(ErrorKind::Format, "{}: tokenizer.ggml.token_type must be an integer array of {} elements", g.path, n);
    types.resize(n);
    for (size_t i = 0; i < n; ++i) types[i] = static_cast<int32_t>(ty->arr[i].as_int());
  }
  auto id = [&](const char* key, int32_t def) -> int32_t {
    const GgufValue* v = g.find(key);
    if (!v) return def;
    if (!v->is_integer() || v->as_int() < 0 || v->as_int() >= static_cast<int64_t>(n))
      fail(ErrorKind::Format, "{}: {} = {} is not a token id (vocabulary of {})", g.path, key, v->describe(), n);
    return static_cast<int32_t>(v->as_int());
  };
  auto flag = [&](const char* key, bool def) -> bool {
    const GgufValue* v = g.find(key);
    if (!v) return def;
    if (v->type != GgufType::Bool) fail(ErrorKind::Format, "{}: {} must be a bool (got {})", g.path, key, v->describe());
    return v->u != 0;
  };

  if (model->s == "gpt2") {
    // Byte-level BPE: tokens as tokenizer.json's vocab (byte-level form), merges "a b".
    const GgufValue* pre = g.find("tokenizer.ggml.pre");
    const std::string pre_name = pre && pre->type == GgufType::String ? pre->s : "default";
    std::optional<PreTokenizer> p = pre_tokenizer_from_gguf_name(pre_name);
    if (!p) {
      note = fmt::format("byte-level BPE pre-tokenizer \"{}\" (tokenizer.ggml.pre) is not supported (catq implements "
                         "gpt-2, llama-bpe, qwen2, smollm)", pre_name);
      return std::nullopt;
    }
    const GgufValue* mg = g.find("tokenizer.ggml.merges");
    if (!mg || mg->type != GgufType::Array || (mg->arr.size() && mg->elem_type != GgufType::String))
      fail(ErrorKind::Format, "{}: tokenizer.ggml.merges is missing or not an array of strings (a \"gpt2\" tokenizer "
           "needs it)", g.path);
    BpeSpec s;
    s.kind = TokenizerKind::ByteLevelBpe;
    s.pre = *p;
    s.ignore_merges = *p == PreTokenizer::Llama3;  // llama.cpp's rule for llama-bpe
    s.pieces.resize(n);
    for (size_t i = 0; i < n; ++i) s.pieces[i] = toks->arr[i].s;
    s.types = std::move(types);
    s.merges.reserve(mg->arr.size());
    for (size_t r = 0; r < mg->arr.size(); ++r) {
      const std::string& m = mg->arr[r].s;
      size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;  // as llama.cpp splits it
      if (sp == std::string::npos)
        fail(ErrorKind::Format, "{}: tokenizer.ggml.merges[{}] = \"{}\" is not two tokens separated by a space", g.path,
             r, m);
      s.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    s.bos = id("tokenizer.ggml.bos_token_id", -1);
    s.eos = id("tokenizer.ggml.eos_token_id", -1);
    s.unk = id("tokenizer.ggml.unknown_token_id", -1);
    s.add_bos = flag("tokenizer.ggml.add_bos_token", *p == PreTokenizer::Llama3) && s.bos >= 0;
    s.add_eos = flag("tokenizer.ggml.add_eos_token", false) && s.eos >= 0;
    try {
      return Tokenizer(std::move(s));
    } catch (const Error& e) {
      fail(ErrorKind::Format, "{}: tokenizer.ggml.*: {}", g.path, e.what());
    }
  }

  std::vector<std::string> pieces(n);
  std::vector<float> scores(n, 0.0f);
  for (size_t i = 0; i < n; ++i) pieces[i] = replace_all(toks->arr[i].s, kSpmSpace, " ");
  if (const GgufValue* sc = g.find("tokenizer.ggml.scores")) {
    if (sc->type != GgufType::Array || sc->arr.size() != n || (n && !sc->arr[0].is_number()))
      fail(ErrorKind::Format, "{}: tokenizer.ggml.scores must be a numeric array of {} elements", g.path, n);
    for (size_t i = 0; i < n; ++i) {
      // Merges compare scores: NaN (or a value beyond float) would break their order.
      const double v = sc->arr[i].as_double();
      if (!(std::fabs(v) <= std::numeric_limits<float>::max()))
        fail(ErrorKind::Format, "{}: tokenizer.ggml.scores[{}] is {}, expected a finite number", g.path, i, v);
      scores[i] = static_cast<float>(v);
    }
  }
  int32_t bos = id("tokenizer.ggml.bos_token_id", 1), eos = id("tokenizer.ggml.eos_token_id", 2),
          unk = id("tokenizer.ggml.unknown_token_id", 0);
  return Tokenizer(std::move(pieces), std::move(scores), std::move(types), bos, eos, unk);
}

// Llama2c and SpmBpe tokenizers are written as "llama" (SentencePiece: llama.cpp merges by score; an SpmBpe's
// derived scores, -rank for merge results, give its merge order), byte-level ones as "gpt2".
void add_gguf_tokenizer(GgufBuilder& b, const Tokenizer& tok) {
  if (tok.kind() == TokenizerKind::ByteLevelBpe) {
    CATQ_CHECK(tok.pre_tokenizer() != PreTokenizer::None, Unsupported,
               "a byte-level BPE tokenizer without a pre-tokenizer has no llama.cpp equivalent (tokenizer.ggml.pre)");
    std::vector<std::string> merges;
    merges.reserve(tok.merges().size());
    for (auto [l, r] : tok.merges()) {
      CATQ_CHECK(tok.piece(l).find(' ') == std::string::npos && tok.piece(r).find(' ') == std::string::npos &&
                     !tok.piece(l).empty(), Unsupported,
                 "merge \"{}\" \"{}\" cannot be written as a GGUF \"a b\" merge (a piece holds a space)", tok.piece(l),
                 tok.piece(r));
      merges.push_back(tok.piece(l) + " " + tok.piece(r));
    }
    b.add_string("tokenizer.ggml.model", "gpt2");
    b.add_string("tokenizer.ggml.pre", pre_tokenizer_gguf_name(tok.pre_tokenizer()));
    b.add_string_array("tokenizer.ggml.tokens", tok.pieces());
    b.add_i32_array("tokenizer.ggml.token_type", tok.types());
    b.add_string_array("tokenizer.ggml.merges", merges);
    if (tok.bos_id() >= 0) b.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok.bos_id()));
    if (tok.eos_id() >= 0) b.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok.eos_id()));
    if (tok.unk_id() >= 0) b.add_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(tok.unk_id()));
    b.add_bool("tokenizer.ggml.add_bos_token", tok.add_bos());
    b.add_bool("tokenizer.ggml.add_eos_token", tok.add_eos());
    return;
  }
  std::vector<std::string> pieces;
  for (const auto& p : tok.pieces()) pieces.push_back(replace_all(p, " ", kSpmSpace));
  b.add_string("tokenizer.ggml.model", "llama");
  b.add_string_array("tokenizer.ggml.tokens", pieces);
  b.add_f32_array("tokenizer.ggml.scores", tok.scores());
  b.add_i32_array("tokenizer.ggml.token_type", tok.types());
  if (tok.bos_id() >= 0) b.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok.bos_id()));
  if (tok.eos_id() >= 0) b.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok.eos_id()));
  if (tok.unk_id() >= 0) b.add_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(tok.unk_id()));
  if (tok.kind() == TokenizerKind::SpmBpe) {
    b.add_bool("tokenizer.ggml.add_bos_token", tok.add_bos());
    b.add_bool("tokenizer.ggml.add_eos_token", tok.add_eos());
    b.add_bool("tokenizer.ggml.add_space_prefix", tok.dummy_prefix());
  }
}

}  // namespace catq

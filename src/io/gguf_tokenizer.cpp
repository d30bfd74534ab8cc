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
  if (model->s != "llama") {
    note = fmt::format("tokenizer model \"{}\" is not supported (catq implements the \"llama\" SentencePiece BPE)",
                       model->s);
    return std::nullopt;
  }
  const GgufValue* toks = g.find("tokenizer.ggml.tokens");
  if (!toks || toks->type != GgufType::Array || toks->elem_type != GgufType::String)
    fail(ErrorKind::Format, "{}: tokenizer.ggml.tokens is missing or not an array of strings", g.path);
  const size_t n = toks->arr.size();
  if (static_cast<int64_t>(n) != vocab)
    fail(ErrorKind::Format, "{}: tokenizer has {} tokens but the model's vocabulary is {}", g.path, n, vocab);
  std::vector<std::string> pieces(n);
  std::vector<float> scores(n, 0.0f);
  std::vector<int32_t> types;
  for (size_t i = 0; i < n; ++i) pieces[i] = replace_all(toks->arr[i].s, kSpmSpace, " ");
  if (const GgufValue* sc = g.find("tokenizer.ggml.scores")) {
    if (sc->type != GgufType::Array || sc->arr.size() != n || (n && !sc->arr[0].is_number()))
      fail(ErrorKind::Format, "{}: tokenizer.ggml.scores must be a numeric array of {} elements", g.path, n);
    for (size_t i = 0; i < n; ++i) scores[i] = static_cast<float>(sc->arr[i].as_double());
  }
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
  int32_t bos = id("tokenizer.ggml.bos_token_id", 1), eos = id("tokenizer.ggml.eos_token_id", 2),
          unk = id("tokenizer.ggml.unknown_token_id", 0);
  return Tokenizer(std::move(pieces), std::move(scores), std::move(types), bos, eos, unk);
}


void add_gguf_tokenizer(GgufBuilder& b, const Tokenizer& tok) {
  std::vector<std::string> pieces;
  for (const auto& p : tok.pieces()) pieces.push_back(replace_all(p, " ", kSpmSpace));
  b.add_string("tokenizer.ggml.model", "llama");
  b.add_string_array("tokenizer.ggml.tokens", pieces);
  b.add_f32_array("tokenizer.ggml.scores", tok.scores());
  b.add_i32_array("tokenizer.ggml.token_type", tok.types());
  if (tok.bos_id() >= 0) b.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok.bos_id()));
  if (tok.eos_id() >= 0) b.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok.eos_id()));
  if (tok.unk_id() >= 0) b.add_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(tok.unk_id()));
}

}  // namespace catq

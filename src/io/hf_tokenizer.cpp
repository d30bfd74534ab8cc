// Hugging Face tokenizer.json / tokenizer_config.json <-> Tokenizer (layout and rules: hf_tokenizer.h).
#include "io/hf_tokenizer.h"

#include <filesystem>
#include <map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_read.h"

namespace catq {

namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

const std::string kSpmSpace = "\xE2\x96\x81";  // U+2581

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

json parse_json(const std::string& text, const std::string& name) {
  try {
    return catq::parse_json(text);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: not valid JSON ({})", name, e.what());
  }
}

// Field access with messages naming the file and the field.
struct Fields {
  const std::string& name;
  const json* get(const json& o, const char* key) const {
    auto it = o.find(key);
    return it == o.end() || it->is_null() ? nullptr : &*it;
  }
  const json& object(const json& o, const char* key, const char* where) const {
    const json* v = get(o, key);
    if (!v || !v->is_object()) fail(ErrorKind::Format, "{}: {}.{} must be an object", name, where, key);
    return *v;
  }
  std::string str(const json& o, const char* key, const char* where, const std::string& def = {}) const {
    const json* v = get(o, key);
    if (!v) return def;
    if (!v->is_string()) fail(ErrorKind::Format, "{}: {}.{} must be a string (got {})", name, where, key, v->dump());
    return v->get<std::string>();
  }
  bool boolean(const json& o, const char* key, const char* where, bool def) const {
    const json* v = get(o, key);
    if (!v) return def;
    if (!v->is_boolean()) fail(ErrorKind::Format, "{}: {}.{} must be true or false (got {})", name, where, key, v->dump());
    return v->get<bool>();
  }
};

// Flattens a component that may be a Sequence (key: "pretokenizers", "normalizers", "decoders", "processors").
void flatten(const json& c, const char* seq_key, std::vector<const json*>& out, const Fields& f, const char* where) {
  if (c.is_null()) return;
  if (!c.is_object()) fail(ErrorKind::Format, "{}: {} must be an object or null", f.name, where);
  if (c.value("type", "") == "Sequence") {
    const json* items = f.get(c, seq_key);
    if (!items || !items->is_array()) fail(ErrorKind::Format, "{}: {} is a Sequence without a \"{}\" array", f.name, where, seq_key);
    for (const json& x : *items) flatten(x, seq_key, out, f, where);
    return;
  }
  out.push_back(&c);
}

// A token name in tokenizer_config.json: a string, {"content": ...} or null.
std::optional<std::string> config_token(const json& cfg, const char* key, const std::string& name) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  fail(ErrorKind::Format, "{}: tokenizer_config.json {} must be a string or {{\"content\": ...}} (got {})", name, key,
       it->dump());
}

}  // namespace

bool is_hf_tokenizer_path(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) return fs::exists(fs::path(path) / "tokenizer.json", ec);
  return fs::path(path).filename() == "tokenizer.json" ||
         (path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0);
}

Tokenizer read_hf_tokenizer(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string file = fs::is_directory(path, ec) ? (fs::path(path) / "tokenizer.json").string() : path;
  std::string text = read_file_text(file);
  std::string cfg_path = (fs::path(file).parent_path() / "tokenizer_config.json").string();
  if (fs::path(file).parent_path().empty()) cfg_path = "tokenizer_config.json";
  std::string cfg = file_exists(cfg_path) ? read_file_text(cfg_path) : std::string();
  return parse_hf_tokenizer(text, cfg, file);
}

Tokenizer parse_hf_tokenizer(const std::string& tokenizer_json, const std::string& config_json, const std::string& name) {
  const json j = parse_json(tokenizer_json, name);
  const Fields f{name};
  CATQ_CHECK(j.is_object(), Format, "{}: expected a JSON object at the top level (a Hugging Face tokenizer.json)", name);
  const json* model_p = f.get(j, "model");
  CATQ_CHECK(model_p && model_p->is_object(), Format,
             "{}: no \"model\" object (expected a Hugging Face tokenizer.json with model.type \"BPE\")", name);
  const json& model = *model_p;
  const std::string mtype = f.str(model, "type", "model", model.contains("merges") ? "BPE" : "");
  CATQ_CHECK(mtype == "BPE", Format,
             "{}: model.type is \"{}\"; catq reads only \"BPE\" tokenizers (byte-level or SentencePiece-style), not "
             "WordPiece / Unigram / WordLevel", name, mtype);

  // Which BPE: byte-level or SentencePiece-style, and the pre-tokenizer.
  std::vector<const json*> pres, norms, decs, posts;
  if (const json* p = f.get(j, "pre_tokenizer")) flatten(*p, "pretokenizers", pres, f, "pre_tokenizer");
  if (const json* p = f.get(j, "normalizer")) flatten(*p, "normalizers", norms, f, "normalizer");
  if (const json* p = f.get(j, "decoder")) flatten(*p, "decoders", decs, f, "decoder");
  if (const json* p = f.get(j, "post_processor")) flatten(*p, "processors", posts, f, "post_processor");
  bool byte_level = false, bl_regex = false, digits = false, metaspace = false, prepend = false, replace = false,
       first_only = false, nfc = false;
  std::optional<PreTokenizer> split;
  for (const json* p : pres) {
    const std::string t = f.str(*p, "type", "pre_tokenizer");
    if (t == "ByteLevel") {
      byte_level = true;
      bl_regex = f.boolean(*p, "use_regex", "pre_tokenizer.ByteLevel", true);
      CATQ_CHECK(!f.boolean(*p, "add_prefix_space", "pre_tokenizer.ByteLevel", false), Unsupported,
                 "{}: pre_tokenizer ByteLevel with add_prefix_space is not supported", name);
    } else if (t == "Split") {
      const json& pat = f.object(*p, "pattern", "pre_tokenizer.Split");
      const std::string re = f.str(pat, "Regex", "pre_tokenizer.Split.pattern");
      CATQ_CHECK(f.str(*p, "behavior", "pre_tokenizer.Split") == "Isolated" &&
                     !f.boolean(*p, "invert", "pre_tokenizer.Split", false), Unsupported,
                 "{}: pre_tokenizer Split must be behavior \"Isolated\", not inverted", name);
      split = pre_tokenizer_from_regex(re);
      CATQ_CHECK(split.has_value(), Unsupported,
                 "{}: pre_tokenizer Split pattern {} is not one catq implements (GPT-2, Llama-3 and Qwen2 patterns)",
                 name, json(re).dump());
    } else if (t == "Digits") {
      CATQ_CHECK(f.boolean(*p, "individual_digits", "pre_tokenizer.Digits", false), Unsupported,
                 "{}: pre_tokenizer Digits without individual_digits is not supported", name);
      digits = true;
    } else if (t == "Metaspace") {
      metaspace = true;
      CATQ_CHECK(f.str(*p, "replacement", "pre_tokenizer.Metaspace", kSpmSpace) == kSpmSpace &&
                     !f.boolean(*p, "split", "pre_tokenizer.Metaspace", false), Unsupported,
                 "{}: pre_tokenizer Metaspace must use \"\xE2\x96\x81\" and split false", name);
      std::string scheme = f.str(*p, "prepend_scheme", "pre_tokenizer.Metaspace",
                                 f.boolean(*p, "add_prefix_space", "pre_tokenizer.Metaspace", true) ? "always" : "never");
      CATQ_CHECK(scheme == "always" || scheme == "first" || scheme == "never", Format,
                 "{}: pre_tokenizer Metaspace prepend_scheme \"{}\": expected always, first or never", name, scheme);
      prepend = scheme != "never";
      first_only = scheme == "first";
      replace = true;
    } else {
      fail(ErrorKind::Unsupported, "{}: pre_tokenizer \"{}\" is not supported", name, t);
    }
  }
  for (const json* p : norms) {
    const std::string t = f.str(*p, "type", "normalizer");
    if (t == "Prepend") {
      CATQ_CHECK(f.str(*p, "prepend", "normalizer.Prepend") == kSpmSpace, Unsupported,
                 "{}: normalizer Prepend of something other than \"\xE2\x96\x81\"", name);
      prepend = true;
    } else if (t == "Replace") {
      const json& pat = f.object(*p, "pattern", "normalizer.Replace");
      CATQ_CHECK(f.str(pat, "String", "normalizer.Replace.pattern") == " " &&
                     f.str(*p, "content", "normalizer.Replace") == kSpmSpace, Unsupported,
                 "{}: only the normalizer Replace(\" \" -> \"\xE2\x96\x81\") is supported", name);
      replace = true;
    } else if (t == "NFC") {
      nfc = true;
    } else {
      fail(ErrorKind::Unsupported, "{}: normalizer \"{}\" is not supported", name, t);
    }
  }
  const bool byte_fallback = f.boolean(model, "byte_fallback", "model", false);
  BpeSpec s;
  if (byte_level) {
    s.kind = TokenizerKind::ByteLevelBpe;
    s.pre = split ? *split : digits ? PreTokenizer::SmolLm : bl_regex ? PreTokenizer::Gpt2 : PreTokenizer::None;
    CATQ_CHECK(!(split && (bl_regex || digits)), Unsupported,
               "{}: pre_tokenizer combines a Split with ByteLevel's own regex or Digits", name);
  } else if (replace || byte_fallback || metaspace) {
    s.kind = TokenizerKind::SpmBpe;
    CATQ_CHECK(replace, Unsupported, "{}: SentencePiece-style BPE without Replace(\" \" -> \"\xE2\x96\x81\")", name);
    CATQ_CHECK(!split && !digits, Unsupported, "{}: SentencePiece-style BPE with a Split / Digits pre-tokenizer", name);
    s.dummy_prefix = prepend;
    s.prefix_first_only = first_only;
    s.byte_fallback = byte_fallback;
  } else {
    fail(ErrorKind::Unsupported, "{}: a BPE tokenizer that is neither byte-level (ByteLevel pre-tokenizer) nor "
         "SentencePiece-style (\"\xE2\x96\x81\" spaces, byte_fallback)", name);
  }
  s.nfc = nfc;
  s.ignore_merges = f.boolean(model, "ignore_merges", "model", false);
  CATQ_CHECK(!(s.ignore_merges && s.kind == TokenizerKind::SpmBpe), Unsupported,
             "{}: ignore_merges with a SentencePiece-style BPE", name);
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    CATQ_CHECK(f.str(model, k, "model").empty(), Unsupported, "{}: model.{} is not supported", name, k);
  const bool spm = s.kind == TokenizerKind::SpmBpe;
  auto to_piece = [&](const std::string& p) { return spm ? replace_all(p, kSpmSpace, " ") : p; };

  // Vocabulary + added tokens -> pieces by id (dense, no duplicates).
  const json* vocab = f.get(model, "vocab");
  CATQ_CHECK(vocab && vocab->is_object(), Format, "{}: model.vocab must be an object {{token: id}}", name);
  const json* added = f.get(j, "added_tokens");
  CATQ_CHECK(!added || added->is_array(), Format, "{}: added_tokens must be an array", name);
  const size_t total = vocab->size() + (added ? added->size() : 0);
  std::map<int64_t, std::string> by_id;  // raw tokens (file form)
  std::map<int64_t, int32_t> type_of;    // added tokens
  auto put = [&](int64_t id, const std::string& tok, const char* where) {
    auto [it, fresh] = by_id.emplace(id, tok);
    if (!fresh && it->second != tok)
      fail(ErrorKind::Format, "{}: {}: tokens {} and {} both have id {}", name, where, json(it->second).dump(),
           json(tok).dump(), id);
  };
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    CATQ_CHECK(it.value().is_number_integer(), Format, "{}: model.vocab[{}] must be an integer id (got {})", name,
               json(it.key()).dump(), it.value().dump());
    int64_t id = it.value().get<int64_t>();
    CATQ_CHECK(id >= 0 && static_cast<uint64_t>(id) < total, Format,
               "{}: model.vocab[{}] = {} is out of range (expected 0..{}: ids must be dense)", name,
               json(it.key()).dump(), id, total - 1);
    put(id, it.key(), "model.vocab");
  }
  std::string unk_tok = f.str(model, "unk_token", "model");
  if (added) {
    for (size_t i = 0; i < added->size(); ++i) {
      const json& a = (*added)[i];
      CATQ_CHECK(a.is_object() && a.contains("id") && a["id"].is_number_integer() && a.contains("content") &&
                     a["content"].is_string(), Format,
                 "{}: added_tokens[{}] must be an object with an integer \"id\" and a string \"content\"", name, i);
      int64_t id = a["id"].get<int64_t>();
      CATQ_CHECK(id >= 0 && static_cast<uint64_t>(id) < total, Format,
                 "{}: added_tokens[{}].id = {} is out of range (expected 0..{}: ids must be dense)", name, i, id,
                 total - 1);
      const std::string content = a["content"].get<std::string>();
      CATQ_CHECK(!content.empty(), Format, "{}: added_tokens[{}].content is empty", name, i);
      // The same token in model.vocab must carry the same id (Hugging Face would silently renumber it).
      auto v = vocab->find(content);
      CATQ_CHECK(v == vocab->end() || v->get<int64_t>() == id, Format,
                 "{}: added_tokens[{}] {} has id {} but model.vocab gives it {}", name, i, json(content).dump(), id,
                 v == vocab->end() ? 0 : v->get<int64_t>());
      put(id, content, "added_tokens");
      bool special = f.boolean(a, "special", "added_tokens[]", false);
      type_of[id] = static_cast<int32_t>(content == unk_tok ? TokenType::Unknown
                                         : special           ? TokenType::Control
                                                             : TokenType::UserDefined);
    }
  }
  CATQ_CHECK(!by_id.empty(), Format, "{}: model.vocab is empty", name);
  const int64_t n = by_id.rbegin()->first + 1;
  CATQ_CHECK(static_cast<int64_t>(by_id.size()) == n, Format,
             "{}: token ids are not dense: {} tokens but the largest id is {} (id {} has no token)", name,
             by_id.size(), n - 1, [&] {
               int64_t k = 0;
               for (auto& [id, t] : by_id) {
                 if (id != k) break;
                 ++k;
               }
               return k;
             }());
  s.pieces.resize(n);
  s.types.assign(n, static_cast<int32_t>(TokenType::Normal));
  std::unordered_map<std::string, int32_t> id_of;
  for (auto& [id, t] : by_id) {
    auto ty = type_of.find(id);
    bool is_added = ty != type_of.end();
    s.pieces[id] = is_added ? t : to_piece(t);
    if (is_added) s.types[id] = ty->second;
    else if (spm && t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') s.types[id] = static_cast<int32_t>(TokenType::Byte);
    else if (!unk_tok.empty() && t == unk_tok) s.types[id] = static_cast<int32_t>(TokenType::Unknown);
    id_of.emplace(t, static_cast<int32_t>(id));
  }
  if (!unk_tok.empty()) {
    auto u = id_of.find(unk_tok);
    CATQ_CHECK(u != id_of.end(), Format, "{}: model.unk_token {} is not in the vocabulary", name, json(unk_tok).dump());
    s.unk = u->second;
  }

  // Merges.
  const json* merges = f.get(model, "merges");
  CATQ_CHECK(!merges || merges->is_array(), Format, "{}: model.merges must be an array", name);
  if (merges) {
    s.merges.reserve(merges->size());
    for (size_t r = 0; r < merges->size(); ++r) {
      const json& m = (*merges)[r];
      std::string a, b;
      if (m.is_string()) {
        const std::string& line = m.get_ref<const std::string&>();
        size_t sp = line.find(' ');
        CATQ_CHECK(sp != std::string::npos && line.find(' ', sp + 1) == std::string::npos, Format,
                   "{}: model.merges[{}] = {} must be two tokens separated by one space", name, r, m.dump());
        a = line.substr(0, sp), b = line.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>(), b = m[1].get<std::string>();
      } else {
        fail(ErrorKind::Format, "{}: model.merges[{}] = {} must be \"a b\" or [\"a\", \"b\"]", name, r, m.dump());
      }
      for (const std::string* x : {static_cast<const std::string*>(&a), static_cast<const std::string*>(&b),
                                   static_cast<const std::string*>(nullptr)}) {
        const std::string t = x ? *x : a + b;
        CATQ_CHECK(id_of.count(t), Format, "{}: model.merges[{}] = {}: {} is not in model.vocab", name, r, m.dump(),
                   json(t).dump());
      }
      s.merges.emplace_back(to_piece(a), to_piece(b));
    }
  }

  // BOS / EOS: tokenizer_config.json, then the post_processor, then well-known names.
  json cfg = config_json.empty() ? json::object() : parse_json(config_json, name + " (tokenizer_config.json)");
  CATQ_CHECK(cfg.is_object(), Format, "{}: tokenizer_config.json must be a JSON object", name);
  auto find_id = [&](const std::string& t, const char* where) {
    auto it = id_of.find(t);
    if (it == id_of.end())
      fail(ErrorKind::Format, "{}: {} {} is not a token of tokenizer.json", name, where, json(t).dump());
    return it->second;
  };
  std::optional<int32_t> tpl_bos, tpl_eos;
  bool have_template = false;
  for (const json* p : posts) {
    if (f.str(*p, "type", "post_processor") != "TemplateProcessing") continue;
    have_template = true;
    const json* single = f.get(*p, "single");
    CATQ_CHECK(single && single->is_array(), Format, "{}: post_processor TemplateProcessing needs a \"single\" array",
               name);
    bool seen_a = false;
    for (const json& piece : *single) {
      if (piece.is_object() && piece.contains("Sequence")) {
        seen_a = true;
      } else if (piece.is_object() && piece.contains("SpecialToken") && piece["SpecialToken"].is_object()) {
        const std::string tok = f.str(piece["SpecialToken"], "id", "post_processor.single[].SpecialToken");
        int32_t id = find_id(tok, "post_processor TemplateProcessing special token");
        if (!seen_a && !tpl_bos) tpl_bos = id;
        if (seen_a) tpl_eos = id;
      } else {
        fail(ErrorKind::Format, "{}: post_processor.single entries must be {{\"SpecialToken\": ...}} or "
             "{{\"Sequence\": ...}} (got {})", name, piece.dump());
      }
    }
  }
  auto guess = [&](std::initializer_list<const char*> names) -> int32_t {
    for (const char* t : names) {
      auto it = id_of.find(t);
      if (it != id_of.end()) return it->second;
    }
    return -1;
  };
  if (auto t = config_token(cfg, "bos_token", name)) s.bos = find_id(*t, "tokenizer_config.json bos_token");
  else if (tpl_bos) s.bos = *tpl_bos;
  else s.bos = guess({"<|begin_of_text|>", "<s>", "<|endoftext|>"});
  if (auto t = config_token(cfg, "eos_token", name)) s.eos = find_id(*t, "tokenizer_config.json eos_token");
  else if (tpl_eos) s.eos = *tpl_eos;
  else s.eos = guess({"<|end_of_text|>", "</s>", "<|endoftext|>"});
  s.add_bos = f.boolean(cfg, "add_bos_token", "tokenizer_config.json", have_template && tpl_bos.has_value());
  s.add_eos = f.boolean(cfg, "add_eos_token", "tokenizer_config.json", have_template && tpl_eos.has_value());
  CATQ_CHECK(!(s.add_bos && s.bos < 0), Format, "{}: add_bos_token is set but there is no BOS token", name);
  CATQ_CHECK(!(s.add_eos && s.eos < 0), Format, "{}: add_eos_token is set but there is no EOS token", name);
  try {
    return Tokenizer(std::move(s));
  } catch (const Error& e) {
    fail(e.kind(), "{}: {}", name, e.what());
  }
}

std::string hf_tokenizer_json(const Tokenizer& tok) {
  CATQ_CHECK(tok.is_bpe(), Unsupported,
             "a {} tokenizer cannot be written as tokenizer.json (only BPE tokenizers: byte-level or SentencePiece-style)",
             to_string(tok.kind()));
  const bool spm = tok.kind() == TokenizerKind::SpmBpe;
  auto file_piece = [&](int32_t id) {
    TokenType t = static_cast<TokenType>(tok.type(id));
    bool added = t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown;
    return spm && !added ? replace_all(tok.piece(id), " ", kSpmSpace) : tok.piece(id);
  };
  const int32_t n = static_cast<int32_t>(tok.vocab_size());
  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  ojson added = ojson::array();
  for (int32_t i = 0; i < n; ++i) {
    TokenType t = static_cast<TokenType>(tok.type(i));
    if (t != TokenType::Control && t != TokenType::UserDefined && t != TokenType::Unknown) continue;
    added.push_back({{"id", i}, {"content", tok.piece(i)}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", t != TokenType::UserDefined}});
  }
  j["added_tokens"] = added;
  auto byte_level = [](bool use_regex) {
    return ojson{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
  };
  if (spm) {
    if (tok.prefix_first_only()) {  // only Metaspace can say "first" (a Prepend normalizer acts on every segment)
      j["normalizer"] = tok.nfc() ? ojson{{"type", "NFC"}} : ojson(nullptr);
      j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kSpmSpace}, {"prepend_scheme", "first"},
                            {"split", false}};
    } else {
      ojson norms = ojson::array();
      if (tok.nfc()) norms.push_back({{"type", "NFC"}});
      if (tok.dummy_prefix()) norms.push_back({{"type", "Prepend"}, {"prepend", kSpmSpace}});
      norms.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpmSpace}});
      j["normalizer"] = {{"type", "Sequence"}, {"normalizers", norms}};
      j["pre_tokenizer"] = nullptr;
    }
  } else {
    j["normalizer"] = tok.nfc() ? ojson{{"type", "NFC"}} : ojson(nullptr);
    switch (tok.pre_tokenizer()) {
      case PreTokenizer::Gpt2: j["pre_tokenizer"] = byte_level(true); break;
      case PreTokenizer::None: j["pre_tokenizer"] = byte_level(false); break;
      case PreTokenizer::SmolLm:
        j["pre_tokenizer"] = {{"type", "Sequence"},
                              {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
        break;
      case PreTokenizer::Llama3: case PreTokenizer::Qwen2:
        j["pre_tokenizer"] = {
            {"type", "Sequence"},
            {"pretokenizers", {{{"type", "Split"}, {"pattern", {{"Regex", pre_tokenizer_regex(tok.pre_tokenizer())}}},
                                {"behavior", "Isolated"}, {"invert", false}},
                               byte_level(false)}}};
        break;
    }
  }
  if (tok.add_bos() || tok.add_eos()) {
    auto special = [&](int32_t id, int type_id) { return ojson{{"SpecialToken", {{"id", tok.piece(id)}, {"type_id", type_id}}}}; };
    ojson single = ojson::array(), pair = ojson::array(), specials = ojson::object();
    for (int k = 0; k < 2; ++k) {
      ojson& seq = k == 0 ? single : pair;
      for (int part = 0; part <= k; ++part) {
        if (tok.add_bos()) seq.push_back(special(tok.bos_id(), part));
        seq.push_back({{"Sequence", {{"id", part == 0 ? "A" : "B"}, {"type_id", part}}}});
        if (tok.add_eos()) seq.push_back(special(tok.eos_id(), part));
      }
    }
    for (int32_t id : {tok.add_bos() ? tok.bos_id() : -1, tok.add_eos() ? tok.eos_id() : -1})
      if (id >= 0) specials[tok.piece(id)] = {{"id", tok.piece(id)}, {"ids", {id}}, {"tokens", {tok.piece(id)}}};
    j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
  } else {
    j["post_processor"] = nullptr;
  }
  if (spm) {
    ojson decs = ojson::array({{{"type", "Replace"}, {"pattern", {{"String", kSpmSpace}}}, {"content", " "}},
                               {{"type", "ByteFallback"}}, {{"type", "Fuse"}}});
    if (tok.dummy_prefix()) decs.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    j["decoder"] = {{"type", "Sequence"}, {"decoders", decs}};
  } else {
    j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  }
  ojson model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = tok.unk_id() >= 0 ? ojson(tok.piece(tok.unk_id())) : ojson(nullptr);
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = spm;
  model["byte_fallback"] = spm && tok.byte_fallback();
  model["ignore_merges"] = tok.ignore_merges();
  // Appended to the ordered map's vector directly: its operator[] searches the keys linearly, which made writing a
  // 128k vocabulary quadratic (31 s for a whole train-tokenizer run, 0.7 s now). Uniqueness: a hash set.
  ojson vocab = ojson::object();
  auto& entries = vocab.get_ref<ojson::object_t&>();
  entries.reserve(static_cast<size_t>(n));
  std::unordered_set<std::string> seen;
  seen.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    std::string piece = file_piece(i);
    CATQ_CHECK(seen.insert(piece).second, Format, "tokenizer.json: token {} ({}) appears twice in the vocabulary", i,
               ojson(piece).dump());
    entries.std::vector<ojson::object_t::value_type>::emplace_back(std::move(piece), ojson(i));
  }
  model["vocab"] = std::move(vocab);
  bool pairs = false;  // "a b" strings unless a piece holds a space
  for (auto [a, b] : tok.merges())
    if (file_piece(a).find(' ') != std::string::npos || file_piece(b).find(' ') != std::string::npos) pairs = true;
  ojson merges = ojson::array();
  for (auto [a, b] : tok.merges()) {
    if (pairs) merges.push_back({file_piece(a), file_piece(b)});
    else merges.push_back(file_piece(a) + " " + file_piece(b));
  }
  model["merges"] = std::move(merges);
  j["model"] = std::move(model);
  try {
    return j.dump(2, ' ', false, ojson::error_handler_t::strict) + "\n";
  } catch (const ojson::exception& e) {
    fail(ErrorKind::Unsupported, "tokenizer.json needs UTF-8 tokens: {}", e.what());
  }
}

std::string hf_tokenizer_config_json(const Tokenizer& tok) {
  auto name = [&](int32_t id) { return id >= 0 ? ojson(tok.piece(id)) : ojson(nullptr); };
  ojson c;
  c["add_bos_token"] = tok.add_bos();
  c["add_eos_token"] = tok.add_eos();
  c["bos_token"] = name(tok.bos_id());
  c["eos_token"] = name(tok.eos_id());
  if (tok.unk_id() >= 0) c["unk_token"] = name(tok.unk_id());
  c["clean_up_tokenization_spaces"] = false;
  c["tokenizer_class"] = "PreTrainedTokenizerFast";
  try {
    return c.dump(2, ' ', false, ojson::error_handler_t::strict) + "\n";
  } catch (const ojson::exception& e) {
    fail(ErrorKind::Unsupported, "tokenizer_config.json needs UTF-8 tokens: {}", e.what());
  }
}

void write_hf_tokenizer(const Tokenizer& tok, const std::string& path) {
  namespace fs = std::filesystem;
  const std::string body = hf_tokenizer_json(tok), cfg = hf_tokenizer_config_json(tok);
  fs::path dir = fs::path(path).parent_path();
  write_file_atomic(path, body);
  write_file_atomic((dir.empty() ? fs::path("tokenizer_config.json") : dir / "tokenizer_config.json").string(), cfg);
}

}  // namespace catq

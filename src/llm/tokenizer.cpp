#include "llm/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <queue>

#include "core/error.h"
#include "core/file_util.h"
#include "llm/bpe.h"

namespace catq {

// "<0xXX>" -> XX, else -1.
static int parse_byte_piece(const std::string& p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    char c = p[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

Tokenizer::Tokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::vector<int32_t> types,
                     int32_t bos_id, int32_t eos_id, int32_t unk_id)
    : pieces_(std::move(pieces)), scores_(std::move(scores)), types_(std::move(types)), bos_(bos_id), eos_(eos_id),
      unk_(unk_id) {
  int64_t n = static_cast<int64_t>(pieces_.size());
  CATQ_CHECK(n > 0, Format, "tokenizer: empty vocabulary");
  CATQ_CHECK(static_cast<int64_t>(scores_.size()) == n, Format, "tokenizer: {} pieces but {} scores", n,
             scores_.size());
  CATQ_CHECK(types_.empty() || static_cast<int64_t>(types_.size()) == n, Format,
             "tokenizer: {} pieces but {} token types", n, types_.size());
  CATQ_CHECK(bos_ >= -1 && bos_ < n && eos_ >= -1 && eos_ < n && unk_ >= -1 && unk_ < n, Format,
             "tokenizer: special token ids (bos {}, eos {}, unk {}) out of range for a vocabulary of {}", bos_, eos_,
             unk_, n);
  if (types_.empty()) {
    types_.assign(n, static_cast<int32_t>(TokenType::Normal));
    for (int64_t i = 0; i < n; ++i)
      if (parse_byte_piece(pieces_[i]) >= 0) types_[i] = static_cast<int32_t>(TokenType::Byte);
    if (unk_ >= 0) types_[unk_] = static_cast<int32_t>(TokenType::Unknown);
    if (bos_ >= 0) types_[bos_] = static_cast<int32_t>(TokenType::Control);
    if (eos_ >= 0) types_[eos_] = static_cast<int32_t>(TokenType::Control);
  }
  build_index();
}

const char* to_string(TokenizerKind k) {
  switch (k) {
    case TokenizerKind::Llama2c: return "llama2c";
    case TokenizerKind::SpmBpe: return "spm-bpe";
    case TokenizerKind::ByteLevelBpe: return "byte-level-bpe";
  }
  return "?";
}

Tokenizer::Tokenizer(BpeSpec sp)
    : kind_(sp.kind), pre_(sp.pre), ignore_merges_(sp.ignore_merges), byte_fallback_(sp.byte_fallback),
      dummy_prefix_(sp.dummy_prefix), prefix_first_only_(sp.dummy_prefix && sp.prefix_first_only), nfc_(sp.nfc),
      add_bos_(sp.add_bos), add_eos_(sp.add_eos), pieces_(std::move(sp.pieces)),
      types_(std::move(sp.types)), bos_(sp.bos), eos_(sp.eos), unk_(sp.unk) {
  CATQ_CHECK(kind_ != TokenizerKind::Llama2c, Internal, "tokenizer: BpeSpec of kind llama2c");
  const int64_t n = static_cast<int64_t>(pieces_.size());
  CATQ_CHECK(n > 0, Format, "tokenizer: empty vocabulary");
  CATQ_CHECK(n < (int64_t{1} << 31), Format, "tokenizer: {} tokens is too many", n);
  CATQ_CHECK(types_.empty() || static_cast<int64_t>(types_.size()) == n, Format,
             "tokenizer: {} pieces but {} token types", n, types_.size());
  CATQ_CHECK(bos_ >= -1 && bos_ < n && eos_ >= -1 && eos_ < n && unk_ >= -1 && unk_ < n, Format,
             "tokenizer: special token ids (bos {}, eos {}, unk {}) out of range for a vocabulary of {}", bos_, eos_,
             unk_, n);
  CATQ_CHECK(!(add_bos_ && bos_ < 0), Format, "tokenizer: add_bos is set but there is no BOS token");
  CATQ_CHECK(!(add_eos_ && eos_ < 0), Format, "tokenizer: add_eos is set but there is no EOS token");
  if (types_.empty()) {
    types_.assign(n, static_cast<int32_t>(TokenType::Normal));
    if (kind_ == TokenizerKind::SpmBpe)
      for (int64_t i = 0; i < n; ++i)
        if (parse_byte_piece(pieces_[i]) >= 0) types_[i] = static_cast<int32_t>(TokenType::Byte);
    if (unk_ >= 0) types_[unk_] = static_cast<int32_t>(TokenType::Unknown);
    if (bos_ >= 0) types_[bos_] = static_cast<int32_t>(TokenType::Control);
    if (eos_ >= 0) types_[eos_] = static_cast<int32_t>(TokenType::Control);
  }
  for (int64_t i = 0; i < n; ++i)
    CATQ_CHECK(types_[i] >= 0 && types_[i] <= 6, Format, "tokenizer: token {} has type {} (expected 0..6)", i,
               types_[i]);  // 0: GGUF's "undefined", treated as normal
  build_index();
  for (int32_t i = 0; i < static_cast<int32_t>(n); ++i) {
    int32_t first = index_.at(pieces_[i]);
    CATQ_CHECK(first == i, Format, "tokenizer: piece \"{}\" appears twice (ids {} and {})", pieces_[i], first, i);
  }
  // Merges: ids, the table, derived scores.
  scores_.assign(n, -1e9f);
  for (int64_t i = 0; i < n; ++i) {
    size_t len;
    const std::string& p = pieces_[i];
    bool single = !p.empty() && utf8_next(p, 0, len) != 0xFFFFFFFFu && len == p.size();
    if (single || types_[i] != static_cast<int32_t>(TokenType::Normal)) scores_[i] = 0.0f;
  }
  std::vector<char> merged_seen(n, 0);
  merges_.reserve(sp.merges.size());
  for (size_t r = 0; r < sp.merges.size(); ++r) {
    const auto& [a, b] = sp.merges[r];
    int32_t ia = lookup(a), ib = lookup(b), im = lookup(a + b);
    if (ia < 0 || ib < 0 || im < 0)
      fail(ErrorKind::Format, "tokenizer: merge {} (\"{}\" \"{}\"): \"{}\" is not in the vocabulary", r, a, b,
           ia < 0 ? a : ib < 0 ? b : a + b);
    merges_.emplace_back(ia, ib);
    merge_table_.add(ia, ib, im, static_cast<int32_t>(r));  // a repeated pair keeps its first rank (llama.cpp)
    if (!merged_seen[im]) {
      merged_seen[im] = 1;
      scores_[im] = -static_cast<float>(r);
    }
  }
  // Byte-level alphabet ids.
  std::fill(std::begin(byte_level_ids_), std::end(byte_level_ids_), -1);
  if (kind_ == TokenizerKind::ByteLevelBpe)
    for (int b = 0; b < 256; ++b) byte_level_ids_[b] = lookup(byte_level_char(static_cast<uint8_t>(b)));
  // Added tokens, matched in the text before anything else.
  added_.assign(256, {});
  for (int32_t i = 0; i < static_cast<int32_t>(n); ++i) {
    TokenType t = static_cast<TokenType>(types_[i]);
    if ((t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown) && !pieces_[i].empty())
      added_[static_cast<uint8_t>(pieces_[i][0])].push_back(i);
  }
  for (auto& v : added_)
    std::stable_sort(v.begin(), v.end(), [&](int32_t a, int32_t b) { return pieces_[a].size() > pieces_[b].size(); });
}

BpeSpec Tokenizer::spec() const {
  BpeSpec s;
  s.kind = kind_;
  s.pieces = pieces_;
  s.types = types_;
  s.merges.reserve(merges_.size());
  for (auto [a, b] : merges_) s.merges.emplace_back(pieces_[a], pieces_[b]);
  s.pre = pre_;
  s.ignore_merges = ignore_merges_;
  s.byte_fallback = byte_fallback_;
  s.dummy_prefix = dummy_prefix_;
  s.prefix_first_only = prefix_first_only_;
  s.nfc = nfc_;
  s.bos = bos_;
  s.eos = eos_;
  s.unk = unk_;
  s.add_bos = add_bos_;
  s.add_eos = add_eos_;
  return s;
}

std::vector<int32_t> Tokenizer::encode_bpe(const std::string& text, bool bos, bool eos, bool special) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (bos && bos_ >= 0) ids.push_back(bos_);
  std::unordered_map<std::string, std::vector<int32_t>> cache;
  // Added tokens: leftmost, then longest.
  size_t seg = 0;
  for (size_t i = 0; i < text.size();) {
    int32_t hit = -1;
    for (int32_t id : added_[static_cast<uint8_t>(text[i])]) {
      if (!special && types_[id] != static_cast<int32_t>(TokenType::UserDefined)) continue;
      const std::string& p = pieces_[id];
      if (text.compare(i, p.size(), p) == 0) {
        hit = id;
        break;
      }
    }
    if (hit < 0) {
      ++i;
      continue;
    }
    if (i > seg) encode_segment(std::string_view(text).substr(seg, i - seg), ids, cache, seg == 0);
    ids.push_back(hit);
    i += pieces_[hit].size();
    seg = i;
  }
  if (seg < text.size()) encode_segment(std::string_view(text).substr(seg), ids, cache, seg == 0);
  if (eos && eos_ >= 0) ids.push_back(eos_);
  return ids;
}

void Tokenizer::encode_segment(std::string_view seg, std::vector<int32_t>& ids,
                               std::unordered_map<std::string, std::vector<int32_t>>& cache, bool at_start) const {
  if (!nfc_) return encode_segment_normalized(seg, ids, cache, at_start);
  encode_segment_normalized(nfc_normalize(seg), ids, cache, at_start);  // per segment between added tokens, as in HF
}

void Tokenizer::encode_segment_normalized(std::string_view seg, std::vector<int32_t>& ids,
                                          std::unordered_map<std::string, std::vector<int32_t>>& cache,
                                          bool at_start) const {
  std::vector<int32_t> syms;
  if (kind_ == TokenizerKind::SpmBpe) {
    // One word: the dummy prefix, then one symbol per code point (unknown ones as byte tokens), merged by rank.
    std::string s;
    s.reserve(seg.size() + 1);
    if (dummy_prefix_ && (at_start || !prefix_first_only_)) s.push_back(' ');
    s.append(seg);
    for (size_t i = 0; i < s.size();) {
      size_t len;
      utf8_next(s, i, len);
      int32_t id = lookup(s.substr(i, len));
      if (id >= 0) {
        syms.push_back(id);
      } else if (byte_fallback_) {
        for (size_t k = i; k < i + len; ++k) {
          int32_t b = byte_ids_[static_cast<uint8_t>(s[k])];
          if (b >= 0) syms.push_back(b);
          else if (unk_ >= 0) syms.push_back(unk_);
        }
      } else if (unk_ >= 0) {
        syms.push_back(unk_);
      }
      i += len;
    }
    merge_table_.apply(syms);
    ids.insert(ids.end(), syms.begin(), syms.end());
    return;
  }
  for (std::string_view word : pre_tokenize(seg, pre_)) {
    std::string w(word);
    auto it = cache.find(w);
    if (it != cache.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      continue;
    }
    syms.clear();
    int32_t whole = ignore_merges_ ? lookup(bytes_to_byte_level(word)) : -1;
    if (whole >= 0) {
      syms.push_back(whole);
    } else {
      for (char c : word) {
        int32_t b = byte_level_ids_[static_cast<uint8_t>(c)];
        if (b >= 0) syms.push_back(b);
        else if (unk_ >= 0) syms.push_back(unk_);
      }
      merge_table_.apply(syms);
    }
    ids.insert(ids.end(), syms.begin(), syms.end());
    if (cache.size() < (1u << 20)) cache.emplace(std::move(w), syms);
  }
}

void Tokenizer::build_index() {
  index_.clear();
  index_.reserve(pieces_.size() * 2);
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  max_len_ = 0;
  for (int32_t i = 0; i < static_cast<int32_t>(pieces_.size()); ++i) {
    index_.emplace(pieces_[i], i);  // keeps the first id of a duplicated piece
    int b = parse_byte_piece(pieces_[i]);
    if (b >= 0 && byte_ids_[b] < 0) byte_ids_[b] = i;
    max_len_ = std::max<int32_t>(max_len_, static_cast<int32_t>(pieces_[i].size()));
  }
}

const std::string& Tokenizer::piece(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(pieces_.size()))
    fail(ErrorKind::Data, "token id {} is out of range for a vocabulary of {}", id, pieces_.size());
  return pieces_[id];
}

int32_t Tokenizer::lookup(const std::string& p) const {
  auto it = index_.find(p);
  return it == index_.end() ? -1 : it->second;
}

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool bos, bool eos, bool special) const {
  if (is_bpe()) return encode_bpe(text, bos, eos, special);
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 3);
  if (bos && bos_ >= 0) ids.push_back(bos_);
  auto push_bytes = [&](const char* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      int32_t b = byte_ids_[static_cast<uint8_t>(p[i])];
      ids.push_back(b >= 0 ? b : unk_);
    }
  };
  if (!text.empty()) {
    int32_t sp = lookup(" ");
    if (sp >= 0) ids.push_back(sp); else push_bytes(" ", 1);
  }
  // One token per UTF-8 code point (at most 4 bytes), as llama2.c splits it.
  std::string buf;
  for (size_t i = 0; i < text.size(); ++i) {
    uint8_t c = static_cast<uint8_t>(text[i]);
    if ((c & 0xC0) != 0x80) buf.clear();
    buf.push_back(static_cast<char>(c));
    uint8_t next = i + 1 < text.size() ? static_cast<uint8_t>(text[i + 1]) : 0;
    if ((next & 0xC0) == 0x80 && buf.size() < 4) continue;
    int32_t id = lookup(buf);
    if (id >= 0) ids.push_back(id); else push_bytes(buf.data(), buf.size());
    buf.clear();
  }

  // Best-pair merging. llama2.c rescans all pairs and merges the highest-scoring one (strictly greater
  // wins, so ties go to the leftmost pair). A max-heap ordered by (score, -left position) with lazy
  // invalidation picks the same pair each round: positions are original indices, which keep their order.
  std::string cat;
  merge_adjacent_pairs(ids, [&](int32_t l, int32_t r, double& priority, int32_t& merged) {
    cat = pieces_[l];
    cat += pieces_[r];
    merged = lookup(cat);
    if (merged < 0 || !(scores_[merged] > -1e10f)) return false;
    priority = scores_[merged];  // best-scoring merged piece first
    return true;
  });
  if (eos && eos_ >= 0) ids.push_back(eos_);
  return ids;
}

std::string Tokenizer::decode_piece(int32_t prev, int32_t tok) const {
  const std::string& p = piece(tok);
  TokenType t = static_cast<TokenType>(types_[tok]);
  if (t == TokenType::Control) return {};
  if (kind_ == TokenizerKind::ByteLevelBpe) {
    std::string bytes;
    if (t != TokenType::UserDefined && byte_level_to_bytes(p, bytes)) return bytes;
    return p;
  }
  if (kind_ == TokenizerKind::SpmBpe) {
    const bool first = prev < 0 || prev >= static_cast<int32_t>(types_.size()) ||
                       types_[prev] == static_cast<int32_t>(TokenType::Control);
    std::string out = p;
    if (t == TokenType::Byte) {
      int b = parse_byte_piece(p);
      if (b >= 0) out = std::string(1, static_cast<char>(b));
    }
    if (dummy_prefix_ && first && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }
  if (t == TokenType::Byte) {
    int b = parse_byte_piece(p);
    if (b >= 0) return std::string(1, static_cast<char>(b));
  }
  if (prev == bos_ && prev >= 0 && !p.empty() && p[0] == ' ') return p.substr(1);
  return p;
}

std::string Tokenizer::decode(const std::vector<int32_t>& tokens) const {
  std::string out;
  int32_t prev = -1;
  for (int32_t t : tokens) {
    out += decode_piece(prev, t);
    prev = t;
  }
  return out;
}

Tokenizer read_llama2c_tokenizer(const std::string& path, int64_t vocab_size) {
  auto bytes = read_file_bytes(path);
  ByteReader r(bytes.data(), bytes.size(), path);
  int32_t max_len = r.read<int32_t>("max_token_length");
  CATQ_CHECK(max_len > 0 && max_len <= (1 << 16), Format,
             "{}: max_token_length {} is not plausible (expected 1..65536): not a llama2.c tokenizer file?", path,
             max_len);
  // Each token needs at least 8 bytes, which bounds any declared vocabulary size by the file length.
  CATQ_CHECK(vocab_size >= 0 && static_cast<uint64_t>(vocab_size) <= r.remaining() / 8, Format,
             "{}: file of {} bytes cannot hold {} tokens", path, bytes.size(), vocab_size);
  std::vector<std::string> pieces;
  std::vector<float> scores;
  while (vocab_size > 0 ? static_cast<int64_t>(pieces.size()) < vocab_size : r.remaining() > 0) {
    CATQ_CHECK(r.remaining() > 0, Format, "{}: the file ends after {} tokens, the model's vocabulary has {} (truncated, "
               "or a tokenizer of another model?)", path, pieces.size(), vocab_size);
    float s = r.read<float>("token score");
    int32_t len = r.read<int32_t>("token length");
    CATQ_CHECK(len >= 0 && len <= max_len, Format,
               "{}: token {} at offset {} has length {} (expected 0..max_token_length {})", path, pieces.size(),
               r.pos() - 4, len, max_len);
    // Merges compare scores: NaN or Inf would break their order.
    CATQ_CHECK(std::isfinite(s), Format, "{}: token {} has score {}, expected a finite number", path, pieces.size(), s);
    pieces.push_back(r.read_string(static_cast<size_t>(len), "token bytes"));
    scores.push_back(s);
  }
  CATQ_CHECK(!pieces.empty(), Format, "{}: tokenizer file holds no tokens", path);
  CATQ_CHECK(pieces.size() >= 3, Format, "{}: tokenizer has {} tokens; llama2.c needs at least <unk>, BOS, EOS",
             path, pieces.size());
  return Tokenizer(std::move(pieces), std::move(scores), {}, 1, 2, 0);
}

void write_llama2c_tokenizer(const Tokenizer& tok, const std::string& path) {
  // A SentencePiece-style BPE's derived scores make llama2.c merge in its order; byte-level BPE has no equivalent.
  CATQ_CHECK(tok.kind() != TokenizerKind::ByteLevelBpe, Unsupported,
             "{}: a byte-level BPE tokenizer cannot be written in the llama2.c format (write a tokenizer.json)", path);
  std::string out;
  auto put = [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  int32_t max_len = std::max<int32_t>(1, tok.max_token_length());
  put(&max_len, 4);
  for (int64_t i = 0; i < tok.vocab_size(); ++i) {
    float s = tok.scores()[i];
    int32_t len = static_cast<int32_t>(tok.pieces()[i].size());
    put(&s, 4);
    put(&len, 4);
    put(tok.pieces()[i].data(), tok.pieces()[i].size());
  }
  write_file_atomic(path, out);
}

}  // namespace catq

namespace catq {

Tokenizer spm_bpe_from_scores(const Tokenizer& tok) {
  CATQ_CHECK(!tok.is_bpe(), Unsupported, "spm_bpe_from_scores: the tokenizer is already {}", to_string(tok.kind()));
  const int32_t n = static_cast<int32_t>(tok.vocab_size());
  struct M {
    float score;
    int32_t id;
    size_t split;
    std::string a, b;
  };
  std::vector<M> ms;
  for (int32_t i = 0; i < n; ++i) {
    if (tok.type(i) != static_cast<int32_t>(TokenType::Normal) || !(tok.score(i) > -1e10f)) continue;
    const std::string& p = tok.piece(i);
    size_t len;
    for (size_t k = 0; k < p.size(); k += len) {
      utf8_next(p, k, len);
      if (k == 0) continue;
      std::string a = p.substr(0, k), b = p.substr(k);
      if (tok.lookup(a) >= 0 && tok.lookup(b) >= 0) ms.push_back({tok.score(i), i, k, std::move(a), std::move(b)});
    }
  }
  std::stable_sort(ms.begin(), ms.end(), [](const M& x, const M& y) {
    if (x.score != y.score) return x.score > y.score;
    if (x.id != y.id) return x.id < y.id;
    return x.split < y.split;
  });
  BpeSpec s;
  s.kind = TokenizerKind::SpmBpe;
  s.pieces = tok.pieces();
  s.types = tok.types();
  for (auto& m : ms) s.merges.emplace_back(std::move(m.a), std::move(m.b));
  s.bos = tok.bos_id();
  s.eos = tok.eos_id();
  s.unk = tok.unk_id();
  s.add_bos = tok.bos_id() >= 0;
  return Tokenizer(std::move(s));
}

}  // namespace catq

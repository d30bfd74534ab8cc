#include "llm/tokenizer.h"

#include <cstring>
#include <queue>

#include "core/error.h"
#include "core/file_util.h"

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

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool bos, bool eos) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() + 3);
  if (bos) ids.push_back(bos_);
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
  const size_t n = ids.size();
  if (n >= 2) {
    std::vector<int32_t> prev(n), next(n);
    for (size_t i = 0; i < n; ++i) {
      prev[i] = static_cast<int32_t>(i) - 1;
      next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
    }
    struct Cand {
      float score;
      int32_t left, left_id, right_id, merged;
    };
    auto worse = [](const Cand& a, const Cand& b) {
      if (a.score != b.score) return a.score < b.score;
      return a.left > b.left;
    };
    std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
    std::string cat;
    auto consider = [&](int32_t l) {
      if (l < 0 || next[l] < 0) return;
      int32_t r = next[l];
      cat = pieces_[ids[l]];
      cat += pieces_[ids[r]];
      int32_t m = lookup(cat);
      if (m >= 0 && scores_[m] > -1e10f) heap.push({scores_[m], l, ids[l], ids[r], m});
    };
    for (size_t i = 0; i + 1 < n; ++i) consider(static_cast<int32_t>(i));
    std::vector<char> alive(n, 1);
    while (!heap.empty()) {
      Cand c = heap.top();
      heap.pop();
      int32_t l = c.left;
      if (!alive[l] || ids[l] != c.left_id) continue;
      int32_t r = next[l];
      if (r < 0 || ids[r] != c.right_id) continue;
      ids[l] = c.merged;
      alive[r] = 0;
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      consider(prev[l]);
      consider(l);
    }
    std::vector<int32_t> out;
    out.reserve(n);
    for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
    ids.swap(out);
  }
  if (eos) ids.push_back(eos_);
  return ids;
}

std::string Tokenizer::decode_piece(int32_t prev, int32_t tok) const {
  const std::string& p = piece(tok);
  TokenType t = static_cast<TokenType>(types_[tok]);
  if (t == TokenType::Control) return {};
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
    float s = r.read<float>("token score");
    int32_t len = r.read<int32_t>("token length");
    CATQ_CHECK(len >= 0 && len <= max_len, Format,
               "{}: token {} at offset {} has length {} (expected 0..max_token_length {})", path, pieces.size(),
               r.pos() - 4, len, max_len);
    pieces.push_back(r.read_string(static_cast<size_t>(len), "token bytes"));
    scores.push_back(s);
  }
  CATQ_CHECK(!pieces.empty(), Format, "{}: tokenizer file holds no tokens", path);
  CATQ_CHECK(pieces.size() >= 3, Format, "{}: tokenizer has {} tokens; llama2.c needs at least <unk>, BOS, EOS",
             path, pieces.size());
  return Tokenizer(std::move(pieces), std::move(scores), {}, 1, 2, 0);
}

void write_llama2c_tokenizer(const Tokenizer& tok, const std::string& path) {
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

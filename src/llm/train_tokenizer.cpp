#include "llm/train_tokenizer.h"

#include <algorithm>
#include <queue>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "core/progress.h"

namespace catq {

namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
int32_t key_left(uint64_t k) { return static_cast<int32_t>(k >> 32); }
int32_t key_right(uint64_t k) { return static_cast<int32_t>(k & 0xFFFFFFFFu); }

struct Word {
  std::vector<int32_t> syms;
  int64_t freq;
};

struct Entry {
  int64_t count;
  uint64_t pair;
};
// Max count first; ties: the smallest (left, right), i.e. the smallest key.
struct EntryLess {
  bool operator()(const Entry& x, const Entry& y) const {
    return x.count != y.count ? x.count < y.count : x.pair > y.pair;
  }
};

// Checks the options shared by both trainers; `fixed` = the tokens besides merges and specials.
void check_options(const BpeTrainOptions& opt, int64_t fixed, const char* what) {
  const int64_t n_special = static_cast<int64_t>(opt.special_tokens.size());
  CATQ_CHECK(opt.vocab_size >= fixed + n_special && opt.vocab_size < (int64_t{1} << 31), Config,
             "train-tokenizer: --vocab {} is too small: it must hold the {} {} and the {} special tokens",
             opt.vocab_size, fixed, what, n_special);
  CATQ_CHECK(opt.bos >= -1 && opt.bos < n_special && opt.eos >= -1 && opt.eos < n_special, Config,
             "train-tokenizer: BOS/EOS must name one of the {} special tokens", n_special);
  CATQ_CHECK(!(opt.add_bos && opt.bos < 0) && !(opt.add_eos && opt.eos < 0), Config,
             "train-tokenizer: add_bos / add_eos need a BOS / EOS token");
  std::unordered_set<std::string_view> seen;  // (a set: padded tokenizers carry 100k+ reserved tokens)
  for (int64_t i = 0; i < n_special; ++i) {
    CATQ_CHECK(!opt.special_tokens[i].empty(), Config, "train-tokenizer: special token {} is empty", i);
    CATQ_CHECK(seen.insert(opt.special_tokens[i]).second, Config, "train-tokenizer: special token \"{}\" is given twice",
               opt.special_tokens[i]);
  }
}

// Distinct words and their counts, sorted so that nothing depends on hash order.
template <typename Split>
std::vector<std::pair<std::string_view, int64_t>> count_words(const std::vector<std::string>& texts, Split&& split,
                                                              BpeTrainStats& st) {
  std::unordered_map<std::string_view, int64_t> freq;
  for (const std::string& t : texts) {
    st.bytes += static_cast<int64_t>(t.size());
    split(t, [&](std::string_view w) {
      ++freq[w];
      ++st.words;
    });
  }
  CATQ_CHECK(st.words > 0, Data, "train-tokenizer: the training text is empty");
  std::vector<std::pair<std::string_view, int64_t>> uniq(freq.begin(), freq.end());
  std::sort(uniq.begin(), uniq.end());
  st.unique_words = static_cast<int64_t>(uniq.size());
  return uniq;
}

// The merge loop. Word symbols are ids into `pieces` (the base alphabet on entry); each merge appends its piece
// and its pair of pieces to `merges`, until `target` merges or no pair of min_frequency is left.
void learn_merges(std::vector<Word>& words, std::vector<std::string>& pieces, int64_t target,
                  const BpeTrainOptions& opt, std::vector<std::pair<std::string, std::string>>& merges,
                  BpeTrainStats& st) {
  std::unordered_map<uint64_t, int64_t> counts;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  for (size_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w].syms;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      uint64_t k = pair_key(s[i], s[i + 1]);
      counts[k] += words[w].freq;
      auto& v = where[k];
      if (v.empty() || v.back() != static_cast<int32_t>(w)) v.push_back(static_cast<int32_t>(w));
    }
  }
  std::priority_queue<Entry, std::vector<Entry>, EntryLess> heap;
  {
    std::vector<Entry> init;
    init.reserve(counts.size());
    for (auto& [k, c] : counts) init.push_back({c, k});
    heap = std::priority_queue<Entry, std::vector<Entry>, EntryLess>(EntryLess{}, std::move(init));
  }
  std::vector<int32_t> stamp(words.size(), -1);
  std::vector<uint64_t> before, after;
  std::unordered_set<uint64_t> raised;
  Progress bar("train-tokenizer", opt.progress ? target : 0);
  if (!opt.progress) bar.finish();

  while (static_cast<int64_t>(merges.size()) < target) {
    if (heap.empty()) {
      st.stopped_early = true;
      break;
    }
    Entry e = heap.top();
    heap.pop();
    auto cit = counts.find(e.pair);
    const int64_t cur = cit == counts.end() ? 0 : cit->second;
    if (cur != e.count) {
      if (cur > 0 && cur < e.count) heap.push({cur, e.pair});  // a count that only went down: re-queue it
      continue;                                                  // (a raised count has its own, fresher entry)
    }
    if (cur < std::max<int64_t>(1, opt.min_frequency)) {
      st.stopped_early = true;
      break;
    }
    const int32_t a = key_left(e.pair), b = key_right(e.pair);
    const int32_t id = static_cast<int32_t>(pieces.size());
    const int32_t rank = static_cast<int32_t>(merges.size());
    merges.emplace_back(pieces[a], pieces[b]);
    pieces.push_back(pieces[a] + pieces[b]);
    std::vector<int32_t> occ = std::move(where[e.pair]);
    where.erase(e.pair);
    raised.clear();
    for (int32_t w : occ) {
      if (stamp[w] == rank) continue;
      stamp[w] = rank;
      auto& s = words[w].syms;
      const int64_t f = words[w].freq;
      before.clear();
      for (size_t i = 0; i + 1 < s.size(); ++i) before.push_back(pair_key(s[i], s[i + 1]));
      size_t o = 0;
      bool changed = false;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          s[o++] = id;
          ++i;
          changed = true;
        } else {
          s[o++] = s[i];
        }
      }
      if (!changed) continue;
      s.resize(o);
      after.clear();
      for (size_t i = 0; i + 1 < s.size(); ++i) after.push_back(pair_key(s[i], s[i + 1]));
      std::sort(before.begin(), before.end());
      std::sort(after.begin(), after.end());
      // Multiset difference: pairs lost and pairs gained by this word.
      size_t i = 0, k = 0;
      while (i < before.size() || k < after.size()) {
        if (k == after.size() || (i < before.size() && before[i] < after[k])) {
          if (before[i] != e.pair) {
            auto it = counts.find(before[i]);
            if ((it->second -= f) == 0) counts.erase(it);
          }
          ++i;
        } else if (i == before.size() || after[k] < before[i]) {
          counts[after[k]] += f;
          auto& v = where[after[k]];
          if (v.empty() || v.back() != w) v.push_back(w);
          raised.insert(after[k]);
          ++k;
        } else {
          ++i, ++k;
        }
      }
    }
    counts.erase(e.pair);
    for (uint64_t k : raised) {
      auto it = counts.find(k);
      if (it != counts.end()) heap.push({it->second, k});
    }
    if (opt.progress) {
      if ((rank & 255) == 0) bar.set_info(fmt::format("pair count {}", cur));
      bar.step(1);
    }
  }
  if (opt.progress) bar.finish();
  st.merges = static_cast<int64_t>(merges.size());
}

Tokenizer finish(BpeSpec spec, BpeTrainStats& st, BpeTrainStats* stats) {
  if (stats) *stats = st;
  try {
    return Tokenizer(std::move(spec));
  } catch (const Error& err) {
    fail(ErrorKind::Config, "train-tokenizer: {} (a special token equal to a learned piece?)", err.what());
  }
}

}  // namespace

Tokenizer train_byte_level_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt, BpeTrainStats* stats) {
  check_options(opt, 256, "byte tokens");
  CATQ_CHECK(opt.pre != PreTokenizer::None, Config, "train-tokenizer: a pre-tokenizer is required");
  BpeTrainStats st;
  auto uniq = count_words(texts, [&](const std::string& t, auto&& add) {
    for (std::string_view w : pre_tokenize(t, opt.pre)) add(w);
  }, st);
  std::vector<Word> words(uniq.size());
  for (size_t i = 0; i < uniq.size(); ++i) {
    words[i].freq = uniq[i].second;
    words[i].syms.reserve(uniq[i].first.size());
    for (char c : uniq[i].first) words[i].syms.push_back(static_cast<uint8_t>(c));
  }
  uniq.clear();
  std::vector<std::string> pieces;
  pieces.reserve(opt.vocab_size);
  for (int b = 0; b < 256; ++b) pieces.push_back(byte_level_char(static_cast<uint8_t>(b)));
  std::vector<std::pair<std::string, std::string>> merges;
  const int64_t n_special = static_cast<int64_t>(opt.special_tokens.size());
  learn_merges(words, pieces, opt.vocab_size - 256 - n_special, opt, merges, st);

  BpeSpec spec;
  spec.kind = TokenizerKind::ByteLevelBpe;
  spec.pre = opt.pre;
  spec.ignore_merges = opt.pre == PreTokenizer::Llama3;
  spec.pieces = std::move(pieces);
  spec.types.assign(spec.pieces.size(), static_cast<int32_t>(TokenType::Normal));
  const int32_t first_special = static_cast<int32_t>(spec.pieces.size());
  for (const std::string& t : opt.special_tokens) {
    spec.pieces.push_back(t);
    spec.types.push_back(static_cast<int32_t>(TokenType::Control));
  }
  spec.merges = std::move(merges);
  spec.bos = opt.bos >= 0 ? first_special + opt.bos : -1;
  spec.eos = opt.eos >= 0 ? first_special + opt.eos : -1;
  spec.add_bos = opt.add_bos;
  spec.add_eos = opt.add_eos;
  return finish(std::move(spec), st, stats);
}

Tokenizer train_spm_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt, BpeTrainStats* stats) {
  BpeTrainStats st;
  // Words: a dummy-prefix space before each text, a new word at each space; other whitespace stands alone.
  auto is_ws = [](char c) { return c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f'; };
  std::vector<std::string> prefixed;
  prefixed.reserve(texts.size());
  for (const std::string& t : texts) prefixed.push_back(t.empty() ? t : " " + t);
  auto uniq = count_words(prefixed, [&](const std::string& t, auto&& add) {
    size_t a = 0;
    for (size_t i = 0; i < t.size(); ++i) {
      if (t[i] == ' ' || is_ws(t[i])) {
        if (i > a) add(std::string_view(t).substr(a, i - a));
        a = i;
        if (is_ws(t[i])) add(std::string_view(t).substr(i, 1)), a = i + 1;
      }
    }
    if (t.size() > a) add(std::string_view(t).substr(a));
  }, st);
  st.bytes -= static_cast<int64_t>(prefixed.size());  // the dummy prefixes
  // The alphabet: the most frequent code points covering character_coverage of all occurrences (ties: smaller code
  // point first); the rest falls back to byte tokens.
  std::unordered_map<std::string, int64_t> chars;
  int64_t total = 0;
  for (auto& [w, f] : uniq) {
    for (size_t i = 0, len; i < w.size(); i += len) {
      const bool valid = utf8_next(w, i, len) != 0xFFFFFFFFu;  // invalid UTF-8 always falls back to bytes
      if (valid) chars[std::string(w.substr(i, len))] += f;
      total += f;
    }
  }
  std::vector<std::pair<std::string, int64_t>> alpha(chars.begin(), chars.end());
  std::sort(alpha.begin(), alpha.end(), [](const auto& x, const auto& y) {
    return x.second != y.second ? x.second > y.second : x.first < y.first;
  });
  size_t keep = 0;
  for (int64_t covered = 0; keep < alpha.size() && covered < opt.character_coverage * total; ++keep)
    covered += alpha[keep].second;
  alpha.resize(keep);
  std::sort(alpha.begin(), alpha.end());  // alphabet order: by bytes
  const int64_t n_special = static_cast<int64_t>(opt.special_tokens.size());
  const int64_t fixed = 1 + 256 + static_cast<int64_t>(alpha.size());
  check_options(opt, fixed, fmt::format("tokens of <unk>, the bytes and the {} characters", alpha.size()).c_str());
  for (const std::string& t : opt.special_tokens)
    CATQ_CHECK(t != "<unk>", Config, "train-tokenizer: <unk> is always token 0; do not list it as a special token");

  // Base symbols: the alphabet (ids 0..); characters outside it become byte symbols that never merge.
  std::unordered_map<std::string, int32_t> sym;
  std::vector<std::string> pieces;
  for (auto& [c, f] : alpha) sym.emplace(c, static_cast<int32_t>(pieces.size())), pieces.push_back(c);
  const int32_t n_alpha = static_cast<int32_t>(pieces.size());
  for (int b = 0; b < 256; ++b) pieces.push_back(fmt::format("<0x{:02X}>", b));
  std::vector<Word> words(uniq.size());
  for (size_t i = 0; i < uniq.size(); ++i) {
    words[i].freq = uniq[i].second;
    std::string_view w = uniq[i].first;
    for (size_t k = 0, len; k < w.size(); k += len) {
      utf8_next(w, k, len);
      auto it = sym.find(std::string(w.substr(k, len)));
      if (it != sym.end()) {
        words[i].syms.push_back(it->second);
      } else {
        for (size_t j = k; j < k + len; ++j) words[i].syms.push_back(n_alpha + static_cast<uint8_t>(w[j]));
      }
    }
  }
  uniq.clear();
  // Byte symbols must not merge (Hugging Face applies byte fallback after merging): split words at them.
  {
    std::vector<Word> split;
    split.reserve(words.size());
    for (Word& w : words) {
      Word cur{{}, w.freq};
      for (int32_t s : w.syms) {
        if (s >= n_alpha) {
          if (cur.syms.size() > 1) split.push_back(cur);
          cur.syms.clear();
        } else {
          cur.syms.push_back(s);
        }
      }
      if (cur.syms.size() > 1) split.push_back(std::move(cur));
    }
    words.swap(split);
  }
  std::vector<std::pair<std::string, std::string>> merges;
  learn_merges(words, pieces, opt.vocab_size - fixed - n_special, opt, merges, st);

  // Layout (as Llama-2's): <unk>, the special tokens, the 256 byte tokens, the characters, the merged pieces.
  BpeSpec spec;
  spec.kind = TokenizerKind::SpmBpe;
  spec.pieces.push_back("<unk>");
  spec.types.push_back(static_cast<int32_t>(TokenType::Unknown));
  for (const std::string& t : opt.special_tokens) {
    spec.pieces.push_back(t);
    spec.types.push_back(static_cast<int32_t>(TokenType::Control));
  }
  for (int b = 0; b < 256; ++b) {
    spec.pieces.push_back(pieces[n_alpha + b]);
    spec.types.push_back(static_cast<int32_t>(TokenType::Byte));
  }
  for (int32_t i = 0; i < n_alpha; ++i) spec.pieces.push_back(pieces[i]);
  for (size_t i = n_alpha + 256; i < pieces.size(); ++i) spec.pieces.push_back(pieces[i]);
  spec.types.resize(spec.pieces.size(), static_cast<int32_t>(TokenType::Normal));
  spec.merges = std::move(merges);
  spec.unk = 0;
  spec.bos = opt.bos >= 0 ? 1 + opt.bos : -1;
  spec.eos = opt.eos >= 0 ? 1 + opt.eos : -1;
  spec.add_bos = opt.add_bos;
  spec.add_eos = opt.add_eos;
  return finish(std::move(spec), st, stats);
}

}  // namespace catq

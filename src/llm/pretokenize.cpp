#include "llm/pretokenize.h"

#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

namespace catq {

namespace {

constexpr uint32_t kInvalid = 0xFFFFFFFFu;

// Character classes the patterns distinguish.
enum Cls : uint8_t { kLetter, kNumber, kSpace, kOther };

struct Cp {
  uint32_t c;
  uint32_t off;  // byte offset in the text
  Cls cls;
};

Cls classify(uint32_t c) {
  if (c == kInvalid) return kOther;
  if (c < 128) {  // fast path; same answers as ICU
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return kLetter;
    if (c >= '0' && c <= '9') return kNumber;
    if (c == ' ' || (c >= 9 && c <= 13)) return kSpace;
    return kOther;
  }
  if (u_isUWhiteSpace(static_cast<UChar32>(c))) return kSpace;
  switch (u_charType(static_cast<UChar32>(c))) {
    case U_UPPERCASE_LETTER: case U_LOWERCASE_LETTER: case U_TITLECASE_LETTER: case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return kLetter;
    case U_DECIMAL_DIGIT_NUMBER: case U_LETTER_NUMBER: case U_OTHER_NUMBER:
      return kNumber;
    default:
      return kOther;
  }
}

// The matcher over one code-point sequence; `end` bounds every match (SmolLm runs it between digits).
class Matcher {
 public:
  Matcher(const std::vector<Cp>& cps, size_t end) : cp_(cps), n_(end) {}

  bool is(size_t i, Cls k) const { return i < n_ && cp_[i].cls == k; }
  bool is_char(size_t i, uint32_t c) const { return i < n_ && cp_[i].c == c; }
  bool is_crlf(size_t i) const { return i < n_ && (cp_[i].c == '\r' || cp_[i].c == '\n'); }
  size_t run(size_t i, Cls k) const {
    while (is(i, k)) ++i;
    return i;
  }
  // 's 't 're 've 'm 'll 'd at i (ASCII letters; case-insensitive when ci); the end, or 0.
  size_t contraction(size_t i, bool ci) const {
    if (!is_char(i, '\'') || i + 1 >= n_) return 0;
    auto lower = [&](size_t k) -> uint32_t {
      if (k >= n_) return 0;
      uint32_t c = cp_[k].c;
      return ci && c >= 'A' && c <= 'Z' ? c + 32 : c;
    };
    uint32_t a = lower(i + 1), b = lower(i + 2);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
    return 0;
  }
  // \s+(?!\S) then \s+ at a whitespace position: the whole run when it ends the text, else all but its last
  // character (which then starts the next piece), or a single whitespace character.
  size_t spaces(size_t i) const {
    size_t j = run(i, kSpace);
    if (j == n_) return j;
    return j - 1 > i ? j - 1 : j;
  }

  size_t gpt2(size_t i) const {
    if (size_t e = contraction(i, false)) return e;
    size_t k = is_char(i, ' ') ? i + 1 : i;  // " ?"
    if (is(k, kLetter)) return run(k, kLetter);
    if (is(k, kNumber)) return run(k, kNumber);
    if (is(k, kOther)) return run(k, kOther);
    if (is(i, kSpace)) return spaces(i);
    return i + 1;  // unreachable: every character has a class
  }

  size_t llama3(size_t i, int max_digits) const {
    if (size_t e = contraction(i, true)) return e;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (i + 1 < n_ && !is_crlf(i) && !is(i, kLetter) && !is(i, kNumber) && is(i + 1, kLetter))
      return run(i + 1, kLetter);
    if (is(i, kLetter)) return run(i, kLetter);
    // \p{N}{1,max}
    if (is(i, kNumber)) {
      size_t j = i;
      while (j - i < static_cast<size_t>(max_digits) && is(j, kNumber)) ++j;
      return j;
    }
    // " ?[^\s\p{L}\p{N}]+[\r\n]*"
    size_t k = is_char(i, ' ') && is(i + 1, kOther) ? i + 1 : i;
    if (is(k, kOther)) {
      size_t j = run(k, kOther);
      while (is_crlf(j)) ++j;
      return j;
    }
    if (is(i, kSpace)) {
      // \s*[\r\n]+: up to the last CR/LF of the whitespace run
      size_t j = run(i, kSpace), last = j;
      for (size_t t = i; t < j; ++t)
        if (is_crlf(t)) last = t;
      if (last != j) return last + 1;
      return spaces(i);
    }
    return i + 1;
  }

 private:
  const std::vector<Cp>& cp_;
  size_t n_;
};

const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace

uint32_t utf8_next(std::string_view s, size_t i, size_t& len) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  uint8_t c = b(i);
  len = 1;
  if (c < 0x80) return c;
  size_t n;
  uint32_t v, min;
  if ((c & 0xE0) == 0xC0) n = 2, v = c & 0x1F, min = 0x80;
  else if ((c & 0xF0) == 0xE0) n = 3, v = c & 0x0F, min = 0x800;
  else if ((c & 0xF8) == 0xF0) n = 4, v = c & 0x07, min = 0x10000;
  else return kInvalid;
  if (i + n > s.size()) return kInvalid;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return kInvalid;
    v = (v << 6) | (b(i + k) & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return kInvalid;  // overlong, surrogate
  len = n;
  return v;
}

const char* pre_tokenizer_gguf_name(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::Gpt2: return "gpt-2";
    case PreTokenizer::Llama3: return "llama-bpe";
    case PreTokenizer::Qwen2: return "qwen2";
    case PreTokenizer::SmolLm: return "smollm";
    case PreTokenizer::None: break;
  }
  return "default";
}

std::optional<PreTokenizer> pre_tokenizer_from_gguf_name(const std::string& n) {
  if (n == "gpt-2" || n == "gpt2") return PreTokenizer::Gpt2;
  if (n == "llama-bpe" || n == "llama3" || n == "llama-v3") return PreTokenizer::Llama3;
  if (n == "qwen2") return PreTokenizer::Qwen2;
  if (n == "smollm") return PreTokenizer::SmolLm;
  return std::nullopt;
}

const char* pre_tokenizer_regex(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::Gpt2: return kGpt2Regex;
    case PreTokenizer::Llama3: return kLlama3Regex;
    case PreTokenizer::Qwen2: return kQwen2Regex;
    default: return "";
  }
}

std::optional<PreTokenizer> pre_tokenizer_from_regex(const std::string& pattern) {
  for (PreTokenizer p : {PreTokenizer::Gpt2, PreTokenizer::Llama3, PreTokenizer::Qwen2})
    if (pattern == pre_tokenizer_regex(p)) return p;
  return std::nullopt;
}

std::vector<std::string_view> pre_tokenize(std::string_view text, PreTokenizer p) {
  std::vector<std::string_view> out;
  if (text.empty()) return out;
  if (p == PreTokenizer::None) {
    out.push_back(text);
    return out;
  }
  std::vector<Cp> cps;
  cps.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t len;
    uint32_t c = utf8_next(text, i, len);
    cps.push_back({c, static_cast<uint32_t>(i), classify(c)});
    i += len;
  }
  const size_t n = cps.size();
  auto off = [&](size_t k) { return k < n ? cps[k].off : text.size(); };
  auto emit = [&](size_t a, size_t b) { out.push_back(text.substr(off(a), off(b) - off(a))); };
  if (p == PreTokenizer::SmolLm) {
    for (size_t i = 0; i < n;) {
      if (cps[i].cls == kNumber) {
        emit(i, i + 1);
        ++i;
        continue;
      }
      size_t seg = i;
      while (seg < n && cps[seg].cls != kNumber) ++seg;
      Matcher m(cps, seg);
      while (i < seg) {
        size_t e = m.gpt2(i);
        emit(i, e);
        i = e;
      }
    }
    return out;
  }
  Matcher m(cps, n);
  for (size_t i = 0; i < n;) {
    size_t e = p == PreTokenizer::Gpt2 ? m.gpt2(i) : m.llama3(i, p == PreTokenizer::Llama3 ? 3 : 1);
    emit(i, e);
    i = e;
  }
  return out;
}

std::string nfc_normalize(std::string_view text) {
  bool ascii = true;
  for (char c : text) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii || text.size() > static_cast<size_t>(INT32_MAX / 4)) return std::string(text);
  UErrorCode st = U_ZERO_ERROR;
  const UNormalizer2* nfc = unorm2_getNFCInstance(&st);
  if (U_FAILURE(st)) return std::string(text);
  std::vector<UChar> u16(text.size() + 1);
  int32_t n16 = 0;
  u_strFromUTF8(u16.data(), static_cast<int32_t>(u16.size()), &n16, text.data(), static_cast<int32_t>(text.size()), &st);
  if (U_FAILURE(st)) return std::string(text);  // invalid UTF-8: left as bytes
  if (unorm2_quickCheck(nfc, u16.data(), n16, &st) == UNORM_YES && U_SUCCESS(st)) return std::string(text);
  st = U_ZERO_ERROR;
  std::vector<UChar> out(static_cast<size_t>(n16) * 3 + 16);  // NFC grows by at most 3× (UAX #15)
  const int32_t nout = unorm2_normalize(nfc, u16.data(), n16, out.data(), static_cast<int32_t>(out.size()), &st);
  if (U_FAILURE(st)) return std::string(text);
  std::string r(static_cast<size_t>(nout) * 3 + 4, '\0');
  int32_t n8 = 0;
  u_strToUTF8(r.data(), static_cast<int32_t>(r.size()), &n8, out.data(), nout, &st);
  if (U_FAILURE(st)) return std::string(text);
  r.resize(static_cast<size_t>(n8));
  return r;
}

}  // namespace catq

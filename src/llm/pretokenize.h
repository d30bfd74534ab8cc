// Pre-tokenizers of byte-level BPE models: the regex splits of GPT-2, Llama-3, Qwen2 and SmolLM, implemented as
// hand-written matchers of exactly those patterns (no regex engine), with Unicode general categories from ICU.
//
//   Gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|
//           \s+(?!\S)|\s+
//   Qwen2:  as Llama3 but \p{N} (one digit per piece)
//   SmolLm: every \p{N} isolated first (HF Digits(individual_digits)), then Gpt2 on the rest
//
// Semantics are those of a backtracking regex find-all: at each position the alternatives are tried in order and
// the first that matches wins. \s is Unicode White_Space (as Oniguruma and llama.cpp define it), \p{L} the L*
// categories, \p{N} Nd/Nl/No. A byte that is not part of valid UTF-8 counts as one "other" character, so any
// byte string splits into pieces that concatenate back to it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace catq {

enum class PreTokenizer { None, Gpt2, Llama3, Qwen2, SmolLm };

// llama.cpp's tokenizer.ggml.pre names: "gpt-2", "llama-bpe", "qwen2", "smollm" ("default" for None).
const char* pre_tokenizer_gguf_name(PreTokenizer p);
// Also accepts llama.cpp's aliases ("llama3", "llama-v3", "gpt2"); nullopt for names catq does not implement.
std::optional<PreTokenizer> pre_tokenizer_from_gguf_name(const std::string& name);
// The Hugging Face Split regex (Gpt2: the ByteLevel pre-tokenizer's built-in one); "" for None / SmolLm.
const char* pre_tokenizer_regex(PreTokenizer p);
// Inverse of pre_tokenizer_regex for the three patterns (exact string); nullopt otherwise.
std::optional<PreTokenizer> pre_tokenizer_from_regex(const std::string& pattern);

// Splits text into consecutive non-empty pieces (views into text) whose concatenation is text.
std::vector<std::string_view> pre_tokenize(std::string_view text, PreTokenizer p);

// Unicode NFC (canonical composition, ICU's tables) of UTF-8 text, as Hugging Face's NFC normalizer. Text that is
// not valid UTF-8 is returned unchanged (its bytes go to byte fallback as they are); ASCII takes a fast path.
std::string nfc_normalize(std::string_view text);

// One UTF-8 code point at s[i] (i < s.size()): its value and byte length; an invalid or truncated sequence is
// one byte with value 0xFFFFFFFF.
uint32_t utf8_next(std::string_view s, size_t i, size_t& len);

}  // namespace catq

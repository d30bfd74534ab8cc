// Hugging Face tokenizers: tokenizer.json (+ tokenizer_config.json next to it) read into a Tokenizer and written
// from one. Model "BPE" only, in the two forms LLMs use (llm/tokenizer.h, TokenizerKind):
//
//   byte-level    pre_tokenizer ByteLevel (use_regex: GPT-2's split), or Sequence[Split{Regex, Isolated},
//                 ByteLevel{use_regex: false}] with the Llama-3 / Qwen2 pattern, or Sequence[Digits{individual},
//                 ByteLevel] (SmolLM); decoder ByteLevel; model.vocab in byte-level form ("Ġthe"); ignore_merges.
//   SentencePiece normalizer Sequence[Prepend("▁"), Replace(" " -> "▁")] (or pre_tokenizer Metaspace without split),
//                 model.byte_fallback, vocab with "▁" for spaces (catq keeps real spaces inside).
//
// model.merges: "a b" strings or [a, b] pairs (written as "a b" unless a piece contains a space). added_tokens:
// special -> TokenType Control (Unknown for model.unk_token), otherwise UserDefined. BOS/EOS: tokenizer_config.json's
// bos_token / eos_token (a string or {"content": ...}) and add_bos_token / add_eos_token, else the post_processor's
// TemplateProcessing (a special token before $A = BOS added, after = EOS added), else well-known names
// (<|begin_of_text|>, <s>, <|endoftext|>; <|end_of_text|>, </s>, <|endoftext|>). Normalizer NFC (Qwen2) is accepted
// and not applied (llama.cpp does not apply it either).
//
// Writing emits every token in model.vocab (added ones also in added_tokens, so Hugging Face keeps their ids), a
// TemplateProcessing post_processor when BOS/EOS are added, and tokenizer_config.json (PreTrainedTokenizerFast).
// Reading catq's own output gives back an identical tokenizer (Tokenizer::spec()).
#pragma once
#include <string>

#include "llm/tokenizer.h"

namespace catq {

// path: a tokenizer.json, or a folder holding one; tokenizer_config.json in the same folder is read when present.
// Error(Io) for a missing file, Error(Format) naming the file, the field and what was expected for malformed ones
// (including model types other than BPE), Error(Unsupported) for valid BPE setups catq does not implement.
Tokenizer read_hf_tokenizer(const std::string& path);
// The same from the texts (config_json may be empty); `name` stands for the file in messages.
Tokenizer parse_hf_tokenizer(const std::string& tokenizer_json, const std::string& config_json, const std::string& name);
// True when path is a tokenizer.json (by name) or a folder holding one.
bool is_hf_tokenizer_path(const std::string& path);

// The texts of tokenizer.json and tokenizer_config.json for a BPE tokenizer (Error(Unsupported) for llama2c ones).
std::string hf_tokenizer_json(const Tokenizer& tok);
std::string hf_tokenizer_config_json(const Tokenizer& tok);
// Writes both atomically: tokenizer.json at path, tokenizer_config.json in the same folder.
void write_hf_tokenizer(const Tokenizer& tok, const std::string& path);

}  // namespace catq

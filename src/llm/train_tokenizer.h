// BPE training (the tokenizers of `catq train-tokenizer`). Byte-level: the text is split into pre-tokens with the
// chosen pre-tokenizer (llm/pretokenize.h), each pre-token starts as its bytes (ids 0..255 = the byte-level
// alphabet in byte order), and the most frequent adjacent pair is merged until the vocabulary is full. The special
// tokens follow the merges (ids vocab_size - n_special .. vocab_size - 1, type Control).
//
// Deterministic: the pair with the highest count wins, ties go to the smallest (left id, right id). Incremental:
// pair counts and the words holding each pair are updated only for the words a merge touches, and a heap with lazy
// invalidation picks the next pair, so a merge costs O(occurrences), not O(corpus).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "llm/tokenizer.h"

namespace catq {

struct BpeTrainOptions {
  int64_t vocab_size = 4096;          // total: 256 bytes + merges + special tokens
  PreTokenizer pre = PreTokenizer::Llama3;
  std::vector<std::string> special_tokens = {"<|begin_of_text|>", "<|end_of_text|>"};
  int bos = 0, eos = 1;               // indices into special_tokens (-1: none)
  bool add_bos = true, add_eos = false;
  int64_t min_frequency = 2;          // stop early when the best pair occurs fewer times
  double character_coverage = 0.9995; // SentencePiece-style only: share of character occurrences the alphabet covers
  bool progress = true;               // progress bar on stderr (core/progress.h)
};

struct BpeTrainStats {
  int64_t bytes = 0, words = 0, unique_words = 0, merges = 0;
  bool stopped_early = false;         // fewer merges than asked (no pair left with min_frequency)
};

// Error(Config) for a vocabulary too small for the alphabet and the special tokens, bad bos/eos indices or
// duplicate special tokens; Error(Data) for empty text. The result has ignore_merges set for the Llama-3
// pre-tokenizer (as llama.cpp's "llama-bpe" does).
Tokenizer train_byte_level_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt,
                               BpeTrainStats* stats = nullptr);

// SentencePiece-style BPE (TokenizerKind::SpmBpe, Llama-2's layout): words start at each space (a dummy-prefix
// space before each text; other whitespace characters are words of their own), the base alphabet is the most
// frequent code points covering character_coverage of the text (others fall back to byte tokens, which never merge),
// then merges as above. Ids: <unk> 0, the special tokens (default for SentencePiece: <s>, </s>), the 256 byte
// tokens <0xXX>, the alphabet, the merged pieces. opt.pre is ignored.
Tokenizer train_spm_bpe(const std::vector<std::string>& texts, const BpeTrainOptions& opt,
                        BpeTrainStats* stats = nullptr);

}  // namespace catq

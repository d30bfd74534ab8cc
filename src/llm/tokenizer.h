// The tokenizer of every LLM catq runs. Originally (TokenizerKind::Llama2c) the SentencePiece-style BPE by scores
// used by llama2.c (tok512.bin, tokenizer.bin) and by GGUF files whose `tokenizer.ggml.model` is "llama".
//
// llama2.c tokenizer file layout (little-endian):
//   int32 max_token_length
//   vocab_size times: float32 score, int32 length, `length` bytes (the piece, no NUL)
// The vocabulary size is not stored: it is the model's vocab_size (or "until end of file").
//
// Pieces are stored with real spaces (llama2.c convention). GGUF "llama" vocabularies use U+2581 ("▁")
// for spaces; the GGUF reader/writer converts between the two.
//
// The same class holds the BPE tokenizers of Hugging Face tokenizer.json files (io/hf_tokenizer.h) and of GGUF
// "gpt2" vocabularies, one interface for all (TokenizerKind):
//   Llama2c       SentencePiece by scores (above).
//   SpmBpe        SentencePiece-style BPE by merge rank (Llama-2 / Mistral / TinyLlama tokenizer.json): pieces with
//                 real spaces (tokenizer.json's "▁"), a dummy-prefix space per text segment, code points not in the
//                 vocabulary as <0xXX> byte tokens (byte_fallback), then merges by rank.
//   ByteLevelBpe  GPT-2 / Llama-3 / Qwen2 / SmolLM: pieces in byte-level form exactly as tokenizer.json's vocab and
//                 GGUF's tokens ("Ġthe"); the text is split by the pre-tokenizer (llm/pretokenize.h), each piece's
//                 bytes mapped to the byte-level alphabet (llm/bpe.h) and merged by rank.
// For both BPE kinds, added tokens (types Control, Unknown and UserDefined) are matched in the text before anything
// else (leftmost, then longest): UserDefined always, the others only when encode(..., special = true) (llama.cpp's
// parse_special). Control tokens decode to nothing, UserDefined ones to their text.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "llm/bpe.h"
#include "llm/pretokenize.h"

namespace catq {

// GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

enum class TokenizerKind { Llama2c, SpmBpe, ByteLevelBpe };
const char* to_string(TokenizerKind k);  // "llama2c", "spm-bpe", "byte-level-bpe"

// Everything a BPE tokenizer is made of (the Tokenizer(BpeSpec) constructor checks it).
struct BpeSpec {
  TokenizerKind kind = TokenizerKind::ByteLevelBpe;  // SpmBpe or ByteLevelBpe
  std::vector<std::string> pieces;                  // by id (see TokenizerKind for their form)
  std::vector<int32_t> types;                       // TokenType by id; empty = inferred as in the scores constructor
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order; both sides and their concatenation
                                                            // must be pieces
  PreTokenizer pre = PreTokenizer::None;            // ByteLevelBpe only
  bool ignore_merges = false;  // ByteLevelBpe: a pre-token that is a whole piece is that token (Llama-3)
  bool byte_fallback = true;   // SpmBpe: unknown code points -> <0xXX> tokens (else unk)
  bool dummy_prefix = true;    // SpmBpe: a space before each text segment (Prepend("▁") / Metaspace prepend)
  bool nfc = false;                // the NFC normalizer (Qwen2): each text segment composed before tokenizing
  bool prefix_first_only = false;  // SpmBpe: ... only before the segment at the start of the text (Metaspace
                                   // prepend_scheme "first": none after an added token)
  int32_t bos = -1, eos = -1, unk = -1;
  bool add_bos = false, add_eos = false;            // what the model's own configuration asks for
};

class Tokenizer {
 public:
  Tokenizer() = default;
  // pieces/scores must have the same length; types may be empty (then inferred: ids bos/eos/unk are
  // Control/Unknown, "<0xXX>" pieces are Byte, everything else Normal).
  Tokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::vector<int32_t> types, int32_t bos_id,
            int32_t eos_id, int32_t unk_id);
  // A BPE tokenizer; Error(Format) naming the problem when the spec is inconsistent (a merge naming an unknown
  // piece, ids out of range, duplicate pieces, ...). Scores are derived: the result of merge rank r scores -r (what
  // llama.cpp's score-based SentencePiece tokenizer needs to merge in the same order), single code points, byte
  // tokens and added tokens 0, other pieces (never produced by a merge) -1e9.
  explicit Tokenizer(BpeSpec spec);

  TokenizerKind kind() const { return kind_; }
  bool is_bpe() const { return kind_ != TokenizerKind::Llama2c; }
  PreTokenizer pre_tokenizer() const { return pre_; }
  bool ignore_merges() const { return ignore_merges_; }
  bool byte_fallback() const { return byte_fallback_; }
  bool dummy_prefix() const { return dummy_prefix_; }
  bool prefix_first_only() const { return prefix_first_only_; }
  bool nfc() const { return nfc_; }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  // Merges in rank order as (left id, right id).
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }
  // The spec this tokenizer was built from (BPE kinds; for Llama2c only pieces/types/ids are meaningful).
  BpeSpec spec() const;

  int64_t vocab_size() const { return static_cast<int64_t>(pieces_.size()); }
  int32_t bos_id() const { return bos_; }
  int32_t eos_id() const { return eos_; }
  int32_t unk_id() const { return unk_; }
  const std::string& piece(int32_t id) const;
  float score(int32_t id) const { return scores_.at(id); }
  int32_t type(int32_t id) const { return types_.at(id); }
  const std::vector<std::string>& pieces() const { return pieces_; }
  const std::vector<float>& scores() const { return scores_; }
  const std::vector<int32_t>& types() const { return types_; }
  int32_t max_token_length() const { return max_len_; }
  // Id of an exact piece, or -1.
  int32_t lookup(const std::string& piece) const;

  // Encodes exactly as llama2.c's encode(): optional BOS, a dummy-prefix " " token when the text is
  // non-empty, one token per UTF-8 code point (falling back to byte tokens <0xXX> when the code point is
  // not a piece), then repeatedly merge the adjacent pair whose concatenation is the best-scoring piece
  // (ties: leftmost pair), optional EOS. Implemented with a heap (O(n log n)) but equivalent to
  // llama2.c's O(n^2) loop (`special` is ignored: llama2.c has no added tokens).
  // BPE kinds: see TokenizerKind; `special` = also match Control added tokens in the text. bos/eos are added
  // when asked and the tokenizer has them (id >= 0).
  std::vector<int32_t> encode(const std::string& text, bool bos, bool eos, bool special = true) const;

  // Bytes of one token as llama2.c's decode(prev, tok) returns them: a byte token gives its raw byte;
  // after BOS a leading space is stripped. SpmBpe: the dummy-prefix space is stripped from the first token (prev
  // -1 or a Control token); ByteLevelBpe: the piece's bytes. Control tokens give "".
  std::string decode_piece(int32_t prev, int32_t tok) const;
  // Concatenation of decode_piece over a sequence (prev of the first token = -1).
  std::string decode(const std::vector<int32_t>& tokens) const;

 private:
  void build_index();
  std::vector<int32_t> encode_bpe(const std::string& text, bool bos, bool eos, bool special) const;
  // One text segment without added tokens; `cache` memoizes pre-token -> ids within one encode() call.
  // at_start: the segment begins the text (SpmBpe's prefix_first_only).
  void encode_segment(std::string_view seg, std::vector<int32_t>& ids,
                      std::unordered_map<std::string, std::vector<int32_t>>& cache, bool at_start) const;
  void encode_segment_normalized(std::string_view seg, std::vector<int32_t>& ids,
                                 std::unordered_map<std::string, std::vector<int32_t>>& cache, bool at_start) const;
  TokenizerKind kind_ = TokenizerKind::Llama2c;
  PreTokenizer pre_ = PreTokenizer::None;
  bool ignore_merges_ = false, byte_fallback_ = true, dummy_prefix_ = true, prefix_first_only_ = false,
       nfc_ = false, add_bos_ = false, add_eos_ = false;
  std::vector<std::pair<int32_t, int32_t>> merges_;
  BpeMergeTable merge_table_;
  std::vector<std::vector<int32_t>> added_;  // by first byte: Control / Unknown / UserDefined ids, longest first
  int32_t byte_level_ids_[256];    // ByteLevelBpe: byte -> id of its one-character piece, or -1
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<int32_t> types_;
  std::unordered_map<std::string, int32_t> index_;  // piece -> first id with that piece
  int32_t byte_ids_[256];                          // byte -> id of "<0xXX>", or -1
  int32_t bos_ = 1, eos_ = 2, unk_ = 0;
  int32_t max_len_ = 0;
};

// The SentencePiece-style BPE equivalent of a score-based (llama2c / GGUF "llama") tokenizer, so that it can be
// written as tokenizer.json: every Normal piece of two or more code points becomes the merge of each of its splits
// into two pieces, ranked by the piece's score (higher first; ties: lower id), then by split position. Pieces with
// real spaces as in the source; dummy prefix and byte fallback on; add_bos on (llama2.c and llama.cpp add BOS).
// Error(Unsupported) when `tok` is already BPE.
Tokenizer spm_bpe_from_scores(const Tokenizer& tok);

// Reads a llama2.c tokenizer file. vocab_size > 0: read exactly that many tokens; 0: read until the
// end of the file. Ids: 0 <unk>, 1 BOS, 2 EOS (llama2.c convention). Throws Error(Io/Format) naming the file.
Tokenizer read_llama2c_tokenizer(const std::string& path, int64_t vocab_size = 0);
// Writes the llama2.c format (pieces with real spaces). Error(Unsupported) for byte-level BPE tokenizers.
void write_llama2c_tokenizer(const Tokenizer& tok, const std::string& path);

}  // namespace catq

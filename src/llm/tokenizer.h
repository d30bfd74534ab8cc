// SentencePiece-style BPE tokenizer as used by llama2.c (tok512.bin, tokenizer.bin) and by GGUF files
// whose `tokenizer.ggml.model` is "llama".
//
// llama2.c tokenizer file layout (little-endian):
//   int32 max_token_length
//   vocab_size times: float32 score, int32 length, `length` bytes (the piece, no NUL)
// The vocabulary size is not stored: it is the model's vocab_size (or "until end of file").
//
// Pieces are stored with real spaces (llama2.c convention). GGUF "llama" vocabularies use U+2581 ("▁")
// for spaces; the GGUF reader/writer converts between the two.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace catq {

// GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

class Tokenizer {
 public:
  Tokenizer() = default;
  // pieces/scores must have the same length; types may be empty (then inferred: ids bos/eos/unk are
  // Control/Unknown, "<0xXX>" pieces are Byte, everything else Normal).
  Tokenizer(std::vector<std::string> pieces, std::vector<float> scores, std::vector<int32_t> types, int32_t bos_id,
            int32_t eos_id, int32_t unk_id);

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
  // llama2.c's O(n^2) loop.
  std::vector<int32_t> encode(const std::string& text, bool bos, bool eos) const;

  // Bytes of one token as llama2.c's decode(prev, tok) returns them: a byte token gives its raw byte;
  // after BOS a leading space is stripped.
  std::string decode_piece(int32_t prev, int32_t tok) const;
  // Concatenation of decode_piece over a sequence (prev of the first token = -1).
  std::string decode(const std::vector<int32_t>& tokens) const;

 private:
  void build_index();
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::vector<int32_t> types_;
  std::unordered_map<std::string, int32_t> index_;  // piece -> first id with that piece
  int32_t byte_ids_[256];                          // byte -> id of "<0xXX>", or -1
  int32_t bos_ = 1, eos_ = 2, unk_ = 0;
  int32_t max_len_ = 0;
};

// Reads a llama2.c tokenizer file. vocab_size > 0: read exactly that many tokens; 0: read until the
// end of the file. Ids: 0 <unk>, 1 BOS, 2 EOS (llama2.c convention). Throws Error(Io/Format) naming the file.
Tokenizer read_llama2c_tokenizer(const std::string& path, int64_t vocab_size = 0);
// Writes the llama2.c format (pieces with real spaces).
void write_llama2c_tokenizer(const Tokenizer& tok, const std::string& path);

}  // namespace catq

// Building blocks of BPE tokenizers: GPT-2's byte <-> unicode mapping (the "byte-level" alphabet, where a space is
// "Ġ" U+0120 and a newline "Ċ" U+010A) and merging a symbol sequence by merge rank.
//
// Byte-level mapping (GPT-2's bytes_to_unicode): the printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF map to the
// code point of the same value; the other 68 bytes, in increasing order, to U+0100, U+0101, ...
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace catq {

// UTF-8 of the code point byte b maps to.
const std::string& byte_level_char(uint8_t b);
// Maps each byte of `bytes` to its byte-level character.
std::string bytes_to_byte_level(std::string_view bytes);
// The inverse: false (out unspecified) when s holds a character outside the 256 of the alphabet.
bool byte_level_to_bytes(std::string_view s, std::string& out);

// Merge table: (left id, right id) -> (rank, merged id). Rank = position in the merges list (0 = merged first).
class BpeMergeTable {
 public:
  // Returns false when the pair is already present (the first rank is kept, as Hugging Face does).
  bool add(int32_t left, int32_t right, int32_t merged, int32_t rank);
  // Rank and merged id of a pair, or false.
  bool find(int32_t left, int32_t right, int32_t& rank, int32_t& merged) const;
  size_t size() const { return map_.size(); }
  void clear() { map_.clear(); }

  // Merges `syms` in place: repeatedly the adjacent pair of lowest rank (ties: the leftmost), as Hugging Face
  // tokenizers and llama.cpp do. O(n log n) with a heap.
  void apply(std::vector<int32_t>& syms) const;

 private:
  static uint64_t key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> map_;
};

}  // namespace catq

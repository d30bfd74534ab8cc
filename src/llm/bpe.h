// Building blocks of BPE tokenizers: GPT-2's byte <-> unicode mapping (the "byte-level" alphabet, where a space is
// "Ġ" U+0120 and a newline "Ċ" U+010A) and merging a symbol sequence by merge rank.
//
// Byte-level mapping (GPT-2's bytes_to_unicode): the printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF map to the
// code point of the same value; the other 68 bytes, in increasing order, to U+0100, U+0101, ...
#pragma once
#include <cstdint>
#include <queue>
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

// The merge loop shared by every BPE model: repeatedly merges the adjacent pair with the highest priority (ties: the
// leftmost), as llama2.c (priority = the merged piece's score), Hugging Face tokenizers and llama.cpp (priority =
// -rank) do. `find(left_id, right_id, priority, merged_id)` returns false for a pair that does not merge. O(n log n):
// a max-heap with lazy invalidation; positions are original indices, which keep their order.
template <typename Find>
void merge_adjacent_pairs(std::vector<int32_t>& ids, Find&& find) {
  const size_t n = ids.size();
  if (n < 2) return;
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Cand {
    double priority;
    int32_t left, left_id, right_id, merged;
  };
  auto worse = [](const Cand& a, const Cand& b) {
    return a.priority != b.priority ? a.priority < b.priority : a.left > b.left;
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  auto consider = [&](int32_t l) {
    if (l < 0 || next[l] < 0) return;
    const int32_t r = next[l];
    double priority = 0;
    int32_t merged = -1;
    if (find(ids[l], ids[r], priority, merged)) heap.push({priority, l, ids[l], ids[r], merged});
  };
  for (size_t i = 0; i + 1 < n; ++i) consider(static_cast<int32_t>(i));
  std::vector<char> alive(n, 1);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const int32_t l = c.left;
    if (!alive[l] || ids[l] != c.left_id) continue;
    const int32_t r = next[l];
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

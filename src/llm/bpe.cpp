#include "llm/bpe.h"

#include <array>
#include <queue>

namespace catq {

namespace {

std::string utf8_of(uint32_t c) {
  std::string s;
  if (c < 0x80) {
    s.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (c >> 6)));
    s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xE0 | (c >> 12)));
    s.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
  return s;
}

struct ByteLevelTables {
  std::array<std::string, 256> to_char;
  std::array<int16_t, 512> from_cp;  // code point (< 512) -> byte, or -1
  ByteLevelTables() {
    from_cp.fill(-1);
    uint32_t extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      uint32_t cp = printable ? b : extra++;
      to_char[b] = utf8_of(cp);
      from_cp[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteLevelTables& tables() {
  static const ByteLevelTables t;
  return t;
}

}  // namespace

const std::string& byte_level_char(uint8_t b) { return tables().to_char[b]; }

std::string bytes_to_byte_level(std::string_view bytes) {
  const auto& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.to_char[static_cast<uint8_t>(c)];
  return out;
}

bool byte_level_to_bytes(std::string_view s, std::string& out) {
  const auto& t = tables();
  out.clear();
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint8_t c = static_cast<uint8_t>(s[i]);
    uint32_t cp;
    if (c < 0x80) {
      cp = c, i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size() && (static_cast<uint8_t>(s[i + 1]) & 0xC0) == 0x80) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<uint8_t>(s[i + 1]) & 0x3Fu), i += 2;
    } else {
      return false;  // every byte-level character is below U+0800
    }
    if (cp >= 512 || t.from_cp[cp] < 0) return false;
    out.push_back(static_cast<char>(t.from_cp[cp]));
  }
  return true;
}

bool BpeMergeTable::add(int32_t left, int32_t right, int32_t merged, int32_t rank) {
  return map_.emplace(key(left, right), std::make_pair(rank, merged)).second;
}

bool BpeMergeTable::find(int32_t left, int32_t right, int32_t& rank, int32_t& merged) const {
  auto it = map_.find(key(left, right));
  if (it == map_.end()) return false;
  rank = it->second.first;
  merged = it->second.second;
  return true;
}

void BpeMergeTable::apply(std::vector<int32_t>& ids) const {
  if (map_.empty()) return;
  merge_adjacent_pairs(ids, [&](int32_t l, int32_t r, double& priority, int32_t& merged) {
    int32_t rank = 0;
    if (!find(l, r, rank, merged)) return false;
    priority = -static_cast<double>(rank);  // lowest rank first
    return true;
  });
}

}  // namespace catq

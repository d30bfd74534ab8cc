// The PACKED code layout (quant/packed_codes.h): packing with a fused range check, and unpacking.
#include "quant/packed_codes.h"

#include <cstring>
#include <limits>
#include <type_traits>

#include "core/error.h"

namespace catq {

namespace {

// Codes are offset in an unsigned type U (uint32 for ≤ 32-bit inputs, uint64 for 64-bit ones) with wrapping
// arithmetic: v = U(q) − U(lo). OR-ing every v and testing the bits above `bits` is the fused range check; it is
// exact when no out-of-range difference q − lo can wrap into [0, mask], which wrap_exact() checks for the input type.
template <typename T, typename U>
bool wrap_exact(int64_t lo, uint64_t mask) {
  constexpr __int128 W = static_cast<__int128>(std::numeric_limits<U>::max()) + 1;
  const __int128 tmin = std::numeric_limits<T>::min(), tmax = std::numeric_limits<T>::max();
  return tmin - lo > static_cast<__int128>(mask) - W && tmax - lo < W;
}

template <typename U, typename T>
inline U off(T q, U lo) { return static_cast<U>(q) - lo; }

// Any other width: 8 codes fill exactly B bytes; build them in one word (64 bits up to 8-bit codes, 128 above) and
// store its low B bytes (little-endian host). B is a compile-time constant so the shifts unroll.
template <int B, typename T, typename U>
U pack_words_b(const T* q, int64_t n, U lo, uint8_t* out, U acc) {
  using Word = std::conditional_t<(B <= 8), uint64_t, unsigned __int128>;
  constexpr U mask = static_cast<U>((uint64_t{1} << B) - 1);
  const int64_t full = n / 8;
  for (int64_t j = 0; j < full; ++j) {
    const T* s = q + 8 * j;
    Word w = 0;
    for (int k = 0; k < 8; ++k) {
      const U v = off(s[k], lo);
      acc |= v;
      w |= static_cast<Word>(v & mask) << (k * B);
    }
    std::memcpy(out + j * B, &w, B);
  }
  const int64_t rest = n - full * 8;
  if (rest) {
    Word w = 0;
    for (int64_t k = 0; k < rest; ++k) {
      const U v = off(q[full * 8 + k], lo);
      acc |= v;
      w |= static_cast<Word>(v & mask) << (k * B);
    }
    std::memcpy(out + full * B, &w, static_cast<size_t>((rest * B + 7) / 8));
  }
  return acc;
}

template <typename T, typename U>
U pack_words(const T* q, int64_t n, int bits, U lo, uint8_t* out, U acc) {
  switch (bits) {
#define CATQ_PACK_CASE(B) case B: return pack_words_b<B, T, U>(q, n, lo, out, acc);
    CATQ_PACK_CASE(1) CATQ_PACK_CASE(2) CATQ_PACK_CASE(3) CATQ_PACK_CASE(4) CATQ_PACK_CASE(5) CATQ_PACK_CASE(6)
    CATQ_PACK_CASE(7) CATQ_PACK_CASE(8) CATQ_PACK_CASE(9) CATQ_PACK_CASE(10) CATQ_PACK_CASE(11) CATQ_PACK_CASE(12)
    CATQ_PACK_CASE(13) CATQ_PACK_CASE(14) CATQ_PACK_CASE(15) CATQ_PACK_CASE(16)
#undef CATQ_PACK_CASE
    default: return ~U{0};
  }
}

// n codes from q into out; returns the OR of all offsets.
template <typename T, typename U>
U pack_kernel(const T* q, int64_t n, int bits, U lo, uint8_t* out) {
  U acc = 0;
  switch (bits) {
    case 8:
      for (int64_t i = 0; i < n; ++i) {
        const U v = off(q[i], lo);
        acc |= v;
        out[i] = static_cast<uint8_t>(v);
      }
      return acc;
    case 4: {
      const int64_t full = n / 2;
      for (int64_t j = 0; j < full; ++j) {
        const U v0 = off(q[2 * j], lo), v1 = off(q[2 * j + 1], lo);
        acc |= v0 | v1;
        out[j] = static_cast<uint8_t>(v0 | (v1 << 4));
      }
      if (n & 1) {
        const U v = off(q[n - 1], lo);
        acc |= v;
        out[full] = static_cast<uint8_t>(v);
      }
      return acc;
    }
    case 2: {
      const int64_t full = n / 4;
      for (int64_t j = 0; j < full; ++j) {
        const T* s = q + 4 * j;
        const U v0 = off(s[0], lo), v1 = off(s[1], lo), v2 = off(s[2], lo), v3 = off(s[3], lo);
        acc |= v0 | v1 | v2 | v3;
        out[j] = static_cast<uint8_t>(v0 | (v1 << 2) | (v2 << 4) | (v3 << 6));
      }
      if (n % 4) {
        U b = 0;
        for (int64_t i = full * 4, k = 0; i < n; ++i, ++k) {
          const U v = off(q[i], lo);
          acc |= v;
          b |= v << (2 * k);
        }
        out[full] = static_cast<uint8_t>(b);
      }
      return acc;
    }
    case 1: {
      const int64_t full = n / 8;
      for (int64_t j = 0; j < full; ++j) {
        const T* s = q + 8 * j;
        U b = 0;
        for (int k = 0; k < 8; ++k) {
          const U v = off(s[k], lo);
          acc |= v;
          b |= v << k;
        }
        out[j] = static_cast<uint8_t>(b);
      }
      if (n % 8) {
        U b = 0;
        for (int64_t i = full * 8, k = 0; i < n; ++i, ++k) {
          const U v = off(q[i], lo);
          acc |= v;
          b |= v << k;
        }
        out[full] = static_cast<uint8_t>(b);
      }
      return acc;
    }
    default: break;
  }
  return pack_words<T, U>(q, n, bits, lo, out, acc);
}

[[noreturn]] void code_out_of_range(int64_t q, int bits, int64_t lo) {
  fail(ErrorKind::Internal, "packed codes: code {} outside the {}-bit range starting at {}", q, bits, lo);
}

template <typename T>
void pack_typed(const T* q, int64_t n, int bits, int64_t lo, uint8_t* out) {
  using U = std::conditional_t<(sizeof(T) <= 4), uint32_t, uint64_t>;
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  if (wrap_exact<T, U>(lo, mask)) {
    const U acc = pack_kernel<T, U>(q, n, bits, static_cast<U>(lo), out);
    if ((static_cast<uint64_t>(acc) >> bits) == 0) return;
  }
  // Out of range somewhere (or an extreme lo): find the code exactly, else pack code by code.
  for (int64_t i = 0; i < n; ++i) {
    const __int128 d = static_cast<__int128>(q[i]) - lo;
    if (d < 0 || d > static_cast<__int128>(mask)) code_out_of_range(static_cast<int64_t>(q[i]), bits, lo);
  }
  std::vector<uint64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<uint64_t>(static_cast<__int128>(q[i]) - lo);
  pack_kernel<uint64_t, uint64_t>(v.data(), n, bits, 0, out);
}

template <int B>
void unpack_words_b(const uint8_t* p, int64_t n, uint32_t lo, int32_t* out) {
  using Word = std::conditional_t<(B <= 8), uint64_t, unsigned __int128>;
  constexpr uint32_t mask = (uint32_t{1} << B) - 1;
  const int64_t full = n / 8;
  for (int64_t j = 0; j < full; ++j) {
    Word w = 0;
    std::memcpy(&w, p + j * B, B);
    for (int k = 0; k < 8; ++k) out[8 * j + k] = static_cast<int32_t>(lo + (static_cast<uint32_t>(w >> (k * B)) & mask));
  }
  const int64_t rest = n - full * 8;
  if (rest) {
    Word w = 0;
    std::memcpy(&w, p + full * B, static_cast<size_t>((rest * B + 7) / 8));
    for (int64_t k = 0; k < rest; ++k)
      out[full * 8 + k] = static_cast<int32_t>(lo + (static_cast<uint32_t>(w >> (k * B)) & mask));
  }
}

void unpack_words(const uint8_t* p, int64_t n, int bits, uint32_t lo, int32_t* out) {
  switch (bits) {
#define CATQ_UNPACK_CASE(B) case B: return unpack_words_b<B>(p, n, lo, out);
    CATQ_UNPACK_CASE(1) CATQ_UNPACK_CASE(2) CATQ_UNPACK_CASE(3) CATQ_UNPACK_CASE(4) CATQ_UNPACK_CASE(5)
    CATQ_UNPACK_CASE(6) CATQ_UNPACK_CASE(7) CATQ_UNPACK_CASE(8) CATQ_UNPACK_CASE(9) CATQ_UNPACK_CASE(10)
    CATQ_UNPACK_CASE(11) CATQ_UNPACK_CASE(12) CATQ_UNPACK_CASE(13) CATQ_UNPACK_CASE(14) CATQ_UNPACK_CASE(15)
    CATQ_UNPACK_CASE(16)
#undef CATQ_UNPACK_CASE
    default: break;
  }
}

void unpack_bytes(const uint8_t* p, int64_t n, int bits, uint32_t lo, int32_t* out) {
  auto put = [&](int64_t i, uint32_t v) { out[i] = static_cast<int32_t>(lo + v); };
  switch (bits) {
    case 8:
      for (int64_t i = 0; i < n; ++i) put(i, p[i]);
      return;
    case 4: {
      const int64_t full = n / 2;
      for (int64_t j = 0; j < full; ++j) {
        const uint32_t b = p[j];
        put(2 * j, b & 15u);
        put(2 * j + 1, b >> 4);
      }
      if (n & 1) put(n - 1, p[full] & 15u);
      return;
    }
    case 2: {
      const int64_t full = n / 4;
      for (int64_t j = 0; j < full; ++j) {
        const uint32_t b = p[j];
        put(4 * j, b & 3u);
        put(4 * j + 1, (b >> 2) & 3u);
        put(4 * j + 2, (b >> 4) & 3u);
        put(4 * j + 3, b >> 6);
      }
      for (int64_t i = full * 4, k = 0; i < n; ++i, ++k) put(i, (static_cast<uint32_t>(p[full]) >> (2 * k)) & 3u);
      return;
    }
    case 1: {
      const int64_t full = n / 8;
      for (int64_t j = 0; j < full; ++j) {
        const uint32_t b = p[j];
        for (int k = 0; k < 8; ++k) put(8 * j + k, (b >> k) & 1u);
      }
      for (int64_t i = full * 8, k = 0; i < n; ++i, ++k) put(i, (static_cast<uint32_t>(p[full]) >> k) & 1u);
      return;
    }
    default: break;
  }
  unpack_words(p, n, bits, lo, out);
}

}  // namespace

at::Tensor flat_codes(const at::Tensor& q_in) {
  at::Tensor q = q_in.detach().cpu().contiguous().reshape({-1});
  switch (q.scalar_type()) {
    case at::kByte: case at::kChar: case at::kShort: case at::kInt: case at::kLong: case at::kBool: return q;
    default: return q.to(at::kLong);
  }
}

void pack_codes(const at::Tensor& q, int64_t begin, int64_t n, int bits, int64_t lo, uint8_t* out) {
  CATQ_CHECK(bits >= 1 && bits <= 16, Internal, "packed codes: width {} outside 1..16", bits);
  CATQ_CHECK(q.is_contiguous() && q.device().is_cpu() && begin >= 0 && n >= 0 && begin + n <= q.numel() &&
                 (begin * bits) % 8 == 0,
             Internal, "pack_codes: bad arguments");
  switch (q.scalar_type()) {
    case at::kByte: return pack_typed(q.data_ptr<uint8_t>() + begin, n, bits, lo, out);
    case at::kBool: return pack_typed(reinterpret_cast<const uint8_t*>(q.data_ptr<bool>()) + begin, n, bits, lo, out);
    case at::kChar: return pack_typed(q.data_ptr<int8_t>() + begin, n, bits, lo, out);
    case at::kShort: return pack_typed(q.data_ptr<int16_t>() + begin, n, bits, lo, out);
    case at::kInt: return pack_typed(q.data_ptr<int32_t>() + begin, n, bits, lo, out);
    case at::kLong: return pack_typed(q.data_ptr<int64_t>() + begin, n, bits, lo, out);
    default: fail(ErrorKind::Internal, "pack_codes: codes of type {} (expected an integer type)", c10::toString(q.scalar_type()));
  }
}

void unpack_codes(const uint8_t* p, int64_t n, int bits, int64_t lo, int32_t* out) {
  CATQ_CHECK(bits >= 1 && bits <= 16, Internal, "packed codes: width {} outside 1..16", bits);
  unpack_bytes(p, n, bits, static_cast<uint32_t>(static_cast<uint64_t>(lo)), out);
}

int code_bits(int64_t qmin, int64_t qmax) {
  int bits = 1;
  while (bits < 62 && (int64_t{1} << bits) <= qmax - qmin) ++bits;
  return bits;
}

}  // namespace catq

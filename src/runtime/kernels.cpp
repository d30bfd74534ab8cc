#include "runtime/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CATQ_X86 1
#endif

#include "core/error.h"

namespace catq {

const char* to_string(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::Scalar: return "scalar";
    case KernelIsa::Avx2: return "avx2";
    case KernelIsa::Avx512: return "avx512";
  }
  return "?";
}

bool isa_supported(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::Scalar: return true;
#ifdef CATQ_X86
    case KernelIsa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case KernelIsa::Avx512: return __builtin_cpu_supports("avx512f");
#else
    default: return false;
#endif
  }
  return false;
}

KernelIsa best_isa() {
  static const KernelIsa best = [] {
    KernelIsa cap = KernelIsa::Avx512;
    if (const char* e = std::getenv("CATQ_ISA")) {
      const std::string s(e);
      if (s == "scalar") cap = KernelIsa::Scalar;
      else if (s == "avx2") cap = KernelIsa::Avx2;
    }
    for (KernelIsa i : {KernelIsa::Avx512, KernelIsa::Avx2})
      if (static_cast<int>(i) <= static_cast<int>(cap) && isa_supported(i)) return i;
    return KernelIsa::Scalar;
  }();
  return best;
}

namespace {

// Σ of x over each group (shared by every row).
std::vector<float> group_sums(const PackedWeights& w, const float* x) {
  std::vector<float> s(static_cast<size_t>(w.groups_per_row()));
  for (int64_t g = 0; g < w.groups_per_row(); ++g) {
    float a = 0;
    for (int64_t j = 0; j < w.group; ++j) a += x[g * w.group + j];
    s[static_cast<size_t>(g)] = a;
  }
  return s;
}

// Σ_g s_g·z_g·xsum_g of row r: the zero-point correction.
float zero_term(const PackedWeights& w, int64_t r, const std::vector<float>& xsum) {
  const int64_t G = w.groups_per_row();
  float t = 0;
  for (int64_t g = 0; g < G; ++g) t += w.scale[static_cast<size_t>(r * G + g)] * w.zero[static_cast<size_t>(r * G + g)] * xsum[static_cast<size_t>(g)];
  return t;
}

// ---- scalar reference ----
void gemv_scalar(const PackedWeights& w, const float* x, float* y, int64_t rb, int64_t re) {
  const std::vector<float> xsum = group_sums(w, x);
  const int64_t G = w.groups_per_row();
  for (int64_t r = rb; r < re; ++r) {
    float acc = 0;
    for (int64_t g = 0; g < G; ++g) {
      float d = 0;
      for (int64_t j = g * w.group; j < (g + 1) * w.group; ++j) d += static_cast<float>(w.code(r, j)) * x[j];
      acc += w.scale[static_cast<size_t>(r * G + g)] * d;
    }
    y[r] = acc - zero_term(w, r, xsum);
  }
}

#ifdef CATQ_X86
// 16 codes (column order) as bytes from the packed row at column j0 (j0 % 16 == 0).
template <int bits>
__attribute__((target("avx2,fma"))) inline __m128i codes16(const uint8_t* row, int64_t j0) {
  if constexpr (bits == 8) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j0));
  if constexpr (bits == 4) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + j0 / 2));
    const __m128i m = _mm_set1_epi8(0x0F);
    return _mm_unpacklo_epi8(_mm_and_si128(b, m), _mm_and_si128(_mm_srli_epi16(b, 4), m));
  }
  else {
  int32_t raw;
  std::memcpy(&raw, row + j0 / 4, 4);
  const __m128i b = _mm_cvtsi32_si128(raw);
  const __m128i m = _mm_set1_epi8(0x03);
  const __m128i c0 = _mm_and_si128(b, m), c1 = _mm_and_si128(_mm_srli_epi16(b, 2), m);
  const __m128i c2 = _mm_and_si128(_mm_srli_epi16(b, 4), m), c3 = _mm_and_si128(_mm_srli_epi16(b, 6), m);
  return _mm_unpacklo_epi16(_mm_unpacklo_epi8(c0, c1), _mm_unpacklo_epi8(c2, c3));
  }
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

// Four rows at a time: four independent accumulator chains hide the FMA latency (one row alone is latency-bound:
// measured ~27 % of the read bandwidth at 4 bits), and each x vector is loaded once for the four rows.
template <int bits>
__attribute__((target("avx2,fma"))) void gemv_avx2(const PackedWeights& w, const float* x, float* y, int64_t rb, int64_t re) {
  const std::vector<float> xsum = group_sums(w, x);
  const int64_t G = w.groups_per_row();
  for (int64_t r0 = rb; r0 < re; r0 += 4) {
    const int nr = static_cast<int>(std::min<int64_t>(4, re - r0));
    const uint8_t* row[4];
    __m256 acc[4];
    for (int k = 0; k < 4; ++k) {
      row[k] = w.q.data() + (r0 + std::min(k, nr - 1)) * w.row_bytes();
      acc[k] = _mm256_setzero_ps();
    }
    for (int64_t g = 0; g < G; ++g) {
      __m256 d[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int64_t j = g * w.group; j < (g + 1) * w.group; j += 16) {
        const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
        for (int k = 0; k < 4; ++k) {
          const __m128i c = codes16<bits>(row[k], j);
          d[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c)), x0, d[k]);
          d[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c, 8))), x1, d[k]);
        }
      }
      for (int k = 0; k < 4; ++k)
        acc[k] = _mm256_fmadd_ps(d[k], _mm256_set1_ps(w.scale[static_cast<size_t>((r0 + std::min(k, nr - 1)) * G + g)]), acc[k]);
    }
    for (int k = 0; k < nr; ++k) y[r0 + k] = hsum256(acc[k]) - zero_term(w, r0 + k, xsum);
  }
}

template <int bits>
__attribute__((target("avx512f,avx2,fma"))) void gemv_avx512(const PackedWeights& w, const float* x, float* y, int64_t rb,
                                                               int64_t re) {
  const std::vector<float> xsum = group_sums(w, x);
  const int64_t G = w.groups_per_row();
  for (int64_t r0 = rb; r0 < re; r0 += 4) {
    const int nr = static_cast<int>(std::min<int64_t>(4, re - r0));
    const uint8_t* row[4];
    __m512 acc[4];
    for (int k = 0; k < 4; ++k) {
      row[k] = w.q.data() + (r0 + std::min(k, nr - 1)) * w.row_bytes();
      acc[k] = _mm512_setzero_ps();
    }
    for (int64_t g = 0; g < G; ++g) {
      __m512 d[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
      for (int64_t j = g * w.group; j < (g + 1) * w.group; j += 16) {
        const __m512 xv = _mm512_loadu_ps(x + j);
        for (int k = 0; k < 4; ++k)
          d[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(codes16<bits>(row[k], j))), xv, d[k]);
      }
      for (int k = 0; k < 4; ++k)
        acc[k] = _mm512_fmadd_ps(d[k], _mm512_set1_ps(w.scale[static_cast<size_t>((r0 + std::min(k, nr - 1)) * G + g)]), acc[k]);
    }
    for (int k = 0; k < nr; ++k) y[r0 + k] = _mm512_reduce_add_ps(acc[k]) - zero_term(w, r0 + k, xsum);
  }
}
#endif


// ---- int16 activations ----

// Codes per 16-bit word, and columns per 64-byte chunk (32 words): the unit of the SIMD loop.
constexpr int64_t codes_per_word(int bits) { return 16 / bits; }
constexpr int64_t chunk_cols(int bits) { return 32 * codes_per_word(bits); }

// x quantized per weight group: xq (int16), a_g and t_g = a_g·Σ_{j∈g} xq_j (the zero-point term's factor).
struct QuantizedX {
  std::vector<int16_t> q;
  std::vector<float> scale, wsum;
};

QuantizedX quantize_x_i16(const PackedWeights& w, const float* x) {
  QuantizedX r;
  const int64_t G = w.groups_per_row();
  r.q.resize(static_cast<size_t>(w.cols));
  r.scale.resize(static_cast<size_t>(G));
  r.wsum.resize(static_cast<size_t>(G));
  for (int64_t g = 0; g < G; ++g) {
    float m = 0;
    bool finite = true;
    for (int64_t j = g * w.group; j < (g + 1) * w.group; ++j) {
      finite &= std::isfinite(x[j]);
      m = std::max(m, std::fabs(x[j]));
    }
    CATQ_CHECK(finite, Data, "int16 GEMV: the activations hold NaN or Inf (columns {}..{})", g * w.group,
               (g + 1) * w.group - 1);
    const float a = m > 0 ? m / 32767.f : 1.f;
    int32_t sum = 0;
    for (int64_t j = g * w.group; j < (g + 1) * w.group; ++j) {
      const int32_t v = static_cast<int32_t>(std::clamp(std::nearbyint(x[j] / a), -32767.f, 32767.f));
      r.q[static_cast<size_t>(j)] = static_cast<int16_t>(v);
      sum += v;
    }
    r.scale[static_cast<size_t>(g)] = a;
    r.wsum[static_cast<size_t>(g)] = a * static_cast<float>(sum);
  }
  return r;
}

// Σ_g s_rg·z_rg·t_g of row r.
float zero_term_i16(const PackedWeights& w, int64_t r, const std::vector<float>& wsum) {
  const int64_t G = w.groups_per_row();
  float t = 0;
  for (int64_t g = 0; g < G; ++g)
    t += w.scale[static_cast<size_t>(r * G + g)] * w.zero[static_cast<size_t>(r * G + g)] * wsum[static_cast<size_t>(g)];
  return t;
}

void gemv_i16_scalar(const PackedWeights& w, const float* x, float* y, int64_t rb, int64_t re) {
  const QuantizedX xq = quantize_x_i16(w, x);
  const int64_t G = w.groups_per_row();
  for (int64_t r = rb; r < re; ++r) {
    float acc = 0;
    for (int64_t g = 0; g < G; ++g) {
      int64_t d = 0;
      for (int64_t j = g * w.group; j < (g + 1) * w.group; ++j) d += w.code(r, j) * xq.q[static_cast<size_t>(j)];
      acc += w.scale[static_cast<size_t>(r * G + g)] * xq.scale[static_cast<size_t>(g)] * static_cast<float>(d);
    }
    y[r] = acc - zero_term_i16(w, r, xq.wsum);
  }
}

#ifdef CATQ_X86
// Chunks of 64 bytes per row (32 words, cpw codes each). Phase k of a chunk — (word >> k·bits) & mask — holds
// columns cpw·i + k of the chunk for words i = 0..31, so x is permuted once into [chunk][phase][32 words]. Dword
// lane l of a product sums words 2l, 2l+1: 2·cpw consecutive columns, all in one group, so one float scale per lane
// (s_rg·a_g) turns a chunk's integer lanes into the float accumulator. Four rows share every x load.
constexpr int64_t kPrefetchBlocks = 1;  // how far ahead (in blocks of four rows): 1, 2 and 4 measured alike
template <int bits>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void gemv_i16_avx512(const PackedWeights& w, const float* x,
                                                                         float* y, int64_t rb, int64_t re) {
  constexpr int64_t cpw = codes_per_word(bits), C = chunk_cols(bits), lane_cols = 2 * cpw;
  const QuantizedX xq = quantize_x_i16(w, x);
  const int64_t G = w.groups_per_row(), chunks = w.cols / C, group = w.group;
  const bool many = group < C;  // several groups per chunk (else one group spans ≥ 1 chunk)
  std::vector<int16_t> xp(static_cast<size_t>(w.cols));
  std::vector<float> lane_a(static_cast<size_t>(chunks * 16));
  for (int64_t c = 0; c < chunks; ++c) {
    for (int64_t k = 0; k < cpw; ++k)
      for (int64_t i = 0; i < 32; ++i)
        xp[static_cast<size_t>(c * C + k * 32 + i)] = xq.q[static_cast<size_t>(c * C + cpw * i + k)];
    for (int64_t l = 0; l < 16; ++l)
      lane_a[static_cast<size_t>(c * 16 + l)] = xq.scale[static_cast<size_t>((c * C + l * lane_cols) / group)];
  }
  alignas(64) int32_t lane_group[16];  // lane → group index within the chunk (several groups per chunk)
  for (int l = 0; l < 16; ++l) lane_group[l] = static_cast<int32_t>(many ? l * lane_cols / group : 0);
  const __m512i lg = _mm512_load_si512(lane_group);
  const __mmask16 smask = many ? static_cast<__mmask16>((1u << (C / group)) - 1) : 1;
  const __m512i mask = _mm512_set1_epi16((1 << bits) - 1);
  for (int64_t r0 = rb; r0 < re; r0 += 4) {
    const int nr = static_cast<int>(std::min<int64_t>(4, re - r0));
    const uint8_t* row[4];
    const float* srow[4];
    __m512 acc[4];
    for (int k = 0; k < 4; ++k) {
      const int64_t r = r0 + std::min(k, nr - 1);
      row[k] = w.q.data() + r * w.row_bytes();
      srow[k] = w.scale.data() + r * G;
      acc[k] = _mm512_setzero_ps();
    }
    // Prefetch the next block of four rows while this one computes: its codes (one line per row per chunk) and its
    // scales and zero-points (spread over the chunks). Without it the twelve interleaved streams ran at ~25 % of the
    // read bandwidth beyond the last-level cache.
    const int64_t ahead = r0 + 4 * kPrefetchBlocks;
    const bool next = ahead < re;
    const int64_t nrows = next ? std::min<int64_t>(4, re - ahead) : 0;
    const char* next_codes = next ? reinterpret_cast<const char*>(w.q.data() + ahead * w.row_bytes()) : nullptr;
    const char* next_scale = next ? reinterpret_cast<const char*>(w.scale.data() + ahead * G) : nullptr;
    const char* next_zero = next ? reinterpret_cast<const char*>(w.zero.data() + ahead * G) : nullptr;
    const int64_t param_lines = (nrows * G * 4 + 63) / 64, per_chunk = (param_lines + chunks - 1) / chunks;
    for (int64_t c = 0; c < chunks; ++c) {
      __m512i wv[4], d[4];
      for (int k = 0; k < 4; ++k) {
        wv[k] = _mm512_loadu_si512(row[k] + c * 64);
        d[k] = _mm512_setzero_si512();
      }
      if (next) {
        for (int64_t k = 0; k < nrows; ++k) _mm_prefetch(next_codes + k * w.row_bytes() + c * 64, _MM_HINT_T0);
        for (int64_t i = c * per_chunk; i < std::min(param_lines, (c + 1) * per_chunk); ++i) {
          _mm_prefetch(next_scale + i * 64, _MM_HINT_T0);
          _mm_prefetch(next_zero + i * 64, _MM_HINT_T0);
        }
      }
      const int16_t* xc = xp.data() + c * C;
      for (int64_t ph = 0; ph < cpw; ++ph) {
        const __m512i xv = _mm512_loadu_si512(xc + ph * 32);
        for (int k = 0; k < 4; ++k) {
          __m512i codes = ph == 0 ? wv[k] : _mm512_srli_epi16(wv[k], static_cast<unsigned>(ph * bits));
          if (ph != cpw - 1) codes = _mm512_and_si512(codes, mask);
          d[k] = _mm512_dpwssd_epi32(d[k], codes, xv);
        }
      }
      const __m512 la = _mm512_loadu_ps(lane_a.data() + c * 16);
      const int64_t g0 = c * C / group;
      for (int k = 0; k < 4; ++k) {
        const __m512 s = many ? _mm512_permutexvar_ps(lg, _mm512_maskz_loadu_ps(smask, srow[k] + g0))
                              : _mm512_set1_ps(srow[k][g0]);
        acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[k]), _mm512_mul_ps(s, la), acc[k]);
      }
    }
    // The zero-point term Σ_g s_rg·z_rg·t_g, 16 groups per step.
    for (int k = 0; k < nr; ++k) {
      const float* sp = w.scale.data() + (r0 + k) * G;
      const float* zp = w.zero.data() + (r0 + k) * G;
      __m512 zt = _mm512_setzero_ps();
      for (int64_t g = 0; g < G; g += 16) {
        const __mmask16 m = G - g >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (G - g)) - 1);
        zt = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, sp + g), _mm512_maskz_loadu_ps(m, zp + g)),
                             _mm512_maskz_loadu_ps(m, xq.wsum.data() + g), zt);
      }
      y[r0 + k] = _mm512_reduce_add_ps(acc[k]) - _mm512_reduce_add_ps(zt);
    }
  }
}
#endif

// ---- codebook ----

void gemv_codebook_scalar(const PackedCodebook& w, const float* x, float* y) {
  for (int64_t r = 0; r < w.rows; ++r) {
    const float* cb = w.book(r);
    float acc = 0;
    for (int64_t j = 0; j < w.cols; ++j) acc += cb[w.index(r, j)] * x[j];
    y[r] = acc;
  }
}

#ifdef CATQ_X86
// Chunks of 256 columns. The low plane's 64 bytes are 16 dwords of 16 two-bit indices: dword l holds columns
// 16l..16l+15, column 16l+k at bits 2k — phase k is the dword shifted right by 2k. The high plane's 32 bytes, each
// 16-bit word zero-extended to a dword, hold the third bits: column 16l+k at bit k. vpermps reads the low 4 bits of
// each index, so with the codebook replicated to 16 entries (4 codewords × 4, or 8 × 2) the bits above an index
// need no masking; for 3 bits one bit-select (vpternlog) puts the third bit in place. x is permuted to
// [chunk][phase][lane]. Four rows share every x load.
template <int bits>
__attribute__((target("avx512f"))) void gemv_codebook_avx512(const PackedCodebook& w, const float* x, float* y) {
  const int64_t chunks = w.cols / 256, K = w.levels();
  std::vector<float> xp(static_cast<size_t>(w.cols));
  for (int64_t c = 0; c < chunks; ++c)
    for (int64_t k = 0; k < 16; ++k)
      for (int64_t l = 0; l < 16; ++l) xp[static_cast<size_t>(c * 256 + k * 16 + l)] = x[c * 256 + 16 * l + k];
  alignas(64) int32_t rep[16];
  for (int i = 0; i < 16; ++i) rep[i] = static_cast<int32_t>(i % K);
  const __m512i repv = _mm512_load_si512(rep), low2 = _mm512_set1_epi32(3);
  const __mmask16 kmask = static_cast<__mmask16>((1u << K) - 1);
  for (int64_t r0 = 0; r0 < w.rows; r0 += 4) {
    const int nr = static_cast<int>(std::min<int64_t>(4, w.rows - r0));
    const uint8_t* lo[4];
    const uint8_t* hi[4];
    __m512 cb[4], acc[4];
    for (int k = 0; k < 4; ++k) {
      const int64_t r = r0 + std::min(k, nr - 1);
      lo[k] = w.lo.data() + r * w.lo_row_bytes();
      hi[k] = bits == 3 ? w.hi.data() + r * w.hi_row_bytes() : nullptr;
      cb[k] = _mm512_permutexvar_ps(repv, _mm512_maskz_loadu_ps(kmask, w.book(r)));
      acc[k] = _mm512_setzero_ps();
    }
    const bool next = r0 + 4 < w.rows;
    for (int64_t c = 0; c < chunks; ++c) {
      __m512i L[4], H[4];
      for (int k = 0; k < 4; ++k) {
        L[k] = _mm512_loadu_si512(lo[k] + c * 64);
        if constexpr (bits == 3)
          H[k] = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi[k] + c * 32))), 2);
        else
          H[k] = _mm512_setzero_si512();
      }
      if (next)
        for (int k = 0; k < std::min<int64_t>(4, w.rows - r0 - 4); ++k) {
          _mm_prefetch(reinterpret_cast<const char*>(w.lo.data() + (r0 + 4 + k) * w.lo_row_bytes() + c * 64), _MM_HINT_T0);
          if (bits == 3 && c % 2 == 0)
            _mm_prefetch(reinterpret_cast<const char*>(w.hi.data() + (r0 + 4 + k) * w.hi_row_bytes() + c * 32), _MM_HINT_T0);
        }
      const float* xc = xp.data() + c * 256;
      for (unsigned ph = 0; ph < 16; ++ph) {
        const __m512 xv = _mm512_loadu_ps(xc + ph * 16);
        for (int k = 0; k < 4; ++k) {
          __m512i idx = _mm512_srli_epi32(L[k], 2 * ph);
          if constexpr (bits == 3) idx = _mm512_ternarylogic_epi32(low2, idx, _mm512_srli_epi32(H[k], ph), 0xCA);
          acc[k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(idx, cb[k]), xv, acc[k]);
        }
      }
    }
    for (int k = 0; k < nr; ++k) y[r0 + k] = _mm512_reduce_add_ps(acc[k]);
  }
}
#endif

}  // namespace

void gemv_packed_rows(const PackedWeights& w, const float* x, float* y, int64_t r0, int64_t r1, KernelIsa isa) {
  CATQ_CHECK(isa_supported(isa), Usage, "gemv_packed: this CPU has no {}", to_string(isa));
  CATQ_CHECK(0 <= r0 && r0 <= r1 && r1 <= w.rows, Internal, "gemv_packed: rows [{}, {}) of {}", r0, r1, w.rows);
#ifdef CATQ_X86
  if (w.group % 16 == 0) {
    // One instantiation per code width: no per-vector branch on the bit width.
    if (isa == KernelIsa::Avx512)
      return w.bits == 8   ? gemv_avx512<8>(w, x, y, r0, r1)
             : w.bits == 4 ? gemv_avx512<4>(w, x, y, r0, r1)
                           : gemv_avx512<2>(w, x, y, r0, r1);
    if (isa == KernelIsa::Avx2)
      return w.bits == 8   ? gemv_avx2<8>(w, x, y, r0, r1)
             : w.bits == 4 ? gemv_avx2<4>(w, x, y, r0, r1)
                           : gemv_avx2<2>(w, x, y, r0, r1);
  }
#endif
  gemv_scalar(w, x, y, r0, r1);
}

void gemv_packed(const PackedWeights& w, const float* x, float* y, KernelIsa isa) {
  gemv_packed_rows(w, x, y, 0, w.rows, isa);
}

void gemv_packed(const PackedWeights& w, const float* x, float* y) { gemv_packed(w, x, y, best_isa()); }

void gemm_packed(const PackedWeights& w, const float* x, int64_t m, float* y, KernelIsa isa) {
  for (int64_t i = 0; i < m; ++i) gemv_packed(w, x + i * w.cols, y + i * w.rows, isa);
}

void gemm_packed(const PackedWeights& w, const float* x, int64_t m, float* y) { gemm_packed(w, x, m, y, best_isa()); }

bool i16_simd() {
#ifdef CATQ_X86
  static const bool ok = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
  return ok;
#else
  return false;
#endif
}

bool i16_supported(const PackedWeights& w) {
  if (w.bits != 2 && w.bits != 4 && w.bits != 8) return false;
  const int64_t C = chunk_cols(w.bits), lane_cols = 2 * codes_per_word(w.bits);
  return w.cols % C == 0 && w.group % lane_cols == 0 && (C % w.group == 0 || w.group % C == 0);
}

void gemv_packed_i16_rows(const PackedWeights& w, const float* x, float* y, int64_t r0, int64_t r1, KernelIsa isa) {
  CATQ_CHECK(isa_supported(isa), Usage, "gemv_packed_i16: this CPU has no {}", to_string(isa));
  CATQ_CHECK(0 <= r0 && r0 <= r1 && r1 <= w.rows, Internal, "gemv_packed_i16: rows [{}, {}) of {}", r0, r1, w.rows);
#ifdef CATQ_X86
  if (isa == KernelIsa::Avx512 && i16_simd() && i16_supported(w))
    return w.bits == 8   ? gemv_i16_avx512<8>(w, x, y, r0, r1)
           : w.bits == 4 ? gemv_i16_avx512<4>(w, x, y, r0, r1)
                         : gemv_i16_avx512<2>(w, x, y, r0, r1);
#endif
  gemv_i16_scalar(w, x, y, r0, r1);
}

void gemv_packed_i16(const PackedWeights& w, const float* x, float* y, KernelIsa isa) {
  gemv_packed_i16_rows(w, x, y, 0, w.rows, isa);
}

void gemv_packed_i16(const PackedWeights& w, const float* x, float* y) { gemv_packed_i16(w, x, y, best_isa()); }

void gemv_codebook(const PackedCodebook& w, const float* x, float* y, KernelIsa isa) {
  CATQ_CHECK(isa_supported(isa), Usage, "gemv_codebook: this CPU has no {}", to_string(isa));
#ifdef CATQ_X86
  if (isa == KernelIsa::Avx512 && w.cols % 256 == 0)
    return w.bits == 3 ? gemv_codebook_avx512<3>(w, x, y) : gemv_codebook_avx512<2>(w, x, y);
#endif
  gemv_codebook_scalar(w, x, y);
}

void gemv_codebook(const PackedCodebook& w, const float* x, float* y) { gemv_codebook(w, x, y, best_isa()); }

}  // namespace catq

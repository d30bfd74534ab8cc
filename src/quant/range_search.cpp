#include "quant/range_search.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CATQ_RS_X86 1
#endif

#include "core/error.h"

// GCC 12's _mm512_extractf64x4_pd reads an uninitialised temporary inside its own header (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// The scalar reference and the SIMD paths must round alike (bit-identical results): fused multiply-adds only where
// written (std::fma / _mm512_fmadd_ps), no FMA contraction elsewhere, whatever -march the project is built with.
// The SIMD code uses the explicit-rounding intrinsics (_mm512_add_round_ps, ...) where a product feeds an add;
// the compiler does not fuse those.
#if defined(__clang__)
#pragma clang fp contract(off)
#define CATQ_RS_NO_CONTRACT
#elif defined(__GNUC__)
#define CATQ_RS_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define CATQ_RS_NO_CONTRACT
#endif
// The scalar MSE body is compiled twice: portable (std::fma is a libm call, ~4 ns) and with the FMA instruction
// enabled (std::fma inlines); the helpers must inline into both.
#if defined(__GNUC__)
#define CATQ_RS_INLINE inline __attribute__((always_inline))
#else
#define CATQ_RS_INLINE inline
#endif

namespace catq {

const char* to_string(RangeIsa isa) { return isa == RangeIsa::Avx512 ? "avx512" : "scalar"; }

bool range_isa_supported(RangeIsa isa) {
  if (isa == RangeIsa::Scalar) return true;
#ifdef CATQ_RS_X86
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

RangeIsa range_best_isa() {
  // CATQ_ISA caps the ISA as for runtime/kernels.h (no AVX2 path here: avx2 means scalar).
  static const RangeIsa best = [] {
    if (const char* e = std::getenv("CATQ_ISA")) {
      const std::string s(e);
      if (s == "scalar" || s == "avx2") return RangeIsa::Scalar;
    }
    return range_isa_supported(RangeIsa::Avx512) ? RangeIsa::Avx512 : RangeIsa::Scalar;
  }();
  return best;
}

namespace {

// The comparisons of the AVX-512 max / min instructions ((a > b) ? a : b), so ±0 and NaN behave alike in both paths.
inline float vmax(float a, float b) { return a > b ? a : b; }
inline float vmin(float a, float b) { return a < b ? a : b; }

// Round half to even for |v| < 2^22 without a libm call (the values are clamped into the code range first).
constexpr float kMagic = 12582912.0f;  // 1.5 · 2^23

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- pow -----------------------------------------------------------------------------------------------------
// |a|^p = 2^(p·log2|a|) with the exponent split off exactly: a = m·2^e (m ∈ [√½, √2)), p = p_hi + p_lo where p_hi
// has 12 significant bits so p_hi·e is exact; then y = n + g, |g| ≤ ½, 2^g by a polynomial and 2^n by exponent
// bits. A float log2 of |a| itself would lose ~|y|·2^-24 (3e-6 relative at |y| ≈ 50).
struct PowConst {
  float p, p_hi, p_lo;
};
PowConst pow_const(double p) {
  const float pf = static_cast<float>(p);
  const float hi = float_of(bits_of(pf) & 0xFFFFF800u);  // 12 significant bits
  return {pf, hi, pf - hi};
}

// log2(m) = 2/ln2 · atanh(u), u = (m−1)/(m+1), |u| ≤ 0.1716: odd series to u^9 (next term < 1e-9).
constexpr float kL1 = 2.8853900817779268f, kL3 = 0.96179669392597560f, kL5 = 0.57707801635558536f,
                kL7 = 0.41219858311113240f, kL9 = 0.32059889797532520f;
// 2^g = Σ (g·ln2)^i / i!, i ≤ 7, |g| ≤ ½ (truncation < 1e-8).
constexpr float kE1 = 0.69314718055994531f, kE2 = 0.24022650695910071f, kE3 = 0.055504108664821580f,
                kE4 = 0.0096181291076284772f, kE5 = 0.0013333558146428443f, kE6 = 0.00015403530393381609f,
                kE7 = 1.5252733804059841e-05f;

CATQ_RS_NO_CONTRACT CATQ_RS_INLINE float pow_abs(float d, const PowConst& c) {
  float a = std::fabs(d);
  if (!(a > 0.0f)) return 0.0f;
  int32_t eadj = 0;
  if (a < 1.17549435e-38f) {  // subnormal: scale into the normal range first (exact)
    a = a * 16777216.0f;
    eadj = -24;
  }
  uint32_t b = bits_of(a);
  int32_t e = static_cast<int32_t>(b >> 23) - 127 + eadj;
  uint32_t mb = (b & 0x007FFFFFu) | 0x3F800000u;
  if (mb > 0x3FB504F3u) {  // m > √2: halve it
    mb -= 0x00800000u;
    e += 1;
  }
  const float m = float_of(mb);
  const float u = (m - 1.0f) / (m + 1.0f);
  const float u2 = u * u;
  float poly = kL9;
  poly = std::fma(poly, u2, kL7);
  poly = std::fma(poly, u2, kL5);
  poly = std::fma(poly, u2, kL3);
  poly = std::fma(poly, u2, kL1);
  const float log2m = u * poly;
  const float ef = static_cast<float>(e);
  const float A = c.p_hi * ef;  // exact
  const float n1 = (A + kMagic) - kMagic;
  const float f1 = A - n1;  // exact
  const float B = c.p_lo * ef;
  const float f = f1 + std::fma(c.p, log2m, B);
  const float n2 = (f + kMagic) - kMagic;
  const float g = f - n2;  // exact
  float r = kE7;
  r = std::fma(r, g, kE6);
  r = std::fma(r, g, kE5);
  r = std::fma(r, g, kE4);
  r = std::fma(r, g, kE3);
  r = std::fma(r, g, kE2);
  r = std::fma(r, g, kE1);
  r = std::fma(r, g, 1.0f);
  const float n = n1 + n2;  // 2^n in two factors, each a normal float (|n| > 252 over- / underflows anyway)
  const float na = vmin(vmax(n, -126.0f), 127.0f);
  const float nb = vmin(vmax(n - na, -126.0f), 127.0f);
  r = r * float_of(static_cast<uint32_t>(static_cast<int32_t>(na) + 127) << 23);
  r = r * float_of(static_cast<uint32_t>(static_cast<int32_t>(nb) + 127) << 23);
  return r;
}

// ---- MSE search, scalar reference ----------------------------------------------------------------------------

// One candidate's quantizer: x̂ = s·round(clamp(x·inv, a, b)) with a = qmin − z, b = qmax − z.
struct Cand {
  float s, inv, a, b;
};

CATQ_RS_NO_CONTRACT CATQ_RS_INLINE Cand cand_of(const RangeGrid& g, float mn, float mx, float ratio) {
  float s, z;
  range_params(g, mn * ratio, mx * ratio, s, z);
  return {s, 1.0f / s, static_cast<float>(g.qmin) - z, static_cast<float>(g.qmax) - z};
}

// acc + |x − x̂|^p. d and d² + acc are fused multiply-adds (one rounding each, exact in std::fma and in the SIMD
// path alike; glibc's fmaf uses the FMA instruction where the CPU has one).
template <bool kSquare>
CATQ_RS_NO_CONTRACT CATQ_RS_INLINE float add_term(float acc, float x, const Cand& c, const PowConst& pc) {
  const float t = x * c.inv;
  const float cl = vmin(vmax(t, c.a), c.b);
  const float q = (cl + kMagic) - kMagic;
  const float d = std::fma(-q, c.s, x);
  return kSquare ? std::fma(d, d, acc) : acc + pow_abs(d, pc);
}

// Σ_j |x_j − x̂_j|^p in the order the SIMD path uses (see the header).
template <bool kSquare>
CATQ_RS_NO_CONTRACT CATQ_RS_INLINE float err_sum_ref(const float* x, int64_t cols, const Cand& c, const PowConst& pc) {
  if (cols <= kMseRowLanesMaxCols) {
    float acc = 0.0f;
    for (int64_t j = 0; j < cols; ++j) acc = add_term<kSquare>(acc, x[j], c, pc);
    return acc;
  }
  float part[64] = {};
  for (int64_t j = 0; j < cols; ++j) part[j & 63] = add_term<kSquare>(part[j & 63], x[j], c, pc);
  float v[16];
  for (int l = 0; l < 16; ++l) v[l] = (part[l] + part[16 + l]) + (part[32 + l] + part[48 + l]);
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) v[l] = v[l] + v[l + w];
  return v[0];
}

template <bool kSquare>
CATQ_RS_NO_CONTRACT CATQ_RS_INLINE void mse_rows_ref_body(const MseSearch& s, const float* ratios, const float* x,
                                                          int64_t rows, int64_t cols, int64_t ld, const float* mn,
                                                          const float* mx, int32_t* best_k) {
  const PowConst pc = pow_const(s.p);
  const float colsf = static_cast<float>(cols);
  for (int64_t r = 0; r < rows; ++r) {
    float best = std::numeric_limits<float>::infinity();
    int32_t bk = 0;
    for (int k = s.candidates; k >= 1; --k) {
      const Cand c = cand_of(s.grid, mn[r], mx[r], ratios[k]);
      const float err = err_sum_ref<kSquare>(x + r * ld, cols, c, pc) / colsf;
      if (err < best) {  // strict: ties keep the wider range
        best = err;
        bk = k;
      }
    }
    best_k[r] = bk;
  }
}

template <bool kSquare>
CATQ_RS_NO_CONTRACT void mse_rows_ref(const MseSearch& s, const float* ratios, const float* x, int64_t rows,
                                      int64_t cols, int64_t ld, const float* mn, const float* mx, int32_t* best_k) {
  mse_rows_ref_body<kSquare>(s, ratios, x, rows, cols, ld, mn, mx, best_k);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
template <bool kSquare>
CATQ_RS_NO_CONTRACT __attribute__((target("fma"))) void mse_rows_ref_fma(const MseSearch& s, const float* ratios,
                                                                         const float* x, int64_t rows, int64_t cols,
                                                                         int64_t ld, const float* mn, const float* mx,
                                                                         int32_t* best_k) {
  mse_rows_ref_body<kSquare>(s, ratios, x, rows, cols, ld, mn, mx, best_k);
}
#define CATQ_RS_SCALAR_FMA 1
#endif

// ---- AVX-512 ----------------------------------------------------------------------------------------------------
#ifdef CATQ_RS_X86
#define CATQ_RS_AVX512 __attribute__((target("avx512f")))
constexpr int kRn = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

CATQ_RS_AVX512 inline __m512 add_rn(__m512 a, __m512 b) { return _mm512_add_round_ps(a, b, kRn); }
CATQ_RS_AVX512 inline __m512 sub_rn(__m512 a, __m512 b) { return _mm512_sub_round_ps(a, b, kRn); }
CATQ_RS_AVX512 inline __m512 mul_rn(__m512 a, __m512 b) { return _mm512_mul_round_ps(a, b, kRn); }
CATQ_RS_AVX512 inline __m512 abs_ps(__m512 a) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7FFFFFFF)));
}
CATQ_RS_AVX512 inline __m512 round_magic(__m512 v) {
  const __m512 m = _mm512_set1_ps(kMagic);
  return _mm512_sub_ps(_mm512_add_ps(v, m), m);
}

// pow_abs, lane by lane the same operations.
struct PowConstV {
  __m512 p, p_hi, p_lo;
};
CATQ_RS_AVX512 inline __m512 pow_abs_avx512(__m512 d, const PowConstV& c) {
  __m512 a = abs_ps(d);
  const __mmask16 pos = _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ);
  const __mmask16 sub = _mm512_cmp_ps_mask(a, _mm512_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
  a = _mm512_mask_mul_ps(a, sub, a, _mm512_set1_ps(16777216.0f));
  const __m512i eadj = _mm512_maskz_mov_epi32(sub, _mm512_set1_epi32(-24));
  const __m512i b = _mm512_castps_si512(a);
  __m512i e = _mm512_add_epi32(_mm512_sub_epi32(_mm512_srli_epi32(b, 23), _mm512_set1_epi32(127)), eadj);
  __m512i mb = _mm512_or_si512(_mm512_and_si512(b, _mm512_set1_epi32(0x007FFFFF)), _mm512_set1_epi32(0x3F800000));
  const __mmask16 big = _mm512_cmpgt_epu32_mask(mb, _mm512_set1_epi32(0x3FB504F3));
  mb = _mm512_mask_sub_epi32(mb, big, mb, _mm512_set1_epi32(0x00800000));
  e = _mm512_mask_add_epi32(e, big, e, _mm512_set1_epi32(1));
  const __m512 m = _mm512_castsi512_ps(mb), one = _mm512_set1_ps(1.0f);
  const __m512 u = _mm512_div_ps(_mm512_sub_ps(m, one), _mm512_add_ps(m, one));
  const __m512 u2 = mul_rn(u, u);
  __m512 poly = _mm512_set1_ps(kL9);
  poly = _mm512_fmadd_ps(poly, u2, _mm512_set1_ps(kL7));
  poly = _mm512_fmadd_ps(poly, u2, _mm512_set1_ps(kL5));
  poly = _mm512_fmadd_ps(poly, u2, _mm512_set1_ps(kL3));
  poly = _mm512_fmadd_ps(poly, u2, _mm512_set1_ps(kL1));
  const __m512 log2m = mul_rn(u, poly);
  const __m512 ef = _mm512_cvtepi32_ps(e);
  const __m512 A = mul_rn(c.p_hi, ef);
  const __m512 n1 = round_magic(A);
  const __m512 f1 = sub_rn(A, n1);
  const __m512 B = mul_rn(c.p_lo, ef);
  const __m512 f = add_rn(f1, _mm512_fmadd_ps(c.p, log2m, B));
  const __m512 n2 = round_magic(f);
  const __m512 g = sub_rn(f, n2);
  __m512 r = _mm512_set1_ps(kE7);
  r = _mm512_fmadd_ps(r, g, _mm512_set1_ps(kE6));
  r = _mm512_fmadd_ps(r, g, _mm512_set1_ps(kE5));
  r = _mm512_fmadd_ps(r, g, _mm512_set1_ps(kE4));
  r = _mm512_fmadd_ps(r, g, _mm512_set1_ps(kE3));
  r = _mm512_fmadd_ps(r, g, _mm512_set1_ps(kE2));
  r = _mm512_fmadd_ps(r, g, _mm512_set1_ps(kE1));
  r = _mm512_fmadd_ps(r, g, one);
  const __m512 n = add_rn(n1, n2);
  const __m512 na = _mm512_min_ps(_mm512_max_ps(n, _mm512_set1_ps(-126.0f)), _mm512_set1_ps(127.0f));
  const __m512 nb = _mm512_min_ps(_mm512_max_ps(sub_rn(n, na), _mm512_set1_ps(-126.0f)), _mm512_set1_ps(127.0f));
  const __m512i bias = _mm512_set1_epi32(127);
  r = mul_rn(r, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(na), bias), 23)));
  r = mul_rn(r, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(nb), bias), 23)));
  return _mm512_maskz_mov_ps(pos, r);
}

struct CandV {
  __m512 s, inv, a, b;
};

// range_params for 16 ranges at once (same operations as the scalar one).
CATQ_RS_AVX512 inline CandV cand_avx512(const RangeGrid& g, __m512 mn, __m512 mx, float ratio) {
  const __m512 r = _mm512_set1_ps(ratio), zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  const __m512 qmin = _mm512_set1_ps(static_cast<float>(g.qmin)), qmax = _mm512_set1_ps(static_cast<float>(g.qmax));
  const __m512 lo = _mm512_mul_ps(mn, r), hi = _mm512_mul_ps(mx, r);
  __m512 s, z;
  if (g.symmetric) {
    const __m512 amax = g.is_signed ? _mm512_max_ps(abs_ps(lo), abs_ps(hi)) : _mm512_max_ps(hi, zero);
    s = _mm512_div_ps(amax, qmax);
    s = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(s, _mm512_set1_ps(1e-30f), _CMP_GT_OQ), one, s);
    z = zero;
  } else {
    const __m512 lo2 = _mm512_min_ps(lo, zero), hi2 = _mm512_max_ps(hi, zero);
    s = _mm512_div_ps(_mm512_sub_ps(hi2, lo2), _mm512_set1_ps(static_cast<float>(g.qmax - g.qmin)));
    s = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(s, _mm512_set1_ps(1e-30f), _CMP_GT_OQ), one, s);
    z = _mm512_sub_ps(qmin, _mm512_roundscale_ps(_mm512_div_ps(lo2, s), kRn));
    z = _mm512_min_ps(_mm512_max_ps(z, qmin), qmax);
  }
  return {s, _mm512_div_ps(one, s), _mm512_sub_ps(qmin, z), _mm512_sub_ps(qmax, z)};
}

template <bool kSquare>
CATQ_RS_AVX512 inline __m512 add_term_avx512(__m512 acc, __m512 x, const CandV& c, const PowConstV& pc) {
  const __m512 t = _mm512_mul_ps(x, c.inv);
  const __m512 cl = _mm512_min_ps(_mm512_max_ps(t, c.a), c.b);
  const __m512 q = _mm512_roundscale_ps(cl, kRn);  // = the scalar magic-number rounding (|cl| < 2^22)
  const __m512 d = _mm512_fnmadd_ps(q, c.s, x);
  return kSquare ? _mm512_fmadd_ps(d, d, acc) : add_rn(acc, pow_abs_avx512(d, pc));
}

// 16 rows in the 16 lanes: buf holds the block transposed (column j of the 16 rows at buf + 16·j). Candidates
// go two at a time (independent sums hide the add latency; the comparisons stay in order k, k−1).
template <bool kSquare>
CATQ_RS_AVX512 void mse_block16_avx512(const MseSearch& s, const float* ratios, const PowConstV& pc, const float* buf,
                                       int64_t cols, __m512 mn, __m512 mx, int32_t* best_k) {
  const __m512 colsf = _mm512_set1_ps(static_cast<float>(cols));
  __m512 best = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  __m512i bk = _mm512_setzero_si512();
  int k = s.candidates;
  for (; k >= 2; k -= 2) {
    const CandV c0 = cand_avx512(s.grid, mn, mx, ratios[k]), c1 = cand_avx512(s.grid, mn, mx, ratios[k - 1]);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t j = 0; j < cols; ++j) {
      const __m512 x = _mm512_loadu_ps(buf + 16 * j);
      acc0 = add_term_avx512<kSquare>(acc0, x, c0, pc);
      acc1 = add_term_avx512<kSquare>(acc1, x, c1, pc);
    }
    const __m512 e0 = _mm512_div_ps(acc0, colsf), e1 = _mm512_div_ps(acc1, colsf);
    __mmask16 m = _mm512_cmp_ps_mask(e0, best, _CMP_LT_OQ);
    best = _mm512_mask_mov_ps(best, m, e0);
    bk = _mm512_mask_mov_epi32(bk, m, _mm512_set1_epi32(k));
    m = _mm512_cmp_ps_mask(e1, best, _CMP_LT_OQ);
    best = _mm512_mask_mov_ps(best, m, e1);
    bk = _mm512_mask_mov_epi32(bk, m, _mm512_set1_epi32(k - 1));
  }
  if (k == 1) {
    const CandV c0 = cand_avx512(s.grid, mn, mx, ratios[1]);
    __m512 acc0 = _mm512_setzero_ps();
    for (int64_t j = 0; j < cols; ++j) acc0 = add_term_avx512<kSquare>(acc0, _mm512_loadu_ps(buf + 16 * j), c0, pc);
    const __m512 e0 = _mm512_div_ps(acc0, colsf);
    const __mmask16 m = _mm512_cmp_ps_mask(e0, best, _CMP_LT_OQ);
    bk = _mm512_mask_mov_epi32(bk, m, _mm512_set1_epi32(1));
  }
  _mm512_storeu_si512(best_k, bk);
}

// One long row, lanes along j: 64 partial sums (4 accumulators), combined as err_sum_ref does.
template <bool kSquare>
CATQ_RS_AVX512 float err_sum_long_avx512(const float* x, int64_t cols, const Cand& c1, const PowConstV& pc) {
  const CandV c{_mm512_set1_ps(c1.s), _mm512_set1_ps(c1.inv), _mm512_set1_ps(c1.a), _mm512_set1_ps(c1.b)};
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t j = 0;
  for (; j + 64 <= cols; j += 64)
    for (int u = 0; u < 4; ++u) acc[u] = add_term_avx512<kSquare>(acc[u], _mm512_loadu_ps(x + j + 16 * u), c, pc);
  for (int u = 0; j < cols; j += 16, ++u) {
    const __mmask16 m = j + 16 <= cols ? __mmask16(0xFFFF) : __mmask16((1u << (cols - j)) - 1);
    const __m512 t = add_term_avx512<kSquare>(acc[u], _mm512_maskz_loadu_ps(m, x + j), c, pc);
    acc[u] = _mm512_mask_mov_ps(acc[u], m, t);  // lanes past the row keep their sums
  }
  const __m512 v = add_rn(add_rn(acc[0], acc[1]), add_rn(acc[2], acc[3]));
  const __m256 w = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(w), _mm256_extractf128_ps(w, 1));
  const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
}

template <bool kSquare>
CATQ_RS_AVX512 void mse_rows_avx512(const MseSearch& s, const float* ratios, const float* x, int64_t rows, int64_t cols,
                                    int64_t ld, const float* mn, const float* mx, int32_t* best_k) {
  const PowConst p1 = pow_const(s.p);
  const PowConstV pc{_mm512_set1_ps(p1.p), _mm512_set1_ps(p1.p_hi), _mm512_set1_ps(p1.p_lo)};
  if (cols > kMseRowLanesMaxCols) {
    const float colsf = static_cast<float>(cols);
    for (int64_t r = 0; r < rows; ++r) {
      float best = std::numeric_limits<float>::infinity();
      int32_t bk = 0;
      for (int k = s.candidates; k >= 1; --k) {
        const Cand c = cand_of(s.grid, mn[r], mx[r], ratios[k]);
        const float err = err_sum_long_avx512<kSquare>(x + r * ld, cols, c, pc) / colsf;
        if (err < best) {
          best = err;
          bk = k;
        }
      }
      best_k[r] = bk;
    }
    return;
  }
  std::vector<float> buf(static_cast<size_t>(16 * cols));
  alignas(64) float bmn[16], bmx[16];
  alignas(64) int32_t bk[16];
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    const int64_t n = std::min<int64_t>(16, rows - r0);
    for (int64_t l = 0; l < 16; ++l) {
      const bool in = l < n;
      bmn[l] = in ? mn[r0 + l] : 0.0f;
      bmx[l] = in ? mx[r0 + l] : 0.0f;
      const float* xr = x + (r0 + l) * ld;
      for (int64_t j = 0; j < cols; ++j) buf[16 * j + l] = in ? xr[j] : 0.0f;
    }
    mse_block16_avx512<kSquare>(s, ratios, pc, buf.data(), cols, _mm512_load_ps(bmn), _mm512_load_ps(bmx), bk);
    std::copy(bk, bk + n, best_k + r0);
  }
}

// Horizontal min / max (GCC 12's _mm512_reduce_min_ps warns under -Wextra).
CATQ_RS_AVX512 inline float hmin_avx512(__m512 v) {
  const __m256 w = _mm256_min_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 h = _mm_min_ps(_mm256_castps256_ps128(w), _mm256_extractf128_ps(w, 1));
  h = _mm_min_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_min_ss(h, _mm_shuffle_ps(h, h, 1)));
}
CATQ_RS_AVX512 inline float hmax_avx512(__m512 v) {
  const __m256 w = _mm256_max_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(w), _mm256_extractf128_ps(w, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
}

// Min / max per row; NaN anywhere in the row gives NaN for both.
CATQ_RS_AVX512 void minmax_avx512(const float* x, int64_t rows, int64_t cols, int64_t ld, float* mn, float* mx) {
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ld;
    __m512 lo = _mm512_set1_ps(inf), hi = _mm512_set1_ps(-inf);
    __mmask16 nan = 0;
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 m = j + 16 <= cols ? __mmask16(0xFFFF) : __mmask16((1u << (cols - j)) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(m, xr + j);
      lo = _mm512_mask_min_ps(lo, m, lo, v);
      hi = _mm512_mask_max_ps(hi, m, hi, v);
      nan |= _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
    }
    const float a = hmin_avx512(lo), b = hmax_avx512(hi);
    mn[r] = nan ? std::numeric_limits<float>::quiet_NaN() : a;
    mx[r] = nan ? std::numeric_limits<float>::quiet_NaN() : b;
  }
}

// rtn_runs: the clamp keeps a NaN (max(lo, q) returns q when q is NaN), as torch's clamp does.
CATQ_RS_AVX512 void rtn_avx512(const RunLayout& L, int64_t u0, int64_t u1, const float* x, const float* scale,
                               const int32_t* zero, int64_t qmin, int64_t qmax, int32_t* codes, float* deq) {
  const __m512 lo = _mm512_set1_ps(static_cast<float>(qmin)), hi = _mm512_set1_ps(static_cast<float>(qmax));
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t o = u / L.channels, ch = u % L.channels, pi = o * L.p_outer + ch * L.p_channel;
    const __m512 s = _mm512_set1_ps(scale[pi]), z = _mm512_set1_ps(static_cast<float>(zero[pi]));
    const int64_t base = u * L.inner;
    for (int64_t j = 0; j < L.inner; j += 16) {
      const __mmask16 m = j + 16 <= L.inner ? __mmask16(0xFFFF) : __mmask16((1u << (L.inner - j)) - 1);
      const __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + base + j), s);
      __m512 q = _mm512_add_ps(_mm512_roundscale_ps(v, kRn), z);
      q = _mm512_min_ps(hi, _mm512_max_ps(lo, q));
      if (codes) _mm512_mask_storeu_epi32(codes + base + j, m, _mm512_cvtps_epi32(q));
      if (deq) _mm512_mask_storeu_ps(deq + base + j, m, _mm512_mul_ps(_mm512_sub_ps(q, z), s));
    }
  }
}
#endif  // CATQ_RS_X86

void check_isa(RangeIsa isa) {
  CATQ_CHECK(range_isa_supported(isa), Usage, "range search: this CPU has no {} instructions", to_string(isa));
}

}  // namespace

float pow_abs_ref(float a, double p) { return pow_abs(a, pow_const(p)); }

CATQ_RS_NO_CONTRACT void range_params(const RangeGrid& g, float lo, float hi, float& scale, float& zero) {
  float s, z = 0.0f;
  if (g.symmetric) {
    // Unsigned symmetric (z = 0, range [0, qmax]) only represents the positive side.
    const float amax = g.is_signed ? vmax(std::fabs(lo), std::fabs(hi)) : vmax(hi, 0.0f);
    s = amax / static_cast<float>(g.qmax);
    s = s > 1e-30f ? s : 1.0f;  // zero range: any scale is exact, pick 1
  } else {
    const float lo2 = vmin(lo, 0.0f), hi2 = vmax(hi, 0.0f);  // the range must contain 0.0
    s = (hi2 - lo2) / static_cast<float>(g.qmax - g.qmin);
    s = s > 1e-30f ? s : 1.0f;
    z = static_cast<float>(g.qmin) - std::nearbyint(lo2 / s);
    z = vmin(vmax(z, static_cast<float>(g.qmin)), static_cast<float>(g.qmax));
  }
  scale = s;
  zero = z;
}

void row_minmax(const float* x, int64_t rows, int64_t cols, int64_t ld, float* mn, float* mx, RangeIsa isa) {
  check_isa(isa);
#ifdef CATQ_RS_X86
  if (isa == RangeIsa::Avx512) return minmax_avx512(x, rows, cols, ld, mn, mx);
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ld;
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    bool nan = false;
    for (int64_t j = 0; j < cols; ++j) {
      lo = vmin(lo, xr[j]);
      hi = vmax(hi, xr[j]);
      nan = nan || std::isnan(xr[j]);
    }
    mn[r] = nan ? std::numeric_limits<float>::quiet_NaN() : lo;
    mx[r] = nan ? std::numeric_limits<float>::quiet_NaN() : hi;
  }
}

namespace {

// The chosen range: r·min, r·max (the products the search used), or the full range when no k won.
void finish_mse(const MseSearch& s, const std::vector<float>& ratios, int64_t rows, const float* mn, const float* mx,
                float* lo, float* hi, const int32_t* best_k) {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t k = best_k[r];
    lo[r] = k > 0 ? mn[r] * ratios[k] : mn[r];
    hi[r] = k > 0 ? mx[r] * ratios[k] : mx[r];
  }
}

}  // namespace

void mse_search(const MseSearch& s, const float* x, int64_t rows, int64_t cols, int64_t ld, const float* mn,
                const float* mx, float* lo, float* hi, RangeIsa isa, int32_t* best_k) {
  check_isa(isa);
  if (rows <= 0) return;
  // Ratios as the libtorch observer used them: k / grid in double, rounded to float by the multiply.
  std::vector<float> ratios(static_cast<size_t>(s.candidates) + 1);
  for (int k = 1; k <= s.candidates; ++k) ratios[k] = static_cast<float>(static_cast<double>(k) / s.candidates);
  std::vector<int32_t> kk;
  if (!best_k) {
    kk.resize(static_cast<size_t>(rows));
    best_k = kk.data();
  }
  const bool square = s.p == 2.0;
#ifdef CATQ_RS_X86
  if (isa == RangeIsa::Avx512) {
    if (square) mse_rows_avx512<true>(s, ratios.data(), x, rows, cols, ld, mn, mx, best_k);
    else mse_rows_avx512<false>(s, ratios.data(), x, rows, cols, ld, mn, mx, best_k);
  } else
#endif
  {
#ifdef CATQ_RS_SCALAR_FMA
    static const bool fma = __builtin_cpu_supports("fma");
    if (fma) {
      if (square) mse_rows_ref_fma<true>(s, ratios.data(), x, rows, cols, ld, mn, mx, best_k);
      else mse_rows_ref_fma<false>(s, ratios.data(), x, rows, cols, ld, mn, mx, best_k);
      return finish_mse(s, ratios, rows, mn, mx, lo, hi, best_k);
    }
#endif
    if (square) mse_rows_ref<true>(s, ratios.data(), x, rows, cols, ld, mn, mx, best_k);
    else mse_rows_ref<false>(s, ratios.data(), x, rows, cols, ld, mn, mx, best_k);
  }
  finish_mse(s, ratios, rows, mn, mx, lo, hi, best_k);
}

CATQ_RS_NO_CONTRACT void row_percentile(const float* x, int64_t rows, int64_t cols, int64_t ld, double q, bool abs,
                                        float* out, float* scratch) {
  if (cols <= 0) return;
  const double pos = q * static_cast<double>(cols - 1);
  const int64_t i0 = std::clamp<int64_t>(static_cast<int64_t>(std::floor(pos)), 0, cols - 1);
  const int64_t i1 = std::min<int64_t>(i0 + 1, cols - 1);
  const double f = pos - static_cast<double>(i0);
  const float w0 = static_cast<float>(1.0 - f), w1 = static_cast<float>(f);
  // Percentiles near either end (99.9 % of a group of 32: the 2nd largest) keep the t most extreme values in a
  // small sorted array, one pass; others use nth_element. Both give the exact order statistics.
  constexpr int64_t kSmall = 16;
  const int64_t t_top = cols - i0, t_bot = i0 + 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ld;
    float v0, v1;
    if (t_top <= kSmall || t_bot <= kSmall) {
      const bool top = t_top <= kSmall;
      const int64_t t = top ? t_top : std::min(t_bot, cols);
      float e[kSmall];  // the t largest (descending) or smallest (ascending) so far
      const float inf = std::numeric_limits<float>::infinity();
      std::fill(e, e + t, top ? -inf : inf);
      for (int64_t j = 0; j < cols; ++j) {
        const float v = abs ? std::fabs(xr[j]) : xr[j];
        if (top ? !(v > e[t - 1]) : !(v < e[t - 1])) continue;
        int64_t k = t - 1;
        for (; k > 0 && (top ? v > e[k - 1] : v < e[k - 1]); --k) e[k] = e[k - 1];
        e[k] = v;
      }
      // top: sorted[i0] is the t-th largest, sorted[i1] the one above it; bottom: sorted[i0], sorted[i0 + 1].
      v0 = top ? e[t - 1] : e[i0];
      v1 = i1 == i0 ? v0 : (top ? e[t - 2] : e[i1]);
    } else {
      for (int64_t j = 0; j < cols; ++j) scratch[j] = abs ? std::fabs(xr[j]) : xr[j];
      std::nth_element(scratch, scratch + i0, scratch + cols);
      v0 = scratch[i0];
      v1 = i1 > i0 ? *std::min_element(scratch + i0 + 1, scratch + cols) : v0;
    }
    const float a = v0 * w0, b = v1 * w1;
    out[r] = a + b;
  }
}

void rtn_runs(const RunLayout& L, int64_t u0, int64_t u1, const float* x, const float* scale, const int32_t* zero,
              int64_t qmin, int64_t qmax, int32_t* codes, float* deq, RangeIsa isa) {
  check_isa(isa);
#ifdef CATQ_RS_X86
  if (isa == RangeIsa::Avx512 && L.inner >= 16) return rtn_avx512(L, u0, u1, x, scale, zero, qmin, qmax, codes, deq);
#endif
  const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t o = u / L.channels, ch = u % L.channels, pi = o * L.p_outer + ch * L.p_channel;
    const float s = scale[pi], z = static_cast<float>(zero[pi]);
    const int64_t base = u * L.inner;
    for (int64_t j = base; j < base + L.inner; ++j) {
      float q = std::nearbyint(x[j] / s) + z;
      q = vmax(lo, q);
      q = vmin(hi, q);
      if (codes) codes[j] = std::isnan(q) ? std::numeric_limits<int32_t>::min() : static_cast<int32_t>(q);
      if (deq) deq[j] = (q - z) * s;
    }
  }
}

}  // namespace catq

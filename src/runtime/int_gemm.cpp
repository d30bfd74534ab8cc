#include "runtime/int_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <ATen/Parallel.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CATQ_X86 1
#endif

#include "core/error.h"

// GCC 12's _mm512_reduce_add_epi32 reads an uninitialised temporary inside its own header (a false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace catq {

namespace {
bool has_vnni();
// The 16-row layout and its epilogue operands (int_gemm.h), when the CPU and the weights suit the VNNI kernel.
void build_rows16(IntWeights& iw) {
  const PackedWeights& w = iw.w;
  if (!has_vnni() || (w.bits != 4 && w.bits != 8) || w.cols % 32 != 0 || w.group % 32 != 0) return;
  const int64_t G = w.groups_per_row(), RG = iw.row_groups(), nb = w.cols / 32;
  const int64_t umax = (1 << w.bits) - 1;
  // |A|, |z·X_g|, |z_x·W_g|, |G·z·z_x| ≤ group·umax·255 each: their sum in int32 lanes, or the scalar epilogue (per
  // channel only: one epilogue per row).
  iw.epilogue32 = 4.0 * static_cast<double>(w.group) * static_cast<double>(umax) * 255.0 < 2147483647.0;
  if (!iw.epilogue32 && G != 1) return;
  const int64_t gb_bytes = w.bits == 8 ? 512 : 256;
  iw.rows16.assign(static_cast<size_t>(RG * nb * gb_bytes), 0);
  for (int64_t rg = 0; rg < RG; ++rg)
    for (int i = 0; i < 16; ++i) {
      const int64_t r = rg * 16 + i;
      if (r >= w.rows) break;
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t* blk = iw.rows16.data() + (rg * nb + b) * gb_bytes;
        for (int v = 0; v < 32; ++v) {
          const int c = v / 4, j = v % 4, u = w.code(r, b * 32 + v);
          if (w.bits == 8) blk[64 * c + 4 * i + j] = static_cast<uint8_t>(u);
          else blk[64 * (c % 4) + 4 * i + j] |= static_cast<uint8_t>(c < 4 ? u : u << 4);
        }
      }
    }
  iw.zero16.assign(static_cast<size_t>(RG * G * 16), 0);
  iw.sum16.assign(iw.zero16.size(), 0);
  iw.scale16.assign(iw.zero16.size(), 0.f);
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t g = 0; g < G; ++g) {
      const size_t at = static_cast<size_t>(((r / 16) * G + g) * 16 + r % 16), gi = static_cast<size_t>(r * G + g);
      iw.zero16[at] = iw.zero[gi];
      iw.sum16[at] = iw.code_sum[gi];
      iw.scale16[at] = w.scale[gi];
    }
}
}  // namespace

IntWeights prepare_int_weights(PackedWeights w) {
  w.validate("integer GEMM weights");
  CATQ_CHECK(w.group <= 33000, Data, "integer GEMM weights: group of {} columns may overflow int32 accumulators "
             "(at most 33,000)", w.group);
  IntWeights iw;
  const int64_t G = w.groups_per_row();
  iw.zero.resize(static_cast<size_t>(w.rows * G));
  iw.code_sum.assign(static_cast<size_t>(w.rows * G), 0);
  for (int64_t r = 0; r < w.rows; ++r)
    for (int64_t g = 0; g < G; ++g) {
      const size_t gi = static_cast<size_t>(r * G + g);
      const float z = w.zero[gi];
      CATQ_CHECK(z == std::nearbyint(z), Data, "integer GEMM weights: zero-point {} of row {} group {} is not an "
                 "integer", z, r, g);
      iw.zero[gi] = static_cast<int32_t>(z);
      for (int64_t j = g * w.group; j < (g + 1) * w.group; ++j) iw.code_sum[gi] += w.code(r, j);
    }
  iw.w = std::move(w);
  build_rows16(iw);
  return iw;
}

int64_t act_position(const IntWeights& w, int64_t j) {
  return w.natural_order() ? j : kernel_position(w.w.bits, j, w.w.cols);
}

int64_t kernel_position(int bits, int64_t j, int64_t k) {
  const int64_t block = j / 64, off = j % 64;
  if (bits == 8 || (block + 1) * 64 > k) return j;  // column order, and the tail after the last full block
  if (bits == 4) return block * 64 + (off % 2) * 32 + off / 2;
  return block * 64 + (off % 4) * 16 + off / 4;  // 2-bit
}

namespace {

// Row statistics and codes (column order, int8-shifted). The AVX-512 variant does the same IEEE operations (min/max,
// correctly rounded division, round-half-even, clamp), so its codes are identical.
struct RowRange {
  float lo, hi;
  bool finite;
};

RowRange row_range_scalar(const float* x, int64_t k) {
  RowRange r{x[0], x[0], true};
  for (int64_t j = 0; j < k; ++j) {
    r.lo = std::min(r.lo, x[j]);
    r.hi = std::max(r.hi, x[j]);
    r.finite &= std::isfinite(x[j]);
  }
  return r;
}

void row_codes_scalar(const float* x, int64_t k, float s, float z, float qmin, float qmax, int32_t shift, int8_t* q) {
  for (int64_t j = 0; j < k; ++j)
    q[j] = static_cast<int8_t>(static_cast<int32_t>(std::clamp(std::nearbyint(x[j] / s) + z, qmin, qmax)) - shift);
}

#ifdef CATQ_X86
__attribute__((target("avx512f,avx512bw"))) RowRange row_range_avx512(const float* x, int64_t k) {
  __m512 lo = _mm512_set1_ps(x[0]), hi = lo;
  __mmask16 finite = 0xFFFF;
  int64_t j = 0;
  for (; j + 16 <= k; j += 16) {
    const __m512 v = _mm512_loadu_ps(x + j);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
    finite &= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_EQ_OQ);  // x − x = 0 iff finite
  }
  RowRange r = row_range_scalar(x + j - (j == k ? 1 : 0), k - j + (j == k ? 1 : 0));
  r.lo = std::min(r.lo, _mm512_reduce_min_ps(lo));
  r.hi = std::max(r.hi, _mm512_reduce_max_ps(hi));
  r.finite &= finite == 0xFFFF;
  return r;
}

__attribute__((target("avx512f,avx512bw"))) void row_codes_avx512(const float* x, int64_t k, float s, float z,
                                                                  float qmin, float qmax, int32_t shift, int8_t* q) {
  const __m512 sv = _mm512_set1_ps(s), zv = _mm512_set1_ps(z), lo = _mm512_set1_ps(qmin), hi = _mm512_set1_ps(qmax);
  const __m512i sh = _mm512_set1_epi32(shift);
  int64_t j = 0;
  for (; j + 16 <= k; j += 16) {
    __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(x + j), sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, zv), lo), hi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + j), _mm512_cvtepi32_epi8(_mm512_sub_epi32(_mm512_cvtps_epi32(v), sh)));
  }
  row_codes_scalar(x + j, k - j, s, z, qmin, qmax, shift, q + j);
}
#endif

}  // namespace

void quantize_rows(const float* x, int64_t m, const ActQuant& aq, const IntWeights& w, QuantizedRows& out,
                   KernelIsa isa) {
  const int64_t k = w.w.cols, group = w.w.group, G = w.w.groups_per_row();
  CATQ_CHECK(aq.qmax > aq.qmin && aq.qmax - aq.qmin <= 255 && aq.qmin >= -128 && aq.qmax <= 255, Usage,
             "integer GEMM: activation code range [{}, {}] does not fit 8 bits", aq.qmin, aq.qmax);
  // Codes in [0, 255] move to int8 by −128 (x̂ = s·(q − z) = s·((q − 128) − (z − 128))).
  const int32_t shift = aq.qmax > 127 ? 128 : 0;
  out.m = m;
  out.k = k;
  out.group = group;
  out.a.resize(static_cast<size_t>(m * k));
  out.scale.resize(static_cast<size_t>(m));
  out.zero.resize(static_cast<size_t>(m));
  out.group_sum.assign(static_cast<size_t>(m * G), 0);
  const bool simd = isa == KernelIsa::Avx512 && isa_supported(KernelIsa::Avx512) && __builtin_cpu_supports("avx512bw");
  std::vector<int8_t> nat(static_cast<size_t>(k));  // one row in column order
  const float qmin = static_cast<float>(aq.qmin), qmax = static_cast<float>(aq.qmax);
  for (int64_t i = 0; i < m; ++i) {
    const float* xr = x + i * k;
#ifdef CATQ_X86
    const RowRange range = simd ? row_range_avx512(xr, k) : row_range_scalar(xr, k);
#else
    const RowRange range = row_range_scalar(xr, k);
#endif
    CATQ_CHECK(range.finite, Data, "integer GEMM: activation row {} holds NaN or Inf", i);
    float s = aq.scale, z = static_cast<float>(aq.zero);
    if (aq.dynamic) {
      float lo = range.lo * aq.clip_ratio, hi = range.hi * aq.clip_ratio;
      if (aq.symmetric) {
        const float amax = aq.is_signed ? std::max(std::fabs(lo), std::fabs(hi)) : std::max(hi, 0.f);
        s = amax / qmax;
        z = 0;
      } else {
        lo = std::min(lo, 0.f);
        hi = std::max(hi, 0.f);
        s = (hi - lo) / (qmax - qmin);
      }
      if (!(s > 1e-30f)) s = 1.f;
      if (!aq.symmetric) z = std::clamp(qmin - std::nearbyint(lo / s), qmin, qmax);
    }
    out.scale[static_cast<size_t>(i)] = s;
    out.zero[static_cast<size_t>(i)] = static_cast<int32_t>(z) - shift;
#ifdef CATQ_X86
    if (simd) row_codes_avx512(xr, k, s, z, qmin, qmax, shift, nat.data());
    else row_codes_scalar(xr, k, s, z, qmin, qmax, shift, nat.data());
#else
    row_codes_scalar(xr, k, s, z, qmin, qmax, shift, nat.data());
#endif
    int8_t* ar = out.a.data() + i * k;
    int32_t* gs = out.group_sum.data() + i * G;
    for (int64_t g = 0; g < G; ++g) {
      int32_t sum = 0;
      for (int64_t j = g * group; j < (g + 1) * group; ++j) sum += nat[static_cast<size_t>(j)];
      gs[g] = sum;
    }
    // Kernel order (see the header): whole 64-blocks permuted, the tail copied.
    const int64_t full = k / 64 * 64;
    if (w.w.bits == 8 || w.natural_order()) {
      std::memcpy(ar, nat.data(), static_cast<size_t>(k));
    } else {
      const int per = w.w.bits == 4 ? 2 : 4, bank = 64 / per;
      for (int64_t b = 0; b < full; b += 64)
        for (int p = 0; p < per; ++p)
          for (int t = 0; t < bank; ++t) ar[b + p * bank + t] = nat[static_cast<size_t>(b + t * per + p)];
      std::memcpy(ar + full, nat.data() + full, static_cast<size_t>(k - full));
    }
  }
}

void quantize_rows(const float* x, int64_t m, const ActQuant& aq, const IntWeights& w, QuantizedRows& out) {
  quantize_rows(x, m, aq, w, out, best_isa());
}

namespace {

// A[(r·nt + t)·G + g] = Σ_{j∈g} u[r0+r][j] · a[i0+t][pos(j)] for a tile of nr rows × nt tokens.
void tile_scalar(const IntWeights& W, const QuantizedRows& X, int64_t r0, int nr, int64_t i0, int nt, int32_t* A) {
  const PackedWeights& w = W.w;
  const int64_t G = w.groups_per_row();
  for (int r = 0; r < nr; ++r)
    for (int t = 0; t < nt; ++t) {
      const int8_t* a = X.a.data() + (i0 + t) * X.k;
      for (int64_t g = 0; g < G; ++g) {
        int32_t acc = 0;
        for (int64_t j = g * w.group; j < (g + 1) * w.group; ++j)
          acc += w.code(r0 + r, j) * a[act_position(W, j)];
        A[(r * nt + t) * G + g] = acc;
      }
    }
}

// The float epilogue shared by every ISA (no target attributes: the same instructions, the same rounding):
// y[i][r] = s_x[i] · Σ_g s[r][g] · D_g in group order.
void epilogue(const IntWeights& W, const QuantizedRows& X, int64_t r0, int nr, int64_t i0, int nt, const int32_t* A,
              float* y) {
  const PackedWeights& w = W.w;
  const int64_t G = w.groups_per_row();
  for (int r = 0; r < nr; ++r)
    for (int t = 0; t < nt; ++t) {
      const int64_t row = r0 + r, i = i0 + t;
      const int64_t zx = X.zero[static_cast<size_t>(i)];
      float acc = 0;
      for (int64_t g = 0; g < G; ++g) {
        const size_t gi = static_cast<size_t>(row * G + g);
        const int64_t z = W.zero[gi];
        const int64_t d = static_cast<int64_t>(A[(r * nt + t) * G + g]) - z * X.group_sum[static_cast<size_t>(i * G + g)] -
                          zx * W.code_sum[gi] + w.group * z * zx;
        acc += w.scale[gi] * static_cast<float>(d);
      }
      y[i * w.rows + row] = X.scale[static_cast<size_t>(i)] * acc;
    }
}

#ifdef CATQ_X86
// Columns after the last full 64-block of a per-channel row (column order), added to the group's accumulator.
inline int32_t tail_dot(const PackedWeights& w, int64_t row, const int8_t* a, int64_t j0) {
  int32_t s = 0;
  for (int64_t j = j0; j < w.cols; ++j) s += w.code(row, j) * a[j];
  return s;
}

// 64 codes of a row's 64-block v in kernel order, as unsigned bytes.
template <int bits>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline __m512i expand64(const uint8_t* row, int64_t v) {
  if constexpr (bits == 8) return _mm512_loadu_si512(row + 64 * v);
  if constexpr (bits == 4) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * v));
    const __m256i m = _mm256_set1_epi8(0x0F);
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(b, m)),
                              _mm256_and_si256(_mm256_srli_epi16(b, 4), m), 1);
  }
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * v));
  const __m128i m = _mm_set1_epi8(0x03);
  __m512i z = _mm512_castsi128_si512(_mm_and_si128(b, m));
  z = _mm512_inserti32x4(z, _mm_and_si128(_mm_srli_epi16(b, 2), m), 1);
  z = _mm512_inserti32x4(z, _mm_and_si128(_mm_srli_epi16(b, 4), m), 2);
  return _mm512_inserti32x4(z, _mm_and_si128(_mm_srli_epi16(b, 6), m), 3);
}

// One group of 4 rows × NT tokens (NT = 1 or 4): int32 accumulators in named registers (an array of __m512i in a
// loop made GCC 12 copy every accumulator once per iteration), each weight block expanded once for NT tokens and
// each activation block loaded once for 4 rows.
#define CATQ_DP4(t, av)                                   \
  c##t##0 = _mm512_dpbusd_epi32(c##t##0, w0, av);         \
  c##t##1 = _mm512_dpbusd_epi32(c##t##1, w1, av);         \
  c##t##2 = _mm512_dpbusd_epi32(c##t##2, w2, av);         \
  c##t##3 = _mm512_dpbusd_epi32(c##t##3, w3, av);

template <int bits, int NT>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void group_avx512(const uint8_t* const* row,
                                                                               const int8_t* const* act, int64_t v0,
                                                                               int64_t v1, int32_t (*out)[4]) {
  const __m512i z = _mm512_setzero_si512();
  __m512i c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
  __m512i c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
  for (int64_t v = v0; v < v1; ++v) {
    const __m512i w0 = expand64<bits>(row[0], v), w1 = expand64<bits>(row[1], v);
    const __m512i w2 = expand64<bits>(row[2], v), w3 = expand64<bits>(row[3], v);
    const __m512i a0 = _mm512_loadu_si512(act[0] + 64 * v);
    CATQ_DP4(0, a0)
    if constexpr (NT == 4) {
      const __m512i a1 = _mm512_loadu_si512(act[1] + 64 * v);
      CATQ_DP4(1, a1)
      const __m512i a2 = _mm512_loadu_si512(act[2] + 64 * v);
      CATQ_DP4(2, a2)
      const __m512i a3 = _mm512_loadu_si512(act[3] + 64 * v);
      CATQ_DP4(3, a3)
    }
  }
  // out[t][r]
  out[0][0] = _mm512_reduce_add_epi32(c00); out[0][1] = _mm512_reduce_add_epi32(c01);
  out[0][2] = _mm512_reduce_add_epi32(c02); out[0][3] = _mm512_reduce_add_epi32(c03);
  if constexpr (NT == 4) {
    out[1][0] = _mm512_reduce_add_epi32(c10); out[1][1] = _mm512_reduce_add_epi32(c11);
    out[1][2] = _mm512_reduce_add_epi32(c12); out[1][3] = _mm512_reduce_add_epi32(c13);
    out[2][0] = _mm512_reduce_add_epi32(c20); out[2][1] = _mm512_reduce_add_epi32(c21);
    out[2][2] = _mm512_reduce_add_epi32(c22); out[2][3] = _mm512_reduce_add_epi32(c23);
    out[3][0] = _mm512_reduce_add_epi32(c30); out[3][1] = _mm512_reduce_add_epi32(c31);
    out[3][2] = _mm512_reduce_add_epi32(c32); out[3][3] = _mm512_reduce_add_epi32(c33);
  }
}
#undef CATQ_DP4

template <int bits, int NT>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void tile_avx512(const IntWeights& W, const QuantizedRows& X,
                                                                        int64_t r0, int nr, int64_t i0, int nt,
                                                                        int32_t* A) {
  const PackedWeights& w = W.w;
  const int64_t G = w.groups_per_row();
  const uint8_t* row[4];
  for (int r = 0; r < 4; ++r) row[r] = w.q.data() + (r0 + std::min(r, nr - 1)) * w.row_bytes();
  const int8_t* act[4];
  for (int t = 0; t < 4; ++t) act[t] = X.a.data() + (i0 + std::min(t, nt - 1)) * X.k;
  int32_t s[4][4];
  for (int64_t g = 0; g < G; ++g) {
    const int64_t v0 = g * w.group / 64, v1 = std::min((g + 1) * w.group, w.cols) / 64;  // full blocks of the group
    group_avx512<bits, NT>(row, act, v0, v1, s);
    for (int r = 0; r < nr; ++r)
      for (int t = 0; t < nt; ++t) {
        int32_t a = s[t][r];
        if (v1 * 64 < (g + 1) * w.group) a += tail_dot(w, r0 + r, act[t], v1 * 64);  // per-channel ragged tail
        A[(r * nt + t) * G + g] = a;
      }
  }
}

// AVX2: 32 codes of kernel order at a time, widened to int16 (vpmaddwd is exact for 8-bit × 8-bit products).
template <int bits>
__attribute__((target("avx2,fma"))) inline void expand64_avx2(const uint8_t* row, int64_t v, __m256i& h0, __m256i& h1) {
  if constexpr (bits == 8) {
    h0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 64 * v));
    h1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 64 * v + 32));
  } else if constexpr (bits == 4) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 32 * v));
    const __m256i m = _mm256_set1_epi8(0x0F);
    h0 = _mm256_and_si256(b, m);
    h1 = _mm256_and_si256(_mm256_srli_epi16(b, 4), m);
  } else {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 16 * v));
    const __m128i m = _mm_set1_epi8(0x03);
    h0 = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 2), m), _mm_and_si128(b, m));
    h1 = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 6), m), _mm_and_si128(_mm_srli_epi16(b, 4), m));
  }
}

__attribute__((target("avx2,fma"))) inline __m256i dot32_avx2(__m256i acc, __m256i u, const int8_t* a) {
  const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
  acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(u)),
                                                _mm256_cvtepi8_epi16(_mm256_castsi256_si128(av))));
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(u, 1)),
                                                 _mm256_cvtepi8_epi16(_mm256_extracti128_si256(av, 1))));
}

__attribute__((target("avx2,fma"))) inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// 2 rows × 2 tokens (16 ymm registers are few).
template <int bits>
__attribute__((target("avx2,fma"))) void tile_avx2(const IntWeights& W, const QuantizedRows& X, int64_t r0, int nr,
                                                   int64_t i0, int nt, int32_t* A) {
  const PackedWeights& w = W.w;
  const int64_t G = w.groups_per_row();
  for (int rb = 0; rb < nr; rb += 2)
    for (int tb = 0; tb < nt; tb += 2) {
      const int mr = std::min(2, nr - rb), mt = std::min(2, nt - tb);
      const uint8_t* row[2] = {w.q.data() + (r0 + rb) * w.row_bytes(), w.q.data() + (r0 + rb + mr - 1) * w.row_bytes()};
      const int8_t* act[2] = {X.a.data() + (i0 + tb) * X.k, X.a.data() + (i0 + tb + mt - 1) * X.k};
      for (int64_t g = 0; g < G; ++g) {
        __m256i acc[2][2] = {{_mm256_setzero_si256(), _mm256_setzero_si256()},
                             {_mm256_setzero_si256(), _mm256_setzero_si256()}};
        const int64_t v0 = g * w.group / 64, v1 = std::min((g + 1) * w.group, w.cols) / 64;
        for (int64_t v = v0; v < v1; ++v) {
          __m256i h[2][2];
          for (int r = 0; r < 2; ++r) expand64_avx2<bits>(row[r], v, h[r][0], h[r][1]);
          for (int t = 0; t < 2; ++t)
            for (int r = 0; r < 2; ++r) {
              acc[r][t] = dot32_avx2(acc[r][t], h[r][0], act[t] + 64 * v);
              acc[r][t] = dot32_avx2(acc[r][t], h[r][1], act[t] + 64 * v + 32);
            }
        }
        for (int r = 0; r < mr; ++r)
          for (int t = 0; t < mt; ++t) {
            int32_t s = hsum_epi32(acc[r][t]);
            if (v1 * 64 < (g + 1) * w.group) s += tail_dot(w, r0 + rb + r, act[t], v1 * 64);
            A[((rb + r) * nt + tb + t) * G + g] = s;
          }
      }
    }
}

#endif

bool has_vnni() {
#ifdef CATQ_X86
  static const bool v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vnni");
  return v;
#else
  return false;
#endif
}

#ifdef CATQ_X86
// Four activation codes broadcast to every lane (a vpdpbusd broadcast operand).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline __m512i bcast(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The 16-row kernel: rows [16·rg, 16·rg + 16) × tokens [i0, i0 + NT), y[i·ldy + r] for the rows that exist.
// fp-contract off: the epilogue's s·D then + must not become one FMA (the scalar epilogue rounds the product).
template <int bits, int NT>
__attribute__((target("avx512f,avx512bw,avx512vnni"), optimize("fp-contract=off"))) void rows16_tile(const IntWeights& W, const QuantizedRows& X,
                                                                        int64_t rg, int64_t i0, float* y, int64_t ldy) {
  const PackedWeights& w = W.w;
  const int64_t G = w.groups_per_row(), nb = w.cols / 32, gblocks = w.group / 32;
  constexpr int64_t kBlockBytes = bits == 8 ? 512 : 256;
  const uint8_t* base = W.rows16.data() + rg * nb * kBlockBytes;
  const int8_t* act[NT];
  for (int t = 0; t < NT; ++t) act[t] = X.a.data() + (i0 + t) * X.k;
  const __m512i nib = _mm512_set1_epi8(0x0F);
  __m512 accf[NT];
  for (int t = 0; t < NT; ++t) accf[t] = _mm512_setzero_ps();
  int32_t A[NT][16];
  for (int64_t g = 0; g < G; ++g) {
    __m512i c[NT];
    for (int t = 0; t < NT; ++t) c[t] = _mm512_setzero_si512();
    for (int64_t b = g * gblocks; b < (g + 1) * gblocks; ++b) {
      const uint8_t* p = base + b * kBlockBytes;
      if constexpr (bits == 8) {
        for (int k = 0; k < 8; ++k) {
          const __m512i wv = _mm512_loadu_si512(p + 64 * k);
          for (int t = 0; t < NT; ++t) c[t] = _mm512_dpbusd_epi32(c[t], wv, bcast(act[t] + 32 * b + 4 * k));
        }
      } else {
        for (int k = 0; k < 4; ++k) {
          const __m512i raw = _mm512_loadu_si512(p + 64 * k);
          const __m512i lo = _mm512_and_si512(raw, nib), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), nib);
          for (int t = 0; t < NT; ++t) {
            c[t] = _mm512_dpbusd_epi32(c[t], lo, bcast(act[t] + 32 * b + 4 * k));
            c[t] = _mm512_dpbusd_epi32(c[t], hi, bcast(act[t] + 32 * b + 4 * (k + 4)));
          }
        }
      }
    }
    if (!W.epilogue32) {  // per channel, one group: the scalar epilogue below
      for (int t = 0; t < NT; ++t) _mm512_storeu_si512(A[t], c[t]);
      continue;
    }
    // D = A − z·X_g − z_x·W_g + group·z·z_x, then Σ_g s·D (mul, then add: the scalar epilogue's rounding).
    const size_t at = static_cast<size_t>((rg * G + g) * 16);
    const __m512i z = _mm512_loadu_si512(W.zero16.data() + at), wsum = _mm512_loadu_si512(W.sum16.data() + at);
    const __m512 sc = _mm512_loadu_ps(W.scale16.data() + at);
    const __m512i zg = _mm512_mullo_epi32(z, _mm512_set1_epi32(static_cast<int32_t>(w.group)));
    for (int t = 0; t < NT; ++t) {
      const int64_t i = i0 + t;
      const __m512i xg = _mm512_set1_epi32(X.group_sum[static_cast<size_t>(i * G + g)]);
      const __m512i zx = _mm512_set1_epi32(X.zero[static_cast<size_t>(i)]);
      __m512i d = _mm512_sub_epi32(c[t], _mm512_mullo_epi32(z, xg));
      d = _mm512_sub_epi32(d, _mm512_mullo_epi32(zx, wsum));
      d = _mm512_add_epi32(d, _mm512_mullo_epi32(zg, zx));
      accf[t] = _mm512_add_ps(accf[t], _mm512_mul_ps(sc, _mm512_cvtepi32_ps(d)));
    }
  }
  const int64_t r0 = rg * 16, nr = std::min<int64_t>(16, w.rows - r0);
  const __mmask16 m = static_cast<__mmask16>((1u << nr) - 1);
  for (int t = 0; t < NT; ++t) {
    const int64_t i = i0 + t;
    if (W.epilogue32) {
      _mm512_mask_storeu_ps(y + i * ldy + r0, m, _mm512_mul_ps(_mm512_set1_ps(X.scale[static_cast<size_t>(i)]), accf[t]));
    } else {
      const int64_t zx = X.zero[static_cast<size_t>(i)];
      for (int64_t r = 0; r < nr; ++r) {
        const size_t gi = static_cast<size_t>(r0 + r);  // G == 1
        const int64_t z = W.zero[gi];
        const int64_t d = static_cast<int64_t>(A[t][r]) - z * X.group_sum[static_cast<size_t>(i)] - zx * W.code_sum[gi] +
                          w.group * z * zx;
        float acc = 0;
        acc += w.scale[gi] * static_cast<float>(d);
        y[i * ldy + r0 + r] = X.scale[static_cast<size_t>(i)] * acc;
      }
    }
  }
}

using Rows16Fn = void (*)(const IntWeights&, const QuantizedRows&, int64_t, int64_t, float*, int64_t);
template <int bits>
Rows16Fn rows16_fn(int nt) {
  static constexpr Rows16Fn f[8] = {rows16_tile<bits, 1>, rows16_tile<bits, 2>, rows16_tile<bits, 3>, rows16_tile<bits, 4>,
                                    rows16_tile<bits, 5>, rows16_tile<bits, 6>, rows16_tile<bits, 7>, rows16_tile<bits, 8>};
  return f[nt - 1];
}

// Row groups [g0, g1) for every token: chunks of row groups whose weights stay in L2 are swept by every tile of 8
// tokens (whose activations stay in L1).
void rows16_gemm(const IntWeights& W, const QuantizedRows& X, float* y, int64_t g0, int64_t g1) {
  const int64_t gb_bytes = W.w.bits == 8 ? 512 : 256, per_group = W.w.cols / 32 * gb_bytes;
  const int64_t chunk = std::max<int64_t>(1, (256 << 10) / per_group);
  for (int64_t c0 = g0; c0 < g1; c0 += chunk)
    for (int64_t i0 = 0; i0 < X.m; i0 += 8) {
      const int nt = static_cast<int>(std::min<int64_t>(8, X.m - i0));
      const Rows16Fn f = W.w.bits == 8 ? rows16_fn<8>(nt) : rows16_fn<4>(nt);
      for (int64_t rg = c0; rg < std::min(g1, c0 + chunk); ++rg) f(W, X, rg, i0, y, W.w.rows);
    }
}
#endif

using TileFn = void (*)(const IntWeights&, const QuantizedRows&, int64_t, int, int64_t, int, int32_t*);

TileFn pick_tile(const IntWeights& W, KernelIsa isa, bool four_tokens) {
  if (W.natural_order()) return tile_scalar;  // the 64-column tiles read kernel order (only the 16-row kernel reads this)
#ifdef CATQ_X86
  const PackedWeights& w = W.w;
  if (w.group % 64 == 0 || w.group == w.cols) {
    if (isa == KernelIsa::Avx512 && has_vnni()) {
      if (four_tokens) return w.bits == 8 ? tile_avx512<8, 4> : w.bits == 4 ? tile_avx512<4, 4> : tile_avx512<2, 4>;
      return w.bits == 8 ? tile_avx512<8, 1> : w.bits == 4 ? tile_avx512<4, 1> : tile_avx512<2, 1>;
    }
    if (isa == KernelIsa::Avx512 || isa == KernelIsa::Avx2)
      return w.bits == 8 ? tile_avx2<8> : w.bits == 4 ? tile_avx2<4> : tile_avx2<2>;
  }
#endif
  (void)W, (void)isa, (void)four_tokens;
  return tile_scalar;
}

}  // namespace

namespace {

void check_gemm(const IntWeights& W, const QuantizedRows& X, KernelIsa isa, const char* what) {
  CATQ_CHECK(isa_supported(isa), Usage, "{}: this CPU has no {}", what, to_string(isa));
  CATQ_CHECK(X.k == W.w.cols && X.group == W.w.group, Usage, "{}: activations of {} columns (group {}) for weights of "
             "{} columns (group {})", what, X.k, X.group, W.w.cols, W.w.group);
}

bool use_rows16(const IntWeights& W, KernelIsa isa) { return W.natural_order() && isa == KernelIsa::Avx512 && has_vnni(); }

// Rows [r0, r1) with the tile kernels: row blocks of 64 rows, tiles of 4 rows × 4 tokens (weights of a block stay in L2
// while all token tiles pass over them).
void tiles_gemm(const IntWeights& W, const QuantizedRows& X, float* y, int64_t r0, int64_t r1, KernelIsa isa,
                std::vector<int32_t>& A) {
  const TileFn tile4 = pick_tile(W, isa, true), tile1 = pick_tile(W, isa, false);
  A.resize(static_cast<size_t>(16 * W.w.groups_per_row()));
  for (int64_t i0 = 0; i0 < X.m; i0 += 4) {
    const int nt = static_cast<int>(std::min<int64_t>(4, X.m - i0));
    for (int64_t r = r0; r < r1; r += 4) {
      const int nr = static_cast<int>(std::min<int64_t>(4, r1 - r));
      if (nt == 4) {
        tile4(W, X, r, nr, i0, nt, A.data());
        epilogue(W, X, r, nr, i0, nt, A.data(), y);
      } else {
        for (int t = 0; t < nt; ++t) {
          tile1(W, X, r, nr, i0 + t, 1, A.data());
          epilogue(W, X, r, nr, i0 + t, 1, A.data(), y);
        }
      }
    }
  }
}

}  // namespace

void gemm_int_rows(const IntWeights& W, const QuantizedRows& X, float* y, int64_t r0, int64_t r1, KernelIsa isa) {
  check_gemm(W, X, isa, "gemm_int_rows");
  r1 = std::min(r1, W.w.rows);
  if (r0 >= r1) return;
#ifdef CATQ_X86
  if (use_rows16(W, isa)) {
    CATQ_CHECK(r0 % 16 == 0, Usage, "gemm_int_rows: row {} does not start a group of 16", r0);
    return rows16_gemm(W, X, y, r0 / 16, (r1 + 15) / 16);
  }
#endif
  std::vector<int32_t> A;
  constexpr int64_t kRowBlock = 64;
  for (int64_t b = r0; b < r1; b += kRowBlock) tiles_gemm(W, X, y, b, std::min(r1, b + kRowBlock), isa, A);
}

void gemm_int(const IntWeights& W, const QuantizedRows& X, float* y, KernelIsa isa) {
  check_gemm(W, X, isa, "gemm_int");
  const PackedWeights& w = W.w;
#ifdef CATQ_X86
  if (use_rows16(W, isa)) {
    at::parallel_for(0, W.row_groups(), 1, [&](int64_t g0, int64_t g1) { rows16_gemm(W, X, y, g0, g1); });
    return;
  }
#endif
  constexpr int64_t kRowBlock = 64;
  const int64_t n_blocks = (w.rows + kRowBlock - 1) / kRowBlock;
  at::parallel_for(0, n_blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<int32_t> A;
    for (int64_t b = b0; b < b1; ++b)
      tiles_gemm(W, X, y, b * kRowBlock, std::min(w.rows, (b + 1) * kRowBlock), isa, A);
  });
}

void gemm_qact(const IntWeights& w, const float* x, int64_t m, const ActQuant& aq, float* y, KernelIsa isa) {
  thread_local QuantizedRows rows;  // reused across calls: no allocation per token in decoding
  quantize_rows(x, m, aq, w, rows, isa);
  gemm_int(w, rows, y, isa);
}

void gemm_qact(const IntWeights& w, const float* x, int64_t m, const ActQuant& aq, float* y) {
  gemm_qact(w, x, m, aq, y, best_isa());
}

}  // namespace catq

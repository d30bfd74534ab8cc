#include "runtime/block_matvec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/simd.h"

#include "core/error.h"
#include "io/gguf.h"
#include "quant/ggml_blocks.h"

namespace catq {

namespace {

uint16_t half_bits(float v) { return c10::Half(v).x; }
constexpr int64_t G = BlockMatrix::kGroup;

float offset_of(const BlockMatrix& w, float dw, size_t i) {
  switch (w.kernel) {
    case BlockKernel::Q4_0: return -8.0f * dw;
    case BlockKernel::Q8_0: return -128.0f * dw;
    case BlockKernel::Q4_1: return half_value(w.m[i]);
    case BlockKernel::Q4_K: case BlockKernel::Q6_K: case BlockKernel::F32: break;
  }
  return 0.0f;
}

// Byte of the codes array holding row r's value j, and (4-bit) whether it is the high nibble.
inline size_t code_byte(const BlockMatrix& w, int64_t r, int64_t j, bool* high) {
  const int64_t g = r / G, i = r % G, b = j / 32, v = j % 32, c = v / 4, k = v % 4;
  const size_t gb = static_cast<size_t>((g * w.blocks() + b) * w.group_block_bytes());
  if (w.kernel == BlockKernel::Q8_0) return gb + static_cast<size_t>(64 * c + 4 * i + k);
  *high = c >= 4;
  return gb + static_cast<size_t>(64 * (c % 4) + 4 * i + k);
}

// ---- scalar reference ----------------------------------------------------------------------------------------

void matmul_scalar(const BlockMatrix& w, const float* x, const ActQ8& xq, int64_t T, float* y, int64_t ldy, int64_t g0,
                   int64_t g1) {
  const int64_t nb = w.blocks();
  for (int64_t r = g0 * G; r < std::min(g1 * G, w.rows); ++r) {
    if (!w.quantized()) {
      const float* wr = w.f32.data() + r * w.cols;
      for (int64_t t = 0; t < T; ++t) {
        const float* xt = x + t * w.cols;
        float s = 0.0f;
        for (int64_t j = 0; j < w.cols; ++j) s += wr[j] * xt[j];
        y[t * ldy + r] = s;
      }
      continue;
    }
    for (int64_t t = 0; t < T; ++t) {
      const int8_t* a = xq.q.data() + t * w.cols;
      const float* ad = xq.d.data() + t * nb;
      const float* as = xq.dsum.data() + t * nb;
      float s = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        if (w.kernel == BlockKernel::Q6_K) {
          const float d = half_value(w.d[static_cast<size_t>(((r / G) * (nb / 8) + b / 8) * G + r % G)]);
          for (int h = 0; h < 2; ++h) {
            int32_t dot = 0;
            for (int64_t j = 32 * b + 16 * h; j < 32 * b + 16 * h + 16; ++j) dot += w.code(r, j) * a[j];
            const float dw = d * static_cast<float>(static_cast<int8_t>(w.sc[static_cast<size_t>(((r / G) * nb + b) * 2 * G + h * G + r % G)]));
            s += dw * ad[b] * static_cast<float>(dot) - 32.0f * dw * xq.dsum16[static_cast<size_t>((t * nb + b) * 2 + h)];
          }
          continue;
        }
        int32_t dot = 0;
        for (int64_t j = 32 * b; j < 32 * b + 32; ++j) dot += w.code(r, j) * a[j];
        const size_t i = static_cast<size_t>(((r / G) * nb + b) * G + r % G);
        if (w.kernel == BlockKernel::Q4_K) {
          const size_t si = static_cast<size_t>(((r / G) * (nb / 8) + b / 8) * G + r % G);
          const float dw = half_value(w.d[si]) * static_cast<float>(w.sc[i]);
          const float off = -half_value(w.m[si]) * static_cast<float>(w.mn[i]);
          s += dw * ad[b] * static_cast<float>(dot) + off * as[b];
          continue;
        }
        const float dw = half_value(w.d[i]);
        s += dw * ad[b] * static_cast<float>(dot) + offset_of(w, dw, i) * as[b];
      }
      y[t * ldy + r] = s;
    }
  }
}

#ifdef CATQ_X86

__attribute__((target("avx512f"))) inline float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

__attribute__((target("avx512f,fma"))) void matmul_f32_avx512(const BlockMatrix& w, const float* x, int64_t T,
                                                                float* y, int64_t ldy, int64_t r0, int64_t r1) {
  const int64_t n = w.cols, n16 = n / 16 * 16;
  for (int64_t r = r0; r < r1; ++r) {
    const float* wr = w.f32.data() + r * n;
    for (int64_t t = 0; t < T; ++t) {
      const float* xt = x + t * n;
      __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
      int64_t j = 0;
      for (; j + 32 <= n16; j += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(wr + j), _mm512_loadu_ps(xt + j), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(wr + j + 16), _mm512_loadu_ps(xt + j + 16), acc1);
      }
      for (; j < n16; j += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(wr + j), _mm512_loadu_ps(xt + j), acc0);
      float s = hsum512(_mm512_add_ps(acc0, acc1));
      for (; j < n; ++j) s += wr[j] * xt[j];
      y[t * ldy + r] = s;
    }
  }
}

// 4 Q4_0 group-blocks. Measured flat from 512 B to 8 KB, and an extra L2 prefetch 8 KB ahead adds nothing (2 CPUs).
constexpr int64_t kPrefetchBytes = 1024;

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// One row group × NT tokens: per block, 8 vpdpbusd per token (4 codes of 16 rows × 4 broadcast activation codes)
// leave the 16 rows' block sums in the 16 lanes, then one multiply-add applies the 16 scales.
// RG row groups (1 or 2) × NT tokens: per block, 8 vpdpbusd per (group, token) — 4 codes of 16 rows × 4 broadcast
// activation codes — leave the 16 rows' block sums in the 16 lanes, then one multiply-add applies the 16 scales. Two
// row groups at once share every activation broadcast (decode: one token). The arithmetic of each group is the same
// whatever RG, so results do not depend on how groups are paired.
template <BlockKernel K, int NT, int RG>
__attribute__((target("avx512f,avx512bw,avx512vnni,fma,f16c"))) void group_tokens_avx512(
    const BlockMatrix& w, int64_t g0, const ActQ8& xq, int64_t t0, float* y, int64_t ldy) {
  const int64_t nb = w.blocks(), gbb = w.group_block_bytes();
  // Q4_K / Q6_K: d (and m) per group-super-block (nb / 8 per group); sc / mn per group-block.
  const bool super = K == BlockKernel::Q4_K || K == BlockKernel::Q6_K;
  const int64_t per_group = super ? nb / 8 * G : nb * G;
  const uint8_t* codes[RG];
  const uint16_t *dg[RG], *mg[RG];
  const uint8_t *scg[RG], *mng[RG];
  for (int q = 0; q < RG; ++q) {
    const int64_t g = g0 + q;
    codes[q] = w.codes.data() + g * nb * gbb;
    dg[q] = w.d.data() + g * per_group;
    mg[q] = K == BlockKernel::Q4_1 || K == BlockKernel::Q4_K ? w.m.data() + g * per_group : nullptr;
    scg[q] = K == BlockKernel::Q4_K ? w.sc.data() + g * nb * G : K == BlockKernel::Q6_K ? w.sc.data() + g * nb * 2 * G : nullptr;
    mng[q] = K == BlockKernel::Q4_K ? w.mn.data() + g * nb * G : nullptr;
  }
  const int8_t* a[NT];
  const float *ad[NT], *as[NT], *as16[NT];
  for (int t = 0; t < NT; ++t) {
    a[t] = xq.q.data() + (t0 + t) * w.cols;
    ad[t] = xq.d.data() + (t0 + t) * nb;
    as[t] = xq.dsum.data() + (t0 + t) * nb;
    as16[t] = xq.dsum16.data() + (t0 + t) * nb * 2;
  }
  __m512 acc[RG][NT];
  for (int q = 0; q < RG; ++q)
    for (int t = 0; t < NT; ++t) acc[q][t] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
  // Fewer than 4 (group, token) chains: two accumulation chains each (values 0..15 / 16..31), so that the vpdpbusd
  // latency, not its throughput, does not bound a block; with 4 or more, one chain saves the add (the integer sum is
  // the same). Q6_K always keeps the halves apart: each has its own scale.
  constexpr bool kTwoChains = NT * RG < 4 || K == BlockKernel::Q6_K;
  for (int64_t b = 0; b < nb; ++b) {
    __m512i dot[RG][NT], dot2[RG][NT];
    for (int q = 0; q < RG; ++q) {
      // Every cache line of the group-block kPrefetchBytes ahead (the weights stream from DRAM once per token).
      const uint8_t* cb = codes[q] + b * gbb;
      for (int64_t o = 0; o < gbb; o += 64) _mm_prefetch(reinterpret_cast<const char*>(cb + kPrefetchBytes + o), _MM_HINT_T0);
      for (int t = 0; t < NT; ++t) dot[q][t] = dot2[q][t] = _mm512_setzero_si512();
    }
    for (int c = 0; c < 4; ++c) {
      __m512i lo[RG], hi[RG];  // chunk c (values 4c..4c+3) and chunk c + 4 (values 16+4c..) of each group
      for (int q = 0; q < RG; ++q) {
        const uint8_t* cb = codes[q] + b * gbb;
        if constexpr (K == BlockKernel::Q8_0) {
          lo[q] = _mm512_loadu_si512(cb + 64 * c);
          hi[q] = _mm512_loadu_si512(cb + 64 * c + 256);
        } else if constexpr (K == BlockKernel::Q6_K) {
          // Low nibbles as Q4_0's; each chunk's top 2 bits moved from bits 2c..2c+1 of its plane to bits 4..5.
          const __m512i v = _mm512_loadu_si512(cb + 64 * c);
          const __m512i h0 = _mm512_loadu_si512(cb + 256), h1 = _mm512_loadu_si512(cb + 320);
          const __m512i s0 = c < 2 ? _mm512_slli_epi16(h0, 4 - 2 * c) : c == 2 ? h0 : _mm512_srli_epi16(h0, 2);
          const __m512i s1 = c < 2 ? _mm512_slli_epi16(h1, 4 - 2 * c) : c == 2 ? h1 : _mm512_srli_epi16(h1, 2);
          // a | (b & 0x30): ternary-logic table 0xF8 (a = 0xF0, b = 0xCC, c = 0xAA).
          lo[q] = _mm512_ternarylogic_epi32(_mm512_and_si512(v, m4), s0, m30, 0xF8);
          hi[q] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), s1, m30, 0xF8);
        } else {
          const __m512i v = _mm512_loadu_si512(cb + 64 * c);
          lo[q] = _mm512_and_si512(v, m4);
          hi[q] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
      }
      for (int t = 0; t < NT; ++t) {
        const __m512i a0 = _mm512_set1_epi32(load_i32(a[t] + 32 * b + 4 * c));
        const __m512i a1 = _mm512_set1_epi32(load_i32(a[t] + 32 * b + 16 + 4 * c));
        for (int q = 0; q < RG; ++q) {
          dot[q][t] = _mm512_dpbusd_epi32(dot[q][t], lo[q], a0);
          if constexpr (kTwoChains) dot2[q][t] = _mm512_dpbusd_epi32(dot2[q][t], hi[q], a1);
          else dot[q][t] = _mm512_dpbusd_epi32(dot[q][t], hi[q], a1);
        }
      }
    }
    for (int q = 0; q < RG; ++q) {
      if constexpr (K == BlockKernel::Q6_K) {
        // Two sub-blocks of 16 per block: d·sc of each, and the −32 offset against each half's activation sum.
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(dg[q] + (b / 8) * G)));
        const int8_t* sb = reinterpret_cast<const int8_t*>(scg[q]) + b * 2 * G;
        const __m512 d0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sb)))));
        const __m512 d1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sb + G)))));
        const __m512 m32 = _mm512_set1_ps(-32.0f);
        for (int t = 0; t < NT; ++t) {
          const __m512 da = _mm512_set1_ps(ad[t][b]);
          acc[q][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[q][t]), _mm512_mul_ps(d0, da), acc[q][t]);
          acc[q][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot2[q][t]), _mm512_mul_ps(d1, da), acc[q][t]);
          acc[q][t] = _mm512_fmadd_ps(_mm512_mul_ps(d0, m32), _mm512_set1_ps(as16[t][2 * b]), acc[q][t]);
          acc[q][t] = _mm512_fmadd_ps(_mm512_mul_ps(d1, m32), _mm512_set1_ps(as16[t][2 * b + 1]), acc[q][t]);
        }
        continue;
      }
      __m512 dw, off;
      if constexpr (K == BlockKernel::Q4_K) {
        // d·sc and −dmin·m of the 16 rows: the super-block's fp16 d / dmin times the block's 6-bit scale / min.
        const int64_t si = (b / 8) * G;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(dg[q] + si)));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mg[q] + si)));
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scg[q] + b * G))));
        const __m512 mn = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(mng[q] + b * G))));
        dw = _mm512_mul_ps(d, sc);
        off = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(dmin, mn));
      } else {
        dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(dg[q] + b * G)));
        if constexpr (K == BlockKernel::Q4_1) off = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mg[q] + b * G)));
        else off = _mm512_mul_ps(dw, _mm512_set1_ps(K == BlockKernel::Q8_0 ? -128.0f : -8.0f));
      }
      for (int t = 0; t < NT; ++t) {
        const __m512i sum = kTwoChains ? _mm512_add_epi32(dot[q][t], dot2[q][t]) : dot[q][t];
        acc[q][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_set1_ps(ad[t][b])), acc[q][t]);
        acc[q][t] = _mm512_fmadd_ps(off, _mm512_set1_ps(as[t][b]), acc[q][t]);
      }
    }
  }
  for (int q = 0; q < RG; ++q) {
    const int64_t r0 = (g0 + q) * G, n = std::min<int64_t>(G, w.rows - r0);
    const __mmask16 keep = static_cast<__mmask16>((1u << n) - 1);
    for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * ldy + r0, keep, acc[q][t]);
  }
}

// Row groups in chunks whose codes stay in L2 (~256 KB), each chunk swept by every token tile: the activations are
// read once per chunk rather than once per row group. Every (group, token tile) product is the same arithmetic
// whatever the chunking and pairing, so results do not depend on them (nor on how groups are split across threads).
template <BlockKernel K>
void matmul_q_avx512(const BlockMatrix& w, const ActQ8& xq, int64_t T, float* y, int64_t ldy, int64_t g0, int64_t g1) {
  const int64_t chunk = std::max<int64_t>(1, (256 << 10) / std::max<int64_t>(1, w.blocks() * w.group_block_bytes()));
  for (int64_t c0 = g0; c0 < g1; c0 += chunk) {
    const int64_t c1 = std::min(g1, c0 + chunk);
    int64_t t = 0;
    for (; t + 8 <= T; t += 8)
      for (int64_t g = c0; g < c1; ++g) group_tokens_avx512<K, 8, 1>(w, g, xq, t, y, ldy);
    for (int64_t g = c0; g < c1; ++g) {
      int64_t u = t;
      if (u + 4 <= T) group_tokens_avx512<K, 4, 1>(w, g, xq, u, y, ldy), u += 4;
      if (u + 2 <= T) group_tokens_avx512<K, 2, 1>(w, g, xq, u, y, ldy), u += 2;
      if (u < T) {
        if (g + 1 < c1 && t == u) {  // only single tokens left for this and the next group: pair them
          group_tokens_avx512<K, 1, 2>(w, g, xq, u, y, ldy);
          ++g;
        } else {
          group_tokens_avx512<K, 1, 1>(w, g, xq, u, y, ldy);
        }
      }
    }
  }
}

bool vnni_f16c() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("f16c") &&
                         __builtin_cpu_supports("fma");
  return ok;
}
#endif  // CATQ_X86

}  // namespace

int BlockMatrix::code(int64_t r, int64_t j) const {
  bool high = false;
  const size_t at = code_byte(*this, r, j, &high);
  const uint8_t byte = codes[at];
  if (kernel == BlockKernel::Q8_0) return byte;
  const int low = high ? byte >> 4 : byte & 0xF;
  if (kernel != BlockKernel::Q6_K) return low;
  // Q6_K's top 2 bits: plane h = chunk / 4 at byte 256 + 64h + (4·lane + value % 4), bits 2·(chunk % 4).
  const int64_t c = j % 32 / 4;
  const uint8_t top = codes[at - static_cast<size_t>(64 * (c % 4)) + static_cast<size_t>(256 + 64 * (c / 4))];
  return low | (((top >> (2 * (c % 4))) & 3) << 4);
}

const char* to_string(BlockKernel k) {
  switch (k) {
    case BlockKernel::F32: return "f32";
    case BlockKernel::Q4_0: return "q4_0";
    case BlockKernel::Q4_1: return "q4_1";
    case BlockKernel::Q8_0: return "q8_0";
    case BlockKernel::Q4_K: return "q4_k";
    case BlockKernel::Q6_K: return "q6_k";
  }
  return "?";
}

namespace {

void quantize_act_q8_scalar(const float* xt, int64_t nb, int8_t* q, float* d_out, float* dsum_out, float* dsum16) {
  for (int64_t b = 0; b < nb; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xt[32 * b + j]));
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;  // llama.cpp's quantize_row_q8_0
    int32_t sum[2] = {0, 0};
    for (int j = 0; j < 32; ++j) {
      const int v = static_cast<int>(std::nearbyint(xt[32 * b + j] * id));
      q[32 * b + j] = static_cast<int8_t>(v);
      sum[j / 16] += v;
    }
    const float dh = half_value(half_bits(d));
    d_out[b] = dh;
    dsum_out[b] = dh * static_cast<float>(sum[0] + sum[1]);
    dsum16[2 * b] = dh * static_cast<float>(sum[0]);
    dsum16[2 * b + 1] = dh * static_cast<float>(sum[1]);
  }
}

#ifdef CATQ_X86
__attribute__((target("avx512f,avx512bw,f16c"))) void quantize_act_q8_avx512(const float* xt, int64_t nb, int8_t* q,
                                                                             float* d_out, float* dsum_out, float* dsum16) {
  for (int64_t b = 0; b < nb; ++b) {
    const __m512 x0 = _mm512_loadu_ps(xt + 32 * b), x1 = _mm512_loadu_ps(xt + 32 * b + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
    const __m512 iv = _mm512_set1_ps(id);
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, iv)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, iv));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 * b + 16), _mm512_cvtsepi32_epi8(q1));
    const int32_t s0 = _mm512_reduce_add_epi32(q0), s1 = _mm512_reduce_add_epi32(q1);
    const float dh = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
    d_out[b] = dh;
    dsum_out[b] = dh * static_cast<float>(s0 + s1);
    dsum16[2 * b] = dh * static_cast<float>(s0);
    dsum16[2 * b + 1] = dh * static_cast<float>(s1);
  }
}
#endif

}  // namespace

void quantize_act_q8(const float* x, int64_t tokens, int64_t cols, ActQ8& out, KernelIsa isa, ThreadPool* pool) {
  CATQ_CHECK(cols % 32 == 0, Internal, "quantize_act_q8: {} columns is not a multiple of 32", cols);
  const int64_t nb = cols / 32;
  out.tokens = tokens;
  out.cols = cols;
  out.q.resize(static_cast<size_t>(tokens * cols));
  out.d.resize(static_cast<size_t>(tokens * nb));
  out.dsum.resize(static_cast<size_t>(tokens * nb));
  out.dsum16.resize(static_cast<size_t>(tokens * nb * 2));
#ifdef CATQ_X86
  const bool simd = isa == KernelIsa::Avx512 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("f16c");
#else
  const bool simd = false;
  (void)isa;
#endif
  auto run = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int8_t* q = out.q.data() + t * cols;
      float* d = out.d.data() + t * nb;
      float* ds = out.dsum.data() + t * nb;
      float* ds16 = out.dsum16.data() + t * nb * 2;
#ifdef CATQ_X86
      if (simd) {
        quantize_act_q8_avx512(x + t * cols, nb, q, d, ds, ds16);
        continue;
      }
#endif
      quantize_act_q8_scalar(x + t * cols, nb, q, d, ds, ds16);
    }
  };
  if (pool && tokens > 1) pool->parallel_for(tokens, run);
  else run(0, tokens);
}

bool decode_ggml_values(uint32_t type, const uint8_t* data, int64_t n, float* out) {
  if (type == GGML_F32) {
    std::memcpy(out, data, static_cast<size_t>(n) * 4);
  } else if (type == GGML_F16) {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      out[i] = half_value(h);
    }
  } else if (type == GGML_BF16) {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      const uint32_t u = static_cast<uint32_t>(h) << 16;
      std::memcpy(out + i, &u, 4);
    }
  } else {
    const GgmlTypeTraits* tr = ggml_type_traits(type);
    if (!tr || !tr->dequantize || n % tr->block != 0) return false;
    for (int64_t b = 0; b < n / tr->block; ++b) tr->dequantize(data + b * tr->bytes, out + b * tr->block);
  }
  return true;
}

BlockMatrix block_matrix(uint32_t type, int64_t rows, int64_t cols, const uint8_t* data, uint64_t nbytes,
                         const std::string& name) {
  const GgmlTypeTraits* tr = ggml_type_traits(type);
  if (!tr) fail(ErrorKind::Unsupported, "{}: ggml type {} is not known", name, type);
  if (cols % tr->block != 0)
    fail(ErrorKind::Format, "{}: {} columns is not a multiple of {}'s block of {}", name, cols, tr->name, tr->block);
  const uint64_t want = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols / tr->block) *
                        static_cast<uint64_t>(tr->bytes);
  if (nbytes != want)
    fail(ErrorKind::Format, "{}: {} bytes of {} data for {}x{}, expected {}", name, nbytes, tr->name, rows, cols, want);
  BlockMatrix w;
  w.source_type = type;
  w.rows = rows;
  w.cols = cols;
  const int64_t nb = cols / 32;
  if (type == GGML_Q4_K) {
    w.kernel = BlockKernel::Q4_K;
    const int64_t groups = w.row_groups(), ns = cols / 256;
    w.codes.assign(static_cast<size_t>(groups * nb * w.group_block_bytes()), 0);
    w.d.assign(static_cast<size_t>(groups * ns * G), 0);  // padded rows: scale 0
    w.m.assign(static_cast<size_t>(groups * ns * G), 0);
    w.sc.assign(static_cast<size_t>(groups * nb * G), 0);
    w.mn.assign(static_cast<size_t>(groups * nb * G), 0);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t g = r / G, lane = r % G;
      for (int64_t s = 0; s < ns; ++s) {
        const BlockQ4_K q = load_block<BlockQ4_K>(data + (r * ns + s) * tr->bytes);
        w.d[static_cast<size_t>((g * ns + s) * G + lane)] = q.d;
        w.m[static_cast<size_t>((g * ns + s) * G + lane)] = q.dmin;
        for (int j = 0; j < 8; ++j) {  // block b = 8s + j: values 32j.. of the super-block
          const int64_t b = 8 * s + j;
          scale_min_k4(j, q.scales, w.sc[static_cast<size_t>((g * nb + b) * G + lane)],
                       w.mn[static_cast<size_t>((g * nb + b) * G + lane)]);
          // Q4_K codes: per 64 values 32 bytes, low nibbles values 0..31 of the pair, high nibbles 32..63.
          const uint8_t* qs = q.qs + 32 * (j / 2);
          uint8_t c[32];
          for (int l = 0; l < 32; ++l) c[l] = j % 2 == 0 ? (qs[l] & 0xF) : (qs[l] >> 4);
          uint8_t* gb = w.codes.data() + (g * nb + b) * w.group_block_bytes() + 4 * lane;
          for (int cc = 0; cc < 4; ++cc)
            for (int k = 0; k < 4; ++k) gb[64 * cc + k] = static_cast<uint8_t>(c[4 * cc + k] | (c[16 + 4 * cc + k] << 4));
        }
      }
    }
    return w;
  }
  if (type == GGML_Q6_K) {
    w.kernel = BlockKernel::Q6_K;
    const int64_t groups = w.row_groups(), ns = cols / 256;
    w.codes.assign(static_cast<size_t>(groups * nb * w.group_block_bytes()), 0);
    w.d.assign(static_cast<size_t>(groups * ns * G), 0);  // padded rows: scale 0
    w.sc.assign(static_cast<size_t>(groups * nb * 2 * G), 0);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t g = r / G, lane = r % G;
      for (int64_t s = 0; s < ns; ++s) {
        const BlockQ6_K q = load_block<BlockQ6_K>(data + (r * ns + s) * tr->bytes);
        w.d[static_cast<size_t>((g * ns + s) * G + lane)] = q.d;
        for (int v = 0; v < 256; ++v) {
          // Value v: half n = v / 128, quarter v / 32 % 4 selects the low / high nibble of ql and 2 bits of qh.
          const int n = v / 128, qt = v % 128 / 32, l = v % 32;
          const uint8_t lo = q.ql[64 * n + l + (qt % 2) * 32];
          const int code = (qt < 2 ? lo & 0xF : lo >> 4) | (((q.qh[32 * n + l] >> (2 * qt)) & 3) << 4);
          const int64_t b = 8 * s + v / 32, j = v % 32, c = j / 4;
          uint8_t* gb = w.codes.data() + (g * nb + b) * w.group_block_bytes() + 4 * lane + j % 4;
          gb[64 * (c % 4)] |= static_cast<uint8_t>((code & 0xF) << (c >= 4 ? 4 : 0));
          gb[256 + 64 * (c / 4)] |= static_cast<uint8_t>((code >> 4) << (2 * (c % 4)));
          if (j % 16 == 0)
            w.sc[static_cast<size_t>((g * nb + b) * 2 * G + (j / 16) * G + lane)] = static_cast<uint8_t>(q.scales[v / 16]);
        }
      }
    }
    return w;
  }
  if (type == GGML_Q4_0 || type == GGML_Q4_1 || type == GGML_Q8_0) {
    w.kernel = type == GGML_Q4_0 ? BlockKernel::Q4_0 : type == GGML_Q4_1 ? BlockKernel::Q4_1 : BlockKernel::Q8_0;
    const int64_t groups = w.row_groups();
    w.codes.assign(static_cast<size_t>(groups * nb * w.group_block_bytes()), 0);
    w.d.assign(static_cast<size_t>(groups * nb * G), 0);  // padded rows: scale 0
    if (type == GGML_Q4_1) w.m.assign(static_cast<size_t>(groups * nb * G), 0);
    // Row r of group g is lane i = r mod 16: chunk c's 4 bytes of that lane sit at 64c + 4i of the group-block.
    // 4-bit: chunk c (values 4c..4c+3, low nibbles) and chunk c+4 (values 16+4c.., high nibbles) share a byte,
    // which is exactly Q4_0 / Q4_1's qs[4c+k] (low nibble value j, high nibble value j+16): copied as is.
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t g = r / G, lane = r % G;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = data + (r * nb + b) * tr->bytes;
        const size_t i = static_cast<size_t>((g * nb + b) * G + lane);
        uint8_t* gb = w.codes.data() + (g * nb + b) * w.group_block_bytes() + 4 * lane;
        if (type == GGML_Q8_0) {
          const BlockQ8_0 q = load_block<BlockQ8_0>(blk);
          w.d[i] = q.d;
          for (int c = 0; c < 8; ++c)
            for (int k = 0; k < 4; ++k) gb[64 * c + k] = static_cast<uint8_t>(q.qs[4 * c + k] + 128);
        } else if (type == GGML_Q4_0) {
          const BlockQ4_0 q = load_block<BlockQ4_0>(blk);
          w.d[i] = q.d;
          for (int c = 0; c < 4; ++c) std::memcpy(gb + 64 * c, q.qs + 4 * c, 4);
        } else {
          const BlockQ4_1 q = load_block<BlockQ4_1>(blk);
          w.d[i] = q.d;
          w.m[i] = q.m;
          for (int c = 0; c < 4; ++c) std::memcpy(gb + 64 * c, q.qs + 4 * c, 4);
        }
      }
    }
    return w;
  }
  w.kernel = BlockKernel::F32;
  w.f32.resize(static_cast<size_t>(rows * cols));
  float* out = w.f32.data();
  const int64_t n = rows * cols;
  if (!decode_ggml_values(type, data, n, out))
    fail(ErrorKind::Unsupported, "{}: ggml type {} cannot be decoded by catq", name, tr->name);
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(out[i])) fail(ErrorKind::Format, "{}: non-finite weight at element {}", name, i);
  return w;
}

bool stack_rows(const std::vector<const BlockMatrix*>& parts, BlockMatrix& out) {
  if (parts.empty()) return false;
  const BlockMatrix& a = *parts.front();
  for (size_t i = 0; i < parts.size(); ++i) {
    const BlockMatrix& p = *parts[i];
    if (p.kernel != a.kernel || p.source_type != a.source_type || p.cols != a.cols) return false;
    if (i + 1 < parts.size() && p.rows % G != 0) return false;
  }
  BlockMatrix s;
  s.kernel = a.kernel;
  s.source_type = a.source_type;
  s.cols = a.cols;
  // Every array is row-group-major (F32: row-major), so stacking whole groups is concatenation.
  auto cat = [&](auto member) {
    auto& dst = s.*member;
    size_t n = 0;
    for (const BlockMatrix* p : parts) n += ((*p).*member).size();
    dst.reserve(n);
    for (const BlockMatrix* p : parts) dst.insert(dst.end(), ((*p).*member).begin(), ((*p).*member).end());
  };
  for (const BlockMatrix* p : parts) s.rows += p->rows;
  cat(&BlockMatrix::codes), cat(&BlockMatrix::d), cat(&BlockMatrix::m), cat(&BlockMatrix::sc), cat(&BlockMatrix::mn);
  cat(&BlockMatrix::f32);
  out = std::move(s);
  return true;
}

KernelIsa block_matmul_isa(KernelIsa want) {
#ifdef CATQ_X86
  if (want == KernelIsa::Avx512 && vnni_f16c()) return KernelIsa::Avx512;
#endif
  (void)want;
  return KernelIsa::Scalar;
}

void block_matmul(const BlockMatrix& w, const float* x, const ActQ8& xq, int64_t T, float* y, int64_t ldy, int64_t g0,
                  int64_t g1, KernelIsa isa) {
  g1 = std::min(g1, w.row_groups());
  if (g0 >= g1 || T <= 0) return;
#ifdef CATQ_X86
  if (block_matmul_isa(isa) == KernelIsa::Avx512) {
    switch (w.kernel) {
      case BlockKernel::F32: return matmul_f32_avx512(w, x, T, y, ldy, g0 * G, std::min(g1 * G, w.rows));
      case BlockKernel::Q4_0: return matmul_q_avx512<BlockKernel::Q4_0>(w, xq, T, y, ldy, g0, g1);
      case BlockKernel::Q4_1: return matmul_q_avx512<BlockKernel::Q4_1>(w, xq, T, y, ldy, g0, g1);
      case BlockKernel::Q8_0: return matmul_q_avx512<BlockKernel::Q8_0>(w, xq, T, y, ldy, g0, g1);
      case BlockKernel::Q4_K: return matmul_q_avx512<BlockKernel::Q4_K>(w, xq, T, y, ldy, g0, g1);
      case BlockKernel::Q6_K: return matmul_q_avx512<BlockKernel::Q6_K>(w, xq, T, y, ldy, g0, g1);
    }
  }
#endif
  (void)isa;
  matmul_scalar(w, x, xq, T, y, ldy, g0, g1);
}

}  // namespace catq

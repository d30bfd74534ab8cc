// Encoders of the GGUF block formats beyond Q8_0 / Q4_0 / Q4_1 (layouts next to the structs in ggml_blocks.h; the
// decoders are in ggml_kquants.cpp). Q5_0 and Q5_1 are the formats' plain round-to-nearest definitions (the same
// bytes as ggml's reference quantizer). IQ4_NL and the K-quants have no single "round to nearest": each needs a
// scale (and min) per block or sub-block, and the K-quants then quantize those scales once more against the
// super-block's fp16 d (and dmin). catq's encoders choose them by a small search that minimizes the (optionally
// importance-weighted) squared error, then compute every code from the scales the decoder will actually see.
//
// Every encoder takes an optional importance per value (nullptr = all 1): the weight of that value's squared
// error. Calibration-driven quantization (an importance matrix, AWQ-style scales) passes its weights here.
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/ggml_blocks.h"

namespace catq {

namespace {

uint16_t fp16_bits(float v) { return c10::Half(v).x; }
float fp16_round(float v) { return half_value(fp16_bits(v)); }

float importance(const float* w, int i) { return w ? w[i] : 1.0f; }

// Rounded and clamped in float before the conversion, so that huge, infinite or NaN ratios (weights beyond fp16's
// range give an infinite d) are defined: NaN maps to lo.
int round_clamp(float v, int lo, int hi) {
  const float r = std::nearbyint(v);
  if (!(r >= static_cast<float>(lo))) return lo;
  if (r > static_cast<float>(hi)) return hi;
  return static_cast<int>(r);
}

// ---- First level: one (sub-)block's scale -------------------------------------------------------------------

// x ≈ s·q + m with q ∈ {0..L}, s ≥ 0 and m ≤ 0 (the K-quants store the offset as −dmin·min with min ≥ 0).
// Candidates: the range [min(x, 0), max x] divided into L + δ steps, δ ∈ [−1, 1]; for each, the codes are
// rounded and (s, m) refitted by weighted least squares; then the best fit is refined by re-rounding until it
// stops improving.
struct AffineFit {
  float scale = 0, offset = 0;  // offset ≤ 0
};

float affine_error(const float* x, const float* w, int n, int L, float s, float m) {
  float e = 0;
  const float is = s > 0 ? 1.0f / s : 0.0f;
  for (int i = 0; i < n; ++i) {
    const int q = s > 0 ? round_clamp((x[i] - m) * is, 0, L) : 0;
    const float d = s * static_cast<float>(q) + m - x[i];
    e += importance(w, i) * d * d;
  }
  return e;
}

// Weighted least squares of (s, m) for fixed codes, with m ≤ 0; false when degenerate.
bool refit_affine(const float* x, const float* w, int n, const int* q, float& s, float& m) {
  double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
  for (int i = 0; i < n; ++i) {
    const double wi = importance(w, i), qi = q[i];
    sw += wi, sq += wi * qi, sqq += wi * qi * qi, sx += wi * x[i], sqx += wi * qi * x[i];
  }
  const double det = sw * sqq - sq * sq;
  if (det <= 0 || sqq <= 0) return false;
  double ss = (sw * sqx - sq * sx) / det, mm = (sqq * sx - sq * sqx) / det;
  if (mm > 0) mm = 0, ss = sqx / sqq;
  if (ss <= 0) return false;
  s = static_cast<float>(ss), m = static_cast<float>(mm);
  return true;
}

AffineFit fit_affine(const float* x, const float* w, int n, int L) {
  float lo = 0, hi = x[0];
  for (int i = 0; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  AffineFit best;
  best.offset = lo;
  if (!(hi > lo)) return best;  // all values equal lo ≤ 0 (or zero): x = m exactly
  float best_err = affine_error(x, w, n, L, (hi - lo) / L, lo);
  best.scale = (hi - lo) / L;
  int q[kQK_K];
  for (int k = -10; k <= 10; ++k) {
    const float is = (static_cast<float>(L) + 0.1f * static_cast<float>(k)) / (hi - lo);
    for (int i = 0; i < n; ++i) q[i] = round_clamp((x[i] - lo) * is, 0, L);
    float s = 0, m = 0;
    if (!refit_affine(x, w, n, q, s, m)) continue;
    const float e = affine_error(x, w, n, L, s, m);
    if (e < best_err) best_err = e, best.scale = s, best.offset = m;
  }
  for (int it = 0; it < 4; ++it) {  // re-round with the best fit, refit
    const float is = 1.0f / best.scale;
    for (int i = 0; i < n; ++i) q[i] = round_clamp((x[i] - best.offset) * is, 0, L);
    float s = 0, m = 0;
    if (!refit_affine(x, w, n, q, s, m)) break;
    const float e = affine_error(x, w, n, L, s, m);
    if (!(e < best_err)) break;
    best_err = e, best.scale = s, best.offset = m;
  }
  return best;
}

// x ≈ s·q with q ∈ {−nmax..nmax−1}; s may be negative (the value of largest magnitude then lands on −nmax, the side
// with one more level). Candidates around the largest magnitude mapping to −nmax (and to nmax − 1), each refitted.
float symmetric_error(const float* x, const float* w, int n, int nmax, float s) {
  if (s == 0) {
    float e = 0;
    for (int i = 0; i < n; ++i) e += importance(w, i) * x[i] * x[i];
    return e;
  }
  const float is = 1.0f / s;
  float e = 0;
  for (int i = 0; i < n; ++i) {
    const float d = s * static_cast<float>(round_clamp(x[i] * is, -nmax, nmax - 1)) - x[i];
    e += importance(w, i) * d * d;
  }
  return e;
}

float fit_symmetric(const float* x, const float* w, int n, int nmax) {
  float vmax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > std::fabs(vmax)) vmax = x[i];
  if (vmax == 0) return 0;
  float best = vmax / static_cast<float>(-nmax), best_err = symmetric_error(x, w, n, nmax, best);
  auto try_codes = [&](float s0) {
    const float is = 1.0f / s0;
    double sqx = 0, sqq = 0;
    for (int i = 0; i < n; ++i) {
      const double q = round_clamp(x[i] * is, -nmax, nmax - 1), wi = importance(w, i);
      sqx += wi * q * x[i], sqq += wi * q * q;
    }
    if (sqq <= 0) return;
    const float s = static_cast<float>(sqx / sqq);
    const float e = symmetric_error(x, w, n, nmax, s);
    if (s != 0 && e < best_err) best_err = e, best = s;
  };
  for (int k = -10; k <= 10; ++k) {
    try_codes(vmax / -(static_cast<float>(nmax) + 0.1f * static_cast<float>(k)));
    try_codes(vmax / (static_cast<float>(nmax - 1) + 0.1f * static_cast<float>(k)));
  }
  for (int it = 0; it < 3; ++it) {
    const float before = best_err;
    try_codes(best);
    if (!(best_err < before)) break;
  }
  return best;
}

// ---- Second level: the sub-block scales on the super-block's grid -------------------------------------------

// Non-negative values v[0..n) as d·c with c ∈ {0..cmax}; returns the fp16-rounded d the decoder sees, codes in c.
// d is chosen among a few grid steps by the weighted error of the values themselves (wv: weight of each value).
float quantize_unsigned_scales(const float* v, const float* wv, int n, int cmax, uint8_t* c) {
  float vmax = 0;
  for (int i = 0; i < n; ++i) vmax = std::max(vmax, v[i]);
  if (vmax <= 0) {
    std::fill(c, c + n, 0);
    return 0;
  }
  float best_d = 0, best_err = INFINITY;
  for (int k = 0; k <= 8; ++k) {
    const float d = fp16_round(vmax / (static_cast<float>(cmax) - 0.125f * static_cast<float>(k)));
    if (d <= 0) continue;
    float e = 0;
    for (int i = 0; i < n; ++i) {
      const float r = d * static_cast<float>(round_clamp(v[i] / d, 0, cmax)) - v[i];
      e += wv[i] * r * r;
    }
    if (e < best_err) best_err = e, best_d = d;
  }
  for (int i = 0; i < n; ++i) c[i] = static_cast<uint8_t>(round_clamp(v[i] / best_d, 0, cmax));
  return best_d;
}

// Signed values as d·c with c ∈ {−cneg..cneg−1} (the largest magnitude on −cneg); fp16-rounded d returned.
float quantize_signed_scales(const float* v, const float* wv, int n, int cneg, int8_t* c) {
  float vmax = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(v[i]) > std::fabs(vmax)) vmax = v[i];
  if (vmax == 0) {
    std::fill(c, c + n, 0);
    return 0;
  }
  float best_d = 0, best_err = INFINITY;
  for (int k = 0; k <= 8; ++k) {
    for (float sign : {-1.0f, 1.0f}) {
      const float steps = sign < 0 ? static_cast<float>(cneg) : static_cast<float>(cneg - 1);
      const float d = fp16_round(vmax / (sign * (steps - 0.125f * static_cast<float>(k))));
      if (d == 0) continue;
      float e = 0;
      for (int i = 0; i < n; ++i) {
        const float r = d * static_cast<float>(round_clamp(v[i] / d, -cneg, cneg - 1)) - v[i];
        e += wv[i] * r * r;
      }
      if (e < best_err) best_err = e, best_d = d;
    }
  }
  for (int i = 0; i < n; ++i) c[i] = static_cast<int8_t>(round_clamp(v[i] / best_d, -cneg, cneg - 1));
  return best_d;
}

// Weight of a sub-block's scale error: the summed importance times the mean square code (how much a relative
// scale error costs), floored so that empty sub-blocks still get exact zeros.
float sub_block_weight(const float* x, const float* w, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += importance(w, i) * x[i] * x[i];
  return s + 1e-30f;
}

// Codes of an affine K-quant super-block from its decoded sub-block scales (sub-blocks of `sub` values).
void affine_codes(const float* x, int sub, const float* scale, const float* offset, int L, uint8_t* q) {
  for (int i = 0; i < kQK_K; ++i) {
    const float s = scale[i / sub], m = offset[i / sub];
    q[i] = static_cast<uint8_t>(s > 0 ? round_clamp((x[i] - m) / s, 0, L) : 0);
  }
}

// One affine K-quant super-block (Q2_K: 16 × 16, L = 3, 4-bit scales; Q4_K / Q5_K: 8 × 32, L = 15 / 31, 6-bit):
// codes q[256], scale / min codes, fp16 d / dmin.
void affine_k_super_block(const float* x, const float* w, int sub, int L, int cmax, uint8_t* q, uint8_t* sc,
                          uint8_t* mc, uint16_t& d_bits, uint16_t& dmin_bits) {
  const int nsub = kQK_K / sub;
  float s[16], mneg[16], wt[16], ws[16], wm[16];
  for (int j = 0; j < nsub; ++j) {
    const float* xj = x + j * sub;
    const float* wj = w ? w + j * sub : nullptr;
    const AffineFit f = fit_affine(xj, wj, sub, L);
    s[j] = f.scale, mneg[j] = -f.offset;
    wt[j] = 0;
    for (int i = 0; i < sub; ++i) wt[j] += importance(wj, i);
    ws[j] = sub_block_weight(xj, wj, sub), wm[j] = wt[j] + 1e-30f;
  }
  const float d = quantize_unsigned_scales(s, ws, nsub, cmax, sc);
  const float dmin = quantize_unsigned_scales(mneg, wm, nsub, cmax, mc);
  d_bits = fp16_bits(d), dmin_bits = fp16_bits(dmin);
  float scale[16], offset[16];
  for (int j = 0; j < nsub; ++j) scale[j] = d * sc[j], offset[j] = -(dmin * mc[j]);
  affine_codes(x, sub, scale, offset, L, q);
}

// One symmetric K-quant super-block of 16 sub-blocks of 16 (Q3_K: q ∈ −4..3, 6-bit signed scales; Q6_K: q ∈
// −32..31, int8 scales): codes stored as q + nmax, signed scale codes, fp16 d.
void symmetric_k_super_block(const float* x, const float* w, int nmax, int cneg, uint8_t* q, int8_t* sc,
                             uint16_t& d_bits) {
  float s[16], ws[16];
  for (int j = 0; j < 16; ++j) {
    s[j] = fit_symmetric(x + 16 * j, w ? w + 16 * j : nullptr, 16, nmax);
    ws[j] = sub_block_weight(x + 16 * j, w ? w + 16 * j : nullptr, 16);
  }
  const float d = quantize_signed_scales(s, ws, 16, cneg, sc);
  d_bits = fp16_bits(d);
  for (int i = 0; i < kQK_K; ++i) {
    const float sj = d * static_cast<float>(sc[i / 16]);
    q[i] = static_cast<uint8_t>((sj != 0 ? round_clamp(x[i] / sj, -nmax, nmax - 1) : 0) + nmax);
  }
}

// Q4_K / Q5_K scale packing (the inverse of the decoder's scale_min_k4): sub-blocks 0..3 in the low 6 bits of
// bytes 0..3 (scales) and 4..7 (mins); 4..7 in the nibbles of bytes 8..11, their top 2 bits in bits 6..7 of bytes
// 0..3 (scales) and 4..7 (mins).
void pack_scale_min_k4(const uint8_t* sc, const uint8_t* mc, uint8_t* out) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>(mc[j] | ((mc[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mc[j + 4] & 0xF) << 4));
  }
}

// Q5_0 / Q5_1 codes: low nibbles as Q4_0 (qs[j]: values j and j + 16), bit 4 of value i in bit i of qh.
void pack_q5_codes(const uint8_t* q, uint8_t* qs, uint8_t* qh_bytes) {
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + kQK / 2] & 0xF) << 4));
    qh |= static_cast<uint32_t>(q[j] >> 4) << j;
    qh |= static_cast<uint32_t>(q[j + kQK / 2] >> 4) << (j + kQK / 2);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

}  // namespace

void quantize_block_q5_0(const float* x, const float* importance, uint8_t* out) {
  BlockQ5_0 b;
  float amax = 0, vmax = 0;
  for (int j = 0; j < kQK; ++j)
    if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), vmax = x[j];
  const float d = vmax / -16.0f, id = d != 0 ? 1.0f / d : 0.0f;
  b.d = fp16_bits(d);
  uint8_t q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(std::min(31, static_cast<int>(x[j] * id + 16.5f)));
  pack_q5_codes(q, b.qs, b.qh);
  std::memcpy(out, &b, sizeof b);
  improve_plain_block(GGML_Q5_0, x, importance, out);
}

void quantize_block_q5_1(const float* x, const float* importance, uint8_t* out) {
  BlockQ5_1 b;
  float lo = x[0], hi = x[0];
  for (int j = 1; j < kQK; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
  const float d = (hi - lo) / 31.0f, id = d != 0 ? 1.0f / d : 0.0f;
  b.d = fp16_bits(d);
  b.m = fp16_bits(lo);
  uint8_t q[kQK];
  for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(static_cast<int>((x[j] - lo) * id + 0.5f));
  pack_q5_codes(q, b.qs, b.qh);
  std::memcpy(out, &b, sizeof b);
  improve_plain_block(GGML_Q5_1, x, importance, out);
}

// IQ4_NL: d among candidates around the largest magnitude on either end of the grid, each refitted by weighted
// least squares for its nearest-grid codes; the codes then recomputed from the fp16 d.
void quantize_block_iq4_nl(const float* x, const float* w, uint8_t* out) {
  auto nearest = [](float v) {  // index of the grid value nearest v (grid ascending)
    int k = 0;
    while (k < 15 && std::fabs(static_cast<float>(kIq4nlValues[k + 1]) - v) <= std::fabs(static_cast<float>(kIq4nlValues[k]) - v)) ++k;
    return k;
  };
  auto error = [&](float d) {
    float e = 0;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    for (int i = 0; i < kQK; ++i) {
      const float r = d * static_cast<float>(kIq4nlValues[nearest(x[i] * id)]) - x[i];
      e += importance(w, i) * r * r;
    }
    return e;
  };
  float vmax = 0;
  for (int i = 0; i < kQK; ++i)
    if (std::fabs(x[i]) > std::fabs(vmax)) vmax = x[i];
  float best = vmax / -127.0f, best_err = error(best);
  if (vmax != 0) {
    auto try_refit = [&](float d0) {
      const float id = 1.0f / d0;
      double sgx = 0, sgg = 0;
      for (int i = 0; i < kQK; ++i) {
        const double g = kIq4nlValues[nearest(x[i] * id)], wi = importance(w, i);
        sgx += wi * g * x[i], sgg += wi * g * g;
      }
      if (sgg <= 0) return;
      const float d = static_cast<float>(sgx / sgg), e = error(d);
      if (d != 0 && e < best_err) best_err = e, best = d;
    };
    for (int k = -10; k <= 10; ++k) {
      try_refit(vmax / (-127.0f + 1.5f * static_cast<float>(k)));
      try_refit(vmax / (113.0f + 1.5f * static_cast<float>(k)));
    }
    try_refit(best);
  }
  BlockIq4Nl b;
  b.d = fp16_bits(best);
  const float d = half_value(b.d), id = d != 0 ? 1.0f / d : 0.0f;
  for (int j = 0; j < kQK / 2; ++j)
    b.qs[j] = static_cast<uint8_t>(nearest(x[j] * id) | (nearest(x[j + kQK / 2] * id) << 4));
  std::memcpy(out, &b, sizeof b);
}

// ---- Code packers (shared by the encoders and set_codes: a block's codes replaced, its scales kept) ---------

namespace {

// Q2_K / Q3_K low 2 bits: value 128·h + 32·s + l (l < 32) is bits 2s..2s+1 of qs[32·h + l].
void pack_2bit_codes(const uint8_t* q, uint8_t* qs) {
  std::memset(qs, 0, kQK_K / 4);
  for (int i = 0; i < kQK_K; ++i) {
    const int h = i / 128, s = (i % 128) / 32, l = i % 32;
    qs[32 * h + l] |= static_cast<uint8_t>((q[i] & 3) << (2 * s));
  }
}

// Q3_K code c ∈ 0..7: low 2 bits as Q2_K, bit 2 in hmask (bit 4·h + s of hmask[l]).
void pack_q3_k_codes(const uint8_t* q, uint8_t* qs, uint8_t* hmask) {
  pack_2bit_codes(q, qs);
  std::memset(hmask, 0, kQK_K / 8);
  for (int i = 0; i < kQK_K; ++i) {
    const int h = i / 128, s = (i % 128) / 32, l = i % 32;
    if (q[i] & 4) hmask[l] |= static_cast<uint8_t>(1 << (4 * h + s));
  }
}

// Q4_K / Q5_K codes: per 64 values, 32 bytes of qs, the first 32 values in the low nibbles and the next 32 in the
// high ones; Q5_K's fifth bits (qh non-null) in bit 2c (first 32) and 2c + 1 (next 32) of qh[l] for the c-th run.
void pack_k_nibbles(const uint8_t* q, uint8_t* qs, uint8_t* qh) {
  if (qh) std::memset(qh, 0, kQK_K / 8);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      const uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];
      qs[32 * c + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
      if (qh) qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
    }
}

// Q6_K: per 128 values (half h), value 128·h + 32·k + l is ql[64·h + l + 32·(k & 1)] nibble k / 2 (low 4 bits) and
// qh[32·h + l] bits 2k..2k+1 (high 2 bits).
void pack_q6_k_codes(const uint8_t* q, uint8_t* ql, uint8_t* qh) {
  std::memset(ql, 0, kQK_K / 2);
  std::memset(qh, 0, kQK_K / 4);
  for (int i = 0; i < kQK_K; ++i) {
    const int h = i / 128, k = (i % 128) / 32, l = i % 32;
    ql[64 * h + l + 32 * (k & 1)] |= static_cast<uint8_t>((q[i] & 0xF) << (4 * (k >> 1)));
    qh[32 * h + l] |= static_cast<uint8_t>((q[i] >> 4) << (2 * k));
  }
}

// A block's codes replaced through its packer, everything else kept.
template <typename Block, typename Pack>
void replace_codes(uint8_t* blk, Pack pack) {
  Block b = load_block<Block>(blk);
  pack(b);
  std::memcpy(blk, &b, sizeof b);
}

}  // namespace

void quantize_block_q2_k(const float* x, const float* w, uint8_t* out) {
  BlockQ2_K b;
  uint8_t q[kQK_K], sc[16], mc[16];
  affine_k_super_block(x, w, 16, 3, 15, q, sc, mc, b.d, b.dmin);
  for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>(sc[j] | (mc[j] << 4));
  pack_2bit_codes(q, b.qs);
  std::memcpy(out, &b, sizeof b);
}

void quantize_block_q3_k(const float* x, const float* w, uint8_t* out) {
  BlockQ3_K b;
  uint8_t q[kQK_K];
  int8_t sc[16];
  symmetric_k_super_block(x, w, 4, 32, q, sc, b.d);
  // Scales stored + 32 (6 bits): low nibbles of scales 0..7 in bytes 0..7, of 8..15 in their high nibbles; the top
  // 2 bits of scale j in bits 2·(j/4) of byte 8 + j % 4.
  std::memset(b.scales, 0, sizeof b.scales);
  for (int j = 0; j < 16; ++j) {
    const int v = sc[j] + 32;
    b.scales[j % 8] |= static_cast<uint8_t>((v & 0xF) << (j < 8 ? 0 : 4));
    b.scales[8 + j % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (j / 4)));
  }
  pack_q3_k_codes(q, b.qs, b.hmask);
  std::memcpy(out, &b, sizeof b);
}

void quantize_block_q4_k(const float* x, const float* w, uint8_t* out) {
  BlockQ4_K b;
  uint8_t q[kQK_K], sc[8], mc[8];
  affine_k_super_block(x, w, 32, 15, 63, q, sc, mc, b.d, b.dmin);
  pack_scale_min_k4(sc, mc, b.scales);
  pack_k_nibbles(q, b.qs, nullptr);
  std::memcpy(out, &b, sizeof b);
}

void quantize_block_q5_k(const float* x, const float* w, uint8_t* out) {
  BlockQ5_K b;
  uint8_t q[kQK_K], sc[8], mc[8];
  affine_k_super_block(x, w, 32, 31, 63, q, sc, mc, b.d, b.dmin);
  pack_scale_min_k4(sc, mc, b.scales);
  pack_k_nibbles(q, b.qs, b.qh);
  std::memcpy(out, &b, sizeof b);
}

void quantize_block_q6_k(const float* x, const float* w, uint8_t* out) {
  BlockQ6_K b;
  uint8_t q[kQK_K];
  symmetric_k_super_block(x, w, 32, 128, q, b.scales, b.d);
  pack_q6_k_codes(q, b.ql, b.qh);
  std::memcpy(out, &b, sizeof b);
}

void set_codes_q5_0(uint8_t* blk, const uint8_t* q) {
  replace_codes<BlockQ5_0>(blk, [&](BlockQ5_0& b) { pack_q5_codes(q, b.qs, b.qh); });
}
void set_codes_q5_1(uint8_t* blk, const uint8_t* q) {
  replace_codes<BlockQ5_1>(blk, [&](BlockQ5_1& b) { pack_q5_codes(q, b.qs, b.qh); });
}
void set_codes_iq4_nl(uint8_t* blk, const uint8_t* q) {
  replace_codes<BlockIq4Nl>(blk, [&](BlockIq4Nl& b) { pack_nibbles32(q, b.qs); });
}
void set_codes_q2_k(uint8_t* blk, const uint8_t* q) {
  replace_codes<BlockQ2_K>(blk, [&](BlockQ2_K& b) { pack_2bit_codes(q, b.qs); });
}
void set_codes_q3_k(uint8_t* blk, const uint8_t* q) {
  replace_codes<BlockQ3_K>(blk, [&](BlockQ3_K& b) { pack_q3_k_codes(q, b.qs, b.hmask); });
}
void set_codes_q4_k(uint8_t* blk, const uint8_t* q) {
  replace_codes<BlockQ4_K>(blk, [&](BlockQ4_K& b) { pack_k_nibbles(q, b.qs, nullptr); });
}
void set_codes_q5_k(uint8_t* blk, const uint8_t* q) {
  replace_codes<BlockQ5_K>(blk, [&](BlockQ5_K& b) { pack_k_nibbles(q, b.qs, b.qh); });
}
void set_codes_q6_k(uint8_t* blk, const uint8_t* q) {
  replace_codes<BlockQ6_K>(blk, [&](BlockQ6_K& b) { pack_q6_k_codes(q, b.ql, b.qh); });
}

void improve_plain_block(uint32_t ggml, const float* x, const float* w, uint8_t* blk) {
  if (!w) return;
  const GgmlTypeTraits* tt = ggml_type_traits(ggml);
  const bool affine = ggml == GGML_Q4_1 || ggml == GGML_Q5_1;
  const int levels = tt->levels;
  auto weighted_error = [&](const uint8_t* b) {
    float y[kQK], e = 0;
    tt->dequantize(b, y);
    for (int i = 0; i < kQK; ++i) e += w[i] * (y[i] - x[i]) * (y[i] - x[i]);
    return e;
  };
  uint8_t cand[64], q[kQK];
  std::memcpy(cand, blk, static_cast<size_t>(tt->bytes));
  if (affine) {  // x = d·q + m: d at byte 0, m at byte 2 (fp16 each)
    const AffineFit f = fit_affine(x, w, kQK, levels - 1);
    const uint16_t db = fp16_bits(f.scale), mb = fp16_bits(f.offset);
    std::memcpy(cand, &db, 2);
    std::memcpy(cand + 2, &mb, 2);
    const float d = half_value(db), m = half_value(mb);
    for (int i = 0; i < kQK; ++i) q[i] = static_cast<uint8_t>(d > 0 ? round_clamp((x[i] - m) / d, 0, levels - 1) : 0);
  } else {  // x = d·(q − levels/2): d at byte 0
    const int nmax = levels / 2;
    const uint16_t db = fp16_bits(fit_symmetric(x, w, kQK, nmax));
    std::memcpy(cand, &db, 2);
    const float d = half_value(db);
    for (int i = 0; i < kQK; ++i)
      q[i] = static_cast<uint8_t>((d != 0 ? round_clamp(x[i] / d, -nmax, nmax - 1) : 0) + nmax);
  }
  tt->set_codes(cand, q);
  if (weighted_error(cand) < weighted_error(blk)) std::memcpy(blk, cand, static_cast<size_t>(tt->bytes));
}

}  // namespace catq

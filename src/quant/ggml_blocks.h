// ggml's tensor types as blocks (the GGUF files' weight formats, quant/quantized_weight.h's ggml rows): one traits entry per ggml type id — name, values per
// block, bytes per block and, for the block formats catq encodes and decodes, the scalar quantizer and dequantizer
// of one block. The layouts are ggml's (ggml-common.h); the math is ggml's reference (quantize_row_*_ref).
#pragma once
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace catq {

// ggml tensor types that catq can dequantize (ids as in ggml.h); others are recognised by id/name only.
enum GgmlType : uint32_t {
  GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7, GGML_Q8_0 = 8,
  GGML_Q2_K = 10, GGML_Q3_K = 11, GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_IQ4_NL = 20, GGML_BF16 = 30
};
// Name of a ggml type id ("Q4_K"), or "type<N>" for ids unknown to catq.
std::string ggml_type_name(uint32_t type);


// An fp16 field's value, and a block read from unaligned bytes (every decoder starts with these).
inline float half_value(uint16_t bits) { return static_cast<float>(c10::Half(bits, c10::Half::from_bits())); }
template <typename Block>
Block load_block(const uint8_t* p) {
  Block b;
  std::memcpy(&b, p, sizeof b);
  return b;
}

constexpr int kQK = 32;  // values per block of Q8_0, Q4_0 and Q4_1 (ggml's QK8_0, QK4_0, QK4_1)

// 32 4-bit codes as 16 bytes, Q4_0's order (also Q4_1, IQ4_NL, and Q5_0 / Q5_1's low bits): qs[j] = q[j] | q[j+16] << 4.
inline void pack_nibbles32(const uint8_t* q, uint8_t* qs) {
  for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + kQK / 2] & 0xF) << 4));
}

// Q8_0: x = d·q.  d = max|x| / 127, q = round(x / d).
struct BlockQ8_0 {
  uint16_t d;       // fp16 scale
  int8_t qs[kQK];   // quants
};
static_assert(sizeof(BlockQ8_0) == 2 + kQK, "wrong q8_0 block size/padding");

// Q4_0: x = d·(q − 8).  d = x_m / −8 with x_m the value of largest magnitude (sign kept),
// q = min(15, ⌊x/d + 8.5⌋). Nibbles: qs[j] = q[j] | q[j + 16] << 4 (low nibbles values 0..15, high 16..31).
struct BlockQ4_0 {
  uint16_t d;            // fp16 scale
  uint8_t qs[kQK / 2];   // nibbles / quants
};
static_assert(sizeof(BlockQ4_0) == 2 + kQK / 2, "wrong q4_0 block size/padding");

// Q4_1: x = d·q + m.  m = min, d = (max − min) / 15, q = min(15, ⌊(x − m)/d + 0.5⌋). Same nibble order as Q4_0.
struct BlockQ4_1 {
  uint16_t d;            // fp16 scale
  uint16_t m;            // fp16 min
  uint8_t qs[kQK / 2];   // nibbles / quants
};
static_assert(sizeof(BlockQ4_1) == 2 * 2 + kQK / 2, "wrong q4_1 block size/padding");

// ---- Formats with encoders in gguf_encode.cpp (decoders in gguf_kquants.cpp) -----------------------------------

// Q5_0: x = d·(q − 16), q 5-bit: low nibble as Q4_0 (qs[j]: values j and j + 16), bit 4 of value i in bit i of qh
// (little-endian uint32).
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_0) == 2 + 4 + kQK / 2, "wrong q5_0 block size/padding");

// Q5_1: x = d·q + m, q 5-bit as Q5_0.
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ5_1) == 2 * 2 + 4 + kQK / 2, "wrong q5_1 block size/padding");

// IQ4_NL: x = d·kIq4nlValues[q], q a 4-bit index into a fixed non-uniform grid; nibble order as Q4_0.
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
struct BlockIq4Nl {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockIq4Nl) == 2 + kQK / 2, "wrong iq4_nl block size/padding");

// K-quants: super-blocks of 256 values in 16 or 8 sub-blocks, each with a quantized scale (and min), scaled by the
// super-block's fp16 d (and dmin).
constexpr int kQK_K = 256;

// Q2_K: 16 sub-blocks of 16. scales[i]: low nibble scale, high nibble min (4 bits each); x = d·sc·q − dmin·m with q
// 2-bit. qs: per 128 values, 32 bytes; value 32·s + l of a 128-half is bits 2s..2s+1 of qs[l] (l < 32).
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d, dmin;
};
static_assert(sizeof(BlockQ2_K) == 2 * 2 + kQK_K / 16 + kQK_K / 4, "wrong q2_k block size/padding");

// Q3_K: 16 sub-blocks of 16, 6-bit signed scales (stored + 32) packed in 12 bytes; x = d·(sc − 32)·(q − 4·!h) with
// q the 2-bit low part (qs as Q2_K) and h the high bit from hmask (bit j of hmask[l] for the j-th 32-value run).
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 2 + kQK_K / 4 + kQK_K / 8 + 12, "wrong q3_k block size/padding");

// Q4_K: 8 sub-blocks of 32, 6-bit scale and min per sub-block packed in 12 bytes; x = d·sc·q − dmin·m, q 4-bit:
// per 64 values, 32 bytes, low nibbles the first 32, high nibbles the next 32.
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 2 * 2 + 12 + kQK_K / 2, "wrong q4_k block size/padding");

// Q5_K: Q4_K plus a fifth bit per value: qh[l] bit 2i (and 2i + 1) for the low (high) nibble half of the i-th
// 64-value run.
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 2 * 2 + 12 + kQK_K / 8 + kQK_K / 2, "wrong q5_k block size/padding");

// Q6_K: 16 sub-blocks of 16, int8 scales; x = d·sc·(q − 32) with q 6-bit: low 4 bits in ql, high 2 bits in qh
// (per 128 values: ql 64 bytes, qh 32 bytes, four 32-value runs).
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 2 + kQK_K / 16 + 3 * kQK_K / 4, "wrong q6_k block size/padding");

// Scale and min of sub-block j (of 8) of a Q4_K / Q5_K super-block: 6 bits each, the first four in the low 6 bits of
// bytes 0..3 (scales) and 4..7 (mins), the last four in the nibbles of bytes 8..11 with their top 2 bits in the
// top 2 bits of bytes 0..7.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Scalar decoders of one block of each read-only format (gguf_kquants.cpp), in the traits table.
void dequantize_block_q5_0(const uint8_t* blk, float* y);
void dequantize_block_q5_1(const uint8_t* blk, float* y);
void dequantize_block_iq4_nl(const uint8_t* blk, float* y);
void dequantize_block_q2_k(const uint8_t* blk, float* y);
void dequantize_block_q3_k(const uint8_t* blk, float* y);
void dequantize_block_q4_k(const uint8_t* blk, float* y);
void dequantize_block_q5_k(const uint8_t* blk, float* y);
void dequantize_block_q6_k(const uint8_t* blk, float* y);

// Scalar encoders of one block (gguf_encode.cpp): `importance` (nullptr = all 1) weighs each value's squared error
// in the scale search. Without importance Q4_0 / Q4_1 / Q5_0 / Q5_1 are plain round-to-nearest (ggml's reference
// bytes); with it, improve_plain_block replaces that block by a weighted scale search's where its weighted error is
// lower. (Q8_0 always stays the reference.)
void quantize_block_q5_0(const float* x, const float* importance, uint8_t* blk);
void quantize_block_q5_1(const float* x, const float* importance, uint8_t* blk);
void quantize_block_iq4_nl(const float* x, const float* importance, uint8_t* blk);
void quantize_block_q2_k(const float* x, const float* importance, uint8_t* blk);
void quantize_block_q3_k(const float* x, const float* importance, uint8_t* blk);
void quantize_block_q4_k(const float* x, const float* importance, uint8_t* blk);
void quantize_block_q5_k(const float* x, const float* importance, uint8_t* blk);
void quantize_block_q6_k(const float* x, const float* importance, uint8_t* blk);

// Q4_0 / Q4_1 / Q5_0 / Q5_1 (ggml id) block `blk`, encoded from x by round-to-nearest: replaced by the weighted
// scale search's block when that has a lower importance-weighted error (no-op for importance nullptr).
void improve_plain_block(uint32_t ggml, const float* x, const float* importance, uint8_t* blk);

// Codes replaced in an encoded block, its scales kept (codes as in GgmlTypeTraits::set_codes).
void set_codes_q5_0(uint8_t* blk, const uint8_t* codes);
void set_codes_q5_1(uint8_t* blk, const uint8_t* codes);
void set_codes_iq4_nl(uint8_t* blk, const uint8_t* codes);
void set_codes_q2_k(uint8_t* blk, const uint8_t* codes);
void set_codes_q3_k(uint8_t* blk, const uint8_t* codes);
void set_codes_q4_k(uint8_t* blk, const uint8_t* codes);
void set_codes_q5_k(uint8_t* blk, const uint8_t* codes);
void set_codes_q6_k(uint8_t* blk, const uint8_t* codes);

// One ggml type. `block` values take `bytes` bytes. quantize encodes `block` floats into one block (importance:
// nullptr, or one weight per value) and dequantize decodes one (both on unaligned bytes); null where catq has no
// block codec (F32/F16/BF16 are converted with libtorch; the IQ2/IQ3/IQ1, TQ and other types are recognised by id
// and size only).
//
// Codes (the formats with an encoder): value i of a block is s_i·level(c_i) + m_i with the code c_i ∈ [0, levels)
// and s_i, m_i fixed by the block's (sub-)block scales; level(c) = c, or level_values[c] for a codebook (IQ4_NL).
// A signed format's code is its stored quant offset to start at 0: Q8_0 q + 128, Q4_0 / Q5_0 / Q6_K / Q3_K the
// stored unsigned value. set_codes overwrites an encoded block's codes and keeps its scales: what format-aware
// GPTQ writes after choosing every code on the scale grid the encoder fixed (gguf_block_grid in io/gguf.h).
struct GgmlTypeTraits {
  const char* name;
  int64_t block;
  int64_t bytes;
  void (*quantize)(const float* x, const float* importance, uint8_t* blk) = nullptr;
  void (*dequantize)(const uint8_t* blk, float* y) = nullptr;
  int levels = 0;
  const float* level_values = nullptr;
  void (*set_codes)(uint8_t* blk, const uint8_t* codes) = nullptr;
};
// Traits of a ggml type id (ids as in ggml.h); nullptr for ids not in use.
const GgmlTypeTraits* ggml_type_traits(uint32_t type);

// ---- Whole tensors of blocks ----------------------------------------------------------------------------------

// Block encoders of a contiguous fp32 tensor whose element count is a multiple of 32, exactly as ggml defines the
// blocks (ggml-common.h); decoding is GgufFile::tensor_f32.
//   Q8_0 (34 bytes / 32 values): fp16 d, int8 q[32];            x = d·q,          d = max|x| / 127
//   Q4_0 (18 bytes / 32 values): fp16 d, uint8 qs[16];           x = d·(q − 8),    d = x_m / −8 with x_m the
//        value of largest magnitude (sign kept), q = min(15, ⌊x/d + 8.5⌋); qs[j] = q[j] | q[j+16] << 4
//   Q4_1 (20 bytes / 32 values): fp16 d, fp16 m, uint8 qs[16];   x = d·q + m,      m = min, d = (max − min)/15,
//        q = min(15, ⌊(x − m)/d + 0.5⌋); same nibble order
std::string quantize_q8_0(const at::Tensor& w);
std::string quantize_q4_0(const at::Tensor& w);
std::string quantize_q4_1(const at::Tensor& w);
// Any ggml type with an encoder (gguf_blocks.h), row by row: w is [rows, row] with row a multiple of the type's
// block. importance (optional): [row], a weight per input column for every row's squared error (an importance
// matrix's diagonal), or one weight per value (w's shape); without it Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 are ggml's reference round-to-nearest bytes, with
// it their blocks may take a weighted scale search's result instead (Q8_0 never does).
std::string quantize_gguf_blocks(const at::Tensor& w, uint32_t ggml_type, const at::Tensor& importance = {});
// The decoded fp32 [rows, row] of encoded bytes.
at::Tensor dequantize_gguf_blocks(const std::string& bytes, uint32_t ggml_type, int64_t rows, int64_t row);

// The scale grid an encoding fixed (what format-aware GPTQ rounds onto): value (r, i) can take
// scale·level(c) + offset for the codes c ∈ [0, levels), level(c) = c or level_values[c] (GgmlTypeTraits' codes).
// Found by decoding each block with all codes 0 and all codes 1, so it is the decoder's own arithmetic.
struct GgufGrid {
  at::Tensor scale, offset;         // float [rows, row]
  int levels = 0;
  std::vector<float> level_values;  // empty: level(c) = c
};
GgufGrid gguf_block_grid(const std::string& bytes, uint32_t ggml_type, int64_t rows, int64_t row);
// `bytes` with every code replaced by `codes` (uint8 [rows, row]), the scales kept.
std::string gguf_set_codes(const std::string& bytes, uint32_t ggml_type, const at::Tensor& codes);
// Blocks of a 32-value format that holds its own fp16 d (and m) — Q8_0, Q4_0, Q5_0 (x = d·(c − levels/2)) and Q4_1,
// Q5_1 (x = d·c + m) — from codes (uint8 [rows, row], GgmlTypeTraits' convention) and each block's d and m (float
// [rows, row / 32], rounded to fp16 here; m ignored by the symmetric formats). Error(Internal) for other types.
std::string gguf_blocks_from_codes(uint32_t ggml_type, const at::Tensor& codes, const at::Tensor& d, const at::Tensor& m);

}  // namespace catq

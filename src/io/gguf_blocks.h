// ggml's tensor types as blocks (internal to the GGUF files): one traits entry per ggml type id — name, values per
// block, bytes per block and, for the block formats catq encodes and decodes, the scalar quantizer and dequantizer
// of one block. The layouts are ggml's (ggml-common.h); the math is ggml's reference (quantize_row_*_ref).
#pragma once
#include <cstdint>

namespace catq {

constexpr int kQK = 32;  // values per block of Q8_0, Q4_0 and Q4_1 (ggml's QK8_0, QK4_0, QK4_1)

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

// One ggml type. `block` values take `bytes` bytes. quantize encodes `block` floats into one block and dequantize
// decodes one (both on unaligned bytes); null where catq has no block codec (F32/F16/BF16 are converted with
// libtorch; the K-quants, IQ and other types are recognised by id and size only).
struct GgmlTypeTraits {
  const char* name;
  int64_t block;
  int64_t bytes;
  void (*quantize)(const float* x, uint8_t* blk) = nullptr;
  void (*dequantize)(const uint8_t* blk, float* y) = nullptr;
};
// Traits of a ggml type id (ids as in ggml.h); nullptr for ids not in use.
const GgmlTypeTraits* ggml_type_traits(uint32_t type);

}  // namespace catq

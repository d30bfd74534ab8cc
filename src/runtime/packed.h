// The low-bit CPU kernels' view of a quantized weight (issue 5): a uniform QuantizedWeight (quant/quantized_weight.h)
// with 8/4/2-bit codes and per-(row, group) scales and zero-points as floats. "Prepare once" (pack_for_kernels), then
// the kernels in runtime/kernels.h run on it many times. The codes are the QuantizedWeight's PACKED bytes themselves
// (quant/packed_codes.h) when their width is 2, 4 or 8 and rows are whole bytes; other widths are widened once.
//
// PackedWeights layout (a linear layer's weight W [rows = out, cols = in], nn.Linear layout):
//   q      uint8, rows × (cols·bits/8) bytes, row-major. Code j of a row sits in byte j·bits/8 at bit offset
//          (j mod (8/bits))·bits, least significant bits first (4-bit: low nibble = even column; 2-bit: column
//          4k in bits 0–1, 4k+1 in bits 2–3, ...). Codes are unsigned, q ∈ [0, 2^bits − 1].
//   scale  float32, rows × (cols/group), row-major: group g of row r covers columns [g·group, (g+1)·group).
//   zero   float32, same shape: the zero-point in code units, W[r][j] ≈ scale[r][g] · (q[r][j] − zero[r][g]).
//          Symmetric packing uses zero = 2^(bits−1) (codes centred; q − zero ∈ [−2^(b−1), 2^(b−1) − 1]);
//          asymmetric packing uses the integer zero-point of the group's min/max range.
// Constraints: bits ∈ {2, 4, 8}; group > 0, cols % group == 0, group % (8/bits) == 0 (a group starts on a byte).
// Per-channel int8 is group = cols.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "quant/quantized_weight.h"

namespace catq {

struct PackedWeights {
  int bits = 4;
  int64_t rows = 0, cols = 0, group = 0;
  bool symmetric = true;
  std::vector<uint8_t> q;
  std::vector<float> scale, zero;

  int64_t groups_per_row() const { return group > 0 ? cols / group : 0; }
  int64_t row_bytes() const { return cols * bits / 8; }
  // Error(Data) "<where>: ..." when the fields are inconsistent (bad bits / group, buffers of the wrong size,
  // non-finite or non-positive scales, zero-points outside the code range).
  void validate(const std::string& where) const;
  // Code j of row r (no bounds check).
  int code(int64_t r, int64_t j) const {
    const int per_byte = 8 / bits;
    const uint8_t b = q[static_cast<size_t>(r * row_bytes() + j / per_byte)];
    return (b >> ((j % per_byte) * bits)) & ((1 << bits) - 1);
  }
  // ORs code c (in [0, 2^bits − 1]) into column j of row r, whose bits must still be zero (q zero-initialised).
  void set_code(int64_t r, int64_t j, int c) {
    const int per_byte = 8 / bits;
    q[static_cast<size_t>(r * row_bytes() + j / per_byte)] |= static_cast<uint8_t>(c << ((j % per_byte) * bits));
  }
};

// A uniform QuantizedWeight for the kernels: codes widened to the next container width (3 → 4, 5–7 → 8 bits), one
// (scale, zero) pair per (row, group of columns) from affine_row_groups. Error(Data) naming `where` when the weight is
// not affine per (row, group) (the reason given), wider than 8 bits, or its groups do not start on a byte.
PackedWeights pack_for_kernels(const QuantizedWeight& w, const std::string& where = "pack_for_kernels");

// Quantizes W (float32, rows × cols, row-major) with quant/quantizer.h's min-max quantizer per group of `group`
// columns (group = cols: per channel), nearest rounding: symmetric uses the restricted range
// s = max|w| / (2^(b−1) − 1), asymmetric s = (max − min) / (2^b − 1) with the range widened to contain 0; then
// pack_for_kernels. An all-zero group gets s = 1. Error(Data) for bad shapes / options or non-finite weights.
PackedWeights pack_weights(const float* w, int64_t rows, int64_t cols, int bits, int64_t group, bool symmetric);

// PackedCodebook layout (non-uniform weights: k-means codebooks, the "kmeans" scheme), W [rows, cols]:
//   bits      2 or 3: K = 2^bits codewords, index i ∈ [0, K)
//   lo        uint8, rows × cols/4 bytes: the index's two low bits in the 2-bit layout of PackedWeights (column j in
//             byte j/4 at bit offset 2·(j mod 4))
//   hi        uint8, rows × cols/8 bytes, 3-bit only (else empty): the index's third bit, column j in byte j/8 at bit
//             j mod 8
//   codebook  float32, books × K, row-major: books = rows (a codebook per output row) or 1 (one for the tensor)
// W[r][j] = codebook[book(r)][lo(r, j) | hi(r, j) << 2]. Three bits per weight as two bit planes, so that both decode
// with shifts and masks (no index straddles a byte). Constraints: cols % 8 == 0.
struct PackedCodebook {
  int bits = 2;
  int64_t rows = 0, cols = 0, books = 1;
  std::vector<uint8_t> lo, hi;
  std::vector<float> codebook;

  int64_t levels() const { return int64_t{1} << bits; }
  int64_t lo_row_bytes() const { return cols / 4; }
  int64_t hi_row_bytes() const { return bits == 3 ? cols / 8 : 0; }
  const float* book(int64_t r) const { return codebook.data() + (books == 1 ? 0 : r) * levels(); }
  int index(int64_t r, int64_t j) const {
    int i = (lo[static_cast<size_t>(r * lo_row_bytes() + j / 4)] >> ((j % 4) * 2)) & 3;
    if (bits == 3) i |= ((hi[static_cast<size_t>(r * hi_row_bytes() + j / 8)] >> (j % 8)) & 1) << 2;
    return i;
  }
  // Error(Data) "<where>: ..." for inconsistent fields (bits, shape, buffer sizes, non-finite codewords).
  void validate(const std::string& where) const;
};

// Packs indices (int32, rows × cols, each in [0, 2^bits)) with their codebooks (books × 2^bits floats, books = rows
// or 1). Error(Data) for a bad layout or an index out of range.
PackedCodebook pack_codebook(const int32_t* index, int64_t rows, int64_t cols, int bits, const float* codebook,
                             int64_t books);
std::vector<float> unpack_codebook(const PackedCodebook& p);  // rows × cols

// The dequantized weight (rows × cols, row-major): the reference every kernel is checked against.
std::vector<float> unpack_weights(const PackedWeights& p);
// The same into w (rows × cols floats), without validation: for a PackedWeights already validated (prepared).
void dequantize_rows(const PackedWeights& p, float* w);
// Rows [r0, r1) only (w still points at row 0), for callers that split the rows across threads.
void dequantize_rows(const PackedWeights& p, float* w, int64_t r0, int64_t r1);

}  // namespace catq

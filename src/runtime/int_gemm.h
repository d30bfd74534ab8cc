// Integer GEMM with the activations quantized on the fly (W8A8, W4A8, W4A4, W2A8 ...: issue 5). The weights are
// PackedWeights codes (runtime/packed.h); each row of X (a token) is quantized to integer codes with its own scale
// (dynamic per-token) or with fixed calibrated params (static), then
//
//   Y[i][r] = s_x[i] · Σ_g s[r][g] · D[i][r][g],   D = Σ_{j∈g} (u[r][j] − z[r][g]) · (a[i][j] − z_x[i])
//           = A − z·X_g − z_x·W_g + G·z·z_x,       A = Σ_{j∈g} u·a,  X_g = Σ_{j∈g} a,  W_g = Σ_{j∈g} u
//
// where u are the unsigned weight codes and a the activation codes shifted into int8 (an unsigned 8-bit code q
// becomes a = q − 128 with z_x − 128: the same x̂). D is an exact integer on every path; only A is computed by the
// SIMD kernels (AVX-512 VNNI vpdpbusd: u8 weights × s8 activations → int32; AVX2: widen to int16, vpmaddwd), and
// the float epilogue Σ_g s·D is the same code for every ISA, so all paths give bit-identical results.
//
// Activation buffer (QuantizedRows::a): M rows × K int8 in "kernel order" for the weights' code width: within each
// full block of 64 columns, 8-bit keeps column order; 4-bit stores the even columns of the block, then the odd ones
// (the order in which the low and high nibbles of 32 packed bytes come out); 2-bit stores columns 4t+0 (t = 0..15),
// then 4t+1, 4t+2, 4t+3. Columns after the last full block stay in column order. kernel_position() maps a column.
//
// SIMD paths need group % 64 == 0 or group == K (per channel); other groups use the scalar path. Overflow: |D| ≤
// G·255·255 must fit in int32 (G ≤ 33,000 columns per group), checked when preparing.
//
// The 16-row layout (IntWeights::rows16, prepared when the CPU has AVX-512 VNNI, the codes are 4 or 8 bits and groups
// are whole 32-column blocks): rows in groups of 16 (the last padded with zero codes), and per group of 16 rows and
// 32-column block the 16 rows' codes interleaved so that one vpdpbusd multiplies 4 codes of each of the 16 rows by
// the same 4 broadcast activation codes — every int32 lane accumulating one row's dot product:
//   8-bit: 8 chunks c (columns 4c..4c+3) of 64 bytes, byte 64c + 4i + j = row i, column 4c + j (512 bytes per block);
//   4-bit: bytes 64c..64c+63 (c < 4) hold chunk c in the low nibbles and chunk c + 4 in the high ones (256 bytes),
// blocks of a row group consecutive. The activations then stay in column order (act_position(w, j) == j); the float
// epilogue runs on 16 rows at once with the same operations per row as the scalar one, so results stay
// bit-identical to it.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/kernels.h"
#include "runtime/packed.h"

namespace catq {

// How the activations are quantized: the same arithmetic as the simulation (quant/quantizer.h, float32): dynamic
// per row: lo = min(x)·clip, hi = max(x)·clip; symmetric s = max(|lo|, |hi|)/qmax (signed) or max(hi, 0)/qmax,
// asymmetric s = (max(hi,0) − min(lo,0))/(qmax − qmin), z = clamp(qmin − round(min(lo,0)/s)); s = 1 for a zero
// range; q = clamp(round_half_even(x / s) + z, qmin, qmax). Static: the given scale and zero-point.
struct ActQuant {
  int64_t qmin = -128, qmax = 127;  // code range (a span of at most 256 codes)
  bool symmetric = true, is_signed = true;
  float clip_ratio = 1.0f;
  bool dynamic = true;              // false: use scale / zero for every row
  float scale = 1.0f;
  int32_t zero = 0;
};

// Weights prepared once for the integer kernels: the packed codes with integer zero-points and per-group code sums.
struct IntWeights {
  PackedWeights w;
  std::vector<int32_t> zero;      // rows × groups, the zero-points as integers
  std::vector<int32_t> code_sum;  // rows × groups, W_g = Σ_{j∈g} u
  // The 16-row layout (above) and its per-(row group, group) epilogue operands, 16 rows each: zero-point, code sum
  // and scale. Empty when not prepared.
  std::vector<uint8_t> rows16;
  std::vector<int32_t> zero16, sum16;
  std::vector<float> scale16;
  bool epilogue32 = false;  // every epilogue term fits int32 (the 16-row epilogue runs in int32 lanes)
  bool natural_order() const { return !rows16.empty(); }
  int64_t row_groups() const { return (w.rows + 15) / 16; }
};
// Error(Data) when w is invalid, a zero-point is not an integer, or a group is too long for int32 accumulators.
IntWeights prepare_int_weights(PackedWeights w);

// M quantized activation rows in kernel order (see above), their scales, int8-shifted zero-points and group sums.
struct QuantizedRows {
  int64_t m = 0, k = 0, group = 0;
  std::vector<int8_t> a;        // m × k, kernel order
  std::vector<float> scale;     // m
  std::vector<int32_t> zero;    // m, z_x in the shifted (int8) code space
  std::vector<int32_t> group_sum;  // m × (k / group), X_g
};

// Position of column j in a kernel-order row of k columns for `bits`-bit weights.
int64_t kernel_position(int bits, int64_t j, int64_t k);
// Where column j of an activation row lives for weights w: kernel_position, or j itself in the 16-row layout.
int64_t act_position(const IntWeights& w, int64_t j);
// Quantizes x (m × k floats, row-major) into `out` for weights `w` (their code width sets the order).
// The avx512 path (AVX-512 F + BW) produces the same codes as the scalar one (the same IEEE operations).
void quantize_rows(const float* x, int64_t m, const ActQuant& aq, const IntWeights& w, QuantizedRows& out,
                   KernelIsa isa);
void quantize_rows(const float* x, int64_t m, const ActQuant& aq, const IntWeights& w, QuantizedRows& out);

// Y (m × rows) from already quantized rows. Error(Usage) for an ISA this CPU lacks. The avx512 path needs
// AVX-512 VNNI (and BW); on an AVX-512 CPU without it the avx2 path runs.
void gemm_int(const IntWeights& w, const QuantizedRows& a, float* y, KernelIsa isa);
// The same for output rows [r0, r1) only (r0 a multiple of 16 in the 16-row layout), on the calling thread: what a
// caller with its own thread pool splits (y keeps its full row stride w.rows).
void gemm_int_rows(const IntWeights& w, const QuantizedRows& a, float* y, int64_t r0, int64_t r1, KernelIsa isa);
// Quantizes x (m × cols) per ActQuant and multiplies: the fused call a linear layer makes.
void gemm_qact(const IntWeights& w, const float* x, int64_t m, const ActQuant& aq, float* y, KernelIsa isa);
void gemm_qact(const IntWeights& w, const float* x, int64_t m, const ActQuant& aq, float* y);

}  // namespace catq

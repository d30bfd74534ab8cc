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
// Quantizes x (m × k floats, row-major) into `out` for weights `w` (their code width sets the order).
// The avx512 path (AVX-512 F + BW) produces the same codes as the scalar one (the same IEEE operations).
void quantize_rows(const float* x, int64_t m, const ActQuant& aq, const IntWeights& w, QuantizedRows& out,
                   KernelIsa isa);
void quantize_rows(const float* x, int64_t m, const ActQuant& aq, const IntWeights& w, QuantizedRows& out);

// Y (m × rows) from already quantized rows. Error(Usage) for an ISA this CPU lacks. The avx512 path needs
// AVX-512 VNNI (and BW); on an AVX-512 CPU without it the avx2 path runs.
void gemm_int(const IntWeights& w, const QuantizedRows& a, float* y, KernelIsa isa);
// Quantizes x (m × cols) per ActQuant and multiplies: the fused call a linear layer makes.
void gemm_qact(const IntWeights& w, const float* x, int64_t m, const ActQuant& aq, float* y, KernelIsa isa);
void gemm_qact(const IntWeights& w, const float* x, int64_t m, const ActQuant& aq, float* y);

}  // namespace catq

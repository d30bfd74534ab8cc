// Linear layers computed directly on GGUF tensor data (ggml blocks of 32, io/gguf_blocks.h), for the lean LLM
// runtime (runtime/lean_llama.h). As in llama.cpp, the activations are quantized per block of 32 values to 8 bits
// (ActQ8: d = max|x| / 127 rounded to fp16, q = round(x / d)), and every (row, block) product is an exact integer
// dot product of the weight codes with the int8 activation codes, scaled by the two block scales:
//
//   y[r] = Σ_b  dw_b·da_b·Σ_{j∈b} c_j·a_j  +  o_b·da_b·Σ_{j∈b} a_j
//
// with c_j the weight's unsigned code and o_b its block offset: Q4_0 c = q, o = −8·dw; Q8_0 c = q + 128, o = −128·dw;
// Q4_1 c = q, o = m (x = d·q + m); Q4_K (super-blocks of 256 = 8 blocks of 32 with 6-bit scale sc_b and min m_b,
// x = d·sc_b·q − dmin·m_b): dw_b = d·sc_b, o_b = −dmin·m_b; Q6_K (sub-blocks of 16 with int8 scales, x = d·sc·(q − 32),
// c = q as stored, 0..63): each half-block is summed and scaled on its own. Types without a kernel (F16, BF16, Q5_*, the other
// K-quants, IQ4_NL) are dequantized to fp32 once at prepare time and run the fp32 kernel on the float activations.
//
// Prepare once: block_matrix() repacks the blocks of 16 consecutive rows ("row groups"; the last padded with zero
// rows) so that one vpdpbusd multiplies 4 codes of each of the 16 rows by the same 4 broadcast activation codes and
// every int32 lane accumulates one row's whole block sum; the 16 block scales then apply in one multiply-add:
//   codes  per row group g, per block b (group-block g·blocks + b, in that order), 8 chunks c of 4 values
//          (values 4c..4c+3) × 16 rows, byte 4i + j of a chunk = row 16g+i, value 4c+j:
//          8-bit (Q8_0, codes q + 128): chunk c at bytes 64c..64c+63 — 512 bytes per group-block;
//          4-bit (Q4_0, Q4_1): chunks c and c+4 (c < 4) share bytes 64c..64c+63, chunk c in the low nibbles and
//          chunk c+4 in the high ones — 256 bytes per group-block (Q4_0's 18 bytes per block of a row, as in the file)
//   d, m   fp16 bits, 16 per group-block in row order: the block scale, and (Q4_1) the offset m;
//          Q4_K: 16 per group-super-block (g, 256-value super-block s): the super-block's d and dmin, with
//   sc, mn uint8, 16 per group-block (Q4_K only): each block's 6-bit scale and min.
//   Q6_K: the stored 6-bit code (0..63) split, 6 bits per weight as in the file (6.56 with the scales): its low 4
//          bits as the 4-bit layout above (bytes 0..255), its top 2 bits in two 64-byte planes after them: byte
//          256 + 64h + 4i + j holds chunk 4h + k's 2 bits at bits 2k..2k+1 (row 16g+i, value 4(4h+k)+j) — 384 bytes
//          per group-block; d as Q4_K's, and sc 32 int8 per group-block: the 16 rows' scales of values 0..15, then
//          of values 16..31.
//
// Kernels: a scalar reference (every ISA) and AVX-512 VNNI, chosen at run time (best_isa(), CATQ_ISA caps it). Both
// compute the same integer block sums; only the float summation order of the scaled sums differs. Every output row
// is computed by one call over its row group, so results do not depend on how groups are split across threads.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "runtime/kernels.h"

namespace catq {

// Activations of T tokens quantized per block of 32 (natural order).
struct ActQ8 {
  int64_t tokens = 0, cols = 0;
  std::vector<int8_t> q;    // tokens × cols
  std::vector<float> d;     // tokens × blocks: the fp16-rounded scale
  std::vector<float> dsum;  // tokens × blocks: d·Σ_j q_j
  std::vector<float> dsum16;  // tokens × blocks × 2: d·Σ q_j over values 0..15 and 16..31 (Q6_K's sub-blocks)
  int64_t blocks() const { return cols / 32; }
};
// x: tokens × cols floats (cols % 32 == 0). Non-finite values are the caller's to reject. The AVX-512 path (isa
// Avx512 on a CPU with AVX-512F) runs the same IEEE operations as the scalar one, so the codes are identical; pool:
// tokens split across it (nullptr = the calling thread).
void quantize_act_q8(const float* x, int64_t tokens, int64_t cols, ActQ8& out, KernelIsa isa = KernelIsa::Scalar,
                     ThreadPool* pool = nullptr);

enum class BlockKernel { F32, Q4_0, Q4_1, Q8_0, Q4_K, Q6_K };
const char* to_string(BlockKernel k);

struct BlockMatrix {
  BlockKernel kernel = BlockKernel::F32;
  uint32_t source_type = 0;  // the GGUF tensor's ggml type
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes;   // quantized kernels: see the layout above
  std::vector<uint16_t> d, m;   // fp16 bits, 16 per group-block (Q4_K: per group-super-block)
  std::vector<uint8_t> sc, mn;  // Q4_K: 16 per group-block
  std::vector<float> f32;       // F32 kernel: rows × cols

  static constexpr int64_t kGroup = 16;  // rows per row group
  int64_t blocks() const { return cols / 32; }
  int64_t row_groups() const { return (rows + kGroup - 1) / kGroup; }
  int64_t group_block_bytes() const { return kernel == BlockKernel::Q8_0 ? 512 : kernel == BlockKernel::Q6_K ? 384 : 256; }
  // The unsigned code of row r, value j (no bounds check; quantized kernels).
  int code(int64_t r, int64_t j) const;
  bool quantized() const { return kernel != BlockKernel::F32; }
  uint64_t bytes() const { return codes.size() + 2 * (d.size() + m.size()) + sc.size() + mn.size() + 4 * f32.size(); }
};

// A GGUF tensor (ggml type id, rows × cols in torch order, its data) prepared for the kernels: Q4_0 / Q4_1 / Q8_0 /
// Q4_K / Q6_K repacked, other decodable types (F32, F16, BF16, Q5_0, Q5_1, Q2_K…Q6_K, IQ4_NL) converted to fp32.
// Error(Unsupported) naming `name` for a type catq cannot decode; Error(Format) for a bad size.
BlockMatrix block_matrix(uint32_t ggml_type, int64_t rows, int64_t cols, const uint8_t* data, uint64_t nbytes,
                         const std::string& name);

// The rows of several matrices of one kernel and column count stacked into one, in order (a fused q/k/v or gate/up
// projection: one pass over the weights and one split across threads instead of several). Each row keeps its
// arithmetic, so results are unchanged. False (out untouched) when the parts differ in kernel, source type or
// columns, or a part before the last has rows that are not a multiple of 16 (its padding rows would sit inside).
bool stack_rows(const std::vector<const BlockMatrix*>& parts, BlockMatrix& out);

// The first n values of GGUF data of `type` (F32, F16, BF16, or any block type with a decoder; n a multiple of its
// block) into out; false for a type catq cannot decode. What block_matrix's fp32 fallback and the lean runtime's
// embedding rows use.
bool decode_ggml_values(uint32_t type, const uint8_t* data, int64_t n, float* out);

// y[t·ldy + r] = Σ_j W[r][j]·x_t[j] for the rows of row groups [g0, g1) (rows < w.rows) and tokens t < T.
// Quantized kernels read xq (quantize_act_q8 of the same x), the F32 kernel reads x (T × cols).
void block_matmul(const BlockMatrix& w, const float* x, const ActQ8& xq, int64_t T, float* y, int64_t ldy, int64_t g0,
                  int64_t g1, KernelIsa isa);
// The ISA block_matmul runs for `want` on this CPU (the SIMD path needs AVX-512BW + VNNI + F16C).
KernelIsa block_matmul_isa(KernelIsa want);

}  // namespace catq

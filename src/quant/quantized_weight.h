// QuantizedWeight: catq's one quantized-weight value, and the weight-format traits table.
//
// Every holder of a quantized weight speaks it: SimQuant hands it out (quantized_weight()) and takes it back
// (set_quantized_weight), the .catq file stores it, the integer runtime prepares its kernels from it, and the GGUF
// writer writes it (converted exactly where a GGUF block type can hold it). A weight has a shape ([out, in] for a
// linear, [O, I, kh, kw] for a conv) and a format, one row of the traits table (weight_format_traits()):
//
//   format          value of code c (per block)            block (values sharing a scale)  `data` holds
//   uniform         s·(c − z), c ∈ [qmin, qmax]            tensor, channel or group         PACKED codes
//   kmeans          codebook[book][c], c ∈ [0, 2^bits)      tensor, channel or group         PACKED codes
//   binary          α·c, c ∈ {−1, +1}                       as uniform                       PACKED codes
//   ternary         α·c, c ∈ {−1, 0, +1} (|x| > Δ)          as uniform                       PACKED codes
//   f32, f16, bf16  the value itself (a weight left unquantized) 1                            the floats, row after row
//   q4_0 … iq4_nl   ggml's blocks (quant/ggml_blocks.h)     32 or 256 along a row            the blocks, row after row
//
// catq's own formats (the first four) keep their scales, zero-points, codebooks and thresholds in `params` (float /
// int32 CPU tensors shaped as quant/quantizer.h describes) and their codes in `data` in the PACKED layout
// (quant/packed_codes.h): u = c − qmin in `bits` bits, element after element — the .catq file's layout, and for 2, 4
// and 8 bits with rows of whole bytes the integer kernels' own (they read it in place; other widths are widened once
// when a kernel is prepared). ggml's formats carry everything in their blocks; rows are the last dimension.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "quant/quantizer.h"

namespace catq {

enum class WeightFormat : uint8_t {
  Uniform, KMeans, Binary, Ternary,                                      // catq's codes + QuantParams
  F32, F16, BF16,                                                        // ggml's stored floats (unquantized)
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,    // ggml's blocks
};

// Where a format's weights can go (the table's `kernels` and `writers` columns; the consumers check these flags).
enum WeightKernels : unsigned {
  kKernelNone = 0,
  kKernelPacked = 1u << 0,    // runtime/kernels.h weight-only GEMV / GEMM (W2/W4/W8 A16; 3 → 4, 5–7 → 8 bits widened)
  kKernelIntGemm = 1u << 1,   // runtime/int_gemm.h integer GEMM with quantized activations (W8A8, W4A8, W4A4, ...)
  kKernelCodebook = 1u << 2,  // runtime/kernels.h gemv_codebook (≤ 3-bit indices, a codebook per row or tensor)
  kKernelBlocks = 1u << 3,    // runtime/block_matvec.h lean GGUF-block kernels (VNNI, 16-row repacks)
  kKernelFp32 = 1u << 4,      // decoded to fp32 rows once at load (the lean runtime's fallback)
};
enum WeightWriters : unsigned {
  kWriterCatq = 1u << 0,      // the .catq file (io/catq_file.h)
  kWriterGguf = 1u << 1,      // GGUF, as its own ggml type
  kWriterGgufExact = 1u << 2, // GGUF after an exact conversion (convert_weight) to a ggml type
};

// One row of the traits table. ggml's rows give block and bytes per block and the scalar block codecs (the same
// functions as quant/ggml_blocks.h's GgmlTypeTraits); catq's rows have block 0 (the params' granularity decides) and
// use quant/quantizer.h's quantize / dequantize as their scalar reference.
struct WeightFormatTraits {
  WeightFormat format;
  const char* name;     // "uniform", "q4_k", ...
  uint32_t ggml;        // ggml type id (GgmlType), or kNoGgmlType
  int64_t block;        // values per block; 0: set by the weight's params
  int64_t block_bytes;  // bytes per block; 0: ⌈values·bits/8⌉ codes + params
  void (*quantize_block)(const float* x, const float* importance, uint8_t* blk);  // ggml rows only
  void (*dequantize_block)(const uint8_t* blk, float* y);                         // ggml rows only
  unsigned kernels;     // WeightKernels
  unsigned writers;     // WeightWriters
  const char* summary;  // one line for docs and `catq info`
};
inline constexpr uint32_t kNoGgmlType = 0xFFFFFFFFu;

const WeightFormatTraits& weight_format_traits(WeightFormat f);
const std::vector<WeightFormatTraits>& weight_format_table();  // every row, in enum order
const char* to_string(WeightFormat f);
std::optional<WeightFormat> parse_weight_format(const std::string& name);  // "q4_k", "Q4_K", "uniform", ...
std::optional<WeightFormat> weight_format_of_ggml(uint32_t ggml_type);    // nullopt for ggml types without codes
bool is_ggml_format(WeightFormat f);
WeightFormat weight_format_of(Scheme s);  // catq's format of a QuantParams scheme

struct QuantizedWeight {
  WeightFormat format = WeightFormat::Uniform;
  std::vector<int64_t> shape;  // the weight's shape
  int bits = 0;                // catq's formats: bits per PACKED code (code_bits(params.qmin, params.qmax))
  QuantParams params;          // catq's formats
  std::vector<uint8_t> data;   // PACKED codes (catq's formats) or ggml blocks

  int64_t numel() const;
  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }  // catq: dim 0; ggml: numel / row_length()
  int64_t row_length() const { return shape.empty() ? 1 : shape.back(); }
  const WeightFormatTraits& traits() const { return weight_format_traits(format); }
  bool is_ggml() const { return is_ggml_format(format); }
  // Bytes stored: data plus params (scales fp32, zero-points at `bits` bits when asymmetric, codebooks fp32), the
  // figure bits_per_weight() divides.
  uint64_t storage_bytes() const;
  double bits_per_weight() const { return numel() ? 8.0 * static_cast<double>(storage_bytes()) / numel() : 0.0; }
  // Error(Data) "<where>: ..." when the fields disagree (sizes, params shapes, code widths, ggml row lengths).
  void validate(const std::string& where) const;
  std::string str() const;  // e.g. "uniform 4-bit group(32) [4096, 4096]" or "q4_k [4096, 4096]"
};

// ---- catq's formats ------------------------------------------------------------------------------------------
// Codes (any integer dtype, the weight's shape, within [p.qmin, p.qmax]) and their params as a QuantizedWeight:
// Error(Internal) naming the code when one is outside the range. The format follows p.scheme.
QuantizedWeight make_quantized_weight(const at::Tensor& codes, QuantParams p);
// The integer codes (int32, the weight's shape) of a catq-format weight.
at::Tensor weight_codes(const QuantizedWeight& w);
// Quantizes w with spec (quant/quantizer.h's compute_params and quantize: the one reference quantizer).
QuantizedWeight quantize_weight(const at::Tensor& w, const QuantSpec& spec);

// ---- ggml's formats ------------------------------------------------------------------------------------------
// Encodes w ([rows, row], row a multiple of the format's block) with the format's scalar reference quantizer;
// importance as quant/ggml_blocks.h's quantize_gguf_blocks ([row] or w's shape, optional).
QuantizedWeight quantize_weight(const at::Tensor& w, WeightFormat ggml_format, const at::Tensor& importance = {});
// A ggml-format weight over encoded block bytes (copied), shape [rows, row]. Error(Data) when the sizes disagree.
QuantizedWeight ggml_weight(WeightFormat f, std::vector<int64_t> shape, const uint8_t* bytes, size_t n);

// ---- Any format ----------------------------------------------------------------------------------------------
// The weight's values (float32, its shape): the formats' scalar reference decoders.
at::Tensor dequantize(const QuantizedWeight& w);

// A uniform weight laid out for row-wise kernels: rows = dim 0, cols = the rest, one (scale, zero) pair per
// (row, group of `group` consecutive columns); zero in code units of u = c − qmin (x̂ = scale·(u − zero)).
struct AffineRowGroups {
  int64_t rows = 0, cols = 0, group = 0;
  std::vector<float> scale, zero;  // rows × (cols / group)
};
// nullopt with *why when the weight's params are not one pair per (row, group of columns): another scheme, channels
// along another axis, groups along the output axis.
std::optional<AffineRowGroups> affine_row_groups(const QuantizedWeight& w, std::string* why);

// The same weight in format `to` when `to` can hold it exactly — every value equal up to the target's storage of its
// scales (fp16 in ggml's blocks; *max_deviation, if given, gets the largest |difference| relative to the weight's
// largest magnitude): uniform 4-bit codes → q4_0 (symmetric, 16 levels) or q4_1, 5-bit → q5_0 / q5_1, symmetric 8-bit
// → q8_0, with one scale per row or per group of a multiple of 32 inputs. Anything else is Error(Unsupported) saying
// why (another scheme or width, groups that no block fits, rows not a multiple of 32).
QuantizedWeight convert_weight(const QuantizedWeight& w, WeightFormat to, double* max_deviation = nullptr);
// The ggml format convert_weight would pick for w (the one that holds its codes exactly), or nullopt with *why.
std::optional<WeightFormat> exact_ggml_format(const QuantizedWeight& w, std::string* why);

}  // namespace catq

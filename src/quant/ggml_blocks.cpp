// ggml's block formats: the type traits table (the other formats' decoders: ggml_kquants.cpp, encoders:
// ggml_encode.cpp), the scalar Q8_0 / Q4_0 / Q4_1 block codecs and the tensor encoder quantize_gguf_blocks
// (layouts and math: ggml_blocks.h).
#include "quant/ggml_blocks.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstddef>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace catq {

namespace {

// The fp16 value the decoder will see (ggml stores d rounded to fp16; codes are computed from the unrounded d,
// as ggml's reference quantizer does).
uint16_t half_bits(float v) { return c10::Half(v).x; }

void quantize_block_q8_0(const float* x, const float* /*importance*/, uint8_t* out) {
  BlockQ8_0 b;
  float amax = 0;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  float d = amax / 127.0f;
  float id = d > 0 ? 1.0f / d : 0.0f;
  b.d = half_bits(d);
  for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(std::lround(x[j] * id));
  std::memcpy(out, &b, sizeof b);
}

void dequantize_block_q8_0(const uint8_t* in, float* y) {
  const BlockQ8_0 b = load_block<BlockQ8_0>(in);
  const float d = half_value(b.d);
  for (int j = 0; j < kQK; ++j) y[j] = d * static_cast<float>(b.qs[j]);
}

void quantize_block_q4_0(const float* x, const float* importance, uint8_t* out) {
  BlockQ4_0 b;
  uint8_t q[kQK];
  float amax = 0, vmax = 0;
  for (int j = 0; j < kQK; ++j)
    if (std::fabs(x[j]) > amax) amax = std::fabs(x[j]), vmax = x[j];
  const float d = vmax / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
  b.d = half_bits(d);
  for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(std::min(15, static_cast<int>(x[j] * id + 8.5f)));
  pack_nibbles32(q, b.qs);
  std::memcpy(out, &b, sizeof b);
  improve_plain_block(GGML_Q4_0, x, importance, out);
}

void dequantize_block_q4_0(const uint8_t* in, float* y) {
  const BlockQ4_0 b = load_block<BlockQ4_0>(in);
  const float d = half_value(b.d);
  for (int j = 0; j < kQK / 2; ++j) {  // (q − 8)·d, as ggml's decoder (same rounding)
    y[j] = static_cast<float>((b.qs[j] & 0x0F) - 8) * d;
    y[j + kQK / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
  }
}

void quantize_block_q4_1(const float* x, const float* importance, uint8_t* out) {
  BlockQ4_1 b;
  uint8_t q[kQK];
  float lo = x[0], hi = x[0];
  for (int j = 1; j < kQK; ++j) lo = std::min(lo, x[j]), hi = std::max(hi, x[j]);
  const float d = (hi - lo) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
  b.d = half_bits(d);
  b.m = half_bits(lo);
  for (int j = 0; j < kQK; ++j) q[j] = static_cast<uint8_t>(std::min(15, static_cast<int>((x[j] - lo) * id + 0.5f)));
  pack_nibbles32(q, b.qs);
  std::memcpy(out, &b, sizeof b);
  improve_plain_block(GGML_Q4_1, x, importance, out);
}

void dequantize_block_q4_1(const uint8_t* in, float* y) {
  const BlockQ4_1 b = load_block<BlockQ4_1>(in);
  const float d = half_value(b.d);
  const float m = half_value(b.m);
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * static_cast<float>(b.qs[j] & 0x0F) + m;
    y[j + kQK / 2] = d * static_cast<float>(b.qs[j] >> 4) + m;
  }
}

void set_codes_q8_0(uint8_t* blk, const uint8_t* q) {
  for (int j = 0; j < kQK; ++j) blk[offsetof(BlockQ8_0, qs) + j] = static_cast<uint8_t>(static_cast<int>(q[j]) - 128);
}
void set_codes_q4_0(uint8_t* blk, const uint8_t* q) { pack_nibbles32(q, blk + offsetof(BlockQ4_0, qs)); }
void set_codes_q4_1(uint8_t* blk, const uint8_t* q) { pack_nibbles32(q, blk + offsetof(BlockQ4_1, qs)); }

// The float types as 1-value "blocks" (stored floats: a weight kept unquantized in a GGUF file).
void quantize_block_f32(const float* x, const float*, uint8_t* out) { std::memcpy(out, x, 4); }
void dequantize_block_f32(const uint8_t* in, float* y) { std::memcpy(y, in, 4); }
void quantize_block_f16(const float* x, const float*, uint8_t* out) {
  const uint16_t h = half_bits(*x);
  std::memcpy(out, &h, 2);
}
void dequantize_block_f16(const uint8_t* in, float* y) {
  uint16_t h;
  std::memcpy(&h, in, 2);
  *y = half_value(h);
}
void quantize_block_bf16(const float* x, const float*, uint8_t* out) {
  const uint16_t h = c10::BFloat16(*x).x;  // round to nearest even, as torch's bf16 conversion
  std::memcpy(out, &h, 2);
}
void dequantize_block_bf16(const uint8_t* in, float* y) {
  uint16_t h;
  std::memcpy(&h, in, 2);
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  std::memcpy(y, &u, 4);
}

// IQ4_NL's codebook as the levels of its codes.
constexpr float kIq4nlLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
static_assert(kIq4nlLevels[0] == kIq4nlValues[0] && kIq4nlLevels[7] == kIq4nlValues[7] &&
              kIq4nlLevels[15] == kIq4nlValues[15], "IQ4_NL levels differ from the codebook");

// Indexed by ggml type id (ggml-common.h); {nullptr, 0, 0} = id not in use.
constexpr GgmlTypeTraits kTraits[] = {
    {"F32", 1, 4, quantize_block_f32, dequantize_block_f32},
    {"F16", 1, 2, quantize_block_f16, dequantize_block_f16},
    {"Q4_0", kQK, sizeof(BlockQ4_0), quantize_block_q4_0, dequantize_block_q4_0, 16, nullptr, set_codes_q4_0},
    {"Q4_1", kQK, sizeof(BlockQ4_1), quantize_block_q4_1, dequantize_block_q4_1, 16, nullptr, set_codes_q4_1},
    {nullptr, 0, 0},      {nullptr, 0, 0},
    {"Q5_0", kQK, sizeof(BlockQ5_0), quantize_block_q5_0, dequantize_block_q5_0, 32, nullptr, set_codes_q5_0},
    {"Q5_1", kQK, sizeof(BlockQ5_1), quantize_block_q5_1, dequantize_block_q5_1, 32, nullptr, set_codes_q5_1},
    {"Q8_0", kQK, sizeof(BlockQ8_0), quantize_block_q8_0, dequantize_block_q8_0, 256, nullptr, set_codes_q8_0},
    {"Q8_1", 32, 36},
    {"Q2_K", kQK_K, sizeof(BlockQ2_K), quantize_block_q2_k, dequantize_block_q2_k, 4, nullptr, set_codes_q2_k},
    {"Q3_K", kQK_K, sizeof(BlockQ3_K), quantize_block_q3_k, dequantize_block_q3_k, 8, nullptr, set_codes_q3_k},
    {"Q4_K", kQK_K, sizeof(BlockQ4_K), quantize_block_q4_k, dequantize_block_q4_k, 16, nullptr, set_codes_q4_k},
    {"Q5_K", kQK_K, sizeof(BlockQ5_K), quantize_block_q5_k, dequantize_block_q5_k, 32, nullptr, set_codes_q5_k},
    {"Q6_K", kQK_K, sizeof(BlockQ6_K), quantize_block_q6_k, dequantize_block_q6_k, 64, nullptr, set_codes_q6_k},
    {"Q8_K", 256, 292},   {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98},
    {"IQ1_S", 256, 50},
    {"IQ4_NL", kQK, sizeof(BlockIq4Nl), quantize_block_iq4_nl, dequantize_block_iq4_nl, 16, kIq4nlLevels,
     set_codes_iq4_nl},
    {"IQ3_S", 256, 110},  {"IQ2_S", 256, 82},  {"IQ4_XS", 256, 136},
    {"I8", 1, 1},         {"I16", 1, 2},        {"I32", 1, 4},        {"I64", 1, 8},       {"F64", 1, 8},
    {"IQ1_M", 256, 56},   {"BF16", 1, 2, quantize_block_bf16, dequantize_block_bf16},       {nullptr, 0, 0},      {nullptr, 0, 0},     {nullptr, 0, 0},
    {"TQ1_0", 256, 54},   {"TQ2_0", 256, 66},   {nullptr, 0, 0},      {nullptr, 0, 0},     {nullptr, 0, 0},
    {"MXFP4", 32, 17},
};
static_assert(sizeof(kTraits) / sizeof(kTraits[0]) == 40 && kTraits[GGML_Q8_0].bytes == 34 && kTraits[6].bytes == 22 &&
              kTraits[7].bytes == 24 && kTraits[10].bytes == 84 && kTraits[11].bytes == 110 && kTraits[12].bytes == 144 &&
              kTraits[13].bytes == 176 && kTraits[14].bytes == 210 && kTraits[20].bytes == 18 &&
              kTraits[GGML_Q4_0].bytes == 18 && kTraits[GGML_Q4_1].bytes == 20 && kTraits[GGML_BF16].bytes == 2);

}  // namespace

const GgmlTypeTraits* ggml_type_traits(uint32_t t) {
  if (t >= sizeof(kTraits) / sizeof(kTraits[0]) || !kTraits[t].name) return nullptr;
  return &kTraits[t];
}

std::string ggml_type_name(uint32_t type) {
  const GgmlTypeTraits* ti = ggml_type_traits(type);
  return ti ? ti->name : fmt::format("type{}", type);
}

std::string quantize_gguf_blocks(const at::Tensor& w, uint32_t type, const at::Tensor& importance) {
  const GgmlTypeTraits* tt = ggml_type_traits(type);
  CATQ_CHECK(tt && tt->quantize, Unsupported, "GGUF: catq has no encoder for ggml type {}", ggml_type_name(type));
  at::Tensor f = w.detach().to(at::kCPU, at::kFloat).contiguous();
  const int64_t n = f.numel(), row = f.dim() >= 2 ? f.size(-1) : n;
  CATQ_CHECK(row % tt->block == 0, Internal, "GGUF {}: rows of {} values are not a multiple of the block ({})",
             tt->name, row, tt->block);
  at::Tensor imp;
  if (importance.defined()) {
    imp = importance.detach().to(at::kCPU, at::kFloat).contiguous();
    CATQ_CHECK(imp.numel() == row || imp.numel() == n, Internal, "GGUF {}: importance has {} values for rows of {} "
               "({} values in all)", tt->name, imp.numel(), row, n);
  }
  const float* x = f.data_ptr<float>();
  const float* iw = imp.defined() ? imp.data_ptr<float>() : nullptr;
  std::string out(static_cast<size_t>(n / tt->block * tt->bytes), '\0');
  for (int64_t b = 0; b < n / tt->block; ++b)
    tt->quantize(x + b * tt->block, iw ? iw + (imp.numel() == n ? b * tt->block : (b * tt->block) % row) : nullptr,
                 reinterpret_cast<uint8_t*>(&out[b * tt->bytes]));
  return out;
}

namespace {

const GgmlTypeTraits& codec_traits(uint32_t type, int64_t row, const std::string& bytes, int64_t rows) {
  const GgmlTypeTraits* tt = ggml_type_traits(type);
  CATQ_CHECK(tt && tt->dequantize && tt->set_codes, Unsupported, "GGUF: catq has no codes for ggml type {}",
             ggml_type_name(type));
  CATQ_CHECK(row % tt->block == 0 && static_cast<int64_t>(bytes.size()) == rows * (row / tt->block) * tt->bytes,
             Internal, "GGUF {}: {} bytes are not [{}, {}] values", tt->name, bytes.size(), rows, row);
  return *tt;
}

}  // namespace

at::Tensor dequantize_gguf_blocks(const std::string& bytes, uint32_t type, int64_t rows, int64_t row) {
  const GgmlTypeTraits& tt = codec_traits(type, row, bytes, rows);
  at::Tensor y = at::empty({rows, row}, at::kFloat);
  float* yp = y.data_ptr<float>();
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  for (int64_t b = 0; b < rows * row / tt.block; ++b) tt.dequantize(p + b * tt.bytes, yp + b * tt.block);
  return y;
}

GgufGrid gguf_block_grid(const std::string& bytes, uint32_t type, int64_t rows, int64_t row) {
  const GgmlTypeTraits& tt = codec_traits(type, row, bytes, rows);
  GgufGrid g;
  g.levels = tt.levels;
  if (tt.level_values) g.level_values.assign(tt.level_values, tt.level_values + tt.levels);
  const float l0 = tt.level_values ? tt.level_values[0] : 0.0f, l1 = tt.level_values ? tt.level_values[1] : 1.0f;
  g.scale = at::empty({rows, row}, at::kFloat);
  g.offset = at::empty({rows, row}, at::kFloat);
  float *sp = g.scale.data_ptr<float>(), *op = g.offset.data_ptr<float>();
  // Every value is s·level(c) + m: the block decoded with all codes 0 and with all codes 1 gives s and m.
  std::vector<uint8_t> blk(static_cast<size_t>(tt.bytes)), zeros(static_cast<size_t>(tt.block), 0),
      ones(static_cast<size_t>(tt.block), 1);
  std::vector<float> y0(static_cast<size_t>(tt.block)), y1(static_cast<size_t>(tt.block));
  for (int64_t b = 0; b < rows * row / tt.block; ++b) {
    std::memcpy(blk.data(), bytes.data() + b * tt.bytes, blk.size());
    tt.set_codes(blk.data(), zeros.data());
    tt.dequantize(blk.data(), y0.data());
    tt.set_codes(blk.data(), ones.data());
    tt.dequantize(blk.data(), y1.data());
    for (int64_t i = 0; i < tt.block; ++i) {
      const float s = (y1[i] - y0[i]) / (l1 - l0);
      sp[b * tt.block + i] = s;
      op[b * tt.block + i] = y0[i] - s * l0;
    }
  }
  return g;
}

std::string gguf_set_codes(const std::string& bytes, uint32_t type, const at::Tensor& codes) {
  CATQ_CHECK(codes.dim() == 2 && codes.scalar_type() == at::kByte, Internal, "GGUF codes: expected uint8 [rows, row]");
  const int64_t rows = codes.size(0), row = codes.size(1);
  const GgmlTypeTraits& tt = codec_traits(type, row, bytes, rows);
  const at::Tensor c = codes.contiguous();
  const uint8_t* cp = c.data_ptr<uint8_t>();
  std::string out = bytes;
  for (int64_t b = 0; b < rows * row / tt.block; ++b)
    tt.set_codes(reinterpret_cast<uint8_t*>(&out[b * tt.bytes]), cp + b * tt.block);
  return out;
}

static_assert(offsetof(BlockQ8_0, d) == 0 && offsetof(BlockQ4_0, d) == 0 && offsetof(BlockQ5_0, d) == 0 &&
                  offsetof(BlockQ4_1, m) == 2 && offsetof(BlockQ5_1, m) == 2,
              "gguf_blocks_from_codes writes d at byte 0 and m at byte 2");

std::string gguf_blocks_from_codes(uint32_t type, const at::Tensor& codes, const at::Tensor& d, const at::Tensor& m) {
  const bool affine = type == GGML_Q4_1 || type == GGML_Q5_1;
  CATQ_CHECK(type == GGML_Q8_0 || type == GGML_Q4_0 || type == GGML_Q5_0 || affine, Internal,
             "GGUF: {} blocks do not hold a plain d / m", ggml_type_name(type));
  CATQ_CHECK(codes.dim() == 2 && codes.scalar_type() == at::kByte && codes.size(1) % kQK == 0, Internal,
             "GGUF codes: expected uint8 [rows, 32·k]");
  const GgmlTypeTraits& tt = *ggml_type_traits(type);
  const int64_t rows = codes.size(0), nb = codes.size(1) / kQK;
  const at::Tensor c = codes.contiguous(), dd = d.to(at::kFloat).reshape({rows, nb}).contiguous();
  const at::Tensor mm = affine ? m.to(at::kFloat).reshape({rows, nb}).contiguous() : at::Tensor();
  std::string out(static_cast<size_t>(rows * nb * tt.bytes), '\0');
  for (int64_t b = 0; b < rows * nb; ++b) {
    auto* blk = reinterpret_cast<uint8_t*>(&out[b * tt.bytes]);
    const uint16_t db = half_bits(dd.data_ptr<float>()[b]);
    std::memcpy(blk, &db, 2);  // every one of these formats starts with fp16 d; the _1 formats follow with fp16 m
    if (affine) {
      const uint16_t mb = half_bits(mm.data_ptr<float>()[b]);
      std::memcpy(blk + 2, &mb, 2);
    }
    tt.set_codes(blk, c.data_ptr<uint8_t>() + b * kQK);
  }
  return out;
}

std::string quantize_q8_0(const at::Tensor& w) { return quantize_gguf_blocks(w, GGML_Q8_0); }
std::string quantize_q4_0(const at::Tensor& w) { return quantize_gguf_blocks(w, GGML_Q4_0); }
std::string quantize_q4_1(const at::Tensor& w) { return quantize_gguf_blocks(w, GGML_Q4_1); }

}  // namespace catq

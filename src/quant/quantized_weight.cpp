// QuantizedWeight and the weight-format traits table (quant/quantized_weight.h).
#include "quant/quantized_weight.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "quant/ggml_blocks.h"
#include "quant/packed_codes.h"

namespace catq {

// ---- The traits table ----------------------------------------------------------------------------------------

namespace {

constexpr unsigned kCatqKernels = kKernelPacked | kKernelIntGemm;

std::vector<WeightFormatTraits> make_table() {
  auto ggml = [](WeightFormat f, const char* name, uint32_t id, unsigned kernels, const char* summary) {
    const GgmlTypeTraits* t = ggml_type_traits(id);
    return WeightFormatTraits{f, name, id, t->block, t->bytes, t->quantize, t->dequantize, kernels, kWriterGguf, summary};
  };
  constexpr unsigned kBlocks = kKernelBlocks, kFp32 = kKernelFp32;
  return {
      {WeightFormat::Uniform, "uniform", kNoGgmlType, 0, 0, nullptr, nullptr, kCatqKernels,
       kWriterCatq | kWriterGgufExact,
       "x = s·(c − z), 1–8-bit codes, a scale / zero-point per tensor, channel or group"},
      {WeightFormat::KMeans, "kmeans", kNoGgmlType, 0, 0, nullptr, nullptr, kKernelCodebook, kWriterCatq,
       "x = codebook[c], a sorted codebook of 2^bits values per tensor, channel or group"},
      {WeightFormat::Binary, "binary", kNoGgmlType, 0, 0, nullptr, nullptr, kKernelNone, kWriterCatq,
       "x = α·c, c ∈ {−1, +1}, α = mean |w| per tensor, channel or group"},
      {WeightFormat::Ternary, "ternary", kNoGgmlType, 0, 0, nullptr, nullptr, kKernelNone, kWriterCatq,
       "x = α·c, c ∈ {−1, 0, +1} (|w| > Δ)"},
      ggml(WeightFormat::F32, "f32", GGML_F32, kFp32, "fp32 values (unquantized)"),
      ggml(WeightFormat::F16, "f16", GGML_F16, kFp32, "fp16 values (unquantized)"),
      ggml(WeightFormat::BF16, "bf16", GGML_BF16, kFp32, "bf16 values (unquantized)"),
      ggml(WeightFormat::Q4_0, "q4_0", GGML_Q4_0, kBlocks, "x = d·(q − 8), 32 values, fp16 d"),
      ggml(WeightFormat::Q4_1, "q4_1", GGML_Q4_1, kBlocks, "x = d·q + m, 32 values, fp16 d and m"),
      ggml(WeightFormat::Q5_0, "q5_0", GGML_Q5_0, kFp32, "x = d·(q − 16), 32 values"),
      ggml(WeightFormat::Q5_1, "q5_1", GGML_Q5_1, kFp32, "x = d·q + m, 32 values"),
      ggml(WeightFormat::Q8_0, "q8_0", GGML_Q8_0, kBlocks, "x = d·q, 32 values, int8 q"),
      ggml(WeightFormat::Q2_K, "q2_k", GGML_Q2_K, kFp32, "256-value super-blocks, 16 × 16, 4-bit scales and mins"),
      ggml(WeightFormat::Q3_K, "q3_k", GGML_Q3_K, kFp32, "256-value super-blocks, 16 × 16, 6-bit scales"),
      ggml(WeightFormat::Q4_K, "q4_k", GGML_Q4_K, kBlocks, "256-value super-blocks, 8 × 32, 6-bit scales and mins"),
      ggml(WeightFormat::Q5_K, "q5_k", GGML_Q5_K, kFp32, "256-value super-blocks, 8 × 32, 6-bit scales and mins"),
      ggml(WeightFormat::Q6_K, "q6_k", GGML_Q6_K, kBlocks, "256-value super-blocks, 16 × 16, int8 scales"),
      ggml(WeightFormat::IQ4_NL, "iq4_nl", GGML_IQ4_NL, kFp32, "x = d·grid[q], 32 values, a fixed 16-level grid"),
  };
}

const std::vector<WeightFormatTraits>& table() {
  static const std::vector<WeightFormatTraits> t = [] {
    std::vector<WeightFormatTraits> v = make_table();
    for (size_t i = 0; i < v.size(); ++i)
      CATQ_CHECK(static_cast<size_t>(v[i].format) == i, Internal, "weight format table out of enum order at {}", i);
    return v;
  }();
  return t;
}

bool catq_format(WeightFormat f) { return !is_ggml_format(f); }

}  // namespace

WeightFormat weight_format_of(Scheme s) {
  switch (s) {
    case Scheme::Uniform: return WeightFormat::Uniform;
    case Scheme::KMeans: return WeightFormat::KMeans;
    case Scheme::Binary: return WeightFormat::Binary;
    case Scheme::Ternary: return WeightFormat::Ternary;
  }
  return WeightFormat::Uniform;
}

namespace {

int64_t product(const std::vector<int64_t>& s, size_t from = 0) {
  int64_t n = 1;
  for (size_t i = from; i < s.size(); ++i) n *= s[i];
  return n;
}

}  // namespace

const WeightFormatTraits& weight_format_traits(WeightFormat f) {
  const auto& t = table();
  CATQ_CHECK(static_cast<size_t>(f) < t.size(), Internal, "weight format {} is not in the table", static_cast<int>(f));
  return t[static_cast<size_t>(f)];
}
const std::vector<WeightFormatTraits>& weight_format_table() { return table(); }
const char* to_string(WeightFormat f) { return weight_format_traits(f).name; }
bool is_ggml_format(WeightFormat f) { return f >= WeightFormat::F32; }

std::optional<WeightFormat> parse_weight_format(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const WeightFormatTraits& t : table())
    if (lower == t.name) return t.format;
  return std::nullopt;
}

std::optional<WeightFormat> weight_format_of_ggml(uint32_t ggml_type) {
  for (const WeightFormatTraits& t : table())
    if (t.ggml == ggml_type) return t.format;
  return std::nullopt;
}

// ---- QuantizedWeight -----------------------------------------------------------------------------------------

int64_t QuantizedWeight::numel() const { return product(shape); }

uint64_t QuantizedWeight::storage_bytes() const {
  uint64_t n = data.size();
  if (catq_format(format)) {
    const QuantParams& p = params;
    if (p.scale.defined()) n += static_cast<uint64_t>(p.scale.numel()) * 4;
    if (p.codebook.defined()) n += static_cast<uint64_t>(p.codebook.numel()) * 4;
    if (p.threshold.defined()) n += static_cast<uint64_t>(p.threshold.numel()) * 4;
    if (p.zero_point.defined() && format == WeightFormat::Uniform &&
        (p.zero_point != 0).any().item<bool>())  // asymmetric: zero-points at the codes' width
      n += (static_cast<uint64_t>(p.zero_point.numel()) * bits + 7) / 8;
  }
  return n;
}

void QuantizedWeight::validate(const std::string& where) const {
  CATQ_CHECK(!shape.empty(), Data, "{}: a quantized weight needs a shape", where);
  for (int64_t d : shape) CATQ_CHECK(d > 0, Data, "{}: dimension {} of [{}] is not positive", where, d, fmt::join(shape, ", "));
  const WeightFormatTraits& t = traits();
  if (is_ggml()) {
    CATQ_CHECK(row_length() % t.block == 0, Data, "{}: {} rows of {} values are not a whole number of {}-value blocks",
               where, t.name, row_length(), t.block);
    const uint64_t want = static_cast<uint64_t>(numel() / t.block) * static_cast<uint64_t>(t.block_bytes);
    CATQ_CHECK(data.size() == want, Data, "{}: {} bytes of {} blocks for [{}], expected {}", where, data.size(), t.name,
               fmt::join(shape, ", "), want);
    return;
  }
  const QuantParams& p = params;
  CATQ_CHECK(format == weight_format_of(p.scheme), Data, "{}: format {} with params of scheme {}", where, t.name,
             to_string(p.scheme));
  CATQ_CHECK(p.qmin < p.qmax && bits == code_bits(p.qmin, p.qmax) && bits >= 1 && bits <= 16, Data,
             "{}: {}-bit codes for the range [{}, {}], expected {}", where, bits, p.qmin, p.qmax, code_bits(p.qmin, p.qmax));
  const uint64_t want = (static_cast<uint64_t>(numel()) * bits + 7) / 8;
  CATQ_CHECK(data.size() == want, Data, "{}: {} code bytes for {} codes of {} bits, expected {}", where, data.size(),
             numel(), bits, want);
  CATQ_CHECK(p.defined(), Data, "{}: {} weight without params", where, t.name);
  if (p.scheme == Scheme::KMeans) {
    CATQ_CHECK(p.codebook.dim() == 2 && p.codebook.size(1) == p.qmax - p.qmin + 1, Data,
               "{}: codebook of shape [{}], expected [books, {}]", where, fmt::join(p.codebook.sizes(), ", "),
               p.qmax - p.qmin + 1);
    return;
  }
  const std::vector<int64_t> ps = param_shape(shape, p.granularity, p.axis, p.group_size);
  CATQ_CHECK(p.scale.numel() == product(ps) && p.zero_point.defined() && p.zero_point.numel() == p.scale.numel(), Data,
             "{}: {} scales and {} zero-points for a [{}] weight quantized per {}, expected {}", where, p.scale.numel(),
             p.zero_point.defined() ? p.zero_point.numel() : 0, fmt::join(shape, ", "), to_string(p.granularity),
             product(ps));
}

std::string QuantizedWeight::str() const {
  if (is_ggml()) return fmt::format("{} [{}]", traits().name, fmt::join(shape, ", "));
  const QuantParams& p = params;
  std::string g = to_string(p.granularity);
  if (p.granularity == Granularity::PerGroup) g = fmt::format("group({})", p.group_size);
  else if (p.granularity == Granularity::PerChannel) g = fmt::format("channel({})", p.axis);
  return fmt::format("{} {}-bit {} [{}]", traits().name, p.bits, g, fmt::join(shape, ", "));
}

// ---- catq's formats ------------------------------------------------------------------------------------------

QuantizedWeight make_quantized_weight(const at::Tensor& codes, QuantParams p) {
  CATQ_CHECK(codes.defined() && p.defined(), Internal, "make_quantized_weight: codes or params undefined");
  QuantizedWeight w;
  w.format = weight_format_of(p.scheme);
  w.shape = codes.sizes().vec();
  w.bits = code_bits(p.qmin, p.qmax);
  auto cpu = [](const at::Tensor& t) { return t.defined() ? t.detach().cpu().contiguous() : t; };
  p.scale = cpu(p.scale), p.zero_point = cpu(p.zero_point), p.codebook = cpu(p.codebook), p.threshold = cpu(p.threshold);
  w.params = std::move(p);
  const at::Tensor q = flat_codes(codes);
  w.data.assign((static_cast<size_t>(q.numel()) * w.bits + 7) / 8, 0);
  pack_codes(q, 0, q.numel(), w.bits, w.params.qmin, w.data.data());
  w.validate("make_quantized_weight");
  return w;
}

at::Tensor weight_codes(const QuantizedWeight& w) {
  CATQ_CHECK(catq_format(w.format), Internal, "weight_codes: a {} weight has no catq codes", w.traits().name);
  at::Tensor q = at::empty(w.shape, at::kInt);
  unpack_codes(w.data.data(), w.numel(), w.bits, w.params.qmin, q.data_ptr<int32_t>());
  return q;
}

QuantizedWeight quantize_weight(const at::Tensor& w, const QuantSpec& spec) {
  const at::Tensor x = w.detach().to(at::kCPU, at::kFloat).contiguous();
  const QuantParams p = compute_params(spec, x);
  return make_quantized_weight(quantize(x, p, spec.rounding), p);
}

// ---- ggml's formats ------------------------------------------------------------------------------------------

QuantizedWeight quantize_weight(const at::Tensor& w, WeightFormat f, const at::Tensor& importance) {
  CATQ_CHECK(is_ggml_format(f), Internal, "quantize_weight: {} needs a QuantSpec", to_string(f));
  const std::string bytes = quantize_gguf_blocks(w, weight_format_traits(f).ggml, importance);
  return ggml_weight(f, w.sizes().vec(), reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

QuantizedWeight ggml_weight(WeightFormat f, std::vector<int64_t> shape, const uint8_t* bytes, size_t n) {
  CATQ_CHECK(is_ggml_format(f), Internal, "ggml_weight: {} is not a ggml format", to_string(f));
  QuantizedWeight w;
  w.format = f;
  w.shape = std::move(shape);
  w.data.assign(bytes, bytes + n);
  w.validate("ggml_weight");
  return w;
}

// ---- Any format ----------------------------------------------------------------------------------------------

at::Tensor dequantize(const QuantizedWeight& w) {
  if (catq_format(w.format)) return dequantize(weight_codes(w), w.params).to(at::kFloat);
  const WeightFormatTraits& t = w.traits();
  at::Tensor y = at::empty(w.shape, at::kFloat);
  float* yp = y.data_ptr<float>();
  for (int64_t b = 0; b < w.numel() / t.block; ++b) t.dequantize_block(w.data.data() + b * t.block_bytes, yp + b * t.block);
  return y;
}

std::optional<AffineRowGroups> affine_row_groups(const QuantizedWeight& w, std::string* why) {
  auto no = [&](std::string reason) -> std::optional<AffineRowGroups> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  if (w.format != WeightFormat::Uniform) return no(fmt::format("{} weights are not affine codes", w.traits().name));
  const QuantParams& p = w.params;
  AffineRowGroups g;
  g.rows = w.shape[0];
  g.cols = w.numel() / g.rows;
  int64_t groups = 1;
  if (p.granularity == Granularity::PerGroup) {
    if (p.axis != 1 || w.shape.size() < 2) return no("groups along the output axis");
    g.group = p.group_size * product(w.shape, 2);  // a conv group: G input channels × kh × kw
    groups = g.cols / g.group;
  } else if (p.granularity == Granularity::PerChannel) {
    if (p.axis != 0) return no("channels along the input axis");
    g.group = g.cols;
  } else if (p.granularity == Granularity::PerTensor) {
    g.group = g.cols;
  } else {
    return no(fmt::format("{} weight granularity", to_string(p.granularity)));
  }
  const at::Tensor s = p.scale.to(at::kFloat).contiguous().reshape({-1});
  const at::Tensor z = p.zero_point.to(at::kFloat).contiguous().reshape({-1});
  const int64_t n = g.rows * groups;
  g.scale.resize(static_cast<size_t>(n));
  g.zero.resize(static_cast<size_t>(n));
  const float* sp = s.data_ptr<float>();
  const float* zp = z.data_ptr<float>();
  const bool one = s.numel() == 1;
  for (int64_t i = 0; i < n; ++i) {
    g.scale[static_cast<size_t>(i)] = sp[one ? 0 : i];
    g.zero[static_cast<size_t>(i)] = zp[one ? 0 : i] - static_cast<float>(p.qmin);  // u = c − qmin
  }
  return g;
}

std::optional<WeightFormat> exact_ggml_format(const QuantizedWeight& w, std::string* why) {
  auto no = [&](std::string reason) -> std::optional<WeightFormat> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  if (w.is_ggml()) return w.format;
  const QuantParams& p = w.params;
  if (w.format != WeightFormat::Uniform)
    return no(fmt::format("weights use the {} scheme, GGUF blocks are uniform", w.traits().name));
  if (w.shape.size() != 2) return no(fmt::format("a weight of rank {}, GGUF blocks hold matrices", w.shape.size()));
  const bool per_channel = p.granularity == Granularity::PerChannel && p.axis == 0;
  const bool per_group = p.granularity == Granularity::PerGroup && p.axis == 1 && p.group_size % kQK == 0;
  if (!per_channel && !per_group)
    return no(fmt::format("weights are quantized {} (GGUF blocks need one scale per row or per group of a multiple of "
                          "32 inputs)", p.granularity == Granularity::PerGroup ? fmt::format("in groups of {}", p.group_size)
                                                                          : std::string(to_string(p.granularity))));
  if (w.row_length() % kQK != 0) return no(fmt::format("rows of {} values are not a multiple of 32", w.row_length()));
  const int64_t span = p.qmax - p.qmin + 1;
  const bool symmetric = !(p.zero_point != 0).any().item<bool>();
  if (span == 16) return symmetric && p.qmin == -8 ? WeightFormat::Q4_0 : WeightFormat::Q4_1;
  if (span == 32) return symmetric && p.qmin == -16 ? WeightFormat::Q5_0 : WeightFormat::Q5_1;
  if (span >= 255 && span <= 256 && symmetric && p.qmin >= -128) return WeightFormat::Q8_0;
  return no(fmt::format("{}-bit{} weights (codes {}..{}) have no GGUF block type that holds them (4-bit: q4_0 / q4_1, "
                        "5-bit: q5_0 / q5_1, symmetric 8-bit: q8_0)", p.bits, symmetric ? "" : " asymmetric", p.qmin,
                        p.qmax));
}

QuantizedWeight convert_weight(const QuantizedWeight& w, WeightFormat to, double* max_deviation) {
  if (w.format == to) {
    if (max_deviation) *max_deviation = 0;
    return w;
  }
  std::string why;
  const std::optional<WeightFormat> exact = exact_ggml_format(w, &why);
  CATQ_CHECK(exact, Unsupported, "{} cannot be written as {}: {}", w.str(), to_string(to), why);
  CATQ_CHECK(*exact == to, Unsupported, "{} cannot be written as {}: its codes map exactly onto {} only", w.str(),
             to_string(to), to_string(*exact));
  const QuantParams& p = w.params;
  const int64_t rows = w.shape[0], in = w.shape[1], nb = in / kQK;
  // Each 32-value block takes its group's (or its row's) scale and zero-point; codes are re-based to the format's
  // own offset: Q8_0 stores q + 128, Q4_0 / Q5_0 q + span / 2, the _1 formats q − qmin with m = s·(qmin − z).
  at::Tensor s = p.scale.to(at::kFloat).reshape({rows, -1}), z = p.zero_point.to(at::kFloat).reshape({rows, -1});
  const int64_t rep = nb / s.size(1);
  s = s.repeat_interleave(rep, 1), z = z.repeat_interleave(rep, 1);
  const int64_t span = p.qmax - p.qmin + 1;
  const int64_t offset = to == WeightFormat::Q8_0 ? 128 : (to == WeightFormat::Q4_0 || to == WeightFormat::Q5_0) ? span / 2
                                                                                                                : -p.qmin;
  const at::Tensor codes = weight_codes(w);
  const at::Tensor c = (codes.to(at::kLong) + offset).to(at::kByte);
  const at::Tensor m = s * (static_cast<float>(p.qmin) - z);  // the _1 formats' m (unused by the others)
  const std::string bytes = gguf_blocks_from_codes(weight_format_traits(to).ggml, c, s, m);
  QuantizedWeight out = ggml_weight(to, w.shape, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (max_deviation) {
    const at::Tensor ref = dequantize(codes, p).to(at::kFloat), got = dequantize(out);
    *max_deviation = (got - ref).abs().max().item<double>() / std::max(ref.abs().max().item<double>(), 1e-30);
  }
  return out;
}

}  // namespace catq

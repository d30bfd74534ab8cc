// QuantizedWeight and the weight-format traits table (src/quant/quantized_weight.h): the table agrees with ggml's
// block traits, codes and params survive the PACKED layout for every scheme and width, every format decodes to its
// scalar reference, the kernels' view shares the PACKED bytes, exact conversions to ggml blocks keep the values, and
// what cannot be converted or is inconsistent is refused saying why.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "io/catq_container.h"
#include "quant/ggml_blocks.h"
#include "quant/packed_codes.h"
#include "quant/quantized_weight.h"
#include "runtime/packed.h"
#include "sim/sim_quant.h"

using namespace catq;

namespace {

QuantSpec spec(int bits, bool sym, Granularity g, int64_t group = 0, Scheme scheme = Scheme::Uniform) {
  QuantSpec s;
  s.bits = bits;
  s.symmetric = sym;
  s.granularity = g;
  s.group_size = group;
  s.scheme = scheme;
  return s;
}

template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(QuantizedWeight, TraitsTableAgreesWithGgmlBlocks) {
  const auto& table = weight_format_table();
  ASSERT_EQ(table.size(), static_cast<size_t>(WeightFormat::IQ4_NL) + 1);
  for (size_t i = 0; i < table.size(); ++i) {
    const WeightFormatTraits& t = table[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(static_cast<size_t>(t.format), i);
    EXPECT_EQ(parse_weight_format(t.name), t.format);
    EXPECT_STREQ(to_string(t.format), t.name);
    EXPECT_NE(t.writers, 0u);
    if (!is_ggml_format(t.format)) {
      EXPECT_EQ(t.ggml, kNoGgmlType);
      EXPECT_EQ(t.block, 0);
      EXPECT_TRUE(t.writers & kWriterCatq);
      continue;
    }
    const GgmlTypeTraits* g = ggml_type_traits(t.ggml);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(t.block, g->block);
    EXPECT_EQ(t.block_bytes, g->bytes);
    EXPECT_TRUE(t.quantize_block && t.dequantize_block);
    EXPECT_EQ(weight_format_of_ggml(t.ggml), t.format);
    EXPECT_TRUE(t.writers & kWriterGguf);
    EXPECT_TRUE(t.kernels & (kKernelBlocks | kKernelFp32));
  }
  EXPECT_EQ(parse_weight_format("Q4_K"), WeightFormat::Q4_K);
  EXPECT_FALSE(parse_weight_format("q4_k_m").has_value());
  // The formats the lean runtime has block kernels for.
  for (WeightFormat f : {WeightFormat::Q4_0, WeightFormat::Q4_1, WeightFormat::Q8_0, WeightFormat::Q4_K, WeightFormat::Q6_K})
    EXPECT_TRUE(weight_format_traits(f).kernels & kKernelBlocks) << to_string(f);
}

TEST(QuantizedWeight, CodesSurviveThePackedLayoutForEverySchemeAndWidth) {
  torch::manual_seed(3);
  const at::Tensor lin = torch::randn({6, 64}), conv = torch::randn({4, 8, 3, 3});
  std::vector<std::pair<at::Tensor, QuantSpec>> cases;
  for (int bits = 1; bits <= 8; ++bits)
    for (bool sym : {true, false}) {
      if (bits == 1 && sym) continue;  // no positive level (refused by the spec)
      cases.push_back({lin, spec(bits, sym, Granularity::PerTensor)});
      cases.push_back({lin, spec(bits, sym, Granularity::PerChannel)});
      cases.push_back({lin, spec(bits, sym, Granularity::PerGroup, 16)});
      cases.push_back({conv, spec(bits, sym, Granularity::PerGroup, 4)});
    }
  cases.push_back({lin, spec(3, true, Granularity::PerChannel, 0, Scheme::KMeans)});
  cases.push_back({lin, spec(1, true, Granularity::PerChannel, 0, Scheme::Binary)});
  cases.push_back({conv, spec(2, true, Granularity::PerChannel, 0, Scheme::Ternary)});
  for (auto& [x, s] : cases) {
    SCOPED_TRACE(s.str() + " " + std::to_string(x.dim()) + "-d");
    const QuantParams p = compute_params(s, x);
    const at::Tensor q = quantize(x, p);
    const QuantizedWeight w = make_quantized_weight(q, p);
    EXPECT_EQ(w.format, weight_format_of(s.scheme));
    EXPECT_EQ(w.shape, x.sizes().vec());
    EXPECT_EQ(w.bits, code_bits(p.qmin, p.qmax));
    EXPECT_EQ(w.data.size(), static_cast<size_t>((x.numel() * w.bits + 7) / 8));
    EXPECT_TRUE(at::equal(weight_codes(w), q.to(at::kInt)));
    EXPECT_TRUE(at::allclose(dequantize(w), dequantize(q, p)));
    // The .catq file stores exactly these bytes (the PACKED layout), and reads the same weight back.
    CatqBlobWriter blob;
    const nlohmann::json e = blob.add_weight(w);
    const size_t off = e.at("codes").at("offset").get<size_t>();
    EXPECT_EQ(std::vector<uint8_t>(blob.data().begin() + off, blob.data().begin() + off + w.data.size()), w.data);
    CatqBlobWriter legacy;  // codes packed straight from the int32 tensor, as before QuantizedWeight
    const nlohmann::json le = legacy.add_packed(q, w.bits, p.qmin);
    const size_t loff = le.at("offset").get<size_t>();
    EXPECT_EQ(std::vector<uint8_t>(legacy.data().begin() + loff, legacy.data().begin() + loff + w.data.size()), w.data);
    const QuantizedWeight back = CatqBlobReader(blob.data().data(), blob.size(), "mem").get_weight(e, "w");
    EXPECT_EQ(back.data, w.data);
    EXPECT_TRUE(at::equal(dequantize(back), dequantize(w)));
    EXPECT_EQ(back.storage_bytes(), w.storage_bytes());
  }
}

TEST(QuantizedWeight, GgmlFormatsDecodeToTheirReference) {
  torch::manual_seed(4);
  const at::Tensor x = torch::randn({4, 512});
  for (const WeightFormatTraits& t : weight_format_table()) {
    if (!is_ggml_format(t.format)) continue;
    SCOPED_TRACE(t.name);
    const QuantizedWeight w = quantize_weight(x, t.format);
    EXPECT_EQ(w.data.size(), static_cast<size_t>(x.numel() / t.block * t.block_bytes));
    const std::string ref = quantize_gguf_blocks(x, t.ggml);
    EXPECT_EQ(std::string(w.data.begin(), w.data.end()), ref);
    const at::Tensor y = dequantize(w);
    if (t.format == WeightFormat::F32) EXPECT_TRUE(at::equal(y, x));
    if (t.format == WeightFormat::F16) EXPECT_TRUE(at::equal(y, x.to(at::kHalf).to(at::kFloat)));
    if (t.format == WeightFormat::BF16) EXPECT_TRUE(at::equal(y, x.to(at::kBFloat16).to(at::kFloat)));
    EXPECT_LT(((y - x).pow(2).mean() / x.pow(2).mean()).item<double>(), 0.2);  // Q2_K ≈ 0.07
    EXPECT_NEAR(w.bits_per_weight(), 8.0 * t.block_bytes / t.block, 1e-9);
  }
}

TEST(QuantizedWeight, KernelViewSharesThePackedBytesAndWidensOthers) {
  torch::manual_seed(5);
  const at::Tensor x = torch::randn({5, 128});
  for (int bits : {2, 3, 4, 5, 8})
    for (bool sym : {true, false}) {
      SCOPED_TRACE(std::to_string(bits) + (sym ? " sym" : " asym"));
      const QuantizedWeight w = quantize_weight(x, spec(bits, sym, Granularity::PerGroup, 32));
      const PackedWeights p = pack_for_kernels(w);
      EXPECT_EQ(p.bits, bits <= 2 ? 2 : bits <= 4 ? 4 : 8);
      if (p.bits == bits) EXPECT_EQ(p.q, w.data);
      const std::vector<float> u = unpack_weights(p);
      EXPECT_TRUE(at::allclose(at::from_blob(const_cast<float*>(u.data()), {5, 128}, at::kFloat), dequantize(w)));
    }
  // Per tensor and per channel: one group per row.
  for (Granularity g : {Granularity::PerTensor, Granularity::PerChannel}) {
    const QuantizedWeight w = quantize_weight(x, spec(4, true, g));
    EXPECT_EQ(pack_for_kernels(w).group, 128);
  }
  const QuantizedWeight km = quantize_weight(x, spec(2, true, Granularity::PerChannel, 0, Scheme::KMeans));
  EXPECT_NE(error_of([&] { pack_for_kernels(km); }).find("kmeans weights are not affine codes"), std::string::npos);
}

TEST(QuantizedWeight, ExactConversionsToGgmlBlocksKeepTheValues) {
  torch::manual_seed(6);
  const at::Tensor x = torch::randn({8, 256});
  struct Case {
    QuantSpec s;
    WeightFormat to;
  };
  QuantSpec s8 = spec(8, true, Granularity::PerChannel);
  s8.restricted = true;
  const std::vector<Case> cases = {
      {spec(4, true, Granularity::PerGroup, 32), WeightFormat::Q4_0},
      {spec(4, false, Granularity::PerGroup, 64), WeightFormat::Q4_1},
      {spec(4, true, Granularity::PerChannel), WeightFormat::Q4_0},
      {spec(5, true, Granularity::PerGroup, 32), WeightFormat::Q5_0},
      {spec(5, false, Granularity::PerGroup, 128), WeightFormat::Q5_1},
      {spec(8, true, Granularity::PerGroup, 32), WeightFormat::Q8_0},
      {s8, WeightFormat::Q8_0},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.s.str());
    const QuantizedWeight w = quantize_weight(x, c.s);
    std::string why;
    ASSERT_EQ(exact_ggml_format(w, &why), c.to) << why;
    double dev = 1;
    const QuantizedWeight g = convert_weight(w, c.to, &dev);
    EXPECT_EQ(g.format, c.to);
    EXPECT_EQ(g.shape, w.shape);
    EXPECT_LT(dev, 2e-3);  // the scales rounded to fp16
    EXPECT_LT((dequantize(g) - dequantize(w)).abs().max().item<double>(), 2e-3 * x.abs().max().item<double>());
  }
  // What no block holds is refused saying why.
  const std::vector<std::pair<QuantizedWeight, std::string>> refused = {
      {quantize_weight(x, spec(3, true, Granularity::PerGroup, 32)), "3-bit"},
      {quantize_weight(x, spec(4, true, Granularity::PerGroup, 16)), "groups of 16"},
      {quantize_weight(x, spec(4, true, Granularity::PerTensor)), "tensor"},
      {quantize_weight(x, spec(2, true, Granularity::PerChannel, 0, Scheme::KMeans)), "kmeans"},
  };
  for (const auto& [w, why] : refused) {
    const std::string e = error_of([&] { convert_weight(w, WeightFormat::Q4_0); });
    EXPECT_NE(e.find(why), std::string::npos) << e;
  }
  const std::string e = error_of([&] { convert_weight(quantize_weight(x, spec(4, false, Granularity::PerGroup, 32)),
                                                      WeightFormat::Q4_0); });
  EXPECT_NE(e.find("q4_1 only"), std::string::npos) << e;
}

TEST(QuantizedWeight, SimQuantHandsOutAndTakesBackItsWeights) {
  torch::manual_seed(7);
  QuantConfig qc = QuantConfig::load("w4a16g32");
  SimQuant sq(qc);
  LayerInfo li;
  li.name = "fc";
  li.kind = LayerKind::Linear;
  li.weight_shape = {16, 64};
  sq.bind({li});
  const at::Tensor x = torch::randn({16, 64});
  sq.weight(li, x);  // computes the params
  const QuantizedWeight w = sq.quantized_weight("fc", x);
  EXPECT_EQ(w.bits, 4);
  EXPECT_TRUE(at::allclose(dequantize(w), sq.weight(li, x)));
  SimQuant sq2(qc);
  sq2.bind({li});
  sq2.set_quantized_weight("fc", w);
  EXPECT_TRUE(at::equal(sq2.quantized_weight_codes("fc"), weight_codes(w)));
  EXPECT_EQ(sq2.quantized_weight("fc").data, w.data);
  EXPECT_NE(error_of([&] { sq2.set_quantized_weight("fc", quantize_weight(x, WeightFormat::Q4_0)); }).find("q4_0"),
            std::string::npos);
}

TEST(BadInputQuantizedWeight, InconsistentWeightsAreRefused) {
  const at::Tensor x = torch::randn({4, 64});
  QuantizedWeight w = quantize_weight(x, spec(4, true, Granularity::PerGroup, 32));
  QuantizedWeight short_data = w;
  short_data.data.pop_back();
  EXPECT_NE(error_of([&] { short_data.validate("blk.0"); }).find("blk.0: 127 code bytes"), std::string::npos);
  QuantizedWeight wrong_bits = w;
  wrong_bits.bits = 5;
  EXPECT_NE(error_of([&] { wrong_bits.validate("w"); }).find("5-bit codes"), std::string::npos);
  QuantizedWeight g = quantize_weight(x, WeightFormat::Q8_0);
  g.shape = {4, 48};
  EXPECT_NE(error_of([&] { g.validate("g"); }).find("blocks"), std::string::npos);
  EXPECT_NE(error_of([&] { quantize_weight(torch::randn({2, 100}), WeightFormat::Q4_K); }).find("multiple"),
            std::string::npos);
  // A code outside the params' range never makes a weight.
  const QuantParams p = compute_params(spec(4, true, Granularity::PerTensor), x);
  EXPECT_NE(error_of([&] { make_quantized_weight(quantize(x, p) + 100, p); }).find("outside"), std::string::npos);
}

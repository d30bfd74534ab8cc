// The integer runtime (src/runtime/int_runtime): a Llama model quantized by a SimQuant runs its linear layers on the
// integer / packed kernels and reproduces the fake-quant simulation (W8A8, W4A8, W4A4 per token, W4A16 groups,
// static per-tensor activations), also after a round trip through the quantized-LLM file; layers it cannot run
// stay simulated and say why.
#include <gtest/gtest.h>

#include "runtime/int_conv.h"
#include <torch/torch.h>

#include <cstdio>

#include "core/error.h"
#include "io/catq_file.h"
#include "methods/cnn/pipeline.h"
#include "ir/builder.h"
#include "tiny_models.h"
#include "llm/llama.h"
#include "runtime/int_cnn.h"
#include "runtime/int_runtime.h"
#include "sim/quant_config.h"

using namespace catq;

namespace {

LlamaModel model() {
  LlamaConfig c;
  c.dim = 64; c.hidden_dim = 192; c.n_layers = 2; c.n_heads = 4; c.n_kv_heads = 2; c.vocab_size = 40; c.seq_len = 32;
  c.tied_head = false;
  LlamaModel m = LlamaModel::random(c, 7);
  // Larger weights than N(0, 0.02): activations that change from layer to layer.
  for (auto& [name, t] : m.named_parameters())
    if (t.dim() == 2) t.mul_(4);
  return m;
}

QuantConfig config(const std::string& input_json, const std::string& weight_json) {
  return QuantConfig::from_json(R"({"defaults": {"weight": )" + weight_json + R"(, "input": )" + input_json +
                                    R"(}, "overrides": [{"pattern": "output", "weight": null, "input": null}]})",
                                "test");
}

struct Agreement {
  double rel_err = 0, top1 = 0;
};

Agreement compare(const at::Tensor& ref, const at::Tensor& test) {
  Agreement a;
  a.rel_err = (test - ref).abs().mean().item<double>() / ref.abs().mean().item<double>();
  a.top1 = ref.argmax(-1).eq(test.argmax(-1)).to(at::kFloat).mean().item<double>();
  return a;
}

}  // namespace

TEST(IntRuntime, ReproducesTheSimulationOnEveryKernelPath) {
  LlamaModel m = model();
  const at::Tensor tokens = at::randint(1, 40, {2, 24}, at::TensorOptions().dtype(at::kLong));
  struct Case {
    const char* label;
    std::string input, weight;
    int integer, weight_only;
  };
  const std::vector<Case> cases = {
      {"W8A8", R"({"bits": 8, "granularity": "token"})", R"({"bits": 8})", 14, 0},
      {"W4A8", R"({"bits": 8, "granularity": "token"})", R"({"bits": 4, "observer": "mse"})", 14, 0},
      {"W4A4", R"({"bits": 4, "granularity": "token"})", R"({"bits": 4})", 14, 0},
      {"W3A8 asym act", R"({"bits": 8, "granularity": "token", "symmetric": false, "signed": false})",
       R"({"bits": 3})", 14, 0},
      {"W4A8 g64", R"({"bits": 8, "granularity": "token"})", R"({"bits": 4, "group_size": 64, "symmetric": false})",
       14, 0},
      {"W4A16 g32", "null", R"({"bits": 4, "group_size": 32, "symmetric": false})", 0, 14},
      {"W2A16", "null", R"({"bits": 2})", 0, 14},
      {"W8A16 (int16-activation decode)", "null", R"({"bits": 8})", 0, 14},
      {"W3A16 k-means per row", "null", R"({"bits": 3, "scheme": "kmeans", "granularity": "channel"})", 0, 14},
      {"W2A16 k-means per tensor", "null", R"({"bits": 2, "scheme": "kmeans"})", 0, 14},
      {"W1A16 k-means per row", "null", R"({"bits": 1, "scheme": "kmeans", "granularity": "channel"})", 0, 14},
  };
  for (const Case& c : cases) {
    SimQuant sq(config(c.input, c.weight));
    const at::Tensor ref = m.forward(tokens, &sq);
    IntegerRuntime rt(m, sq);
    EXPECT_EQ(rt.num_integer(), c.integer) << c.label;
    EXPECT_EQ(rt.num_weight_only(), c.weight_only) << c.label;
    if (std::string(c.label).find("int16") != std::string::npos && i16_simd() && best_isa() == KernelIsa::Avx512)
      EXPECT_NE(rt.report().front().how.find("int16 activations"), std::string::npos) << rt.report().front().how;
    if (std::string(c.label).find("k-means") != std::string::npos)
      EXPECT_NE(rt.report().front().how.find("codebook"), std::string::npos) << rt.report().front().how;
    EXPECT_EQ(rt.report().back().how.rfind("simulated: floating-point weights", 0), 0u) << rt.report().back().how;
    const Agreement a = compare(ref, m.forward(tokens, &rt));
    EXPECT_LT(a.rel_err, 2e-3) << c.label;
    EXPECT_GE(a.top1, 0.98) << c.label;
    // Decoding through the KV cache takes the same path, one token at a time.
    KVCache cache = m.make_cache(2);
    const at::Tensor step = m.forward(tokens.slice(1, 0, 4), cache, &rt);
    EXPECT_LT(compare(ref.slice(1, 0, 4), step).rel_err, 2e-3) << c.label;
  }
}

TEST(IntRuntime, StaticActivationsAndTheFileRoundTrip) {
  LlamaModel m = model();
  const at::Tensor tokens = at::randint(1, 40, {2, 24}, at::TensorOptions().dtype(at::kLong));
  SimQuant sq(config(R"({"bits": 8, "symmetric": false, "signed": false})", R"({"bits": 4})"));
  sq.set_mode(SimQuant::Mode::Calibrate);
  m.forward(tokens, &sq);
  sq.finalize_calibration();
  sq.set_mode(SimQuant::Mode::Quantize);
  const at::Tensor ref = m.forward(tokens, &sq);
  const std::string path = ::testing::TempDir() + "catq_int_runtime.catq";
  write_catq_llm(path, m, sq, nullptr, {{"test", true}});
  QuantizedLlama q = read_catq_llm(path);
  std::remove(path.c_str());
  IntegerRuntime rt(q.model, *q.sq);
  EXPECT_EQ(rt.num_integer(), 14);
  EXPECT_NE(rt.report()[0].how.find("static"), std::string::npos) << rt.report()[0].how;
  const Agreement a = compare(ref, q.model.forward(tokens, &rt));
  EXPECT_LT(a.rel_err, 2e-3);
  EXPECT_GE(a.top1, 0.98);
}

TEST(IntRuntime, UnsupportedLayersStaySimulated) {
  LlamaModel m = model();
  const at::Tensor tokens = at::randint(1, 40, {1, 8}, at::TensorOptions().dtype(at::kLong));
  SimQuant sq(config("null", R"({"bits": 2, "scheme": "ternary"})"));
  const at::Tensor ref = m.forward(tokens, &sq);
  IntegerRuntime rt(m, sq);
  EXPECT_EQ(rt.num_integer() + rt.num_weight_only(), 0);
  EXPECT_NE(rt.report()[0].how.find("ternary"), std::string::npos) << rt.report()[0].how;
  EXPECT_TRUE(at::equal(m.forward(tokens, &rt), ref));
  SimQuant off(config("null", R"({"bits": 4})"), SimQuant::Mode::Calibrate);
  EXPECT_THROW({ IntegerRuntime rt_off(m, off); }, Error);
}

// A quantized CNN (RTN, through the .catq file): its convolutions run on oneDNN's int8 primitive and reproduce the
// simulation (W8A8 and W4A4 with first/last layers at 8 bits, the signed image input with its zero-point).
TEST(IntRuntime, CnnConvolutionsOnOneDnnInt8MatchTheSimulation) {
  if (!catq::onednn_int8_conv_exact())
    GTEST_SKIP() << "this CPU has no VNNI: oneDNN's int8 convolution is not exact there, so catq runs those layers simulated";
  for (const char* bits : {"w8a8", "w4a4", "w2a4"}) {
    const int64_t width = std::string(bits) == "w8a8" ? 8 : 16;  // 16 channels: the AVX-512 input quantizer
    torch::manual_seed(3);
    ImageDataset calib{torch::randn({64, 3, 8, 8}), torch::randint(0, 5, {64}, at::TensorOptions().dtype(at::kLong)),
                       "synthetic"};
    CnnPtqOptions o;
    o.bits = bits;
    QuantizedCnn q0 = quantize_cnn(test_models::tiny_resnet(2, "tiny_resnet", width), calib, o);
    const std::string path = ::testing::TempDir() + "catq_int_runtime_cnn.catq";
    write_catq(path, *q0.ex, *q0.sq, nullptr, {});
    QuantizedCnn q = read_catq(path);
    std::remove(path.c_str());
    IntegerRuntime rt(*q.sq);
    // stem, block.conv1, block.conv2, and the classifier, prepared for IntegerCnn (the graph executor's Gemm node
    // itself multiplies simulated, so the layer-by-layer path below runs 3 integer convolutions).
    EXPECT_EQ(rt.num_integer(), 4) << bits;
    EXPECT_NE(rt.report().back().how.find("IntegerCnn"), std::string::npos) << rt.report().back().how;
    const at::Tensor x = torch::randn({32, 3, 8, 8});
    at::NoGradGuard ng;  // inference: the runtime's integer path
    const at::Tensor ref = q.ex->forward(x, q.sq.get()), out = q.ex->forward(x, &rt);
    EXPECT_EQ(rt.integer_conv_calls(), 3) << bits;
    EXPECT_EQ(rt.simulated_conv_calls(), 0) << bits;
    EXPECT_NE(rt.report()[0].how.find("oneDNN"), std::string::npos) << rt.report()[0].how;
    const Agreement a = compare(ref, out);
    EXPECT_LT(a.rel_err, 1e-4) << bits;
    EXPECT_EQ(a.top1, 1.0) << bits;
  }
}

// The integer graph executor: activations stay u8 codes between convolutions (ReLU, the residual add and the next
// layer's quantization inside oneDNN's primitive), the option-A shortcut (Slice, Pad) on codes. It reproduces the
// simulation up to requantization ties. 8-bit asymmetric weights (default w8a8) cannot fuse and run unfused.
TEST(IntRuntime, IntegerCnnKeepsCodesBetweenLayersAndMatchesTheSimulation) {
  if (!catq::onednn_int8_conv_exact())
    GTEST_SKIP() << "this CPU has no VNNI: oneDNN's int8 convolution is not exact there, so catq runs those layers simulated";
  struct Case {
    const char* bits;
    int64_t fused;  // convolutions writing codes; 2 of them add the shortcut
  };
  for (const Case& c : {Case{"w8a8-wsym", 6}, Case{"w4a4", 5}, Case{"w2a4", 5}, Case{"w8a8", 0}}) {
    torch::manual_seed(5);
    ImageDataset calib{torch::randn({64, 3, 8, 8}), torch::randint(0, 5, {64}, at::TensorOptions().dtype(at::kLong)),
                       "synthetic"};
    CnnPtqOptions o;
    o.bits = c.bits;
    QuantizedCnn q0 = quantize_cnn(test_models::tiny_resnet_a(4, 16), calib, o);
    const std::string path = ::testing::TempDir() + "catq_int_cnn.catq";
    write_catq(path, *q0.ex, *q0.sq, nullptr, {});
    QuantizedCnn q = read_catq(path);
    std::remove(path.c_str());
    IntegerCnn net(*q.ex, *q.sq);
    const at::Tensor x = torch::randn({32, 3, 8, 8});
    at::Tensor ref;
    {
      at::NoGradGuard ng;
      ref = q.ex->forward(x, q.sq.get());
    }
    const at::Tensor out = net.forward(x);
    EXPECT_EQ(net.fused_convs(), c.fused) << c.bits;
    EXPECT_EQ(net.residual_convs(), c.fused ? 2 : 0) << c.bits;
    EXPECT_EQ(net.fused_calls(), c.fused) << c.bits;
    EXPECT_EQ(net.fallback_calls(), 0) << c.bits;
    const Agreement a = compare(ref, out);
    EXPECT_LT(a.rel_err, 2e-3) << c.bits;
    EXPECT_GE(a.top1, 31.0 / 32) << c.bits;
    // A second batch of another size reuses the plan with new primitives.
    const at::Tensor x2 = torch::randn({5, 3, 8, 8});
    at::Tensor ref2;
    {
      at::NoGradGuard ng;
      ref2 = q.ex->forward(x2, q.sq.get());
    }
    EXPECT_LT(compare(ref2, net.forward(x2)).rel_err, 2e-3) << c.bits;
  }
}

namespace {

// A MobileNet in miniature: stem conv, depthwise 3x3 (group 16) → ReLU6 → pointwise 1x1 → ReLU6, a stride-2 depthwise
// block, global average pooling and a classifier. Input [N, 3, 8, 8].
Graph tiny_mobilenet(uint64_t seed) {
  torch::manual_seed(seed);
  GraphBuilder b("tiny_mobilenet");
  std::string x = b.input("image", {-1, 3, 8, 8});
  auto relu6 = [&](const std::string& v) {
    return b.op("Clip", {v, b.constant(v + "/lo", torch::zeros({})), b.constant(v + "/hi", torch::full({}, 6.f))});
  };
  auto dw = [&](const std::string& v, int64_t c, int64_t stride, const std::string& name) {
    const std::string w = b.constant(name + ".w", torch::randn({c, 1, 3, 3}) * 0.5);
    const std::string bias = b.constant(name + ".b", torch::randn({c}) * 0.1);
    return b.op("Conv", {v, w, bias}, {{"kernel_shape", attr_ints({3, 3})}, {"pads", attr_ints({1, 1, 1, 1})},
                                        {"strides", attr_ints({stride, stride})}, {"group", attr_int(c)}});
  };
  std::string h = relu6(b.conv(x, 3, 16, 3, 1, 1, "stem"));
  h = relu6(dw(h, 16, 1, "dw1"));
  h = relu6(b.conv(h, 16, 32, 1, 1, 0, "pw1"));
  h = relu6(dw(h, 32, 2, "dw2"));
  h = relu6(b.conv(h, 32, 32, 1, 1, 0, "pw2"));
  h = b.flatten(b.op("GlobalAveragePool", {h}));
  b.output(b.linear(h, 32, 5, "fc"));
  return b.build();
}

}  // namespace

// Depthwise networks on the integer executor: grouped convolutions on oneDNN int8 writing codes, ReLU6 as the code
// range's upper bound, the classifier on the integer GEMM; the simulation reproduced up to requantization ties.
TEST(IntRuntime, IntegerCnnRunsDepthwiseReLU6AndTheClassifier) {
  if (!catq::onednn_int8_conv_exact())
    GTEST_SKIP() << "this CPU has no VNNI: oneDNN's int8 convolution is not exact there, so catq runs those layers simulated";
  struct Case {
    const char* bits;
    int64_t fused;  // convolutions writing codes (the last pointwise feeds pooling: float)
  };
  for (const Case& c : {Case{"w8a8-wsym", 4}, Case{"w4a4", 3}, Case{"w4a8", 3}}) {
    torch::manual_seed(6);
    ImageDataset calib{torch::randn({64, 3, 8, 8}), torch::randint(0, 5, {64}, at::TensorOptions().dtype(at::kLong)),
                       "synthetic"};
    CnnPtqOptions o;
    o.bits = c.bits;
    QuantizedCnn q = quantize_cnn(tiny_mobilenet(7), calib, o);
    IntegerCnn net(*q.ex, *q.sq);
    EXPECT_EQ(net.runtime().num_integer(), 6) << c.bits;  // 5 convolutions + the classifier
    const at::Tensor x = torch::randn({32, 3, 8, 8});
    at::Tensor ref;
    {
      at::NoGradGuard ng;
      ref = q.ex->forward(x, q.sq.get());
    }
    const at::Tensor out = net.forward(x);
    EXPECT_EQ(net.fused_convs(), c.fused) << c.bits;
    EXPECT_EQ(net.fused_calls(), c.fused) << c.bits;
    EXPECT_EQ(net.fallback_calls(), 0) << c.bits;
    EXPECT_EQ(net.linear_calls(), 1) << c.bits;
    const Agreement a = compare(ref, out);
    EXPECT_LT(a.rel_err, 5e-3) << c.bits;
    EXPECT_GE(a.top1, 31.0 / 32) << c.bits;
  }
}

TEST(BadInputIntRuntime, IntegerCnnRejectsAWrongInputShapeOrAnEmptyBatch) {
  torch::manual_seed(5);
  ImageDataset calib{torch::randn({32, 3, 8, 8}), torch::randint(0, 5, {32}, at::TensorOptions().dtype(at::kLong)),
                     "synthetic"};
  CnnPtqOptions o;
  o.bits = "w4a4";
  QuantizedCnn q = quantize_cnn(test_models::tiny_resnet_a(4, 16), calib, o);
  IntegerCnn net(*q.ex, *q.sq);
  try {
    net.forward(torch::randn({2, 4, 8, 8}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expects shape"), std::string::npos) << e.what();
  }
  try {
    net.forward(torch::randn({0, 3, 8, 8}));
    FAIL() << "no error for an empty batch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty batch"), std::string::npos) << e.what();
  }
}

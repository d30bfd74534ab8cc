// Quantization configs (src/sim/quant_config.h) and the simulation quantizer (src/sim/sim_quant.h) on a toy
// two-layer model built directly with torch ops.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "core/error.h"
#include "core/file_util.h"
#include "sim/quant_config.h"
#include "sim/sim_quant.h"

using namespace catq;

namespace {

LayerInfo linear_layer(const std::string& name, std::vector<int64_t> shape, int index, bool first, bool last) {
  LayerInfo l;
  l.name = name;
  l.kind = LayerKind::Linear;
  l.weight_shape = std::move(shape);
  l.macs_per_sample = l.weight_shape[0] * l.weight_shape[1];
  l.index = index;
  l.is_first = first;
  l.is_last = last;
  return l;
}

// y = W2 · relu(W1 x): every layer calls the QuantContext the way the real models do.
struct ToyMlp {
  at::Tensor w1, w2;
  std::vector<LayerInfo> layers;
  ToyMlp() {
    torch::manual_seed(100);
    w1 = torch::randn({32, 16}) * 0.3;
    w2 = torch::randn({10, 32}) * 0.2;
    layers = {linear_layer("fc1", {32, 16}, 0, true, false), linear_layer("fc2", {10, 32}, 1, false, true)};
  }
  at::Tensor forward(const at::Tensor& x, QuantContext* q) const {
    if (!q) return at::linear(at::relu(at::linear(x, w1)), w2);
    at::Tensor h = at::relu(at::linear(q->input(layers[0], x), q->weight(layers[0], w1)));
    return at::linear(q->input(layers[1], h), q->weight(layers[1], w2));
  }
};

double rel_err(const at::Tensor& a, const at::Tensor& b) { return ((a - b).norm() / b.norm()).item<double>(); }

// Calibrates on 8 batches, then returns the relative output error on a held-out batch.
double toy_error(const std::string& cfg) {
  ToyMlp m;
  SimQuant sq(QuantConfig::from_string(cfg));
  sq.bind(m.layers);
  sq.set_mode(SimQuant::Mode::Calibrate);
  torch::manual_seed(1);
  for (int i = 0; i < 8; ++i) m.forward(torch::randn({64, 16}), &sq);
  sq.finalize_calibration();
  sq.set_mode(SimQuant::Mode::Quantize);
  at::Tensor x = torch::randn({256, 16});
  return rel_err(m.forward(x, &sq), m.forward(x, nullptr));
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = testing::TempDir() + "/" + name;
  write_file_atomic(path, text);
  return path;
}

template <typename F>
std::string config_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Config) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected Error(Config)";
  return "";
}

const char* kJson = R"({
  "description": "test config",
  "defaults": {"weight": {"bits": 4}, "input": {"bits": 4, "observer": "percentile", "percentile": 99.9}},
  "first_layer": {"weight": {"bits": 8}, "input": {"bits": 8}},
  "last_layer": {"input": null},
  "overrides": [
    {"pattern": "blk.*.attn_*", "weight": {"granularity": "group", "group_size": 16}},
    {"regex": "^blk\\.1\\.", "weight": {"bits": 32}},
    {"pattern": "blk.0.attn_q", "input": {"enabled": false}, "comment": "keep the first input in fp"}
  ],
  "fold_bn": false,
  "seed": 5
})";

}  // namespace

// ---- Config ------------------------------------------------------------------------------------------------------

TEST(QuantConfigString, AcademicDefaults) {
  QuantConfig c = QuantConfig::from_string("w4a4");
  EXPECT_TRUE(c.defaults.weight.enabled);
  EXPECT_EQ(c.defaults.weight.bits, 4);
  EXPECT_EQ(c.defaults.weight.granularity, Granularity::PerChannel);
  EXPECT_TRUE(c.defaults.weight.symmetric);
  EXPECT_TRUE(c.defaults.weight.is_signed);
  EXPECT_EQ(c.defaults.input.bits, 4);
  EXPECT_EQ(c.defaults.input.granularity, Granularity::PerTensor);
  EXPECT_FALSE(c.defaults.input.symmetric);
  EXPECT_FALSE(c.defaults.input.is_signed);
  EXPECT_FALSE(c.first_layer.has_value());
  EXPECT_TRUE(c.fold_bn);

  QuantConfig g = QuantConfig::from_string("W4A16g32");
  EXPECT_FALSE(g.defaults.input.enabled);
  EXPECT_EQ(g.defaults.weight.granularity, Granularity::PerGroup);
  EXPECT_EQ(g.defaults.weight.group_size, 32);

  QuantConfig o = QuantConfig::from_string("w2a2-mse-wmse-fl8");
  EXPECT_EQ(o.defaults.input.observer, ObserverKind::Mse);
  EXPECT_EQ(o.defaults.weight.observer, ObserverKind::Mse);
  LayerSpecs first = o.resolve(linear_layer("conv1", {8, 3}, 0, true, false));
  LayerSpecs mid = o.resolve(linear_layer("conv2", {8, 8}, 1, false, false));
  LayerSpecs last = o.resolve(linear_layer("fc", {10, 8}, 2, false, true));
  EXPECT_EQ(first.weight.bits, 8);
  EXPECT_EQ(first.input.bits, 8);
  EXPECT_EQ(mid.weight.bits, 2);
  EXPECT_EQ(mid.input.bits, 2);
  EXPECT_EQ(last.weight.bits, 8);
  EXPECT_EQ(first.weight.observer, ObserverKind::Mse);  // the 8-bit rule only changes bits

  QuantConfig t = QuantConfig::from_string("w4a8_tok_sym");
  EXPECT_EQ(t.defaults.input.granularity, Granularity::PerToken);
  EXPECT_TRUE(t.defaults.input.symmetric);
  EXPECT_TRUE(t.defaults.input.is_signed);
  EXPECT_FALSE(QuantConfig::from_string("w2a2-wasym").defaults.weight.symmetric);
  EXPECT_EQ(QuantConfig::from_string("w1a32").defaults.weight.scheme, Scheme::Binary);
  EXPECT_EQ(QuantConfig::from_string("w2a16-kmeans").defaults.weight.scheme, Scheme::KMeans);
  EXPECT_EQ(QuantConfig::from_string("w2a16-ternary").defaults.weight.scheme, Scheme::Ternary);
  EXPECT_EQ(QuantConfig::from_string("w8a8-kl").defaults.input.observer, ObserverKind::Kl);
  QuantConfig fp = QuantConfig::from_string("fp");
  EXPECT_FALSE(fp.defaults.weight.enabled);
  EXPECT_FALSE(fp.defaults.input.enabled);
  EXPECT_FALSE(QuantConfig::from_string("w16a16").defaults.weight.enabled);
}

TEST(QuantConfigJson, DefaultsFirstLastAndOverridesInOrder) {
  QuantConfig c = QuantConfig::from_json(kJson, "test.json");
  EXPECT_FALSE(c.fold_bn);
  EXPECT_EQ(c.seed, 5u);
  EXPECT_EQ(c.overrides.size(), 3u);

  LayerSpecs q0 = c.resolve(linear_layer("blk.0.attn_q", {64, 64}, 0, true, false));
  EXPECT_EQ(q0.weight.bits, 8);  // first-layer rule
  EXPECT_EQ(q0.weight.granularity, Granularity::PerGroup);
  EXPECT_EQ(q0.weight.group_size, 16);
  EXPECT_FALSE(q0.input.enabled);  // third override

  LayerSpecs k0 = c.resolve(linear_layer("blk.0.attn_k", {32, 64}, 1, false, false));
  EXPECT_EQ(k0.weight.bits, 4);
  EXPECT_EQ(k0.weight.granularity, Granularity::PerGroup);
  EXPECT_EQ(k0.input.bits, 4);
  EXPECT_EQ(k0.input.observer, ObserverKind::Percentile);
  EXPECT_DOUBLE_EQ(k0.input.percentile, 99.9);

  LayerSpecs k1 = c.resolve(linear_layer("blk.1.attn_k", {32, 64}, 8, false, false));
  EXPECT_FALSE(k1.weight.enabled);  // regex override: {"bits": 32}
  EXPECT_TRUE(k1.input.enabled);

  LayerSpecs ffn = c.resolve(linear_layer("blk.0.ffn_up", {172, 64}, 4, false, false));
  EXPECT_EQ(ffn.weight.granularity, Granularity::PerChannel);

  LayerSpecs out = c.resolve(linear_layer("output", {512, 64}, 35, false, true));
  EXPECT_EQ(out.weight.bits, 4);
  EXPECT_FALSE(out.input.enabled);  // last_layer: input null

  // Round trip through to_json.
  QuantConfig back = QuantConfig::from_json(c.to_json().dump(), "roundtrip.json");
  for (const auto& l : {linear_layer("blk.0.attn_q", {64, 64}, 0, true, false),
                        linear_layer("blk.1.attn_k", {32, 64}, 8, false, false),
                        linear_layer("output", {512, 64}, 35, false, true)}) {
    EXPECT_EQ(back.resolve(l).weight, c.resolve(l).weight) << l.name;
    EXPECT_EQ(back.resolve(l).input, c.resolve(l).input) << l.name;
  }
  // A defaults section that names only weights is weight-only.
  QuantConfig wo = QuantConfig::from_json(R"({"defaults": {"weight": {"bits": 3, "observer": "mse", "mse_p": 2.4}}})", "wo.json");
  EXPECT_TRUE(wo.defaults.weight.enabled);
  EXPECT_DOUBLE_EQ(wo.defaults.weight.mse_p, 2.4);
  EXPECT_FALSE(wo.defaults.input.enabled);
  // Loading: a file path or a compact string.
  std::string path = write_temp("catq_test_cfg.json", kJson);
  EXPECT_EQ(QuantConfig::load(path).source, path);
  EXPECT_EQ(QuantConfig::load("w8a8").defaults.weight.bits, 8);
}

TEST(BadInputQuantConfig, MalformedJsonNamesFileAndField) {
  auto check = [](const std::string& text, const std::vector<std::string>& words) {
    std::string m = config_error([&] { QuantConfig::from_json(text, "bad.json"); });
    EXPECT_NE(m.find("bad.json"), std::string::npos) << m;
    for (const auto& w : words) EXPECT_NE(m.find(w), std::string::npos) << "'" << w << "' not in: " << m;
  };
  check("{\"defaults\": {", {"invalid JSON"});
  check("[1, 2]", {"object"});
  check(R"({"defaults": {"weight": {"bits": 0}}})", {"defaults.weight", "bits"});
  check(R"({"defaults": {"weight": {"bits": 9}}})", {"defaults.weight", "bits"});
  check(R"({"defaults": {"weight": {"bits": "4"}}})", {"bits", "integer"});
  check(R"({"defaults": {"weight": {"bitz": 4}}})", {"bitz"});
  check(R"({"defaults": {"wieght": {"bits": 4}}})", {"wieght"});
  check(R"({"default": {}})", {"default"});
  check(R"({"defaults": {"input": {"granularity": "row"}}})", {"granularity", "row"});
  check(R"({"defaults": {"input": {"observer": "max"}}})", {"observer"});
  check(R"({"defaults": {"weight": {"granularity": "group"}}})", {"group_size"});
  check(R"({"defaults": {"weight": {"percentile": 101}}})", {"percentile"});
  check(R"({"defaults": {"weight": {"scheme": "binary", "bits": 4}}})", {"bits"});
  check(R"({"overrides": [{"weight": {"bits": 4}}]})", {"overrides[0]", "pattern"});
  check(R"({"overrides": [{"regex": "([a-z", "weight": {"bits": 4}}]})", {"overrides[0]", "regex"});
  check(R"({"overrides": [{"pattern": "fc*", "regex": "fc", "weight": null}]})", {"overrides[0]"});
  check(R"({"overrides": [{"pattern": "fc*", "wieght": {}}]})", {"overrides[0]", "wieght"});
  check(R"({"overrides": {"pattern": "fc*"}})", {"overrides"});
  check(R"({"first_layer": {"weight": {"bits": 12}}})", {"first_layer.weight", "bits"});
  check(R"({"fold_bn": "yes"})", {"fold_bn"});
  check(R"({"seed": -1})", {"seed"});
}

TEST(BadInputQuantConfig, MalformedCompactStrings) {
  for (const char* s : {"w9a8", "w0a8", "w4a4-foo", "x4", "w4", "w4a4g0", "w4a9", "w32a32g16", "w4a4-binary", "w4a16-tok",
                        "", "w4a4-fl9"}) {
    std::string m = config_error([&] { QuantConfig::from_string(s); });
    EXPECT_NE(m.find(std::string("'") + s + "'"), std::string::npos) << m;
  }
  // A missing file is an I/O error naming it; a bad name that looks like a path says it is not a file.
  try {
    QuantConfig::load("/nonexistent/cfg.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/cfg.json"), std::string::npos);
  }
  std::string m = config_error([] { QuantConfig::load("configs/w4a4"); });
  EXPECT_NE(m.find("not an existing config file"), std::string::npos) << m;
}

TEST(BadInputQuantConfig, BindChecksLayerShapes) {
  ToyMlp m;
  {
    SimQuant sq(QuantConfig::from_string("w4a16g5"));
    std::string msg = config_error([&] { sq.bind(m.layers); });
    EXPECT_NE(msg.find("fc1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("group_size"), std::string::npos) << msg;
    EXPECT_NE(msg.find("w4a16g5"), std::string::npos) << msg;
  }
  {
    std::string path = write_temp("catq_bad_axis.json", R"({"defaults": {"weight": {"axis": 3}}})");
    SimQuant sq(QuantConfig::load(path));
    std::string msg = config_error([&] { sq.bind(m.layers); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("axis"), std::string::npos) << msg;
  }
  {
    SimQuant sq(QuantConfig::from_json(R"({"defaults": {"weight": {"granularity": "token"}}})", "tok.json"));
    EXPECT_NE(config_error([&] { sq.bind(m.layers); }).find("weight.granularity"), std::string::npos);
  }
  {
    SimQuant sq(QuantConfig::from_json(R"({"defaults": {"input": {"scheme": "kmeans", "bits": 2}}})", "km.json"));
    EXPECT_NE(config_error([&] { sq.bind(m.layers); }).find("input.scheme"), std::string::npos);
  }
}

// ---- SimQuant ----------------------------------------------------------------------------------------------------

TEST(SimQuant, CalibrateThenQuantizeToyModel) {
  const double e8 = toy_error("w8a8"), e4 = toy_error("w4a4"), e2 = toy_error("w2a2");
  EXPECT_LT(e8, 0.025);
  EXPECT_GT(e4, e8);
  EXPECT_GT(e2, 3 * e8);
  EXPECT_GT(e2, 0.1);
  EXPECT_LT(toy_error("w8a8-mse-wmse"), 0.02);
  EXPECT_LT(toy_error("w8a8-kl"), 0.05);
  EXPECT_LT(toy_error("w8a8-percentile"), 0.05);
  EXPECT_LT(toy_error("w8a8-ema"), 0.05);
  EXPECT_LT(toy_error("w8a8-tok"), 0.02);  // dynamic, no calibration needed
  EXPECT_LT(toy_error("w8a16g8"), 0.02);
  EXPECT_LT(toy_error("w2a16-kmeans"), toy_error("w2a16"));
}

TEST(SimQuant, ModesAndParamsAccess) {
  ToyMlp m;
  SimQuant sq(QuantConfig::from_string("w4a4"), SimQuant::Mode::Calibrate);
  torch::manual_seed(3);
  at::Tensor x = torch::randn({32, 16});
  // bind() is optional: unannounced layers are added on first use.
  EXPECT_TRUE(at::equal(m.forward(x, &sq), m.forward(x, nullptr)));  // calibration does not change outputs
  EXPECT_EQ(sq.layers().size(), 2u);
  EXPECT_EQ(sq.layer("fc1").input_observer->batches(), 1);
  EXPECT_EQ(sq.input_params("fc1"), nullptr);
  sq.finalize_calibration();
  ASSERT_NE(sq.input_params("fc1"), nullptr);
  EXPECT_EQ(sq.input_params("fc1")->qmax, 15);
  sq.set_mode(SimQuant::Mode::Off);
  EXPECT_TRUE(at::equal(m.forward(x, &sq), m.forward(x, nullptr)));
  EXPECT_EQ(sq.weight_params("fc2"), nullptr);
  sq.set_mode(SimQuant::Mode::Quantize);
  EXPECT_FALSE(at::equal(m.forward(x, &sq), m.forward(x, nullptr)));
  ASSERT_NE(sq.weight_params("fc2"), nullptr);
  EXPECT_EQ(sq.weight_params("fc2")->scale.sizes(), (at::IntArrayRef{10, 1}));
  EXPECT_THROW(sq.layer("nope"), Error);
}

TEST(SimQuant, UncalibratedInputIsAnError) {
  ToyMlp m;
  SimQuant sq(QuantConfig::from_string("w4a4"));
  sq.bind(m.layers);
  try {
    m.forward(torch::randn({4, 16}), &sq);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Usage);
    EXPECT_NE(std::string(e.what()).find("fc1"), std::string::npos);
  }
  sq.set_mode(SimQuant::Mode::Calibrate);
  EXPECT_THROW(sq.finalize_calibration(), Error);  // nothing observed yet
}

TEST(SimQuant, GradientsReachWeightsAndParamsFollowUpdates) {
  ToyMlp m;
  m.w1.requires_grad_(true);
  m.w2.requires_grad_(true);
  SimQuant sq(QuantConfig::from_string("w4a8-tok"));
  sq.bind(m.layers);
  at::Tensor x = torch::randn({16, 16});
  at::Tensor loss = m.forward(x, &sq).pow(2).mean();
  loss.backward();
  ASSERT_TRUE(m.w1.grad().defined());
  EXPECT_GT(m.w1.grad().abs().sum().item<double>(), 0.0);
  at::Tensor s_before = sq.weight_params("fc1")->scale.clone();
  {
    at::NoGradGuard ng;
    m.w1.mul_(2.0);  // an optimizer step: in place, bumps the version counter
  }
  m.forward(x, &sq);
  EXPECT_TRUE(at::allclose(sq.weight_params("fc1")->scale, s_before * 2));
  // Unfrozen installed params are used until the weight changes.
  QuantParams custom = *sq.weight_params("fc1");
  custom.scale = custom.scale * 3;
  sq.set_weight_params("fc1", custom, false);
  m.forward(x, &sq);
  EXPECT_TRUE(at::allclose(sq.weight_params("fc1")->scale, s_before * 6));
  {
    at::NoGradGuard ng;
    m.w1.mul_(0.5);
  }
  m.forward(x, &sq);
  EXPECT_TRUE(at::allclose(sq.weight_params("fc1")->scale, s_before));
  // Frozen params are kept.
  sq.set_weight_params("fc1", *sq.weight_params("fc1"), true);
  {
    at::NoGradGuard ng;
    m.w1.mul_(0.25);
  }
  m.forward(x, &sq);
  EXPECT_TRUE(at::allclose(sq.weight_params("fc1")->scale, s_before));
}

TEST(SimQuant, ReportAndWeightBytes) {
  ToyMlp m;
  SimQuant sq(QuantConfig::from_string("w4a4"));
  sq.bind(m.layers);
  auto r = sq.report();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].name, "fc1");
  EXPECT_EQ(r[0].weight_bits, 4);
  EXPECT_EQ(r[0].input_bits, 4);
  EXPECT_EQ(r[0].weight_bytes, 32u * 16 * 4 / 8 + 32 * 4);  // codes + fp32 per-channel scales
  EXPECT_EQ(r[1].weight_bytes, 10u * 32 * 4 / 8 + 10 * 4);
  EXPECT_EQ(r[0].weight_observer, "minmax");
  EXPECT_EQ(sq.total_weight_bytes(), 384u + 200u);
  EXPECT_NE(sq.report_table().find("fc2"), std::string::npos);

  SimQuant fl(QuantConfig::from_string("w4a16g8-fl8"));
  fl.bind(m.layers);
  auto r2 = fl.report();
  EXPECT_EQ(r2[0].weight_bits, 8);
  EXPECT_EQ(r2[0].input_bits, 32);  // a16: the first/last rule does not quantize fp activations
  EXPECT_EQ(r2[0].weight_bytes, 32u * 16 + 32 * 2 * 4);  // int8 codes + one scale per group of 8
  EXPECT_EQ(r2[0].input_observer, "-");
  SimQuant fp(QuantConfig::fp());
  fp.bind(m.layers);
  EXPECT_EQ(fp.total_weight_bytes(), (32u * 16 + 10 * 32) * 4);
}

TEST(SimQuant, ConvLayersUseChannelAxisOne) {
  LayerInfo conv;
  conv.name = "conv1";
  conv.kind = LayerKind::Conv;
  conv.weight_shape = {8, 3, 3, 3};
  conv.is_first = true;
  SimQuant sq(QuantConfig::from_json(R"({"defaults": {"weight": {"bits": 4, "granularity": "group", "group_size": 3},
                                         "input": {"bits": 8, "granularity": "channel"}}})",
                                     "conv.json"));
  sq.bind({conv});
  EXPECT_EQ(*sq.layer("conv1").input_spec.axis, 1);
  EXPECT_EQ(*sq.layer("conv1").weight_spec.axis, 1);
  sq.set_mode(SimQuant::Mode::Calibrate);
  torch::manual_seed(4);
  at::Tensor x = torch::randn({2, 3, 8, 8});
  at::Tensor w = torch::randn({8, 3, 3, 3});
  sq.input(conv, x);
  sq.finalize_calibration();
  EXPECT_EQ(sq.input_params("conv1")->scale.sizes(), (at::IntArrayRef{1, 3, 1, 1}));
  sq.set_mode(SimQuant::Mode::Quantize);
  at::Tensor y = at::conv2d(sq.input(conv, x), sq.weight(conv, w));
  EXPECT_LT(rel_err(y, at::conv2d(x, w)), 0.2);
  EXPECT_EQ(sq.weight_params("conv1")->scale.sizes(), (at::IntArrayRef{8, 1, 1, 1, 1}));
}

// The JSON example in docs/quant_config.md parses and means what the text says.
TEST(QuantConfigJson, DocumentationExampleParses) {
  const std::string doc_path = std::string(CATQ_SOURCE_DIR) + "/docs/quant_config.md";
  if (!file_exists(doc_path)) GTEST_SKIP() << "docs/quant_config.md not found";
  std::string doc = read_file_text(doc_path);
  size_t a = doc.find("```json\n");
  ASSERT_NE(a, std::string::npos);
  a += 8;
  size_t b = doc.find("```", a);
  QuantConfig c = QuantConfig::from_json(doc.substr(a, b - a), "docs/quant_config.md");
  LayerSpecs mid = c.resolve(linear_layer("layer3.0.conv1", {64, 64}, 5, false, false));
  EXPECT_EQ(mid.weight.bits, 4);
  EXPECT_EQ(mid.input.observer, ObserverKind::Percentile);
  EXPECT_DOUBLE_EQ(mid.input.mse_p, 2.4);
  LayerSpecs fc = c.resolve(linear_layer("fc", {10, 64}, 20, false, true));
  EXPECT_EQ(fc.weight.bits, 8);
  EXPECT_FALSE(fc.input.enabled);
  EXPECT_EQ(c.resolve(linear_layer("layer2.0.downsample.0", {64, 32}, 9, false, false)).weight.bits, 8);
}

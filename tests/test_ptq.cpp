// Vision PTQ (src/methods): graph partition, value-level activation quantization, the fused LSQ quantizer,
// reconstruction (AdaRound / BRECQ / QDrop / PD-Quant / weight-cluster affine) on a tiny residual CNN, the CAT
// head, the .catq file format, and bad input.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "core/file_util.h"
#include "io/catq_file.h"
#include "ir/builder.h"
#include "tiny_models.h"
#include "methods/cnn/cat.h"
#include "methods/cnn/pipeline.h"
#include "methods/cnn/partition.h"
#include "methods/cnn/recon.h"
#include "methods/cnn/rtn.h"
#include "methods/cnn/weight_param.h"
#include "quant/fake_quant.h"

using namespace catq;

namespace {

using catq::test_models::tiny_resnet;

ImageDataset tiny_data(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  return {torch::randn({n, 3, 8, 8}), torch::randint(0, 5, {n}, at::TensorOptions().dtype(at::kLong)), "synthetic"};
}

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "catq_ptq_" + name; }

}  // namespace

TEST(Partition, BlocksAndLayersOfAResidualNet) {
  GraphExecutor ex(tiny_resnet());
  auto blocks = partition(ex, ReconGranularity::Block);
  ASSERT_EQ(blocks.size(), 3u);  // stem | residual block | head (GAP + flatten join the linear)
  EXPECT_EQ(blocks[0].layers, std::vector<int>{0});
  EXPECT_EQ(blocks[1].layers, (std::vector<int>{1, 2}));
  EXPECT_EQ(blocks[2].layers, std::vector<int>{3});
  EXPECT_EQ(blocks[1].inputs.size(), 1u);   // the stem's output carries all state into the block
  // Blocks hand on their post-ReLU outputs (the ReLU after the residual Add ends the block, not the next one).
  EXPECT_EQ(ex.graph().producer(blocks[0].targets.at(0))->op_type, "Relu");
  EXPECT_EQ(ex.graph().producer(blocks[1].targets.at(0))->op_type, "Relu");
  EXPECT_EQ(blocks[1].inputs, blocks[0].targets);
  EXPECT_EQ(blocks[2].targets, std::vector<std::string>{ex.graph().outputs[0].name});
  auto layers = partition(ex, ReconGranularity::Layer);
  ASSERT_EQ(layers.size(), 4u);
  // The first conv's target is its ReLU output; block.conv2 feeds the Add, so its own output is the target.
  EXPECT_EQ(ex.graph().producer(layers[0].targets[0])->op_type, "Relu");
  EXPECT_EQ(ex.graph().producer(layers[2].targets[0])->op_type, "Conv");
  // Inside the block both the shortcut and the branch are live.
  EXPECT_EQ(layers[2].inputs.size(), 2u);
  // Units tile the graph.
  for (size_t i = 1; i < blocks.size(); ++i) EXPECT_EQ(blocks[i].begin, blocks[i - 1].end);
  EXPECT_EQ(blocks.back().end, ex.graph().nodes.size());
}

// A value read by a quantized layer and by a shortcut: the shortcut sees the same quantized tensor.
TEST(Executor, ShortcutReadsTheQuantizedActivation) {
  GraphExecutor ex(tiny_resnet());
  struct Recorder : QuantContext {
    int calls = 0;
    at::Tensor weight(const LayerInfo&, const at::Tensor& w) override { return w; }
    at::Tensor input(const LayerInfo& l, const at::Tensor& x) override {
      ++calls;
      return l.name == "block.conv1" ? at::zeros_like(x) : x;  // "quantize" the block input to zero
    }
  } rec;
  at::Tensor x = torch::randn({2, 3, 8, 8});
  ValueMap seen;
  ex.run({x}, &rec, &seen);
  EXPECT_EQ(rec.calls, 4);  // once per layer: the shortcut reuses block.conv1's quantized tensor
  // The Add reads the zeroed block input: with conv1's input zero, conv2 sees relu(bias) only, and the
  // residual adds zero.
  const Node* add = nullptr;
  for (const auto& n : ex.graph().nodes) if (n.op_type == "Add") add = &n;
  ASSERT_NE(add, nullptr);
  at::Tensor branch = seen.at(add->inputs[0]), sum = seen.at(add->outputs[0]);
  EXPECT_TRUE(at::allclose(sum, branch));
}

TEST(FusedLsq, MatchesTheReferenceInValueAndGradient) {
  torch::manual_seed(3);
  for (bool channels_last : {false, true}) {
    at::Tensor x0 = torch::randn({4, 6, 5, 5}) * 2;
    if (channels_last) x0 = x0.contiguous(at::MemoryFormat::ChannelsLast);
    QuantSpec sp;
    sp.bits = 3;
    sp.is_signed = false;
    sp.symmetric = false;
    QuantParams p = compute_params(sp, x0 * 0.6);  // some values clip on both sides
    at::Tensor keep = at::rand(x0.sizes()) < 0.3;
    if (channels_last) keep = keep.contiguous(at::MemoryFormat::ChannelsLast);
    at::Tensor g = torch::randn(x0.sizes());
    auto run = [&](bool fused, at::Tensor* gx, at::Tensor* gs) {
      at::Tensor x = x0.clone().requires_grad_(true), s = p.scale.clone().requires_grad_(true);
      at::Tensor y = fused ? fake_quant_lsq_per_tensor(x, s, p.zero_point.item<double>(), p.qmin, p.qmax, 1.0, keep)
                           : at::where(keep, x, fake_quant_lsq(x, s, p, 1.0));
      (y * g).sum().backward();
      *gx = x.grad();
      *gs = s.grad();
      return y.detach();
    };
    at::Tensor gx_f, gs_f, gx_r, gs_r;
    at::Tensor y_f = run(true, &gx_f, &gs_f), y_r = run(false, &gx_r, &gs_r);
    EXPECT_TRUE(at::allclose(y_f, y_r, 1e-6, 1e-6));
    EXPECT_TRUE(at::allclose(gx_f, gx_r));
    EXPECT_NEAR(gs_f.item<double>(), gs_r.item<double>(), 1e-3 * std::max(1.0, std::abs(gs_r.item<double>())));
  }
}

// Every method lowers every unit's reconstruction loss below its RTN starting point on the tiny network.
class ReconMethod : public ::testing::TestWithParam<std::string> {};

TEST_P(ReconMethod, LowersUnitOutputError) {
  Graph g = tiny_resnet(1);
  ImageDataset calib = tiny_data(96, 2);
  CnnPtqOptions o;
  o.method = GetParam();
  o.bits = "w2a4";
  o.recon = recon_preset(GetParam());
  o.recon.iters = 150;
  o.recon.batch = 16;
  QuantizedCnn m = quantize_cnn(std::move(g), calib, o);
  const auto& units = m.metadata.at("reconstruction").at("units");
  ASSERT_FALSE(units.empty());
  // The 2-bit units (the residual block's convs) improve clearly when rounding is learned; the 8-bit stem and
  // classifier start near their optimum, and BRECQ's short activation-step pass (lr 4e-5) may move by noise, but
  // never much.
  int low_bit_units = 0;
  for (const auto& u : units) {
    const double before = u.at("loss_before").get<double>(), after = u.at("loss_after").get<double>();
    const std::string name = u.at("unit").get<std::string>();
    if (name.find("block.conv") != std::string::npos && u.at("pass") != "activations") {
      ++low_bit_units;
      EXPECT_LT(after, before * 0.95) << GetParam() << " " << name << " " << u.at("pass");
    } else {
      EXPECT_LE(after, before * 1.1) << GetParam() << " " << name << " " << u.at("pass");
    }
  }
  EXPECT_GE(low_bit_units, 1) << GetParam();
  // Integer weights are installed for every quantized layer, inside their range.
  for (const LayerInfo& l : m.ex->layers()) {
    at::Tensor q = m.sq->quantized_weight_codes(l.name);
    ASSERT_TRUE(q.defined()) << l.name;
    const QuantParams* p = m.sq->weight_params(l.name);
    EXPECT_GE(q.min().item<int>(), p->qmin);
    EXPECT_LE(q.max().item<int>(), p->qmax);
  }
}

INSTANTIATE_TEST_SUITE_P(AllMethods, ReconMethod, ::testing::Values("adaround", "brecq", "qdrop", "pdquant", "wca"));

TEST(Recon, SameSeedSameResult) {
  auto run = [] {
    CnnPtqOptions o;
    o.method = "qdrop";
    o.bits = "w2a4";
    o.recon = recon_preset("qdrop");
    o.recon.iters = 30;
    o.recon.batch = 16;
    QuantizedCnn m = quantize_cnn(tiny_resnet(1), tiny_data(64, 2), o);
    return m.sq->quantized_weight_codes("block.conv2");
  };
  EXPECT_TRUE(run().equal(run()));
}

TEST(Cat, OneClusterIsExactPerClassLinearRegression) {
  torch::manual_seed(5);
  at::Tensor zq = torch::randn({200, 4}, at::kDouble), zf = 1.7 * zq + 0.3 + 0.1 * torch::randn({200, 4}, at::kDouble);
  CatFitOptions o;
  o.k = 1;
  o.alpha = 1.0;
  CatHead h = fit_cat(zq.to(at::kFloat), zf.to(at::kFloat), o);
  for (int c = 0; c < 4; ++c) {
    at::Tensor a = zq.select(1, c), b = zf.select(1, c);
    // Closed-form OLS: slope = Σ(a−ā)(b−b̄) / Σ(a−ā)², intercept = b̄ − slope·ā.
    double slope = ((a - a.mean()) * (b - b.mean())).sum().item<double>() / (a - a.mean()).square().sum().item<double>();
    double icpt = b.mean().item<double>() - slope * a.mean().item<double>();
    EXPECT_NEAR(h.gamma[0][c].item<double>(), slope, 1e-5);
    EXPECT_NEAR(h.beta[0][c].item<double>(), icpt, 1e-5);
  }
  // α blends: α = 0 is the identity, α = 1 the regression.
  at::Tensor z = torch::randn({3, 4});
  EXPECT_TRUE(h.apply(z, 0.0).equal(z));
  EXPECT_TRUE(at::allclose(h.apply(z, 1.0), h.gamma[0] * z + h.beta[0]));
  EXPECT_TRUE(at::allclose(h.apply(z, 0.4), 0.6 * z + 0.4 * (h.gamma[0] * z + h.beta[0])));
}

TEST(Cat, ClustersSeparateDifferentCorrections) {
  // Two well-separated groups of logits with different true affine maps: K = 2 recovers both, K = 1 cannot.
  torch::manual_seed(6);
  at::Tensor a = torch::randn({100, 3}) + 5, b = torch::randn({100, 3}) - 5;
  at::Tensor zq = at::cat({a, b}), zf = at::cat({2 * a + 1, -0.5 * b + 3});
  CatFitOptions o;
  o.alpha = 1.0;
  o.k = 2;
  CatHead h2 = fit_cat(zq, zf, o);
  o.k = 1;
  CatHead h1 = fit_cat(zq, zf, o);
  double e2 = (h2.apply(zq) - zf).square().mean().item<double>(), e1 = (h1.apply(zq) - zf).square().mean().item<double>();
  EXPECT_LT(e2, 1e-6);
  EXPECT_GT(e1, 1.0);
  EXPECT_EQ(h2.extra_params(), 2 * 2 * 3 + 2 * 3);
}

TEST(Cat, SelectionUsesOnlyFittingDataAndCanDecline) {
  torch::manual_seed(8);
  // LQ logits already equal to FP: any correction can only hurt, α = 0 must win (ties broken by KL).
  at::Tensor z = torch::randn({120, 5});
  at::Tensor labels = z.argmax(1);
  CatSelectOptions so;
  so.ks = {1, 4};
  so.alphas = {0.5, 1.0};
  CatSelection sel = select_cat(z, z, labels, {}, so);
  EXPECT_EQ(sel.alpha, 0.0);
  // A systematic scale error is worth correcting.
  at::Tensor zf = z, zq = 0.3 * z + 0.5 * torch::randn({120, 5});
  sel = select_cat(zq, zf, zf.argmax(1), {}, so);
  EXPECT_GT(sel.alpha, 0.0);
}

TEST(CatqFile, RoundTripsModelAndHead) {
  Graph g = tiny_resnet(2);
  ImageDataset calib = tiny_data(64, 3);
  CnnPtqOptions o;
  o.method = "adaround";
  o.bits = "w3a4";
  o.recon = recon_preset("adaround");
  o.recon.iters = 20;
  o.recon.batch = 16;
  QuantizedCnn m = quantize_cnn(std::move(g), calib, o);
  CatFitOptions fo;
  fo.k = 3;
  fo.alpha = 0.5;
  at::Tensor x = calib.images.slice(0, 0, 32);
  {
    at::NoGradGuard ng;
    m.head = fit_cat(m.base_logits(calib.images), m.ex->forward(calib.images), fo);
  }
  const std::string path = temp_path("roundtrip.catq");
  write_catq(path, *m.ex, *m.sq, &*m.head, m.metadata);
  QuantizedCnn r = read_catq(path);
  ASSERT_TRUE(r.head.has_value());
  EXPECT_TRUE(at::allclose(r.forward(x), m.forward(x), 1e-5, 1e-5));
  EXPECT_TRUE(r.head->gamma.equal(m.head->gamma));
  EXPECT_EQ(r.metadata.at("method"), "adaround");
  EXPECT_EQ(r.sq->total_weight_bytes(), m.sq->total_weight_bytes());
  for (const LayerInfo& l : m.ex->layers())
    EXPECT_TRUE(r.sq->quantized_weight_codes(l.name).equal(m.sq->quantized_weight_codes(l.name))) << l.name;
  // The weight-cluster affine method bakes its transform into the codes: plain dequantization after loading.
  o.method = "wca";
  o.recon = recon_preset("wca");
  o.recon.iters = 10;
  o.recon.batch = 16;
  QuantizedCnn w = quantize_cnn(tiny_resnet(2), calib, o);
  write_catq(path, *w.ex, *w.sq, nullptr, w.metadata);
  QuantizedCnn wr = read_catq(path);
  EXPECT_FALSE(wr.head.has_value());
  EXPECT_TRUE(at::allclose(wr.forward(x), w.forward(x), 1e-5, 1e-5));
  EXPECT_EQ(wr.sq->total_weight_bytes(), w.sq->total_weight_bytes());
  std::remove(path.c_str());
}

TEST(BadInputPtq, UnsupportedBitsAndMethods) {
  for (const char* bits : {"w1a2", "w9a8", "w4", "4bit", "w4a1"}) {
    try {
      academic_config(bits);
      ADD_FAILURE() << bits;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Config) << bits;
      EXPECT_NE(std::string(e.what()).find(bits), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(recon_preset("gptq"), Error);
  CnnPtqOptions o;
  o.method = "magic";
  EXPECT_THROW(quantize_cnn(tiny_resnet(), tiny_data(8, 0), o), Error);
}

TEST(BadInputPtq, MismatchedCalibrationShape) {
  CnnPtqOptions o;
  ImageDataset wrong{torch::randn({16, 3, 16, 16}), torch::zeros({16}, at::kLong), "wrong.bin"};
  try {
    quantize_cnn(tiny_resnet(), wrong, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("wrong.bin"), std::string::npos) << e.what();
  }
  // Fewer calibration images than one reconstruction batch.
  o.method = "brecq";
  o.recon = recon_preset("brecq");
  EXPECT_THROW(quantize_cnn(tiny_resnet(), tiny_data(8, 0), o), Error);
}

TEST(BadInputPtq, TooFewFittingImagesForK) {
  at::Tensor z = torch::randn({10, 4});
  CatFitOptions o;
  o.k = 64;
  try {
    fit_cat(z, z, o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Data);
    EXPECT_NE(std::string(e.what()).find("64"), std::string::npos) << e.what();
  }
  o.k = 2;
  EXPECT_THROW(fit_cat(z, torch::randn({10, 3}), o), Error);  // shape mismatch
  at::Tensor bad = z.clone();
  bad[0][0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(fit_cat(bad, z, o), Error);
  o.alpha = 1.5;
  EXPECT_THROW(fit_cat(z, z, o), Error);
}

TEST(BadInputCatqFile, MalformedFilesAreFormatErrors) {
  // A valid file to corrupt.
  CnnPtqOptions o;
  QuantizedCnn m = quantize_cnn(tiny_resnet(), tiny_data(32, 1), o);
  const std::string good = temp_path("good.catq");
  write_catq(good, *m.ex, *m.sq, nullptr, m.metadata);
  std::vector<uint8_t> bytes = read_file_bytes(good);
  auto expect_format = [&](const std::vector<uint8_t>& data, const std::string& what) {
    const std::string p = temp_path("bad.catq");
    write_file_atomic(p, data.data(), data.size());
    try {
      read_catq(p);
      ADD_FAILURE() << what;
    } catch (const Error& e) {
      EXPECT_TRUE(e.kind() == ErrorKind::Format || e.kind() == ErrorKind::Unsupported) << what << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  // Truncations at many points, including inside the header and the tensor data.
  for (size_t cut : {size_t{0}, size_t{5}, size_t{12}, size_t{30}, bytes.size() / 3, bytes.size() / 2, bytes.size() - 1})
    expect_format(std::vector<uint8_t>(bytes.begin(), bytes.begin() + cut), fmt::format("truncated at {}", cut));
  std::vector<uint8_t> v = bytes;
  v[0] = 'X';
  expect_format(v, "magic");
  v = bytes;
  v[8] = 9;
  expect_format(v, "version");
  v = bytes;
  uint64_t huge = ~uint64_t{0};
  std::memcpy(v.data() + 16, &huge, 8);
  expect_format(v, "header length");
  v = bytes;
  v[30] = '}';  // breaks the JSON
  expect_format(v, "json");
  // Header edits: a tensor pointing outside the file, a shape that does not match its bytes.
  uint64_t hlen;
  std::memcpy(&hlen, bytes.data() + 16, 8);
  std::string header(bytes.begin() + 24, bytes.begin() + 24 + hlen);
  auto with_header = [&](const std::string& h) {
    std::vector<uint8_t> out(bytes.begin(), bytes.begin() + 16);
    uint64_t n = h.size();
    out.insert(out.end(), reinterpret_cast<uint8_t*>(&n), reinterpret_cast<uint8_t*>(&n) + 8);
    out.insert(out.end(), h.begin(), h.end());
    out.resize((out.size() + 63) / 64 * 64, 0);
    size_t blob = (24 + hlen + 63) / 64 * 64;
    out.insert(out.end(), bytes.begin() + blob, bytes.end());
    return out;
  };
  nlohmann::json hj = nlohmann::json::parse(header);
  nlohmann::json h1 = hj;
  h1["layers"][1]["weight"]["scale"]["offset"] = 1ull << 40;
  expect_format(with_header(h1.dump()), "offset");
  nlohmann::json h2 = hj;
  h2["layers"][1]["weight"]["codes"]["shape"] = {1000000, 1000000, 1000000};
  expect_format(with_header(h2.dump()), "huge shape");
  nlohmann::json h3 = hj;
  h3["graph"]["nodes"][0]["op_type"] = "MysteryOp";
  expect_format(with_header(h3.dump()), "unknown op");
  nlohmann::json h4 = hj;
  h4["layers"][0]["weight"]["qmax"] = 100000;
  expect_format(with_header(h4.dump()), "range");
  std::remove(good.c_str());
}

// ReconOptions are data: a preset with named fields overridden, and every field survives a JSON round trip.
TEST(ReconOptionsData, OverridesChangeOnlyTheNamedFields) {
  const catq::ReconOptions preset = catq::recon_preset("qdrop");
  const catq::ReconOptions o = catq::recon_options("qdrop", {{"iters", 7}, {"seed", 3}, {"keep_best", false}});
  EXPECT_EQ(o.iters, 7);
  EXPECT_EQ(o.seed, 3u);
  EXPECT_FALSE(o.keep_best);
  EXPECT_EQ(o.drop_prob, preset.drop_prob);
  EXPECT_EQ(o.granularity, preset.granularity);
  EXPECT_EQ(o.batch, preset.batch);
  const nlohmann::json j = o;
  EXPECT_EQ(j.at("granularity"), "block");
  EXPECT_EQ(nlohmann::json(j.get<catq::ReconOptions>()), j);
  EXPECT_EQ(catq::recon_options("adaround", nlohmann::json::object()).granularity, catq::ReconGranularity::Layer);
}

TEST(BadInputReconOptions, UnknownFieldWrongTypeAndBadValueAreConfigErrors) {
  auto kind = [](const nlohmann::json& ov) {
    try {
      catq::recon_options("brecq", ov);
    } catch (const catq::Error& e) {
      return e.kind();
    }
    return catq::ErrorKind::Internal;
  };
  EXPECT_EQ(kind({{"itres", 5}}), catq::ErrorKind::Config);
  EXPECT_EQ(kind({{"iters", "many"}}), catq::ErrorKind::Config);
  EXPECT_EQ(kind({{"iters", -3}}), catq::ErrorKind::Config);
  EXPECT_EQ(kind({{"drop_prob", 1.5}}), catq::ErrorKind::Config);
}

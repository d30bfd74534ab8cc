// QAT (src/methods/qat.h, cnn_qat.h): the SEQ / sign / PACT quantizers' values and gradients (checked by finite
// differences where the function is smooth, and against the straight-through surrogate elsewhere), the QatQuant
// context on a tiny residual CNN (training lowers the quantized loss; commit reproduces the trained model as
// integer weights; the result round-trips through the .catq file), qat_cnn end to end, and bad input.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "io/catq_file.h"
#include "ir/builder.h"
#include "tiny_models.h"
#include "methods/cnn/pipeline.h"
#include "methods/qat/cnn_qat.h"
#include "methods/qat/quantizers.h"
#include "methods/cnn/rtn.h"
#include "train/optim.h"

using namespace catq;

namespace {

using catq::test_models::tiny_resnet;

// Images and the FP model's own decisions as labels (a task the network can fit).
ImageDataset teacher_labelled(const GraphExecutor& fp, int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  at::Tensor x = torch::randn({n, 3, 8, 8});
  at::NoGradGuard ng;
  return {x, fp.forward(x).argmax(1), "synthetic"};
}

// The straight-through surrogate of seq around (x0, α0): rounding frozen at its value there, so the function is
// smooth and its derivative is what the STE promises. Double precision, element-wise.
double seq_surrogate(double x, double a, double x0, double a0, int bits) {
  const double k = std::ldexp(1.0, bits - 1);
  auto v_of = [&](double xx, double aa) { return std::clamp(xx / aa, -1.0, 1.0) * k - 0.5; };
  const double v0 = v_of(x0, a0);
  const double r0 = std::clamp(std::nearbyint(v0), -k, k - 1);
  return a / k * (r0 + (v_of(x, a) - v0) + 0.5);
}

}  // namespace

TEST(QatQuantizers, SeqLevelsAreHalfIntegerMultiplesOfTheStep) {
  for (int bits : {2, 3}) {
    const double k = std::ldexp(1.0, bits - 1);
    at::Tensor x = torch::linspace(-3, 3, 601);
    at::Tensor a = torch::tensor(1.5f);
    at::Tensor y = seq_fake_quant(x, a, bits);
    at::Tensor levels = std::get<0>(at::_unique(y));
    ASSERT_EQ(levels.numel(), static_cast<int64_t>(2 * k)) << bits;
    at::Tensor expect = (torch::arange(-k, k) + 0.5) * (1.5 / k);
    EXPECT_TRUE(at::allclose(levels, expect, 1e-6, 1e-6)) << bits;
    // Each value goes to its nearest level.
    at::Tensor err = (x.unsqueeze(1) - expect.unsqueeze(0)).abs();
    at::Tensor nearest = expect.index_select(0, err.argmin(1));
    EXPECT_LE((y - nearest).abs().max().item<double>(), 1e-6);
  }
}

TEST(QatQuantizers, SeqGradientsMatchTheStraightThroughSurrogate) {
  torch::manual_seed(3);
  const int bits = 2;
  at::Tensor x0 = torch::randn({4, 40}, at::kDouble) * 1.2;
  at::Tensor a0 = (torch::rand({4, 1}, at::kDouble) + 0.8);
  at::Tensor c = torch::randn({4, 40}, at::kDouble);
  at::Tensor x = x0.clone().requires_grad_(true), a = a0.clone().requires_grad_(true);
  (seq_fake_quant(x, a, bits, 1.0) * c).sum().backward();
  const double h = 1e-6;
  auto X = x0.accessor<double, 2>();
  auto A = a0.accessor<double, 2>();
  auto C = c.accessor<double, 2>();
  for (int64_t r = 0; r < 4; ++r) {
    double fd_a = 0;
    for (int64_t j = 0; j < 40; ++j) {
      const double xv = X[r][j], av = A[r][0];
      if (std::fabs(std::fabs(xv / av) - 1) < 1e-3) continue;  // not differentiable at the clip
      const double fdx = (seq_surrogate(xv + h, av, xv, av, bits) - seq_surrogate(xv - h, av, xv, av, bits)) / (2 * h);
      EXPECT_NEAR(x.grad()[r][j].item<double>(), C[r][j] * fdx, 1e-5) << r << "," << j;
      fd_a += C[r][j] * (seq_surrogate(xv, av + h, xv, av, bits) - seq_surrogate(xv, av - h, xv, av, bits)) / (2 * h);
    }
    EXPECT_NEAR(a.grad()[r][0].item<double>(), fd_a, 1e-5 * (1 + std::fabs(fd_a))) << r;
  }
}

TEST(QatQuantizers, SeqAlphaGradientIsExactWhenSaturatedAndScaled) {
  // Every |x| > α: x̂ = ±α(k − ½)/k is linear in α, so finite differences of the real function are exact.
  torch::manual_seed(4);
  at::Tensor x = (torch::rand({60}, at::kDouble) + 2) * at::where(torch::rand({60}) < 0.5, 1.0, -1.0).to(at::kDouble);
  at::Tensor c = torch::randn({60}, at::kDouble);
  auto f = [&](double av) { return (seq_fake_quant(x, torch::tensor(av, at::kDouble), 2, 1.0) * c).sum().item<double>(); };
  const double h = 1e-4, fd = (f(1.0 + h) - f(1.0 - h)) / (2 * h);
  at::Tensor a = torch::tensor(1.0, at::kDouble).requires_grad_(true);
  (seq_fake_quant(x, a, 2, 1.0) * c).sum().backward();
  EXPECT_NEAR(a.grad().item<double>(), fd, 1e-8);
  // Default grad scale 1/sqrt(numel·k) multiplies the α gradient only.
  at::Tensor a2 = torch::tensor(1.0, at::kDouble).requires_grad_(true);
  (seq_fake_quant(x, a2, 2) * c).sum().backward();
  EXPECT_NEAR(a2.grad().item<double>(), fd / std::sqrt(60.0 * 2), 1e-8);
}

TEST(QatQuantizers, SignValuesAndGradients) {
  torch::manual_seed(5);
  at::Tensor x0 = torch::randn({3, 20}, at::kDouble);
  x0[0][0] = 0.0;  // sign(0) = +1
  at::Tensor a0 = torch::tensor({{0.5}, {1.0}, {2.0}}, at::kDouble);
  at::Tensor c = torch::randn({3, 20}, at::kDouble);
  at::Tensor x = x0.clone().requires_grad_(true), a = a0.clone().requires_grad_(true);
  at::Tensor y = sign_fake_quant(x, a, 1.0);
  at::Tensor sgn = at::where(x0 >= 0, 1.0, -1.0).to(at::kDouble);
  EXPECT_TRUE(at::allclose(y.detach(), a0 * sgn));
  (y * c).sum().backward();
  // ∂/∂α: the function is linear in α, so this is also the finite difference.
  EXPECT_TRUE(at::allclose(a.grad(), (c * sgn).sum(1, true)));
  EXPECT_TRUE(at::allclose(x.grad(), c * (x0.abs() <= a0).to(at::kDouble)));
}

TEST(QatQuantizers, PactValuesAndGradients) {
  at::Tensor x0 = torch::tensor({-1.0, 0.0, 0.1, 0.52, 0.9, 1.05, 1.7, 3.0}, at::kDouble);
  at::Tensor c = torch::tensor({1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0}, at::kDouble);
  at::Tensor x = x0.clone().requires_grad_(true);
  at::Tensor a = torch::tensor(1.2, at::kDouble).requires_grad_(true);
  at::Tensor y = pact_fake_quant(x, a, 2);  // 3 steps of 0.4 on [0, 1.2]
  at::Tensor expect = torch::tensor({0.0, 0.0, 0.0, 0.4, 0.8, 1.2, 1.2, 1.2}, at::kDouble);
  EXPECT_TRUE(at::allclose(y.detach(), expect, 1e-9, 1e-9));
  (y * c).sum().backward();
  // ∂/∂α = Σ c over x > α (7 + 8): the clip's gradient, as in PACT; ∂/∂x = 1 on (0, α].
  EXPECT_NEAR(a.grad().item<double>(), 15.0, 1e-9);
  at::Tensor gx = torch::tensor({0.0, 0.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0}, at::kDouble);
  EXPECT_TRUE(at::allclose(x.grad(), gx));
  // Where every value is above α the output is α itself: finite differences of the real function agree.
  at::Tensor big = torch::tensor({2.0, 3.0, 5.0}, at::kDouble);
  auto f = [&](double av) { return pact_fake_quant(big, torch::tensor(av, at::kDouble), 4).sum().item<double>(); };
  EXPECT_NEAR((f(1.2 + 1e-5) - f(1.2 - 1e-5)) / 2e-5, 3.0, 1e-6);
}

TEST(QatQuantizers, SeqInitBeatsTheMaxAndBadBitsAreRejected) {
  torch::manual_seed(6);
  at::Tensor rows = torch::randn({5, 300});
  at::Tensor a = seq_init_alpha(rows, 2);
  at::Tensor amax = rows.abs().amax(1, true);
  auto err = [&](const at::Tensor& al) { return (rows - seq_fake_quant(rows, al, 2)).pow(2).sum().item<double>(); };
  EXPECT_LT(err(a), 0.8 * err(amax));
  EXPECT_TRUE((a <= amax + 1e-6).all().item<bool>());
  EXPECT_THROW(seq_fake_quant(rows, a, 1), Error);
  EXPECT_THROW(pact_fake_quant(rows, a, 9), Error);
  EXPECT_THROW(parse_weight_qat("lsq2"), Error);
  EXPECT_THROW(parse_act_qat("relu6"), Error);
  EXPECT_EQ(parse_weight_qat("seq"), WeightQat::Seq);
  EXPECT_EQ(parse_act_qat("pact"), ActQat::Pact);
}

// A few QAT steps on the tiny net at W2A2 lower the quantized loss; commit() then reproduces the trained model
// in the base SimQuant as integer weights, and the .catq file round-trips it.
TEST(QatQuant, TrainingLowersTheQuantizedLossAndCommitReproducesIt) {
  for (ActQat act : {ActQat::Lsq, ActQat::Pact}) {
    GraphExecutor ex(tiny_resnet(1));
    ImageDataset data = teacher_labelled(ex, 256, 2);
    SimQuant sq(academic_config("w2a2"));
    calibrate_rtn(ex, sq, data.images, 128);
    auto weight_of = [&](const LayerInfo& l) { return ex.layer_weight(l); };
    QatOptions qo;
    qo.act = act;
    QatQuant qat(sq, weight_of, qo);
    EXPECT_EQ(qat.weight_quantizer("stem"), "lsq");          // first layer: 8 bits
    EXPECT_EQ(qat.weight_quantizer("block.conv1"), "seq");   // 2 bits: SEQ (auto)
    EXPECT_EQ(qat.input_quantizer("block.conv1"), act == ActQat::Pact ? "pact" : "lsq");
    EXPECT_EQ(qat.input_quantizer("stem"), "lsq");           // the image input can be negative: never PACT

    auto loss_of = [&]() {
      at::NoGradGuard ng;
      return cross_entropy(ex.forward(data.images, &qat), data.labels).item<double>();
    };
    const double before = loss_of();
    std::vector<at::Tensor> params = ex.parameters();
    for (auto& p : params) p.set_requires_grad(true);
    OptimConfig oc;
    oc.kind = OptimKind::Adam;
    LrSchedule sched;
    sched.base_lr = 3e-3;
    sched.total_steps = 60;
    TrainStepper stepper({{params}, {qat.parameters()}}, oc, sched);
    for (int i = 0; i < 60; ++i) stepper.step(cross_entropy(ex.forward(data.images.slice(0, (i % 4) * 64, (i % 4 + 1) * 64), &qat),
                                                            data.labels.slice(0, (i % 4) * 64, (i % 4 + 1) * 64)));
    for (auto& p : params) p.set_requires_grad(false);
    const double after = loss_of();
    EXPECT_LT(after, 0.8 * before) << to_string(act) << ": " << before << " -> " << after;

    at::Tensor z_qat;
    {
      at::NoGradGuard ng;
      z_qat = ex.forward(data.images, &qat);
    }
    qat.commit(weight_of);
    for (const auto& l : ex.layers()) EXPECT_TRUE(sq.layer(l.name).weight_codes.defined()) << l.name;
    EXPECT_EQ(sq.weight_params("block.conv1")->scheme, Scheme::KMeans);
    EXPECT_EQ(sq.weight_params("block.conv1")->codebook.size(1), 4);
    at::Tensor z_base;
    {
      at::NoGradGuard ng;
      z_base = ex.forward(data.images, &sq);
    }
    EXPECT_LE((z_base - z_qat).abs().max().item<double>(), 1e-4 * (1 + z_qat.abs().max().item<double>()))
        << to_string(act);

    const std::string path = ::testing::TempDir() + "catq_qat_roundtrip.catq";
    write_catq(path, ex, sq, nullptr, {{"method", "qat"}});
    QuantizedCnn back = read_catq(path);
    at::NoGradGuard ng;
    EXPECT_TRUE(at::allclose(back.forward(data.images), z_base, 1e-5, 1e-5)) << to_string(act);
    std::remove(path.c_str());
  }
}

TEST(QatQuant, NeedsCalibratedStaticInputs) {
  GraphExecutor ex(tiny_resnet(1));
  SimQuant sq(academic_config("w4a4"));
  sq.bind(ex.layers());  // bound, but nothing calibrated
  auto weight_of = [&](const LayerInfo& l) { return ex.layer_weight(l); };
  try {
    QatQuant qat(sq, weight_of, {});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not calibrated"), std::string::npos) << e.what();
  }
  SimQuant fresh(academic_config("w4a4"));
  EXPECT_THROW(QatQuant(fresh, weight_of, {}), Error);  // nothing bound at all
}

TEST(CnnQat, EndToEndOnTheTinyNet) {
  GraphExecutor fp(tiny_resnet(1));
  ImageDataset data = teacher_labelled(fp, 192, 7);
  CnnQatOptions o;
  o.bits = "w4a4";
  o.epochs = 2;
  o.batch = 64;
  o.lr = 1e-3;
  o.calib_images = 64;
  int calls = 0;
  QuantizedCnn m = qat_cnn(fp.graph(), data, o, [&](const Forward& f, int64_t e) {
    ++calls;
    at::NoGradGuard ng;
    return static_cast<double>(f(data.images).argmax(1).eq(data.labels).sum().item<int64_t>()) / data.size();
  });
  EXPECT_EQ(calls, 2);
  ASSERT_EQ(m.metadata["qat"]["history"].size(), 2u);
  EXPECT_EQ(m.metadata["method"], "qat");
  for (const auto& l : m.ex->layers()) EXPECT_TRUE(m.sq->layer(l.name).weight_codes.defined()) << l.name;
  // The caller's FP model is untouched (its graph's tensors are shared by the copy qat_cnn receives).
  at::NoGradGuard ng;
  EXPECT_TRUE(at::equal(fp.forward(data.images).argmax(1), data.labels));
  at::Tensor z = m.forward(data.images);
  EXPECT_TRUE(at::isfinite(z).all().item<bool>());
  // Bad input: images of the wrong shape.
  ImageDataset wrong{torch::randn({8, 1, 8, 8}), torch::zeros({8}, at::kLong), "wrong"};
  EXPECT_THROW(qat_cnn(fp.graph(), wrong, o), Error);
  CnnQatOptions bad = o;
  bad.lr = -1;
  EXPECT_THROW(qat_cnn(fp.graph(), data, bad), Error);
}

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "eval/classification.h"
#include "train/schedule.h"
#include "train/trainer.h"

namespace {

using catq::LrSchedule;
using catq::LrShape;

TEST(TrainSchedule, ConstantCosineWsdKeySteps) {
  LrSchedule c;
  c.shape = LrShape::Constant;
  c.base_lr = 0.5;
  c.total_steps = 10;
  c.validate();
  EXPECT_DOUBLE_EQ(c.lr(0), 0.5);
  EXPECT_DOUBLE_EQ(c.lr(9), 0.5);
  EXPECT_DOUBLE_EQ(c.lr(1000), 0.5);
  c.warmup_frac = 0.2;  // 2 warmup steps
  EXPECT_DOUBLE_EQ(c.lr(0), 0.25);
  EXPECT_DOUBLE_EQ(c.lr(1), 0.5);

  LrSchedule cos;
  cos.shape = LrShape::Cosine;
  cos.base_lr = 1.0;
  cos.total_steps = 110;
  cos.warmup_frac = 10.0 / 110;  // 10 warmup steps, then 100 cosine steps
  cos.final_ratio = 0.1;
  cos.validate();
  EXPECT_EQ(cos.warmup_steps(), 10);
  EXPECT_DOUBLE_EQ(cos.lr(0), 0.1);
  EXPECT_DOUBLE_EQ(cos.lr(4), 0.5);
  EXPECT_DOUBLE_EQ(cos.lr(9), 1.0);
  EXPECT_DOUBLE_EQ(cos.lr(10), 1.0);
  EXPECT_NEAR(cos.lr(60), 0.55, 1e-12);  // half way: (1 + 0.1) / 2
  EXPECT_NEAR(cos.lr(35), 0.1 + 0.9 * (1 + std::cos(M_PI / 4)) / 2, 1e-12);
  EXPECT_DOUBLE_EQ(cos.lr(110), 0.1);
  EXPECT_DOUBLE_EQ(cos.lr(500), 0.1);
  for (int64_t s = 10; s < 110; ++s) EXPECT_LE(cos.lr(s + 1), cos.lr(s));

  LrSchedule w;
  w.shape = LrShape::Wsd;
  w.base_lr = 2.0;
  w.total_steps = 100;
  w.warmup_frac = 0.1;
  w.decay_frac = 0.2;
  w.final_ratio = 0.1;
  w.validate();
  EXPECT_EQ(w.decay_steps(), 20);
  EXPECT_DOUBLE_EQ(w.lr(0), 0.2);
  EXPECT_DOUBLE_EQ(w.lr(9), 2.0);
  EXPECT_DOUBLE_EQ(w.lr(50), 2.0);
  EXPECT_DOUBLE_EQ(w.lr(80), 2.0);                    // decay starts at T - D
  EXPECT_NEAR(w.lr(90), 2.0 + (0.2 - 2.0) * 0.5, 1e-12);  // linear, half way
  EXPECT_NEAR(w.lr(99), 2.0 + (0.2 - 2.0) * 0.95, 1e-12);
  EXPECT_DOUBLE_EQ(w.lr(100), 0.2);
  w.decay = catq::DecayShape::Cosine;
  EXPECT_NEAR(w.lr(85), 0.2 + 1.8 * (1 + std::cos(M_PI / 4)) / 2, 1e-12);
  EXPECT_NEAR(w.lr(90), 1.1, 1e-12);
  EXPECT_DOUBLE_EQ(w.lr(100), 0.2);

  EXPECT_EQ(catq::parse_lr_shape("wsd"), LrShape::Wsd);
  EXPECT_EQ(catq::parse_decay_shape("cosine"), catq::DecayShape::Cosine);
  EXPECT_EQ(catq::parse_optim_kind("adamw"), catq::OptimKind::AdamW);
}

TEST(BadInputSchedule, RejectsBadValues) {
  auto expect_config = [](LrSchedule s) {
    try {
      s.validate();
      FAIL() << "expected an error";
    } catch (const catq::Error& e) {
      EXPECT_EQ(e.kind(), catq::ErrorKind::Config) << e.what();
    }
  };
  LrSchedule s;
  s.total_steps = 100;
  s.validate();
  LrSchedule b = s;
  b.total_steps = 0;
  expect_config(b);
  b = s;
  b.base_lr = -1;
  expect_config(b);
  b = s;
  b.base_lr = std::nan("");
  expect_config(b);
  b = s;
  b.warmup_frac = 1.5;
  expect_config(b);
  b = s;
  b.shape = LrShape::Wsd;
  b.warmup_frac = 0.6;
  b.decay_frac = 0.5;
  expect_config(b);
  b = s;
  b.final_ratio = -0.1;
  expect_config(b);
  EXPECT_THROW(catq::parse_lr_shape("step"), catq::Error);
  EXPECT_THROW(catq::parse_decay_shape("exp"), catq::Error);
  EXPECT_THROW(catq::parse_optim_kind("lion"), catq::Error);
}

// Two Gaussian blobs in 2-D, centres (+-1.5, +-1.5), sigma 0.5, stored as images [N, 2, 1, 1].
catq::ImageDataset blobs(int64_t n, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor y = at::randint(0, 2, {n}, gen, at::kLong);
  at::Tensor centre = (y.to(at::kFloat) * 2 - 1).unsqueeze(1) * 1.5;
  at::Tensor x = centre + 0.5 * at::randn({n, 2}, gen);
  return {x.reshape({n, 2, 1, 1}).contiguous(), y, "blobs"};
}

struct Mlp {
  torch::nn::Sequential net;
  explicit Mlp(uint64_t seed) {
    torch::manual_seed(seed);
    net = torch::nn::Sequential(torch::nn::Flatten(), torch::nn::Linear(2, 16), torch::nn::ReLU(),
                                torch::nn::Linear(16, 2));
  }
  catq::Forward forward() {
    return [this](const at::Tensor& x) { return net->forward(x); };
  }
};

TEST(TrainClassifier, MlpLearnsSeparableBlobs) {
  catq::ImageDataset data = blobs(512, 3);
  Mlp m(1);
  catq::TrainOptions o;
  o.epochs = 4;
  o.batch_size = 32;
  o.optim.kind = catq::OptimKind::Adam;
  o.schedule.shape = LrShape::Cosine;
  o.schedule.base_lr = 0.02;
  o.schedule.warmup_frac = 0.1;
  int calls = 0;
  auto hist = catq::train_classifier(data, m.forward(), m.net->parameters(), o, [&](int64_t epoch) {
    EXPECT_EQ(epoch, calls++);
    return 0.5 + epoch;
  });
  ASSERT_EQ(hist.size(), 4u);
  EXPECT_EQ(calls, 4);
  EXPECT_DOUBLE_EQ(hist[2].eval, 2.5);
  EXPECT_LT(hist.back().loss, hist.front().loss);
  EXPECT_GT(hist.back().train_acc, 0.95);
  EXPECT_LT(hist.back().lr, 0.002);  // near the end of the cosine
  catq::ClassifyResult r = catq::evaluate_classifier(data, m.forward());
  EXPECT_GT(r.top1, 0.95);
}

TEST(TrainClassifier, SameSeedSameLoss) {
  catq::ImageDataset data = blobs(300, 5);
  auto run = [&](uint64_t seed) {
    Mlp m(11);
    catq::TrainOptions o;
    o.epochs = 2;
    o.batch_size = 16;
    o.seed = seed;
    o.optim.kind = catq::OptimKind::Sgd;
    o.optim.momentum = 0.9;
    o.optim.nesterov = true;
    o.optim.weight_decay = 1e-4;
    o.schedule.base_lr = 0.05;
    o.label_smoothing = 0.1;
    return catq::train_classifier(data, m.forward(), m.net->parameters(), o).back().loss;
  };
  double a = run(7), b = run(7), c = run(8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);  // a different seed shuffles differently
}

TEST(TrainClassifier, LrScaleZeroFreezesAGroup) {
  catq::ImageDataset data = blobs(64, 9);
  Mlp m(2);
  auto params = m.net->parameters();
  at::Tensor before = params[0].detach().clone();
  catq::ParamGroup frozen{{params[0], params[1]}, 0.0};
  catq::ParamGroup live{{params[2], params[3]}, 1.0};
  catq::TrainOptions o;
  o.optim.momentum = 0;
  o.schedule.base_lr = 0.1;
  catq::train_classifier(data, m.forward(), std::vector<catq::ParamGroup>{frozen, live}, o);
  EXPECT_TRUE(params[0].detach().equal(before));
}

TEST(TrainSteps, RegressionAndScheduleOffset) {
  at::Tensor w = torch::zeros({1}, torch::requires_grad());
  at::Tensor b = torch::zeros({1}, torch::requires_grad());
  catq::BatchFn batch = [](int64_t step) {
    at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(step));
    at::Tensor x = at::randn({32}, gen);
    return catq::Batch{x, 3 * x + 1};
  };
  catq::LossFn loss = [&](const catq::Batch& bt) { return (w * bt.input + b - bt.target).square().mean(); };
  catq::StepOptions o;
  o.optim.kind = catq::OptimKind::AdamW;
  o.optim.weight_decay = 0;
  o.schedule.shape = LrShape::Wsd;
  o.schedule.base_lr = 0.1;
  o.schedule.total_steps = 400;
  o.schedule.decay_frac = 0.25;
  o.schedule.final_ratio = 0.01;
  o.grad_clip_norm = 10;
  // Phase 1: the warmup-stable part; phase 2 continues the same schedule through the decay.
  auto h1 = catq::train_steps(300, batch, loss, {w, b}, o);
  std::vector<int64_t> evals;
  o.first_step = 300;
  o.eval_every = 40;
  o.on_eval = [&](int64_t s) { evals.push_back(s); };
  auto h2 = catq::train_steps(100, batch, loss, {w, b}, o);
  ASSERT_EQ(h1.size(), 300u);
  ASSERT_EQ(h2.size(), 100u);
  EXPECT_EQ(h2.front().step, 300);
  for (const auto& r : h2) EXPECT_DOUBLE_EQ(r.lr, o.schedule.lr(r.step));
  EXPECT_DOUBLE_EQ(h1.back().lr, 0.1);
  EXPECT_LT(h2.back().lr, 0.01);
  EXPECT_EQ(evals, (std::vector<int64_t>{340, 380, 400}));
  EXPECT_LT(h2.back().loss, 1e-3 * h1.front().loss);
  EXPECT_NEAR(w.item<double>(), 3.0, 0.05);
  EXPECT_NEAR(b.item<double>(), 1.0, 0.05);
}

// OptimizerStateCarry: a two-phase run with the AdamW state carried takes exactly the steps of one uninterrupted
// run (same moments, same step counts); without it the second phase restarts the moments and differs. A parameter
// new in the second phase (a QAT step size) starts fresh.
TEST(TrainSteps, OptimizerStateCarriesAcrossPhases) {
  catq::BatchFn batch = [](int64_t step) {
    at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(step));
    at::Tensor x = at::randn({32}, gen);
    return catq::Batch{x, 3 * x + 1};
  };
  auto run = [&](bool split, bool carry) {
    at::Tensor w = torch::zeros({1}, torch::requires_grad());
    at::Tensor extra = torch::zeros({1}, torch::requires_grad());
    catq::LossFn loss = [&](const catq::Batch& bt) { return (w * bt.input + 1 - bt.target).square().mean(); };
    catq::LossFn loss2 = [&](const catq::Batch& bt) { return loss(bt) + 0 * extra.sum(); };
    catq::StepOptions o;
    o.optim.kind = catq::OptimKind::AdamW;
    o.optim.weight_decay = 0;
    o.schedule.base_lr = 0.05;
    o.schedule.total_steps = 20;
    catq::OptimizerStateCarry state;
    if (carry) o.carry = &state;
    if (!split) {
      catq::train_steps(20, batch, loss, {w}, o);
      return w.item<double>();
    }
    catq::train_steps(10, batch, loss, {w}, o);
    if (carry) {
      EXPECT_EQ(state.by_param.size(), 1u);
    }
    o.first_step = 10;
    catq::train_steps(10, batch, loss2, std::vector<catq::ParamGroup>{{{w}}, {{extra}}}, o);
    if (carry) {
      EXPECT_EQ(state.by_param.size(), 2u);
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*state.by_param.at(w.data_ptr()));
      EXPECT_EQ(s.step(), 20);
      const auto& e = static_cast<const torch::optim::AdamWParamState&>(*state.by_param.at(extra.data_ptr()));
      EXPECT_EQ(e.step(), 10);
    }
    return w.item<double>();
  };
  const double whole = run(false, false);
  EXPECT_DOUBLE_EQ(run(true, true), whole);
  EXPECT_NE(run(true, false), whole);
}

void expect_error(const std::function<void()>& f, catq::ErrorKind kind, const std::string& part) {
  try {
    f();
    FAIL() << "expected an error";
  } catch (const catq::Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(BadInputTrain, DivergenceShapesLabelsOptions) {
  catq::ImageDataset data = blobs(40, 1);
  Mlp m(3);
  catq::TrainOptions o;
  o.schedule.base_lr = 0.1;
  auto params = m.net->parameters();
  // Non-finite loss: a forward that returns NaN logits.
  expect_error([&] { catq::train_classifier(data, [](const at::Tensor& x) { return at::full({x.size(0), 2}, NAN).requires_grad_(); }, params, o); },
               catq::ErrorKind::Data, "diverged");
  // Logits of the wrong shape.
  expect_error([&] { catq::train_classifier(data, [&](const at::Tensor& x) { return m.net->forward(x).sum(1); }, params, o); },
               catq::ErrorKind::Data, "logits");
  // Labels outside the model's classes.
  catq::ImageDataset bad = data;
  bad.labels = data.labels.clone();
  bad.labels[5] = 7;
  expect_error([&] { catq::train_classifier(bad, m.forward(), params, o); }, catq::ErrorKind::Data, "label 7");
  // Parameters that cannot be trained, empty data, bad options.
  expect_error([&] { catq::train_classifier(data, m.forward(), {at::zeros({2})}, o); }, catq::ErrorKind::Data,
               "require grad");
  expect_error([&] { catq::train_classifier(data, m.forward(), std::vector<at::Tensor>{}, o); },
               catq::ErrorKind::Data, "no parameters");
  expect_error([&] { catq::train_classifier(data.slice(0, 0), m.forward(), params, o); }, catq::ErrorKind::Data,
               "empty");
  catq::TrainOptions e = o;
  e.epochs = 0;
  expect_error([&] { catq::train_classifier(data, m.forward(), params, e); }, catq::ErrorKind::Config, "epochs");
  e = o;
  e.optim.momentum = 1.5;
  expect_error([&] { catq::train_classifier(data, m.forward(), params, e); }, catq::ErrorKind::Config, "momentum");
  e = o;
  e.label_smoothing = 1.0;
  expect_error([&] { catq::train_classifier(data, m.forward(), params, e); }, catq::ErrorKind::Config, "smoothing");
  catq::StepOptions so;
  expect_error([&] { catq::train_steps(0, {}, {}, params, so); }, catq::ErrorKind::Config, "steps");
  expect_error(
      [&] {
        catq::train_steps(
            3, [](int64_t) { return catq::Batch{}; }, [&](const catq::Batch&) { return params[0].sum() * NAN; },
            params, so);
      },
      catq::ErrorKind::Data, "diverged");
}

}  // namespace

#include "train/augment.h"

namespace {

TEST(TrainAugment, CropFlipIsAShiftOrMirror) {
  at::Tensor x = at::arange(2 * 3 * 8 * 8, at::kFloat).reshape({2, 3, 8, 8}) + 1;  // no zeros inside
  auto aug = catq::random_crop_flip(2, true, 5);
  auto again = catq::random_crop_flip(2, true, 5);
  for (int rep = 0; rep < 20; ++rep) {
    at::Tensor y = aug(x);
    EXPECT_TRUE(y.equal(again(x)));  // same seed, same sequence
    ASSERT_EQ(y.sizes(), x.sizes());
    for (int64_t i = 0; i < 2; ++i) {
      // Some shift (dy, dx) in [-2, 2]^2 of the image or of its mirror must reproduce every non-padded pixel.
      bool found = false;
      for (bool mirrored : {false, true}) {
        at::Tensor src = mirrored ? x[i].flip({2}) : x[i];
        at::Tensor pad = at::constant_pad_nd(src, {2, 2, 2, 2}, 0.0);
        for (int64_t dy = 0; dy <= 4 && !found; ++dy)
          for (int64_t dx = 0; dx <= 4 && !found; ++dx)
            found = pad.narrow(1, dy, 8).narrow(2, dx, 8).equal(y[i]);
      }
      EXPECT_TRUE(found) << "rep " << rep << " image " << i;
    }
  }
  EXPECT_TRUE(catq::random_crop_flip(0, false, 1)(x).equal(x));
  EXPECT_THROW(catq::random_crop_flip(2, true, 1)(at::zeros({3, 4})), catq::Error);
}

}  // namespace

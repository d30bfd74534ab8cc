// The CIFAR-10 ResNets must score exactly what ONNX Runtime / PyTorch score (../shared/README.md):
// FP32 top-1 on the project's 9,000-image evaluation split, with and without BN folding.
#include <gtest/gtest.h>

#include "core/file_util.h"
#include "eval/classification.h"
#include "io/cifar.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"
#include "sim/fold_constants.h"
#include "sim/executor.h"
#include "sim/sim_quant.h"

namespace {

std::string asset(const std::string& rel) { return std::string(CATQ_SOURCE_DIR) + "/../shared/assets/" + rel; }

double top1(const std::string& model, bool fold_bn, int64_t limit = 0) {
  catq::Graph g = catq::load_onnx(asset("resnet-cifar10/" + model));
  catq::fold_constants(g);
  if (fold_bn) catq::fold_batchnorm(g);
  catq::GraphExecutor ex(std::move(g));
  catq::ImageDataset data = catq::load_cifar10(asset("cifar10/test.bin"), catq::CifarSplit::Eval);
  catq::ClassifyOptions o;
  o.limit = limit;
  return catq::evaluate_classifier(data, [&](const at::Tensor& x) { return ex.forward(x); }, o).top1 * 100;
}

}  // namespace

TEST(AcceptanceCnn, ResNet20Fp32EvalSplit) {
  if (!catq::file_exists(asset("cifar10/test.bin"))) GTEST_SKIP() << "../shared/assets absent";
  EXPECT_NEAR(top1("resnet20.onnx", true), 91.79, 0.02);
}

TEST(AcceptanceCnn, ResNet56Fp32EvalSplit) {
  if (!catq::file_exists(asset("cifar10/test.bin"))) GTEST_SKIP() << "../shared/assets absent";
  EXPECT_NEAR(top1("resnet56.onnx", true), 93.56, 0.02);
}

TEST(AcceptanceCnn, BnFoldingDoesNotChangeLogits) {
  if (!catq::file_exists(asset("cifar10/test.bin"))) GTEST_SKIP() << "../shared/assets absent";
  catq::Graph g = catq::load_onnx(asset("resnet-cifar10/resnet20.onnx"));
  catq::fold_constants(g);
  catq::GraphExecutor plain(g);
  catq::fold_batchnorm(g);
  catq::GraphExecutor folded(g);
  catq::ImageDataset data = catq::load_cifar10(asset("cifar10/test.bin"), catq::CifarSplit::Calib).slice(0, 64);
  at::NoGradGuard ng;
  at::Tensor a = plain.forward(data.images), b = folded.forward(data.images);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-3);
  EXPECT_EQ(folded.layers().size(), 20u);
}

// W8A8 RTN on ResNet-20 stays within 1 point of FP32 and W2A2 collapses: the fake-quant path is live.
TEST(AcceptanceCnn, ResNet20RtnSanity) {
  if (!catq::file_exists(asset("cifar10/test.bin"))) GTEST_SKIP() << "../shared/assets absent";
  catq::Graph g = catq::load_onnx(asset("resnet-cifar10/resnet20.onnx"));
  catq::fold_constants(g);
  catq::fold_batchnorm(g);
  catq::GraphExecutor ex(std::move(g));
  catq::ImageDataset calib = catq::load_cifar10(asset("cifar10/test.bin"), catq::CifarSplit::Calib).slice(0, 256);
  catq::ImageDataset eval = catq::load_cifar10(asset("cifar10/test.bin"), catq::CifarSplit::Eval).slice(0, 1000);
  auto run = [&](const std::string& cfg) {
    catq::SimQuant sq(catq::QuantConfig::from_string(cfg), catq::SimQuant::Mode::Calibrate);
    {
      at::NoGradGuard ng;
      ex.forward(calib.images, &sq);
    }
    sq.finalize_calibration();
    sq.set_mode(catq::SimQuant::Mode::Quantize);
    return catq::evaluate_classifier(eval, [&](const at::Tensor& x) { return ex.forward(x, &sq); }).top1 * 100;
  };
  double fp = catq::evaluate_classifier(eval, [&](const at::Tensor& x) { return ex.forward(x); }).top1 * 100;
  EXPECT_NEAR(run("w8a8-fl8"), fp, 1.0);
  EXPECT_LT(run("w2a2"), 30.0);
}

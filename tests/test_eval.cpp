#include <gtest/gtest.h>

#include <cmath>

#include "eval/classification.h"
#include "eval/sqnr.h"

namespace {

// Four samples, six classes. Ranks of the true label: sample 0 first, 1 second, 2 sixth, 3 fifth.
at::Tensor hand_logits() {
  return at::tensor({9.f, 1.f, 2.f, 3.f, 4.f, 5.f,   //
                     1.f, 8.f, 9.f, 0.f, 0.f, 0.f,   //
                     6.f, 5.f, 4.f, 3.f, 2.f, 1.f,   //
                     1.f, 2.f, 3.f, 4.f, 5.f, 6.f})
      .reshape({4, 6});
}
at::Tensor hand_labels() { return at::tensor({0, 1, 5, 1}, at::kLong); }

// Data whose "images" are the logits themselves: forward = flatten.
catq::ImageDataset logits_as_images(const at::Tensor& logits, const at::Tensor& labels) {
  return {logits.reshape({logits.size(0), logits.size(1), 1, 1}), labels, "hand"};
}
at::Tensor flatten(const at::Tensor& x) { return x.flatten(1); }

TEST(EvalClassification, TopKOnHandMadeLogits) {
  EXPECT_EQ(catq::topk_correct(hand_logits(), hand_labels(), 1), 1);
  EXPECT_EQ(catq::topk_correct(hand_logits(), hand_labels(), 2), 2);
  EXPECT_EQ(catq::topk_correct(hand_logits(), hand_labels(), 5), 3);
  EXPECT_EQ(catq::topk_correct(hand_logits(), hand_labels(), 6), 4);
  EXPECT_EQ(catq::topk_correct(hand_logits(), hand_labels(), 100), 4);  // clamped to K

  catq::ClassifyOptions o;
  o.batch_size = 3;  // does not divide N
  o.keep_logits = true;
  auto r = catq::evaluate_classifier(logits_as_images(hand_logits(), hand_labels()), flatten, o);
  EXPECT_EQ(r.n, 4);
  EXPECT_DOUBLE_EQ(r.top1, 0.25);
  EXPECT_DOUBLE_EQ(r.top5, 0.75);
  EXPECT_EQ(r.nonfinite, 0);
  ASSERT_TRUE(r.logits.defined());
  EXPECT_TRUE(r.logits.equal(hand_logits()));

  o.limit = 2;
  o.keep_logits = false;
  r = catq::evaluate_classifier(logits_as_images(hand_logits(), hand_labels()), flatten, o);
  EXPECT_EQ(r.n, 2);
  EXPECT_DOUBLE_EQ(r.top1, 0.5);
  EXPECT_DOUBLE_EQ(r.top5, 1.0);
  EXPECT_FALSE(r.logits.defined());
}

TEST(EvalClassification, NonFiniteLogitsCountAsWrong) {
  at::Tensor l = hand_logits().clone();
  l[0][3] = NAN;  // sample 0 was correct
  auto r = catq::evaluate_classifier(logits_as_images(l, hand_labels()), flatten);
  EXPECT_EQ(r.nonfinite, 1);
  EXPECT_EQ(r.top1_correct, 0);
  EXPECT_EQ(r.top5_correct, 2);
}

TEST(EvalClassification, KlAndAgreement) {
  at::Tensor a = hand_logits();
  EXPECT_EQ(catq::kl_divergence(a, a), 0.0);
  EXPECT_EQ(catq::kl_divergence(a, a + 3.0), 0.0 + catq::kl_divergence(a, a + 3.0));  // shift invariant...
  EXPECT_NEAR(catq::kl_divergence(a, a + 3.0), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(catq::top1_agreement(a, a), 1.0);
  // Two classes: p = (0.5, 0.5), q = softmax(0, ln 3) = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3).
  at::Tensor p = at::zeros({1, 2}), q = at::tensor({0.0, std::log(3.0)}).reshape({1, 2}).to(at::kFloat);
  EXPECT_NEAR(catq::kl_divergence(p, q), 0.5 * std::log(2.0) + 0.5 * std::log(2.0 / 3.0), 1e-6);
  // Temperature 2 halves the logits: q = softmax(0, ln 3 / 2) = (1, sqrt 3) / (1 + sqrt 3).
  double q0 = 1 / (1 + std::sqrt(3.0));
  EXPECT_NEAR(catq::kl_divergence(p, q, 2.0), 0.5 * std::log(0.5 / q0) + 0.5 * std::log(0.5 / (1 - q0)), 1e-6);
  // Agreement: change the argmax of samples 1 and 2.
  at::Tensor b = a.clone();
  b[1][0] = 100;
  b[2][5] = 100;
  EXPECT_DOUBLE_EQ(catq::top1_agreement(a, b), 0.5);
  EXPECT_GT(catq::kl_divergence(a, b), 1.0);

  auto data = logits_as_images(a, hand_labels());
  auto cmp = catq::compare_classifiers(data, flatten, [&](const at::Tensor& x) { return x.flatten(1) * 0.5; });
  EXPECT_EQ(cmp.n, 4);
  EXPECT_DOUBLE_EQ(cmp.agreement, 1.0);  // scaling keeps the argmax
  EXPECT_DOUBLE_EQ(cmp.top1_ref, 0.25);
  EXPECT_DOUBLE_EQ(cmp.top1_q, 0.25);
  EXPECT_NEAR(cmp.kl, catq::kl_divergence(a, a * 0.5), 1e-9);
  EXPECT_GT(cmp.kl, 0.0);
  auto same = catq::compare_classifiers(data, flatten, flatten);
  EXPECT_EQ(same.kl, 0.0);
}

TEST(EvalSqnr, KnownPowers) {
  at::Tensor x = at::ones({100}, at::kDouble);  // float64 so that 0.1 and 0.01 are (nearly) exact
  EXPECT_NEAR(catq::sqnr_db(x, x + 0.1), 20.0, 1e-9);  // signal 100, noise 1
  EXPECT_NEAR(catq::sqnr_db(x.reshape({10, 10}), (x - 0.01).reshape({100})), 40.0, 1e-9);
  EXPECT_EQ(catq::sqnr_db(x, x), catq::kSqnrCapDb);
  EXPECT_EQ(catq::sqnr_db(at::zeros({4}), at::zeros({4})), catq::kSqnrCapDb);
  EXPECT_EQ(catq::sqnr_db(at::zeros({4}), at::ones({4})), -catq::kSqnrCapDb);
  EXPECT_TRUE(std::isnan(catq::sqnr_db(at::full({2}, NAN), at::zeros({2}))));
  // Random signal of power 4 with noise of power 0.04: 20 dB up to sampling error.
  at::Generator gen = at::detail::createCPUGenerator(1);
  at::Tensor s = 2 * at::randn({200000}, gen);
  at::Tensor n = 0.2 * at::randn({200000}, gen);
  EXPECT_NEAR(catq::sqnr_db(s, s + n), 20.0, 0.1);
}

TEST(EvalSqnr, PerLayerTableAndCollector) {
  const auto f64 = at::kDouble;
  std::map<std::string, at::Tensor> ref = {{"conv1", at::ones({10, 10}, f64)}, {"fc", at::ones({100})},
                                           {"conv2", at::ones({5}, f64)}};
  std::map<std::string, at::Tensor> q = {{"conv1", at::ones({10, 10}, f64) + 0.1}, {"fc", at::ones({100})},
                                         {"conv2", at::ones({5}, f64) * 1.01}, {"extra", at::ones({1})}};
  auto rows = catq::per_layer_sqnr(ref, q, {"conv1", "conv2", "nope", "conv1"});
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].name, "conv1");
  EXPECT_EQ(rows[1].name, "conv2");
  EXPECT_EQ(rows[2].name, "fc");
  EXPECT_NEAR(rows[0].sqnr_db, 20.0, 1e-9);
  EXPECT_NEAR(rows[1].sqnr_db, 40.0, 1e-6);
  EXPECT_EQ(rows[2].sqnr_db, catq::kSqnrCapDb);
  EXPECT_EQ(rows[0].numel, 100);
  std::string table = catq::format_sqnr_table(rows);
  EXPECT_NE(table.find("conv2"), std::string::npos);
  EXPECT_NE(table.find(">= 200.0"), std::string::npos);

  // Two batches: the collector reports the ratio of summed powers, not the mean of the two dB values.
  catq::LayerSqnrCollector c;
  c.add("b", at::ones({100}, at::kDouble), at::ones({100}, at::kDouble) + 0.1);  // signal 100, noise 1
  c.add("a", at::ones({100}), at::ones({100}));           // exact
  c.add("b", at::ones({100}) * 3, at::ones({100}) * 3);   // signal 900, noise 0
  auto t = c.table();
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].name, "b");  // first-added order
  EXPECT_NEAR(t[0].sqnr_db, 30.0, 1e-9);
  EXPECT_EQ(t[0].numel, 200);
  EXPECT_EQ(t[1].sqnr_db, catq::kSqnrCapDb);
  c.add(ref, q);
  EXPECT_EQ(c.table().size(), 5u);
}

TEST(BadInputEval, ShapeMismatches) {
  auto data = logits_as_images(hand_logits(), hand_labels());
  auto expect_data = [](const std::function<void()>& f) {
    try {
      f();
      FAIL() << "expected an error";
    } catch (const catq::Error& e) {
      EXPECT_EQ(e.kind(), catq::ErrorKind::Data) << e.what();
    }
  };
  expect_data([&] { catq::evaluate_classifier(data, [](const at::Tensor& x) { return x.flatten(); }); });
  expect_data([&] { catq::evaluate_classifier(data, [](const at::Tensor& x) { return x.flatten(1).slice(0, 1); }); });
  expect_data([&] { catq::evaluate_classifier(data, [](const at::Tensor& x) { return x.flatten(1).slice(1, 0, 3); }); });
  expect_data([&] { catq::evaluate_classifier(data.slice(0, 0), flatten); });
  expect_data([&] { catq::compare_classifiers(data, flatten, [](const at::Tensor& x) { return x.flatten(1).slice(1, 0, 5); }); });
  expect_data([&] { catq::kl_divergence(at::zeros({2, 3}), at::zeros({3, 2})); });
  expect_data([&] { catq::top1_agreement(at::zeros({2, 3}), at::zeros({2})); });
  expect_data([&] { catq::topk_correct(at::zeros({2, 3}), at::zeros({3}, at::kLong), 1); });
  expect_data([&] { catq::sqnr_db(at::zeros({2, 3}), at::zeros({5})); });
  expect_data([&] { catq::per_layer_sqnr({{"a", at::zeros({2})}}, {{"b", at::zeros({2})}}); });
  expect_data([&] { catq::per_layer_sqnr({{"a", at::zeros({2})}}, {{"a", at::zeros({3})}}); });
  catq::LayerSqnrCollector c;
  expect_data([&] { c.add("x", at::zeros({2}), at::zeros({3})); });
  EXPECT_TRUE(c.table().empty());
  catq::ClassifyOptions o;
  o.batch_size = 0;
  EXPECT_THROW(catq::evaluate_classifier(data, flatten, o), catq::Error);
  EXPECT_THROW(catq::kl_divergence(at::zeros({1, 2}), at::zeros({1, 2}), 0.0), catq::Error);
}

}  // namespace

// Structured online transforms (llm/online_transform.h): every factor kind against its dense matrix, the fold of the
// consumers' weights, composition, the Hadamard construction, and malformed factors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "llm/online_transform.h"
#include "methods/llm/transform_ops.h"

using namespace catq;

namespace {

std::vector<OnlineFactor> examples() {
  torch::manual_seed(2);
  return {OnlineFactor::dense(torch::randn({24, 24}, at::kDouble) + 3 * at::eye(24, at::kDouble)),
          OnlineFactor::block_diagonal(torch::randn({6, 4, 4}, at::kDouble) + 2 * at::eye(4, at::kDouble)),
          hadamard_factor(24, true, 7),   // 24 = 8 · 3: Sylvester 8 ⊗ a random orthogonal 3×3, random signs
          hadamard_factor(16, false, 1)};  // a power of two: Q = [[1]], signs 1
}

}  // namespace

TEST(OnlineTransform, EveryFactorAppliesAsItsMatrixAndFoldsAsItsInverse) {
  for (const OnlineFactor& f : examples()) {
    const int64_t d = f.dim();
    const at::Tensor mt = f.matrix();
    ASSERT_EQ(mt.sizes(), at::IntArrayRef({d, d})) << to_string(f.kind);
    const at::Tensor x = torch::randn({5, 3, d}, at::kDouble);
    EXPECT_TRUE(at::allclose(f.apply(x), at::matmul(x, mt.t()), 1e-10, 1e-10)) << to_string(f.kind);
    const at::Tensor w = torch::randn({7, d}, at::kDouble);
    EXPECT_TRUE(at::allclose(f.right_inverse(w), at::matmul(w, at::linalg_inv(mt)), 1e-8, 1e-9)) << to_string(f.kind);
    // float32 as models hold it
    const OnlineFactor f32 = f.to(at::kFloat);
    EXPECT_NO_THROW(check_online_factor(f32, d, "test"));
    EXPECT_TRUE(at::allclose(f32.apply(x.to(at::kFloat)), at::matmul(x, mt.t()).to(at::kFloat), 1e-4, 1e-4));
  }
}

TEST(OnlineTransform, HadamardFactorIsTheKroneckerConstruction) {
  const OnlineFactor f = hadamard_factor(24, true, 7);
  at::Tensor h = at::eye(8, at::kDouble);
  fwht_(h);
  const at::Tensor expect = at::kron(h / std::sqrt(8.0), f.t) * f.signs.unsqueeze(0);
  EXPECT_TRUE(at::allclose(f.matrix(), expect, 1e-12, 1e-12));
  EXPECT_TRUE(at::allclose(at::matmul(expect, expect.t()), at::eye(24, at::kDouble), 1e-10, 1e-10));  // orthogonal
  EXPECT_TRUE(at::equal(hadamard_matrix(24, true, 7), f.matrix()));
}

TEST(OnlineTransform, ComposesInOrderAndMergesOnlyDenseNeighbours) {
  const auto ex = examples();
  OnlineTransform t;
  EXPECT_FALSE(t.defined());
  t.then(ex[1]);  // block-diagonal first, then the Hadamard, then two dense ones (merged)
  t.then(ex[2]);
  t.then(ex[0]);
  t.then(OnlineFactor::dense(at::eye(24, at::kDouble) * 2));
  ASSERT_EQ(t.factors.size(), 3u);
  const at::Tensor expect =
      at::matmul(at::matmul(2 * ex[0].matrix(), ex[2].matrix()), ex[1].matrix());
  EXPECT_TRUE(at::allclose(t.matrix(), expect, 1e-5, 1e-5));
  const at::Tensor x = torch::randn({4, 24});
  EXPECT_TRUE(at::allclose(t.apply(x), at::matmul(x.to(at::kDouble), expect.t()).to(at::kFloat), 1e-3, 1e-3));
  EXPECT_EQ(t.str(), "dense(24) · hadamard(24) · blockdiag(6×4)");
  EXPECT_EQ(t.stored_values(), 24 * 24 + 3 * 3 + 24 + 6 * 16);
}

TEST(BadInputOnlineTransform, MalformedFactorsAreFormatErrors) {
  auto bad = [](const OnlineFactor& f, int64_t d) {
    try {
      check_online_factor(f, d, "file.catq: blk.0.down_in.0");
      return std::string();
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Format);
      return std::string(e.what());
    }
  };
  EXPECT_NE(bad(OnlineFactor::dense(at::eye(8)), 16).find("expected [16,16]"), std::string::npos);
  EXPECT_NE(bad(OnlineFactor::block_diagonal(at::ones({3, 4, 4})), 16).find("n·k = 16"), std::string::npos);
  EXPECT_NE(bad(OnlineFactor::hadamard(at::eye(2), at::ones({16})), 16).find("m odd"), std::string::npos);
  EXPECT_EQ(bad(OnlineFactor::hadamard(at::eye(3), at::ones({24})), 24), "");  // 24 = 8 · 3 is fine
  EXPECT_NE(bad(OnlineFactor::hadamard(at::eye(3), at::ones({18})), 18).find("power of two"), std::string::npos);
  EXPECT_NE(bad(OnlineFactor::hadamard(at::ones({1, 1}), at::full({16}, 0.5)), 16).find("±1"), std::string::npos);
  at::Tensor nan = at::eye(4);
  nan[1][1] = NAN;
  EXPECT_NE(bad(OnlineFactor::dense(nan), 4).find("NaN"), std::string::npos);
  EXPECT_NE(bad(OnlineFactor::dense(at::eye(4, at::kDouble)), 4).find("float32"), std::string::npos);
}

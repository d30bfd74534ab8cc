// Integer GEMM with fused per-token activation quantization (src/runtime/int_gemm): the activation codes equal the
// simulation's per-token quantizer; every SIMD path is bit-identical to the scalar reference on random shapes
// (ragged rows, tokens and columns; 2/4/8-bit weights; per-channel and grouped; symmetric, asymmetric and unsigned
// activations); the result equals the float matmul of the dequantized operands; bad inputs are rejected.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "quant/quantizer.h"
#include "runtime/int_gemm.h"

using namespace catq;

namespace {

std::vector<KernelIsa> simd_isas() {
  std::vector<KernelIsa> v;
  for (KernelIsa i : {KernelIsa::Avx2, KernelIsa::Avx512})
    if (isa_supported(i)) v.push_back(i);
  return v;
}

ActQuant act_quant(int bits, bool symmetric, bool is_signed) {
  QuantSpec s;
  s.bits = bits;
  s.symmetric = symmetric;
  s.is_signed = is_signed;
  ActQuant a;
  a.qmin = s.qmin();
  a.qmax = s.qmax();
  a.symmetric = symmetric;
  a.is_signed = is_signed;
  return a;
}

// Dequantized activation x̂[i][j] from the kernel-order buffer.
float act_value(const QuantizedRows& q, const IntWeights& w, int64_t i, int64_t j) {
  const int8_t a = q.a[i * q.k + act_position(w, j)];
  return q.scale[i] * static_cast<float>(a - q.zero[i]);
}

}  // namespace

TEST(IntGemm, KernelOrderIsAPermutationOfEachRow) {
  for (int bits : {2, 4, 8})
    for (int64_t k : {64, 128, 200}) {
      std::vector<int> seen(k, 0);
      for (int64_t j = 0; j < k; ++j) ++seen[kernel_position(bits, j, k)];
      for (int64_t p = 0; p < k; ++p) EXPECT_EQ(seen[p], 1) << bits << " " << k;
    }
  EXPECT_EQ(kernel_position(4, 1, 64), 32);  // odd column of a 4-bit block: the high nibbles come second
  EXPECT_EQ(kernel_position(2, 5, 64), 17);  // column 4·1 + 1 → bank 1, slot 1
  EXPECT_EQ(kernel_position(4, 129, 130), 129);  // after the last full block: column order
}

TEST(IntGemm, ActivationCodesEqualTheSimulationsPerTokenQuantizer) {
  torch::manual_seed(4);
  at::Tensor x = torch::randn({5, 128}) * 3;
  x[2] = 0;  // zero range: s = 1
  std::vector<float> w(8 * 128, 0.1f);
  const IntWeights iw = prepare_int_weights(pack_weights(w.data(), 8, 128, 4, 128, true));
  for (int bits : {4, 8})
    for (bool sym : {true, false})
      for (bool sgn : {true, false}) {
        if (sym && !sgn) continue;
        QuantSpec s;
        s.bits = bits;
        s.symmetric = sym;
        s.is_signed = sgn;
        s.granularity = Granularity::PerToken;
        const at::Tensor ref = fake_quantize(x, compute_params(s, x));
        for (KernelIsa isa : {KernelIsa::Scalar, best_isa()}) {
          QuantizedRows q;
          quantize_rows(x.data_ptr<float>(), 5, act_quant(bits, sym, sgn), iw, q, isa);
          for (int64_t i = 0; i < 5; ++i)
            for (int64_t j = 0; j < 128; ++j)
              ASSERT_EQ(act_value(q, iw, i, j), ref[i][j].item<float>())
                  << to_string(isa) << " " << bits << sym << sgn << " " << i << "," << j;
        }
      }
}

TEST(IntGemm, SimdPathsAreBitIdenticalToTheScalarReference) {
  const auto isas = simd_isas();
  if (isas.empty()) GTEST_SKIP() << "no SIMD ISA on this CPU: only the scalar path exists";
  std::mt19937 rng(5);
  std::normal_distribution<float> N(0, 1);
  int cases = 0;
  for (int bits : {2, 4, 8})
    for (int64_t group : {64, 128, 0})  // 0 = per channel
      for (int64_t rows : {1, 6, 67})
        for (int64_t m : {1, 3, 9}) {
          const int64_t cols = group == 0 ? 64 * (1 + rows % 3) + (bits == 8 ? 24 : 16) : group * (1 + m % 3);
          const int64_t g = group == 0 ? cols : group;
          std::vector<float> w(rows * cols), x(m * cols);
          for (auto& v : w) v = N(rng);
          for (auto& v : x) v = N(rng) + (m == 9 ? 1.5f : 0.f);
          const IntWeights iw = prepare_int_weights(pack_weights(w.data(), rows, cols, bits, g, rows % 2 == 0));
          const ActQuant aq = act_quant(m == 3 ? 4 : 8, m != 9, m != 9);  // 9 tokens: asymmetric unsigned
          std::vector<float> ref(m * rows), out(m * rows);
          gemm_qact(iw, x.data(), m, aq, ref.data(), KernelIsa::Scalar);
          for (KernelIsa isa : isas) {
            std::fill(out.begin(), out.end(), -1.f);
            gemm_qact(iw, x.data(), m, aq, out.data(), isa);
            for (int64_t i = 0; i < m * rows; ++i)
              ASSERT_EQ(out[i], ref[i]) << to_string(isa) << " bits " << bits << " group " << g << " rows " << rows
                                        << " m " << m << " at " << i;
          }
          ++cases;
        }
  EXPECT_EQ(cases, 81);
}

// The 16-row VNNI layout (int_gemm.h): prepared for 4- and 8-bit codes in whole 32-column groups, bit-identical to the
// scalar reference for every token count 1..17 (the 8-token tiles and their remainders), partial row groups,
// per-channel and grouped weights, and the 8-bit per-channel rows too long for the int32 epilogue (scalar epilogue);
// gemm_int_rows on row ranges gives the same rows.
TEST(IntGemm, SixteenRowLayoutIsBitIdenticalToTheScalarReference) {
  if (!(isa_supported(KernelIsa::Avx512) && __builtin_cpu_supports("avx512vnni")))
    GTEST_SKIP() << "no AVX-512 VNNI: the 16-row layout is not prepared on this CPU";
  std::mt19937 rng(9);
  std::normal_distribution<float> N(0, 1);
  struct Case { int bits; int64_t rows, cols, group; };
  for (const Case& c : {Case{4, 37, 96, 96}, Case{4, 16, 256, 64}, Case{8, 33, 128, 32}, Case{8, 5, 8288, 8288},
                        Case{4, 70, 512, 128}}) {
    std::vector<float> w(c.rows * c.cols);
    for (auto& v : w) v = N(rng);
    const IntWeights iw = prepare_int_weights(pack_weights(w.data(), c.rows, c.cols, c.bits, c.group, c.rows % 2 == 1));
    ASSERT_TRUE(iw.natural_order()) << c.bits << " " << c.cols;
    EXPECT_EQ(iw.epilogue32, !(c.bits == 8 && c.group > 8256));
    for (int64_t m = 1; m <= 17; m += (m < 9 ? 1 : 8)) {
      std::vector<float> x(m * c.cols);
      for (auto& v : x) v = N(rng) + 0.7f;
      const ActQuant aq = act_quant(8, m % 2 == 0, m % 2 == 0);  // odd m: asymmetric unsigned
      std::vector<float> ref(m * c.rows), out(m * c.rows, -1.f), part(m * c.rows, -1.f);
      gemm_qact(iw, x.data(), m, aq, ref.data(), KernelIsa::Scalar);
      gemm_qact(iw, x.data(), m, aq, out.data(), KernelIsa::Avx512);
      QuantizedRows q;
      quantize_rows(x.data(), m, aq, iw, q, KernelIsa::Avx512);
      for (int64_t r0 = 0; r0 < c.rows; r0 += 32) gemm_int_rows(iw, q, part.data(), r0, r0 + 32, KernelIsa::Avx512);
      for (int64_t i = 0; i < m * c.rows; ++i) {
        ASSERT_EQ(out[i], ref[i]) << c.bits << " rows " << c.rows << " cols " << c.cols << " m " << m << " at " << i;
        ASSERT_EQ(part[i], ref[i]) << "rows split, at " << i;
      }
    }
  }
}

TEST(IntGemm, EqualsTheFloatProductOfTheDequantizedOperands) {
  std::mt19937 rng(6);
  std::normal_distribution<float> N(0, 1);
  for (int bits : {2, 4, 8})
    for (bool sym_act : {true, false}) {
      const int64_t rows = 13, cols = 192, m = 5;
      std::vector<float> w(rows * cols), x(m * cols);
      for (auto& v : w) v = N(rng);
      for (auto& v : x) v = N(rng);
      const IntWeights iw = prepare_int_weights(pack_weights(w.data(), rows, cols, bits, 64, false));
      const ActQuant aq = act_quant(8, sym_act, sym_act);
      QuantizedRows q;
      quantize_rows(x.data(), m, aq, iw, q);
      std::vector<float> y(m * rows);
      gemm_int(iw, q, y.data(), best_isa());
      const std::vector<float> wd = unpack_weights(iw.w);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t r = 0; r < rows; ++r) {
          double e = 0, mag = 0;
          for (int64_t j = 0; j < cols; ++j) {
            e += static_cast<double>(wd[r * cols + j]) * act_value(q, iw, i, j);
            mag += std::fabs(wd[r * cols + j] * act_value(q, iw, i, j));
          }
          EXPECT_NEAR(y[i * rows + r], e, 1e-5 * (mag + 1)) << bits << sym_act;
        }
    }
}

TEST(IntGemm, BadInputsAreRejected) {
  std::vector<float> w(4 * 64, 0.5f);
  PackedWeights p = pack_weights(w.data(), 4, 64, 4, 64, false);
  p.zero[1] = 2.5f;  // not an integer
  EXPECT_THROW(prepare_int_weights(p), Error);
  const IntWeights iw = prepare_int_weights(pack_weights(w.data(), 4, 64, 4, 64, true));
  std::vector<float> x(64, 1.f), y(4);
  ActQuant wide;
  wide.qmin = -512;
  wide.qmax = 511;
  EXPECT_THROW(gemm_qact(iw, x.data(), 1, wide, y.data()), Error);
  x[3] = NAN;
  EXPECT_THROW(gemm_qact(iw, x.data(), 1, ActQuant{}, y.data()), Error);
  QuantizedRows q;
  std::vector<float> x2(32, 1.f);
  const IntWeights narrow = prepare_int_weights(pack_weights(x2.data(), 1, 32, 8, 32, true));
  quantize_rows(x2.data(), 1, ActQuant{}, narrow, q);
  EXPECT_THROW(gemm_int(iw, q, y.data(), KernelIsa::Scalar), Error);  // 32 columns for 64-column weights
}

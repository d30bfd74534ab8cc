// Packed low-bit weights and the CPU kernels (src/runtime): the documented bit layout, pack → unpack error bounds,
// every SIMD path against the scalar reference on random shapes (ragged row counts, groups 16..128, 2/4/8 bits,
// symmetric and asymmetric), the scalar reference against a float matmul of the unpacked weight, and malformed
// packed data.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "runtime/kernels.h"
#include "runtime/packed.h"

using namespace catq;

TEST(PackedWeights, LayoutIsLowBitsFirst) {
  // One row, 8 columns, 4-bit asymmetric with a known range: codes equal the values.
  std::vector<float> w = {0, 1, 2, 3, 4, 5, 6, 15};
  PackedWeights p = pack_weights(w.data(), 1, 8, 4, 8, false);
  EXPECT_FLOAT_EQ(p.scale[0], 1.0f);
  EXPECT_FLOAT_EQ(p.zero[0], 0.0f);
  ASSERT_EQ(p.q.size(), 4u);
  EXPECT_EQ(p.q[0], 0x10);  // column 0 in the low nibble, column 1 in the high nibble
  EXPECT_EQ(p.q[3], 0xF6);
  std::vector<float> w2 = {0, 1, 2, 3, 3, 2, 1, 0};
  PackedWeights p2 = pack_weights(w2.data(), 1, 8, 2, 8, false);
  EXPECT_EQ(p2.q[0], 0b11100100);  // columns 0..3 at bits 0-1, 2-3, 4-5, 6-7
  EXPECT_EQ(p2.q[1], 0b00011011);
  for (int j = 0; j < 8; ++j) EXPECT_EQ(p2.code(0, j), static_cast<int>(w2[j]));
}

TEST(PackedWeights, RoundTripErrorIsAtMostHalfAStep) {
  std::mt19937 rng(1);
  std::normal_distribution<float> N(0, 1);
  for (int bits : {2, 4, 8})
    for (bool sym : {true, false}) {
      const int64_t rows = 7, cols = 128, group = 32;
      std::vector<float> w(rows * cols);
      for (auto& v : w) v = N(rng);
      PackedWeights p = pack_weights(w.data(), rows, cols, bits, group, sym);
      p.validate("test");
      std::vector<float> u = unpack_weights(p);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < cols; ++j) {
          const float s = p.scale[r * (cols / group) + j / group];
          EXPECT_LE(std::fabs(u[r * cols + j] - w[r * cols + j]), 0.5f * s * 1.0001f) << bits << sym;
        }
    }
}

TEST(Kernels, SimdPathsMatchTheScalarReference) {
  std::mt19937 rng(2);
  std::normal_distribution<float> N(0, 1);
  std::vector<KernelIsa> isas;
  for (KernelIsa i : {KernelIsa::Avx2, KernelIsa::Avx512})
    if (isa_supported(i)) isas.push_back(i);
  if (isas.empty()) GTEST_SKIP() << "no SIMD ISA on this CPU: only the scalar path exists";
  int cases = 0;
  for (int bits : {2, 4, 8})
    for (int64_t group : {16, 32, 64, 128})
      for (bool sym : {true, false})
        for (int64_t rows : {1, 3, 17}) {
          const int64_t cols = group * (1 + (rows % 3));
          std::vector<float> w(rows * cols), x(cols * 2);
          for (auto& v : w) v = N(rng);
          for (auto& v : x) v = N(rng);
          PackedWeights p = pack_weights(w.data(), rows, cols, bits, group, sym);
          std::vector<float> ref(rows * 2), out(rows * 2);
          gemm_packed(p, x.data(), 2, ref.data(), KernelIsa::Scalar);
          const std::vector<float> u = unpack_weights(p);
          for (KernelIsa isa : isas) {
            gemm_packed(p, x.data(), 2, out.data(), isa);
            for (int64_t i = 0; i < rows * 2; ++i) {
              // Float results: same products, another summation order.
              float mag = 0;
              const int64_t r = i % rows, m = i / rows;
              for (int64_t j = 0; j < cols; ++j) mag += std::fabs(u[r * cols + j] * x[m * cols + j]);
              EXPECT_NEAR(out[i], ref[i], 1e-5f * (mag + 1)) << to_string(isa) << " bits " << bits << " group " << group;
            }
          }
          ++cases;
        }
  EXPECT_EQ(cases, 72);
}

TEST(Kernels, ScalarReferenceIsTheUnpackedMatmul) {
  torch::manual_seed(3);
  for (int bits : {2, 4, 8}) {
    at::Tensor w = torch::randn({9, 64}), x = torch::randn({64});
    PackedWeights p = pack_weights(w.data_ptr<float>(), 9, 64, bits, 32, bits != 4);
    std::vector<float> u = unpack_weights(p), y(9);
    gemv_packed(p, x.data_ptr<float>(), y.data(), KernelIsa::Scalar);
    at::Tensor expect = at::mv(torch::from_blob(u.data(), {9, 64}).clone(), x);
    for (int r = 0; r < 9; ++r) EXPECT_NEAR(y[r], expect[r].item<float>(), 1e-4) << bits;
  }
  // The best ISA is one this CPU has; CATQ_ISA can only lower it.
  EXPECT_TRUE(isa_supported(best_isa()));
}

TEST(Kernels, MalformedPackedDataIsRejected) {
  std::vector<float> w(4 * 64, 0.5f);
  EXPECT_THROW(pack_weights(w.data(), 4, 64, 3, 32, true), Error);   // 3 bits
  EXPECT_THROW(pack_weights(w.data(), 4, 64, 4, 48, true), Error);   // group does not divide cols
  EXPECT_THROW(pack_weights(w.data(), 4, 64, 2, 2, true), Error);    // group not a whole byte of 2-bit codes
  w[5] = NAN;
  EXPECT_THROW(pack_weights(w.data(), 4, 64, 4, 32, true), Error);
  w[5] = 0.5f;
  PackedWeights p = pack_weights(w.data(), 4, 64, 4, 32, true);
  p.validate("ok");
  PackedWeights short_q = p;
  short_q.q.pop_back();
  EXPECT_THROW(short_q.validate("short"), Error);
  PackedWeights bad_scale = p;
  bad_scale.scale[1] = -1;
  EXPECT_THROW(bad_scale.validate("scale"), Error);
  PackedWeights bad_zero = p;
  bad_zero.zero[0] = 99;
  EXPECT_THROW(bad_zero.validate("zero"), Error);
  try {
    short_q.validate("layer.q");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer.q"), std::string::npos);
  }
}

// The int16-activation GEMV: the scalar reference equals the float GEMV up to the int16 rounding of x (≤ 2^-16 of
// each group's largest |x|), and the AVX-512 VNNI path equals the scalar reference up to float summation order —
// on layouts it takes (chunks of 64 / 128 / 256 columns, groups of 32 / 64 / 128 / the whole row) and ragged rows.
TEST(Kernels, Int16ActivationGemvMatchesItsScalarReference) {
  std::mt19937 rng(11);
  std::normal_distribution<float> N(0, 1);
  int simd_cases = 0;
  for (int bits : {2, 4, 8})
    for (int64_t group : {32, 64, 128, 0})
      for (bool sym : {true, false})
        for (int64_t rows : {1, 5, 18}) {
          const int64_t cols = 512;
          const int64_t g = group ? group : cols;
          std::vector<float> w(rows * cols), x(cols), ref(rows), i16(rows), simd(rows);
          for (auto& v : w) v = N(rng);
          for (auto& v : x) v = N(rng);
          x[7] = 40.f;  // an outlier: its group's step is coarser, the others keep theirs
          PackedWeights p = pack_weights(w.data(), rows, cols, bits, g, sym);
          gemv_packed(p, x.data(), ref.data(), KernelIsa::Scalar);
          gemv_packed_i16(p, x.data(), i16.data(), KernelIsa::Scalar);
          const std::vector<float> u = unpack_weights(p);
          for (int64_t r = 0; r < rows; ++r) {
            float mag = 0, step = 0;  // Σ|w·x|, and the bound Σ|w|·a_g/2 of the int16 rounding
            for (int64_t j = 0; j < cols; ++j) {
              mag += std::fabs(u[r * cols + j] * x[j]);
              float gm = 0;
              for (int64_t k = (j / g) * g; k < (j / g + 1) * g; ++k) gm = std::max(gm, std::fabs(x[k]));
              step += std::fabs(u[r * cols + j]) * gm / 32767.f / 2;
            }
            EXPECT_NEAR(i16[r], ref[r], step + 1e-5f * (mag + 1)) << bits << " g" << g;
          }
          if (!i16_simd() || !i16_supported(p)) continue;
          gemv_packed_i16(p, x.data(), simd.data(), KernelIsa::Avx512);
          for (int64_t r = 0; r < rows; ++r) {
            float mag = 0;
            for (int64_t j = 0; j < cols; ++j) mag += std::fabs(u[r * cols + j] * x[j]);
            EXPECT_NEAR(simd[r], i16[r], 1e-5f * (mag + 1)) << bits << " g" << g << " rows " << rows;
          }
          ++simd_cases;
        }
  if (i16_simd()) EXPECT_EQ(simd_cases, 72);  // every layout above takes the SIMD path
  // Layouts the SIMD path does not take run the scalar loop.
  std::vector<float> w(4 * 96, 0.5f), x(96, 1.f), y(4);
  const PackedWeights odd = pack_weights(w.data(), 4, 96, 4, 32, true);  // 96 columns: not a whole 128-column chunk
  EXPECT_FALSE(i16_supported(odd));
  gemv_packed_i16(odd, x.data(), y.data());
  EXPECT_NEAR(y[0], 48.f, 1e-2f);
  x[3] = std::nanf("");
  EXPECT_THROW(gemv_packed_i16(odd, x.data(), y.data()), Error);
}

// Codebook (k-means) indices: 2 bits in the 2-bit plane layout, 3 bits as that plane plus a bit plane; the scalar
// GEMV is the unpacked matmul, the AVX-512 lookup in registers matches it on ragged row counts, per-row and shared
// codebooks.
TEST(Kernels, CodebookPackingAndGemv) {
  std::mt19937 rng(13);
  std::normal_distribution<float> N(0, 1);
  for (int bits : {2, 3})
    for (int64_t books_per_row : {0, 1})
      for (int64_t rows : {1, 6, 17})
        for (int64_t cols : {512, 72}) {
          const int64_t K = int64_t{1} << bits, books = books_per_row ? rows : 1;
          std::vector<int32_t> idx(rows * cols);
          for (auto& i : idx) i = static_cast<int32_t>(rng() % K);
          std::vector<float> cb(books * K), x(cols);
          for (auto& v : cb) v = N(rng);
          for (auto& v : x) v = N(rng);
          const PackedCodebook p = pack_codebook(idx.data(), rows, cols, bits, cb.data(), books);
          EXPECT_EQ(p.lo.size(), static_cast<size_t>(rows * cols / 4));
          EXPECT_EQ(p.hi.size(), static_cast<size_t>(bits == 3 ? rows * cols / 8 : 0));
          const std::vector<float> u = unpack_codebook(p);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t j = 0; j < cols; ++j) {
              ASSERT_EQ(p.index(r, j), idx[r * cols + j]);
              ASSERT_EQ(u[r * cols + j], cb[(books == 1 ? 0 : r) * K + idx[r * cols + j]]);
            }
          std::vector<float> ref(rows), out(rows);
          gemv_codebook(p, x.data(), ref.data(), KernelIsa::Scalar);
          for (int64_t r = 0; r < rows; ++r) {
            float e = 0, mag = 0;
            for (int64_t j = 0; j < cols; ++j) {
              e += u[r * cols + j] * x[j];
              mag += std::fabs(u[r * cols + j] * x[j]);
            }
            EXPECT_NEAR(ref[r], e, 1e-5f * (mag + 1));
          }
          if (!isa_supported(KernelIsa::Avx512)) continue;
          gemv_codebook(p, x.data(), out.data(), KernelIsa::Avx512);
          for (int64_t r = 0; r < rows; ++r) {
            float mag = 0;
            for (int64_t j = 0; j < cols; ++j) mag += std::fabs(u[r * cols + j] * x[j]);
            EXPECT_NEAR(out[r], ref[r], 1e-5f * (mag + 1)) << bits << " rows " << rows << " cols " << cols;
          }
        }
}

TEST(BadInputKernels, CodebookRejectsMalformedData) {
  std::vector<int32_t> idx(2 * 16, 1);
  std::vector<float> cb(4, 0.5f);
  idx[5] = 4;  // outside [0, 4) for 2 bits
  try {
    pack_codebook(idx.data(), 2, 16, 2, cb.data(), 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 4 at [0, 5]"), std::string::npos) << e.what();
  }
  idx[5] = 1;
  EXPECT_THROW(pack_codebook(idx.data(), 2, 16, 4, cb.data(), 1), Error);  // 4-bit indices: not a codebook format
  EXPECT_THROW(pack_codebook(idx.data(), 2, 12, 2, cb.data(), 1), Error);  // 12 columns: not a multiple of 8
  PackedCodebook p = pack_codebook(idx.data(), 2, 16, 2, cb.data(), 1);
  p.codebook.pop_back();
  EXPECT_THROW(p.validate("short codebook"), Error);
  p = pack_codebook(idx.data(), 2, 16, 2, cb.data(), 1);
  p.codebook[2] = std::nanf("");
  EXPECT_THROW(p.validate("nan codeword"), Error);
  p = pack_codebook(idx.data(), 2, 16, 2, cb.data(), 1);
  p.lo.resize(3);
  EXPECT_THROW(p.validate("short plane"), Error);
}

// The row-range GEMVs (a thread's share of the rows) give every row exactly the whole-matrix call's value, for any
// split, on every ISA this CPU has — the lean runtime's weight-only layers are bit-identical across thread counts.
TEST(Kernels, RowRangeGemvEqualsTheWholeMatrixCall) {
  std::mt19937 rng(5);
  std::normal_distribution<float> N(0, 1);
  for (int bits : {2, 4, 8})
    for (int64_t group : {32, 128}) {
      const int64_t rows = 37, cols = 256;
      std::vector<float> w(rows * cols), x(cols);
      for (auto& v : w) v = N(rng);
      for (auto& v : x) v = N(rng);
      const PackedWeights p = pack_weights(w.data(), rows, cols, bits, group, bits != 2);
      for (KernelIsa isa : {KernelIsa::Scalar, KernelIsa::Avx2, KernelIsa::Avx512}) {
        if (!isa_supported(isa)) continue;
        for (bool i16 : {false, true}) {
          std::vector<float> whole(rows), parts(rows, -1.f);
          if (i16) gemv_packed_i16(p, x.data(), whole.data(), isa);
          else gemv_packed(p, x.data(), whole.data(), isa);
          for (auto [a, b] : {std::pair<int64_t, int64_t>{0, 5}, {5, 16}, {16, 17}, {17, 32}, {32, 37}}) {
            if (i16) gemv_packed_i16_rows(p, x.data(), parts.data(), a, b, isa);
            else gemv_packed_rows(p, x.data(), parts.data(), a, b, isa);
          }
          for (int64_t r = 0; r < rows; ++r)
            EXPECT_EQ(parts[r], whole[r]) << "bits " << bits << " group " << group << " isa " << to_string(isa)
                                          << (i16 ? " i16" : "") << " row " << r;
        }
      }
      std::vector<float> y(rows);
      EXPECT_THROW(gemv_packed_rows(p, x.data(), y.data(), 5, rows + 1, KernelIsa::Scalar), Error);
    }
}

#include "runtime/packed.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "quant/packed_codes.h"

namespace catq {

static void check_layout(int bits, int64_t rows, int64_t cols, int64_t group, const std::string& where) {
  CATQ_CHECK(bits == 2 || bits == 4 || bits == 8, Data, "{}: {} bits, expected 2, 4 or 8", where, bits);
  CATQ_CHECK(rows > 0 && cols > 0, Data, "{}: shape [{}, {}] must be positive", where, rows, cols);
  CATQ_CHECK(group > 0 && cols % group == 0, Data, "{}: group {} must be positive and divide the {} columns", where,
             group, cols);
  CATQ_CHECK(group % (8 / bits) == 0, Data, "{}: group {} must be a multiple of {} ({}-bit codes per byte)", where,
             group, 8 / bits, bits);
}

void PackedWeights::validate(const std::string& where) const {
  check_layout(bits, rows, cols, group, where);
  const size_t n_groups = static_cast<size_t>(rows * groups_per_row());
  CATQ_CHECK(q.size() == static_cast<size_t>(rows * row_bytes()), Data, "{}: {} code bytes, expected {} ({} × {} × {} "
             "bits)", where, q.size(), rows * row_bytes(), rows, cols, bits);
  CATQ_CHECK(scale.size() == n_groups && zero.size() == n_groups, Data, "{}: {} scales and {} zero-points, expected {} "
             "each", where, scale.size(), zero.size(), n_groups);
  const float qmax = static_cast<float>((1 << bits) - 1);
  for (size_t i = 0; i < n_groups; ++i) {
    CATQ_CHECK(std::isfinite(scale[i]) && scale[i] > 0, Data, "{}: scale {} of group {} must be finite and positive",
               where, scale[i], i);
    CATQ_CHECK(std::isfinite(zero[i]) && zero[i] >= 0 && zero[i] <= qmax, Data, "{}: zero-point {} of group {} outside "
               "[0, {}]", where, zero[i], i, qmax);
  }
}

PackedWeights pack_for_kernels(const QuantizedWeight& w, const std::string& where) {
  std::string why;
  const std::optional<AffineRowGroups> g = affine_row_groups(w, &why);
  CATQ_CHECK(g.has_value(), Data, "{}: {} has no kernel layout: {}", where, w.str(), why);
  CATQ_CHECK(w.bits <= 8, Data, "{}: {}-bit codes (the kernels take at most 8)", where, w.bits);
  const int cbits = w.bits <= 2 ? 2 : w.bits <= 4 ? 4 : 8;
  check_layout(cbits, g->rows, g->cols, g->group, where);
  PackedWeights p;
  p.bits = cbits;
  p.rows = g->rows;
  p.cols = g->cols;
  p.group = g->group;
  p.symmetric = !(w.params.zero_point != 0).any().item<bool>();
  p.scale = std::move(g->scale);
  p.zero = std::move(g->zero);
  if (cbits == w.bits && (g->cols * cbits) % 8 == 0) {
    p.q = w.data;  // the PACKED layout is the kernels' layout at these widths
  } else {
    std::vector<int32_t> u(static_cast<size_t>(p.rows * p.cols));
    unpack_codes(w.data.data(), static_cast<int64_t>(u.size()), w.bits, 0, u.data());
    p.q.assign(static_cast<size_t>(p.rows * p.row_bytes()), 0);
    for (int64_t r = 0; r < p.rows; ++r)
      for (int64_t j = 0; j < p.cols; ++j) p.set_code(r, j, u[static_cast<size_t>(r * p.cols + j)]);
  }
  p.validate(where);
  return p;
}

PackedWeights pack_weights(const float* w, int64_t rows, int64_t cols, int bits, int64_t group, bool symmetric) {
  check_layout(bits, rows, cols, group, "pack_weights");
  QuantSpec spec;
  spec.bits = bits;
  spec.symmetric = symmetric;
  spec.restricted = symmetric;
  spec.granularity = group == cols ? Granularity::PerChannel : Granularity::PerGroup;
  spec.axis = group == cols ? 0 : 1;
  spec.group_size = group == cols ? 0 : group;
  const at::Tensor x = at::from_blob(const_cast<float*>(w), {rows, cols}, at::kFloat);
  CATQ_CHECK(at::isfinite(x).all().item<bool>(), Data, "pack_weights: a weight is not finite");
  return pack_for_kernels(quantize_weight(x, spec), "pack_weights");
}

namespace {
template <int bits>
void dequantize_rows_impl(const PackedWeights& p, float* w, int64_t r0, int64_t r1) {
  constexpr int per_byte = 8 / bits, mask = (1 << bits) - 1;
  const int64_t G = p.groups_per_row(), gbytes = p.group / per_byte;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = p.q.data() + r * p.row_bytes();
    float* out = w + r * p.cols;
    for (int64_t g = 0; g < G; ++g) {
      const float s = p.scale[static_cast<size_t>(r * G + g)], z = p.zero[static_cast<size_t>(r * G + g)];
      const uint8_t* b = row + g * gbytes;
      float* o = out + g * p.group;
      for (int64_t i = 0; i < gbytes; ++i)
        for (int k = 0; k < per_byte; ++k)
          o[i * per_byte + k] = s * (static_cast<float>((b[i] >> (k * bits)) & mask) - z);
    }
  }
}
}  // namespace

void dequantize_rows(const PackedWeights& p, float* w, int64_t r0, int64_t r1) {
  if (p.bits == 8) dequantize_rows_impl<8>(p, w, r0, r1);
  else if (p.bits == 4) dequantize_rows_impl<4>(p, w, r0, r1);
  else dequantize_rows_impl<2>(p, w, r0, r1);
}

void dequantize_rows(const PackedWeights& p, float* w) { dequantize_rows(p, w, 0, p.rows); }

std::vector<float> unpack_weights(const PackedWeights& p) {
  p.validate("unpack_weights");
  std::vector<float> w(static_cast<size_t>(p.rows * p.cols));
  dequantize_rows(p, w.data());
  return w;
}

// ---- PackedCodebook ----------------------------------------------------------------------------------------------

void PackedCodebook::validate(const std::string& where) const {
  CATQ_CHECK(bits == 2 || bits == 3, Data, "{}: {}-bit codebook indices, expected 2 or 3", where, bits);
  CATQ_CHECK(rows > 0 && cols > 0 && cols % 8 == 0, Data, "{}: shape [{}, {}], expected positive with columns a "
             "multiple of 8", where, rows, cols);
  CATQ_CHECK(books == 1 || books == rows, Data, "{}: {} codebooks for {} rows, expected 1 or {}", where, books, rows, rows);
  CATQ_CHECK(lo.size() == static_cast<size_t>(rows * lo_row_bytes()) &&
             hi.size() == static_cast<size_t>(rows * hi_row_bytes()), Data,
             "{}: index planes of {} and {} bytes, expected {} and {}", where, lo.size(), hi.size(), rows * lo_row_bytes(),
             rows * hi_row_bytes());
  CATQ_CHECK(codebook.size() == static_cast<size_t>(books * levels()), Data, "{}: {} codewords, expected {} × {}", where,
             codebook.size(), books, levels());
  for (size_t i = 0; i < codebook.size(); ++i)
    CATQ_CHECK(std::isfinite(codebook[i]), Data, "{}: codeword {} is not finite", where, i);
}

PackedCodebook pack_codebook(const int32_t* index, int64_t rows, int64_t cols, int bits, const float* codebook,
                             int64_t books) {
  PackedCodebook p;
  p.bits = bits;
  p.rows = rows;
  p.cols = cols;
  p.books = books;
  CATQ_CHECK(bits == 2 || bits == 3, Data, "pack_codebook: {}-bit indices, expected 2 or 3", bits);
  CATQ_CHECK(rows > 0 && cols > 0 && cols % 8 == 0, Data, "pack_codebook: shape [{}, {}], expected positive with columns "
             "a multiple of 8", rows, cols);
  p.lo.assign(static_cast<size_t>(rows * p.lo_row_bytes()), 0);
  p.hi.assign(static_cast<size_t>(rows * p.hi_row_bytes()), 0);
  p.codebook.assign(codebook, codebook + (books == 1 || books == rows ? books : 0) * p.levels());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const int32_t i = index[r * cols + j];
      CATQ_CHECK(i >= 0 && i < p.levels(), Data, "pack_codebook: index {} at [{}, {}] outside [0, {})", i, r, j,
                 p.levels());
      p.lo[static_cast<size_t>(r * p.lo_row_bytes() + j / 4)] |= static_cast<uint8_t>((i & 3) << ((j % 4) * 2));
      if (bits == 3) p.hi[static_cast<size_t>(r * p.hi_row_bytes() + j / 8)] |= static_cast<uint8_t>((i >> 2) << (j % 8));
    }
  p.validate("pack_codebook");
  return p;
}

std::vector<float> unpack_codebook(const PackedCodebook& p) {
  p.validate("unpack_codebook");
  std::vector<float> w(static_cast<size_t>(p.rows * p.cols));
  for (int64_t r = 0; r < p.rows; ++r)
    for (int64_t j = 0; j < p.cols; ++j) w[static_cast<size_t>(r * p.cols + j)] = p.book(r)[p.index(r, j)];
  return w;
}

}  // namespace catq

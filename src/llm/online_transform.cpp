#include "llm/online_transform.h"

#include <cmath>

#include "core/error.h"

namespace catq {

void fwht_(at::Tensor& x) {
  const int64_t n = x.size(-1);
  CATQ_CHECK(n > 0 && (n & (n - 1)) == 0, Config, "fast Walsh-Hadamard transform: size {} is not a power of two", n);
  at::Tensor v = x.reshape({-1, n});
  for (int64_t h = 1; h < n; h *= 2) {
    at::Tensor y = v.reshape({-1, n / (2 * h), 2, h});
    at::Tensor a = y.select(2, 0).clone(), b = y.select(2, 1).clone();
    y.select(2, 0).copy_(a + b);
    y.select(2, 1).copy_(a - b);
  }
  if (!v.is_alias_of(x)) x.copy_(v.reshape(x.sizes()));  // a view already wrote into x
}

const char* to_string(OnlineFactor::Kind k) {
  switch (k) {
    case OnlineFactor::Kind::Dense: return "dense";
    case OnlineFactor::Kind::BlockDiag: return "blockdiag";
    case OnlineFactor::Kind::Hadamard: return "hadamard";
  }
  return "?";
}

int64_t OnlineFactor::dim() const {
  switch (kind) {
    case Kind::Dense: return t.size(0);
    case Kind::BlockDiag: return t.size(0) * t.size(1);
    case Kind::Hadamard: return signs.defined() ? signs.numel() : 0;
  }
  return 0;
}

OnlineFactor OnlineFactor::dense(const at::Tensor& t) { return {Kind::Dense, t.contiguous(), {}}; }
OnlineFactor OnlineFactor::block_diagonal(const at::Tensor& blocks) { return {Kind::BlockDiag, blocks.contiguous(), {}}; }
OnlineFactor OnlineFactor::hadamard(const at::Tensor& q, const at::Tensor& signs) {
  CATQ_CHECK(q.defined() && signs.defined(), Usage, "Hadamard factor: needs Q and the signs");
  return {Kind::Hadamard, q.contiguous(), signs.to(q.scalar_type()).contiguous()};
}

OnlineFactor OnlineFactor::to(at::ScalarType dtype) const {
  return {kind, t.to(dtype).contiguous(), signs.defined() ? signs.to(dtype).contiguous() : at::Tensor()};
}

at::Tensor OnlineFactor::apply(const at::Tensor& x) const {
  const int64_t d = x.size(-1);
  switch (kind) {
    case Kind::Dense: return at::matmul(x, t.to(x.dtype()).t());
    case Kind::BlockDiag: {
      const int64_t nb = t.size(0), k = t.size(1);
      const at::Tensor xb = x.reshape({-1, nb, k}).transpose(0, 1);                // [nb, N, k]
      const at::Tensor y = at::bmm(xb, t.to(x.dtype()).transpose(1, 2));           // row · t_iᵀ
      return y.transpose(0, 1).reshape(x.sizes());
    }
    case Kind::Hadamard: {
      const int64_t m = t.size(0), p2 = d / m;
      at::Tensor z = signs.defined() ? x * signs.to(x.dtype()) : x.clone();
      // (H ⊗ Q) z with z viewed [p2, m] (index i1·m + i2): H along i1, Q along i2.
      at::Tensor zt = z.reshape({-1, p2, m}).transpose(1, 2).contiguous();  // [N, m, p2]
      fwht_(zt);
      zt = zt / std::sqrt(static_cast<double>(p2));
      at::Tensor r = zt.transpose(1, 2);  // [N, p2, m]
      if (m > 1) r = at::matmul(r, t.to(x.dtype()).t());
      return r.reshape(x.sizes()).contiguous();
    }
  }
  return x;
}

at::Tensor OnlineFactor::right_inverse(const at::Tensor& w) const {
  switch (kind) {
    case Kind::Dense: return at::matmul(w, at::linalg_inv(t.to(at::kDouble)).to(w.dtype()));
    case Kind::BlockDiag: {
      const int64_t nb = t.size(0), k = t.size(1);
      const at::Tensor inv = at::linalg_inv(t.to(at::kDouble)).to(w.dtype());  // [nb, k, k]
      const at::Tensor wb = w.reshape({-1, nb, k}).transpose(0, 1);             // [nb, rows, k]
      return at::bmm(wb, inv).transpose(0, 1).reshape(w.sizes());
    }
    case Kind::Hadamard: return apply(w);  // F is orthogonal: w·F⁻¹ = w·Fᵀ
  }
  return w;
}

at::Tensor OnlineFactor::matrix() const {
  // Rows of apply(I) are the columns of F (apply maps row vectors x to x·Fᵀ).
  return apply(at::eye(dim(), at::kDouble)).t().contiguous();
}

void check_online_factor(const OnlineFactor& f, int64_t d, const std::string& what) {
  CATQ_CHECK(f.t.defined() && f.t.scalar_type() == at::kFloat &&
                 (f.kind != OnlineFactor::Kind::Hadamard || (f.signs.defined() && f.signs.scalar_type() == at::kFloat)),
             Format, "{}: a {} factor needs float32 tensors", what, to_string(f.kind));
  CATQ_CHECK(at::isfinite(f.t).all().item<bool>(), Format, "{}: the {} factor has NaN or Inf entries", what,
             to_string(f.kind));
  switch (f.kind) {
    case OnlineFactor::Kind::Dense:
      CATQ_CHECK(f.t.dim() == 2 && f.t.size(0) == d && f.t.size(1) == d, Format, "{}: dense factor [{}], expected [{},{}]",
                 what, fmt::join(f.t.sizes(), ","), d, d);
      break;
    case OnlineFactor::Kind::BlockDiag:
      CATQ_CHECK(f.t.dim() == 3 && f.t.size(1) == f.t.size(2) && f.t.size(1) >= 1 && f.t.size(0) * f.t.size(1) == d,
                 Format, "{}: block-diagonal factor [{}], expected [n, k, k] with n·k = {}", what,
                 fmt::join(f.t.sizes(), ","), d);
      break;
    case OnlineFactor::Kind::Hadamard: {
      CATQ_CHECK(f.t.dim() == 2 && f.t.size(0) == f.t.size(1) && f.t.size(0) % 2 == 1 && d % f.t.size(0) == 0, Format,
                 "{}: Hadamard factor Q [{}], expected [m, m] with m odd dividing {}", what, fmt::join(f.t.sizes(), ","),
                 d);
      const int64_t p2 = d / f.t.size(0);
      CATQ_CHECK((p2 & (p2 - 1)) == 0, Format, "{}: Hadamard factor of order {} = {}·{}: {} is not a power of two", what,
                 d, p2, f.t.size(0), p2);
      CATQ_CHECK(f.signs.defined() && f.signs.dim() == 1 && f.signs.numel() == d &&
                     (f.signs.abs() == 1).all().item<bool>(),
                 Format, "{}: Hadamard signs must be {} values of ±1", what, d);
      break;
    }
  }
}

at::Tensor OnlineTransform::apply(const at::Tensor& x) const {
  at::Tensor y = x;
  for (const OnlineFactor& f : factors) y = f.apply(y);
  return y;
}

at::Tensor OnlineTransform::matrix() const {
  at::Tensor r = at::eye(dim(), at::kDouble);
  for (const OnlineFactor& f : factors) r = at::matmul(f.matrix(), r);
  return r;
}

void OnlineTransform::then(const OnlineFactor& f) {
  if (!factors.empty() && f.kind == OnlineFactor::Kind::Dense && factors.back().kind == OnlineFactor::Kind::Dense) {
    factors.back().t = at::matmul(f.t.to(at::kDouble), factors.back().t.to(at::kDouble)).to(at::kFloat).contiguous();
    return;
  }
  factors.push_back(f.to(at::kFloat));
}

int64_t OnlineTransform::stored_values() const {
  int64_t n = 0;
  for (const OnlineFactor& f : factors) n += f.t.numel() + (f.signs.defined() ? f.signs.numel() : 0);
  return n;
}

std::string OnlineTransform::str() const {
  std::string s;
  for (auto it = factors.rbegin(); it != factors.rend(); ++it) {
    if (!s.empty()) s += " · ";
    if (it->kind == OnlineFactor::Kind::BlockDiag) s += fmt::format("blockdiag({}×{})", it->t.size(0), it->t.size(1));
    else s += fmt::format("{}({})", to_string(it->kind), it->dim());
  }
  return s.empty() ? "identity" : s;
}

void OnlineTransform::to(const at::Device& device) {
  for (OnlineFactor& f : factors) {
    f.t = f.t.to(device);
    if (f.signs.defined()) f.signs = f.signs.to(device);
  }
}

}  // namespace catq

#include "methods/llm/transform_ops.h"

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "quant/quantizer.h"

namespace catq {

const char* to_string(TransformPosition p) {
  switch (p) {
    case TransformPosition::Attn: return "attn";
    case TransformPosition::Ffn: return "ffn";
    case TransformPosition::Down: return "down";
    case TransformPosition::O: return "o";
  }
  return "?";
}

int64_t position_dim(const LlamaConfig& c, TransformPosition p) {
  return p == TransformPosition::Down ? c.hidden_dim : p == TransformPosition::O ? c.hd() : c.dim;
}

void for_each_site(const LlamaConfig& c, const std::function<void(const TransformSite&)>& f) {
  const int64_t L = c.n_layers, kv = c.n_kv_heads;
  for (int64_t l = 0; l < L; ++l) {
    for (TransformPosition p : {TransformPosition::Attn, TransformPosition::Ffn, TransformPosition::Down,
                                TransformPosition::O}) {
      const int64_t groups = p == TransformPosition::O ? kv : 1;
      for (int64_t g = 0; g < groups; ++g) f(TransformSite{l, p, g});
    }
  }
}

at::Tensor consumer_gram(const LlamaModel& m, int64_t l, TransformPosition p, int64_t g) {
  const LlamaBlock& b = m.blocks.at(l);
  auto gram = [](const at::Tensor& w) { at::Tensor d = w.to(at::kDouble); return at::matmul(d.t(), d); };
  switch (p) {
    case TransformPosition::Attn: return gram(b.wq) + gram(b.wk) + gram(b.wv);
    case TransformPosition::Ffn: return gram(b.w1) + gram(b.w3);
    case TransformPosition::Down: return gram(b.w2);
    case TransformPosition::O: {
      const int64_t hd = m.cfg.hd(), rep = m.cfg.n_heads / m.cfg.n_kv_heads;
      at::Tensor r = at::zeros({hd, hd}, at::kDouble);
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h) r = r + gram(b.wo.narrow(1, h * hd, hd));
      return r;
    }
  }
  return {};
}

at::Tensor consumer_absmax(const LlamaModel& m, int64_t l, TransformPosition p, int64_t g) {
  const LlamaBlock& b = m.blocks.at(l);
  auto colmax = [](const at::Tensor& w) { return w.abs().amax(0); };
  switch (p) {
    case TransformPosition::Attn: return at::maximum(at::maximum(colmax(b.wq), colmax(b.wk)), colmax(b.wv));
    case TransformPosition::Ffn: return at::maximum(colmax(b.w1), colmax(b.w3));
    case TransformPosition::Down: return colmax(b.w2);
    case TransformPosition::O: {
      const int64_t hd = m.cfg.hd(), rep = m.cfg.n_heads / m.cfg.n_kv_heads;
      at::Tensor r;
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
        at::Tensor c = colmax(b.wo.narrow(1, h * hd, hd));
        r = r.defined() ? at::maximum(r, c) : c;
      }
      return r;
    }
  }
  return {};
}

void apply_transform(LlamaModel& m, int64_t l, TransformPosition p, const at::Tensor& t_in, int64_t kv_head) {
  at::NoGradGuard ng;
  LlamaBlock& b = m.blocks.at(l);
  at::Tensor t = t_in.to(at::kDouble);
  at::Tensor tinv = at::linalg_inv(t);
  auto right = [&](at::Tensor& w) { w = at::matmul(w.to(at::kDouble), tinv).to(at::kFloat).contiguous(); };
  auto compose = [&](OnlineTransform& o) {
    at::Tensor prev = o.defined() ? o.matrix.to(at::kDouble) : at::eye(t.size(0), at::kDouble);
    o.matrix = at::matmul(t, prev).to(at::kFloat).contiguous();
  };
  switch (p) {
    case TransformPosition::Attn:
      right(b.wq), right(b.wk), right(b.wv), compose(b.attn_in);
      break;
    case TransformPosition::Ffn:
      right(b.w1), right(b.w3), compose(b.ffn_in);
      break;
    case TransformPosition::Down:
      right(b.w2), compose(b.down_in);
      break;
    case TransformPosition::O: {
      const int64_t hd = m.cfg.hd(), kv = m.cfg.n_kv_heads, rep = m.cfg.n_heads / kv;
      CATQ_CHECK(t.size(0) == hd, Config, "o transform: size {} is not the head size {}", t.size(0), hd);
      at::Tensor wv = b.wv.to(at::kDouble), wo = b.wo.to(at::kDouble);
      at::Tensor bv = b.bv.defined() ? b.bv.to(at::kDouble) : at::Tensor();  // v = W x + b: b turns with W's rows
      for (int64_t g = 0; g < kv; ++g) {
        if (kv_head >= 0 && g != kv_head) continue;
        wv.narrow(0, g * hd, hd).copy_(at::matmul(t, wv.narrow(0, g * hd, hd)));
        if (bv.defined()) bv.narrow(0, g * hd, hd).copy_(at::matmul(t, bv.narrow(0, g * hd, hd)));
        for (int64_t h = g * rep; h < (g + 1) * rep; ++h)
          wo.narrow(1, h * hd, hd).copy_(at::matmul(wo.narrow(1, h * hd, hd), tinv));
      }
      b.wv = wv.to(at::kFloat).contiguous();
      if (bv.defined()) b.bv = bv.to(at::kFloat).contiguous();
      b.wo = wo.to(at::kFloat).contiguous();
      break;
    }
  }
}

void apply_diagonal(LlamaModel& m, int64_t l, TransformPosition p, const at::Tensor& d_in, int64_t kv_head) {
  at::NoGradGuard ng;
  LlamaBlock& b = m.blocks.at(l);
  at::Tensor d = d_in.to(at::kFloat);
  CATQ_CHECK((d > 0).all().item<bool>() && at::isfinite(d).all().item<bool>(), Data,
             "diagonal transform at block {} {}: scales must be positive and finite", l, to_string(p));
  auto online = [&](const OnlineTransform& o) { return o.defined(); };
  if ((p == TransformPosition::Attn && online(b.attn_in)) || (p == TransformPosition::Ffn && online(b.ffn_in)) ||
      (p == TransformPosition::Down && online(b.down_in))) {
    apply_transform(m, l, p, at::diag(d.to(at::kDouble)), kv_head);
    return;
  }
  switch (p) {
    case TransformPosition::Attn:
      b.attn_norm = b.attn_norm * d;
      for (at::Tensor* w : {&b.wq, &b.wk, &b.wv}) *w = (*w / d.unsqueeze(0)).contiguous();
      break;
    case TransformPosition::Ffn:
      b.ffn_norm = b.ffn_norm * d;
      for (at::Tensor* w : {&b.w1, &b.w3}) *w = (*w / d.unsqueeze(0)).contiguous();
      break;
    case TransformPosition::Down:
      b.w3 = (b.w3 * d.unsqueeze(1)).contiguous();
      b.w2 = (b.w2 / d.unsqueeze(0)).contiguous();
      break;
    case TransformPosition::O: apply_transform(m, l, p, at::diag(d.to(at::kDouble)), kv_head); break;
  }
}

void fold_rmsnorm_weights(LlamaModel& m) {
  at::NoGradGuard ng;
  for (auto& b : m.blocks) {
    CATQ_CHECK(!b.attn_in.defined() && !b.ffn_in.defined(), Usage,
               "folding RMSNorm weights: fold before adding online transforms after the norms");
    for (at::Tensor* w : {&b.wq, &b.wk, &b.wv}) *w = (*w * b.attn_norm.unsqueeze(0)).contiguous();
    for (at::Tensor* w : {&b.w1, &b.w3}) *w = (*w * b.ffn_norm.unsqueeze(0)).contiguous();
    b.attn_norm = at::ones_like(b.attn_norm);
    b.ffn_norm = at::ones_like(b.ffn_norm);
  }
  m.output = (m.output * m.norm.unsqueeze(0)).contiguous();  // a new tensor: the head is no longer tied
  m.cfg.tied_head = false;
  m.norm = at::ones_like(m.norm);
}

void rotate_residual(LlamaModel& m, const at::Tensor& q_in) {
  at::NoGradGuard ng;
  const int64_t dim = m.cfg.dim;
  CATQ_CHECK(q_in.dim() == 2 && q_in.size(0) == dim && q_in.size(1) == dim, Config,
             "residual rotation: matrix must be {}x{}", dim, dim);
  auto ones = [](const at::Tensor& t) { return at::allclose(t, at::ones_like(t)); };
  CATQ_CHECK(ones(m.norm), Usage, "residual rotation: fold the RMSNorm weights first");
  at::Tensor q = q_in.to(at::kDouble);
  auto in = [&](at::Tensor& w) { w = at::matmul(w.to(at::kDouble), q).to(at::kFloat).contiguous(); };
  auto out = [&](at::Tensor& w) { w = at::matmul(q.t(), w.to(at::kDouble)).to(at::kFloat).contiguous(); };
  in(m.tok_embeddings);
  for (auto& b : m.blocks) {
    CATQ_CHECK(ones(b.attn_norm) && ones(b.ffn_norm) && !b.attn_in.defined() && !b.ffn_in.defined(), Usage,
               "residual rotation: fold the RMSNorm weights first and rotate before adding online transforms");
    in(b.wq), in(b.wk), in(b.wv), in(b.w1), in(b.w3);
    out(b.wo), out(b.w2);
  }
  in(m.output);
}

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
  x.copy_(v.reshape(x.sizes()));
}

at::Tensor random_orthogonal(int64_t n, uint64_t seed) {
  CATQ_CHECK(n >= 1, Config, "random orthogonal matrix: order {} < 1", n);
  at::Generator gen = make_generator(seed);
  at::Tensor a = at::normal(0.0, 1.0, {n, n}, gen, at::TensorOptions().dtype(at::kDouble));
  auto [q, r] = at::linalg_qr(a);
  return (q * r.diagonal().sign().unsqueeze(0)).contiguous();  // Haar-distributed
}

at::Tensor hadamard_matrix(int64_t n, bool randomized, uint64_t seed) {
  CATQ_CHECK(n >= 1, Config, "Hadamard matrix: order {} < 1", n);
  int64_t p2 = 1;
  while (n % (p2 * 2) == 0) p2 *= 2;
  const int64_t odd = n / p2;
  at::Tensor h = at::eye(p2, at::kDouble);
  fwht_(h);
  h = h / std::sqrt(static_cast<double>(p2));
  if (odd > 1) h = at::kron(h, random_orthogonal(odd, seed + 1));
  if (randomized) {
    at::Generator gen = make_generator(seed + 2);
    at::Tensor signs = at::randint(0, 2, {n}, gen, at::TensorOptions().dtype(at::kDouble)) * 2 - 1;
    h = h * signs.unsqueeze(0);
  }
  return h;
}

}  // namespace catq

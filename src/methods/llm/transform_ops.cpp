#include "methods/llm/transform_ops.h"

#include <algorithm>

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

void for_each_site_in_block(const LlamaConfig& c, int64_t l, const std::function<void(const TransformSite&)>& f) {
  for (TransformPosition p : {TransformPosition::Attn, TransformPosition::Ffn, TransformPosition::Down,
                              TransformPosition::O}) {
    const int64_t groups = p == TransformPosition::O ? c.n_kv_heads : 1;
    for (int64_t g = 0; g < groups; ++g) f(TransformSite{l, p, g});
  }
}

void for_each_site(const LlamaConfig& c, const std::function<void(const TransformSite&)>& f) {
  for (int64_t l = 0; l < c.n_layers; ++l) for_each_site_in_block(c, l, f);
}

at::Tensor gram_blocks(const at::Tensor& x, int64_t k) {
  const int64_t n = x.size(0), d = x.size(1);
  if (k <= 0 || k >= d) return at::matmul(x.t(), x);
  CATQ_CHECK(d % k == 0, Usage, "statistics: block {} does not divide the dimension {}", k, d);
  const at::Tensor xb = x.reshape({n, d / k, k}).permute({1, 2, 0});  // [d/k, k, N]
  return at::bmm(xb, xb.transpose(1, 2));
}

at::Tensor consumer_gram(const LlamaModel& m, int64_t l, TransformPosition p, int64_t g, int64_t block) {
  const LlamaBlock& b = m.blocks.at(l);
  auto gram = [block](const at::Tensor& w) { return gram_blocks(w.to(at::kDouble), block); };
  switch (p) {
    case TransformPosition::Attn: return gram(b.wq) + gram(b.wk) + gram(b.wv);
    case TransformPosition::Ffn: return gram(b.w1) + gram(b.w3);
    case TransformPosition::Down: return gram(b.w2);
    case TransformPosition::O: {
      const int64_t hd = m.cfg.hd(), rep = m.cfg.n_heads / m.cfg.n_kv_heads;
      at::Tensor r;
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
        const at::Tensor gh = gram(b.wo.narrow(1, h * hd, hd));
        r = r.defined() ? r + gh : gh;
      }
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
  auto compose = [&](OnlineTransform& o) { o.then(OnlineFactor::dense(t.to(at::kFloat))); };
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

void apply_transform(LlamaModel& m, int64_t l, TransformPosition p, const std::vector<OnlineFactor>& factors) {
  at::NoGradGuard ng;
  CATQ_CHECK(p != TransformPosition::O, Usage, "structured transforms act online; the o transform is offline");
  LlamaBlock& b = m.blocks.at(l);
  const int64_t d = position_dim(m.cfg, p);
  for (const OnlineFactor& f : factors) CATQ_CHECK(f.dim() == d, Config, "{} transform: a factor of size {}, expected {}",
                                                   to_string(p), f.dim(), d);
  auto right = [&](at::Tensor& w) {
    at::Tensor wd = w.to(at::kDouble);
    for (const OnlineFactor& f : factors) wd = f.right_inverse(wd);  // W T⁻¹ = W F₁⁻¹ ··· Fₙ⁻¹
    w = wd.to(at::kFloat).contiguous();
  };
  auto compose = [&](OnlineTransform& o) {
    for (const OnlineFactor& f : factors) o.then(f);
  };
  switch (p) {
    case TransformPosition::Attn: right(b.wq), right(b.wk), right(b.wv), compose(b.attn_in); break;
    case TransformPosition::Ffn: right(b.w1), right(b.w3), compose(b.ffn_in); break;
    case TransformPosition::Down: right(b.w2), compose(b.down_in); break;
    case TransformPosition::O: break;
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
    apply_transform(m, l, p, {OnlineFactor::block_diagonal(d.to(at::kDouble).reshape({-1, 1, 1}))});  // k = 1
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

void fold_rmsnorm_block(LlamaModel& m, int64_t l) {
  at::NoGradGuard ng;
  LlamaBlock& b = m.blocks.at(l);
  CATQ_CHECK(!b.attn_in.defined() && !b.ffn_in.defined(), Usage,
             "folding RMSNorm weights: fold before adding online transforms after the norms");
  // In fp32 whatever the stored dtype (bf16 · bf16 would round to bf16).
  for (at::Tensor* w : {&b.wq, &b.wk, &b.wv}) *w = (w->to(at::kFloat) * b.attn_norm.to(at::kFloat).unsqueeze(0)).contiguous();
  for (at::Tensor* w : {&b.w1, &b.w3}) *w = (w->to(at::kFloat) * b.ffn_norm.to(at::kFloat).unsqueeze(0)).contiguous();
  b.attn_norm = at::ones_like(b.attn_norm, at::kFloat);
  b.ffn_norm = at::ones_like(b.ffn_norm, at::kFloat);
}

void fold_rmsnorm_head(LlamaModel& m) {
  at::NoGradGuard ng;
  m.output = (m.output.to(at::kFloat) * m.norm.to(at::kFloat).unsqueeze(0)).contiguous();  // a new tensor: untied
  m.cfg.tied_head = false;
  m.norm = at::ones_like(m.norm, at::kFloat);
}

void fold_rmsnorm_weights(LlamaModel& m) {
  for (int64_t l = 0; l < static_cast<int64_t>(m.blocks.size()); ++l) fold_rmsnorm_block(m, l);
  fold_rmsnorm_head(m);
}

namespace {

at::Tensor residual_rotation(const LlamaConfig& c, const at::Tensor& q) {
  CATQ_CHECK(q.dim() == 2 && q.size(0) == c.dim && q.size(1) == c.dim, Config,
             "residual rotation: matrix must be {}x{}", c.dim, c.dim);
  return q.to(at::kDouble);
}
bool all_ones(const at::Tensor& t) { return at::allclose(t.to(at::kFloat), at::ones_like(t, at::kFloat)); }
// W·Q in double, in slices of rows (the token-embedding table of a big vocabulary would need GBs of doubles at once).
void rotate_in(at::Tensor& w, const at::Tensor& q) {
  constexpr int64_t kRows = 8192;
  at::Tensor r = at::empty({w.size(0), q.size(1)}, at::kFloat);
  for (int64_t i = 0; i < w.size(0); i += kRows) {
    const int64_t n = std::min(kRows, w.size(0) - i);
    r.narrow(0, i, n).copy_(at::matmul(w.narrow(0, i, n).to(at::kDouble), q));
  }
  w = r;
}
void rotate_out(at::Tensor& w, const at::Tensor& q) {
  w = at::matmul(q.t(), w.to(at::kDouble)).to(at::kFloat).contiguous();
}

}  // namespace

void rotate_residual_ends(LlamaModel& m, const at::Tensor& q_in) {
  at::NoGradGuard ng;
  const at::Tensor q = residual_rotation(m.cfg, q_in);
  CATQ_CHECK(all_ones(m.norm), Usage, "residual rotation: fold the RMSNorm weights first");
  rotate_in(m.tok_embeddings, q);
  rotate_in(m.output, q);
}

void rotate_residual_block(LlamaModel& m, int64_t l, const at::Tensor& q_in) {
  at::NoGradGuard ng;
  const at::Tensor q = residual_rotation(m.cfg, q_in);
  LlamaBlock& b = m.blocks.at(l);
  CATQ_CHECK(all_ones(b.attn_norm) && all_ones(b.ffn_norm) && !b.attn_in.defined() && !b.ffn_in.defined(), Usage,
             "residual rotation: fold the RMSNorm weights first and rotate before adding online transforms");
  for (at::Tensor* w : {&b.wq, &b.wk, &b.wv, &b.w1, &b.w3}) rotate_in(*w, q);
  rotate_out(b.wo, q);
  rotate_out(b.w2, q);
}

void rotate_residual(LlamaModel& m, const at::Tensor& q) {
  rotate_residual_ends(m, q);
  for (int64_t l = 0; l < static_cast<int64_t>(m.blocks.size()); ++l) rotate_residual_block(m, l, q);
}

at::Tensor random_orthogonal(int64_t n, uint64_t seed) {
  CATQ_CHECK(n >= 1, Config, "random orthogonal matrix: order {} < 1", n);
  at::Generator gen = make_generator(seed);
  at::Tensor a = at::normal(0.0, 1.0, {n, n}, gen, at::TensorOptions().dtype(at::kDouble));
  auto [q, r] = at::linalg_qr(a);
  return (q * r.diagonal().sign().unsqueeze(0)).contiguous();  // Haar-distributed
}

OnlineFactor hadamard_factor(int64_t n, bool randomized, uint64_t seed) {
  CATQ_CHECK(n >= 1, Config, "Hadamard matrix: order {} < 1", n);
  int64_t p2 = 1;
  while (n % (p2 * 2) == 0) p2 *= 2;
  const int64_t odd = n / p2;
  at::Tensor q = odd > 1 ? random_orthogonal(odd, seed + 1) : at::ones({1, 1}, at::kDouble);
  at::Tensor signs = at::ones({n}, at::kDouble);
  if (randomized) {
    at::Generator gen = make_generator(seed + 2);
    signs = at::randint(0, 2, {n}, gen, at::TensorOptions().dtype(at::kDouble)) * 2 - 1;
  }
  return OnlineFactor::hadamard(q, signs);
}

at::Tensor hadamard_matrix(int64_t n, bool randomized, uint64_t seed) {
  return hadamard_factor(n, randomized, seed).matrix();
}

}  // namespace catq

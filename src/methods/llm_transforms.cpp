#include "methods/llm_transforms.h"

#include <torch/torch.h>

#include <cmath>
#include <regex>

#include "core/error.h"
#include "core/progress.h"
#include "quant/quantizer.h"

namespace catq {

namespace {

constexpr int kPerBlock = 7;  // layer_infos(): q, k, v, o, gate, up, down per block, then the head

void accumulate(PositionStats& s, const at::Tensor& x2d) {
  at::Tensor x = x2d.detach().to(at::kDouble);
  at::Tensor g = at::matmul(x.t(), x);
  at::Tensor m = x.abs().amax(0).to(at::kFloat);
  s.sigma = s.sigma.defined() ? s.sigma + g : g;
  s.absmax = s.absmax.defined() ? at::maximum(s.absmax, m) : m;
  s.count += x.size(0);
}

// Records the inputs of the transform positions (the q, gate, down and o layers' inputs).
class StatsContext : public QuantContext {
 public:
  StatsContext(const LlamaConfig& c, std::vector<BlockStats>& out) : cfg_(c), out_(out) {}
  at::Tensor weight(const LayerInfo&, const at::Tensor& w) override { return w; }
  at::Tensor input(const LayerInfo& l, const at::Tensor& x) override {
    const int64_t blk = l.index / kPerBlock, k = l.index % kPerBlock;
    if (blk >= static_cast<int64_t>(out_.size())) return x;  // the LM head
    BlockStats& b = out_[blk];
    const at::Tensor x2 = x.reshape({-1, x.size(-1)});
    if (k == 0) accumulate(b.attn, x2);
    else if (k == 4) accumulate(b.ffn, x2);
    else if (k == 6) accumulate(b.down, x2);
    else if (k == 3) {
      const int64_t hd = cfg_.hd(), kv = cfg_.n_kv_heads, rep = cfg_.n_heads / kv;
      at::Tensor heads = x2.reshape({-1, kv, rep, hd});
      if (b.o.empty()) b.o.resize(kv);
      for (int64_t g = 0; g < kv; ++g) accumulate(b.o[g], heads.select(1, g).reshape({-1, hd}));
    }
    return x;
  }

 private:
  const LlamaConfig& cfg_;
  std::vector<BlockStats>& out_;
};

void finish(PositionStats& s) {
  if (s.count > 0) s.sigma = s.sigma / static_cast<double>(s.count);
}

at::Tensor sym_pow(const at::Tensor& a, double p) {
  auto [evals, evecs] = at::linalg_eigh(a);
  at::Tensor e = evals.clamp_min(1e-300).pow(p);
  return at::matmul(evecs * e.unsqueeze(0), evecs.t());
}

at::Tensor damp(const at::Tensor& s, double eps) {
  const int64_t d = s.size(0);
  const double tr = s.diagonal().sum().item<double>();
  const double add = eps * (tr > 0 ? tr / static_cast<double>(d) : 1.0);
  return s + add * at::eye(d, s.options());
}

// Column j of the consumers' weights: max |W_ij| over rows of every consumer.
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

const PositionStats& stats_at(const BlockStats& b, TransformPosition p, int64_t g) {
  switch (p) {
    case TransformPosition::Attn: return b.attn;
    case TransformPosition::Ffn: return b.ffn;
    case TransformPosition::Down: return b.down;
    default: return b.o.at(g);
  }
}

void check_stats(const std::vector<BlockStats>& s, const LlamaModel& m) {
  CATQ_CHECK(static_cast<int64_t>(s.size()) == m.cfg.n_layers && !s.empty() && s[0].attn.count > 0, Usage,
             "LLM transform: calibration statistics are missing or belong to another model");
}

}  // namespace

const char* to_string(TransformPosition p) {
  switch (p) {
    case TransformPosition::Attn: return "attn";
    case TransformPosition::Ffn: return "ffn";
    case TransformPosition::Down: return "down";
    case TransformPosition::O: return "o";
  }
  return "?";
}

std::vector<BlockStats> collect_llama_stats(const LlamaModel& m, const at::Tensor& tokens, int64_t batch) {
  CATQ_CHECK(tokens.defined() && tokens.dim() == 2 && tokens.size(0) > 0, Data,
             "LLM statistics: need token windows [N, T], got none");
  std::vector<BlockStats> out(m.cfg.n_layers);
  StatsContext ctx(m.cfg, out);
  m.bind(&ctx);
  at::NoGradGuard ng;
  Progress bar("statistics", tokens.size(0));
  for (int64_t i = 0; i < tokens.size(0); i += batch) {
    at::Tensor t = tokens.slice(0, i, i + batch);
    m.forward(t, &ctx);
    bar.step(t.size(0));
  }
  bar.finish();
  for (auto& b : out) {
    finish(b.attn);
    finish(b.ffn);
    finish(b.down);
    for (auto& o : b.o) finish(o);
  }
  return out;
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

at::Tensor geometric_mean(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor ah = sym_pow(a, 0.5), aih = sym_pow(a, -0.5);
  at::Tensor mid = at::matmul(at::matmul(aih, b), aih);
  mid = 0.5 * (mid + mid.t());
  return at::matmul(at::matmul(ah, sym_pow(mid, 0.5)), ah);
}

at::Tensor block_alignment_transform(const at::Tensor& sigma_x, const at::Tensor& sigma_w, int64_t k, double damping) {
  const int64_t d = sigma_x.size(0);
  CATQ_CHECK(k >= 1 && d % k == 0, Config, "block CAT: block size {} does not divide the dimension {}", k, d);
  CATQ_CHECK(damping >= 0 && std::isfinite(damping), Config, "block CAT: damping {} must be >= 0", damping);
  at::Tensor sx = sigma_x.to(at::kDouble), sw = sigma_w.to(at::kDouble);
  at::Tensor m = at::zeros({d, d}, at::kDouble);
  for (int64_t i = 0; i < d; i += k) {
    at::Tensor bx = damp(sx.slice(0, i, i + k).slice(1, i, i + k), damping);
    at::Tensor bw = damp(sw.slice(0, i, i + k).slice(1, i, i + k), damping);
    bx = 0.5 * (bx + bx.t());
    bw = 0.5 * (bw + bw.t());
    at::Tensor g = geometric_mean(bw, at::linalg_inv(bx));
    m.slice(0, i, i + k).slice(1, i, i + k).copy_(sym_pow(0.5 * (g + g.t()), 0.5));
  }
  CATQ_CHECK(at::isfinite(m).all().item<bool>(), Data, "block CAT: the transform is not finite (singular statistics; "
             "raise the damping)");
  return m;
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
      for (int64_t g = 0; g < kv; ++g) {
        if (kv_head >= 0 && g != kv_head) continue;
        wv.narrow(0, g * hd, hd).copy_(at::matmul(t, wv.narrow(0, g * hd, hd)));
        for (int64_t h = g * rep; h < (g + 1) * rep; ++h)
          wo.narrow(1, h * hd, hd).copy_(at::matmul(wo.narrow(1, h * hd, hd), tinv));
      }
      b.wv = wv.to(at::kFloat).contiguous();
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

std::string LlmTransformOptions::str() const {
  if (method == "smoothquant") return fmt::format("smoothquant:alpha={}", alpha);
  if (method == "blockcat")
    return fmt::format("blockcat:k={}{}{}", block, damping != 0.01 ? fmt::format(":damp={}", damping) : "",
                       hadamard_after ? "" : ":nohad");
  return method;
}

LlmTransformOptions parse_llm_transform(const std::string& s) {
  LlmTransformOptions o;
  std::vector<std::string> parts;
  size_t p = 0;
  while (p <= s.size()) {
    size_t q = s.find(':', p);
    parts.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  o.method = parts[0];
  static const std::vector<std::string> known = {"none", "smoothquant", "rms", "quarot", "rotation", "blockcat"};
  CATQ_CHECK(std::find(known.begin(), known.end(), o.method) != known.end(), Config,
             "transform '{}': unknown method '{}', expected one of {}", s, o.method, fmt::join(known, ", "));
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& kv = parts[i];
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq), val = eq == std::string::npos ? "" : kv.substr(eq + 1);
    try {
      if (key == "alpha" && o.method == "smoothquant") o.alpha = std::stod(val);
      else if (key == "k" && o.method == "blockcat") o.block = std::stoll(val);
      else if (key == "damp" && o.method == "blockcat") o.damping = std::stod(val);
      else if (key == "nohad" && o.method == "blockcat") o.hadamard_after = false;
      else if (key == "seed") o.seed = std::stoull(val);
      else fail(ErrorKind::Config, "transform '{}': unknown option '{}' for {}", s, key, o.method);
    } catch (const std::logic_error&) {
      fail(ErrorKind::Config, "transform '{}': option '{}' needs a number", s, kv);
    }
  }
  CATQ_CHECK(o.alpha >= 0 && o.alpha <= 1, Config, "transform '{}': alpha {} outside [0, 1]", s, o.alpha);
  CATQ_CHECK(o.block >= 1, Config, "transform '{}': block size {} < 1", s, o.block);
  CATQ_CHECK(o.damping >= 0, Config, "transform '{}': damping {} < 0", s, o.damping);
  return o;
}

void apply_llm_transform(LlamaModel& m, const std::vector<BlockStats>& stats, const LlmTransformOptions& o) {
  const LlamaConfig& c = m.cfg;
  const int64_t L = c.n_layers, kv = c.n_kv_heads, hd = c.hd();
  const std::vector<TransformPosition> online = {TransformPosition::Attn, TransformPosition::Ffn,
                                                 TransformPosition::Down};
  auto dim_of = [&](TransformPosition p) {
    return p == TransformPosition::Down ? c.hidden_dim : p == TransformPosition::O ? hd : c.dim;
  };
  if (o.method == "none") return;
  if (o.method == "quarot" || o.method == "rotation") {
    fold_rmsnorm_weights(m);
    at::Tensor q = o.method == "quarot" ? hadamard_matrix(c.dim, true, o.seed) : random_orthogonal(c.dim, o.seed);
    rotate_residual(m, q);
    for (int64_t l = 0; l < L; ++l) {
      apply_transform(m, l, TransformPosition::Down,
                      o.method == "quarot" ? hadamard_matrix(c.hidden_dim, false, o.seed + 10)
                                           : random_orthogonal(c.hidden_dim, o.seed + 10 + l));
      apply_transform(m, l, TransformPosition::O,
                      o.method == "quarot" ? hadamard_matrix(hd, false, o.seed + 20)
                                           : random_orthogonal(hd, o.seed + 20 + l));
    }
    return;
  }
  check_stats(stats, m);
  // The o transform is per head: a block larger than the head (a multiple of it) is the whole head.
  auto block_of = [&](TransformPosition p) {
    return p == TransformPosition::O && o.block > hd && o.block % hd == 0 ? hd : o.block;
  };
  if (o.method == "blockcat")
    for (TransformPosition p : {TransformPosition::Attn, TransformPosition::Ffn, TransformPosition::Down,
                                TransformPosition::O})
      CATQ_CHECK(dim_of(p) % block_of(p) == 0, Config, "block CAT: block size {} does not divide the {} dimension {} "
                 "(choose k dividing dim {} and hidden_dim {}, and dividing or a multiple of the head size {})",
                 o.block, to_string(p), dim_of(p), c.dim, c.hidden_dim, hd);
  for (int64_t l = 0; l < L; ++l) {
    for (TransformPosition p : {TransformPosition::Attn, TransformPosition::Ffn, TransformPosition::Down,
                                TransformPosition::O}) {
      const int64_t groups = p == TransformPosition::O ? kv : 1;
      for (int64_t g = 0; g < groups; ++g) {
        const PositionStats& s = stats_at(stats[l], p, g);
        const int64_t kvh = p == TransformPosition::O ? g : -1;
        if (o.method == "smoothquant") {
          at::Tensor ax = s.absmax.clamp_min(1e-5), aw = consumer_absmax(m, l, p, g).clamp_min(1e-5);
          at::Tensor sc = ax.pow(o.alpha) / aw.pow(1.0 - o.alpha);
          apply_diagonal(m, l, p, 1.0 / sc, kvh);
        } else if (o.method == "rms" || (o.method == "blockcat" && o.block == 1 && !o.hadamard_after)) {
          at::Tensor ex2 = s.sigma.diagonal().clamp_min(1e-12), w2 = consumer_gram(m, l, p, g).diagonal().clamp_min(1e-12);
          apply_diagonal(m, l, p, (w2 / ex2).pow(0.25), kvh);
        } else if (o.method == "blockcat") {
          at::Tensor mt = block_alignment_transform(s.sigma, consumer_gram(m, l, p, g), block_of(p), o.damping);
          if (o.hadamard_after) mt = at::matmul(hadamard_matrix(dim_of(p), false, o.seed + 30), mt);
          apply_transform(m, l, p, mt, kvh);
        }
      }
    }
  }
  (void)online;
}

}  // namespace catq

#include "llm/llama.h"

#include "core/mapped_file.h"

#include <torch/torch.h>

#include <cmath>

#include "core/error.h"
#include "llm/llama_tensors.h"

namespace catq {

void LlamaConfig::validate(const std::string& source) const {
  auto in_range = [&](const char* what, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
      fail(ErrorKind::Format, "{}: model config {} = {} is out of range (expected {}..{})", source, what, v, lo, hi);
  };
  in_range("dim", dim, 1, 1 << 16);
  in_range("hidden_dim", hidden_dim, 1, 1 << 18);
  in_range("n_layers", n_layers, 1, 1024);
  in_range("n_heads", n_heads, 1, 1024);
  in_range("n_kv_heads", n_kv_heads, 1, n_heads);
  in_range("vocab_size", vocab_size, 1, 1 << 22);
  in_range("seq_len", seq_len, 1, 1 << 24);
  in_range("head_dim", head_dim, 0, 1 << 12);
  if (head_dim == 0 && dim % n_heads != 0)
    fail(ErrorKind::Format, "{}: dim {} is not a multiple of n_heads {}", source, dim, n_heads);
  if (n_heads % n_kv_heads != 0)
    fail(ErrorKind::Format, "{}: n_heads {} is not a multiple of n_kv_heads {}", source, n_heads, n_kv_heads);
  if (hd() % 2 != 0) fail(ErrorKind::Format, "{}: head size {} is odd (RoPE needs pairs)", source, hd());
  if (!(rope_theta > 0) || !std::isfinite(rope_theta))
    fail(ErrorKind::Format, "{}: RoPE theta {} must be positive", source, rope_theta);
  if (!(norm_eps > 0) || !(norm_eps < 1))
    fail(ErrorKind::Format, "{}: RMSNorm epsilon {} must be in (0, 1)", source, norm_eps);
  in_range("sliding_window", sliding_window, 0, 1 << 24);
  const RopeScaling& r = rope_scaling;
  if (r.type == "linear" || r.type == "llama3") {
    if (!(r.factor >= 1.0) || !std::isfinite(r.factor))
      fail(ErrorKind::Format, "{}: RoPE scaling factor {} must be >= 1", source, r.factor);
    if (r.type == "llama3" && (!(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor) ||
                               !std::isfinite(r.high_freq_factor) || r.original_max_position < 1))
      fail(ErrorKind::Format,
           "{}: llama3 RoPE scaling needs 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings "
           ">= 1 (got {}, {}, {})", source, r.low_freq_factor, r.high_freq_factor, r.original_max_position);
  } else if (r.type == "factors") {
    if (static_cast<int64_t>(r.factors.size()) != hd() / 2)
      fail(ErrorKind::Format, "{}: {} RoPE frequency factors, the head size {} needs {}", source, r.factors.size(), hd(),
           hd() / 2);
    for (double f : r.factors)
      if (!(f > 0) || !std::isfinite(f)) fail(ErrorKind::Format, "{}: RoPE frequency factor {} must be positive", source, f);
  } else if (r.type != "none") {
    fail(ErrorKind::Unsupported, "{}: RoPE scaling \"{}\" is not supported (supported: none, linear, llama3)", source,
         r.type);
  }
  if (arch != LlamaArch::Llama && r.type != "none")
    fail(ErrorKind::Unsupported, "{}: RoPE scaling \"{}\" is supported only for the llama architecture", source, r.type);
}

std::vector<double> LlamaConfig::rope_freq_factors() const {
  const RopeScaling& r = rope_scaling;
  const int64_t n = hd() / 2;
  if (r.type == "factors") return r.factors;
  if (r.type == "linear") return std::vector<double>(n, r.factor);
  if (r.type != "llama3") return {};
  std::vector<double> f(n);
  const double L = static_cast<double>(r.original_max_position);
  const double low_wavelen = L / r.low_freq_factor, high_wavelen = L / r.high_freq_factor;
  for (int64_t i = 0; i < n; ++i) {
    const double freq = std::pow(rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd()));
    const double wavelen = 2.0 * M_PI / freq;
    if (wavelen < high_wavelen) {
      f[i] = 1.0;
    } else if (wavelen > low_wavelen) {
      f[i] = r.factor;
    } else {
      const double smooth = (L / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      f[i] = 1.0 / ((1.0 - smooth) / r.factor + smooth);
    }
  }
  return f;
}

const char* to_string(LlamaArch a) {
  switch (a) {
    case LlamaArch::Llama: return "llama";
    case LlamaArch::Qwen2: return "qwen2";
    case LlamaArch::Qwen3: return "qwen3";
  }
  return "?";
}

std::string LlamaConfig::summary() const {
  std::string extra;
  if (rope_scaling.type != "none") extra += fmt::format(", rope scaling {} x{:.4g}", rope_scaling.type, rope_scaling.factor);
  if (sliding_window > 0) extra += fmt::format(", sliding window {}", sliding_window);
  return fmt::format(
      "{}: dim {}, hidden {}, layers {}, heads {}, kv heads {}, head size {}, vocab {}, seq_len {}, rope theta {:.6g}, "
      "norm eps {:.6g}, {} head{}",
      to_string(arch), dim, hidden_dim, n_layers, n_heads, n_kv_heads, hd(), vocab_size, seq_len, rope_theta, norm_eps,
      tied_head ? "tied" : "untied", extra);
}

LlamaModel LlamaModel::random(const LlamaConfig& cfg, uint64_t seed) {
  cfg.validate("random model");
  torch::NoGradGuard ng;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto opt = at::TensorOptions().dtype(at::kFloat);
  auto randn = [&](int64_t a, int64_t b) { return at::normal(0.0, 0.02, {a, b}, gen, opt); };
  // Norm weights near 1 but not exactly, so tests notice a mixed-up norm.
  auto norm = [&](int64_t n) { return 1.0 + at::normal(0.0, 0.1, {n}, gen, opt); };
  LlamaModel m;
  m.cfg = cfg;
  const int64_t D = cfg.dim, Q = cfg.q_dim(), K = cfg.kv_dim(), H = cfg.hidden_dim;
  m.tok_embeddings = at::normal(0.0, 1.0, {cfg.vocab_size, D}, gen, opt);
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    LlamaBlock b;
    b.attn_norm = norm(D);
    b.wq = randn(Q, D) * 5;  // larger q/k so attention is not uniform (tests must see RoPE/masking)
    b.wk = randn(K, D) * 5;
    b.wv = randn(K, D);
    b.wo = randn(D, Q);
    b.ffn_norm = norm(D);
    b.w1 = randn(H, D);
    b.w2 = randn(D, H);
    b.w3 = randn(H, D);
    if (cfg.qkv_bias()) {
      b.bq = at::normal(0.0, 0.5, {Q}, gen, opt);  // visible next to x·Wᵀ (whose entries are ~0.1-0.5)
      b.bk = at::normal(0.0, 0.5, {K}, gen, opt);
      b.bv = at::normal(0.0, 0.1, {K}, gen, opt);
    }
    if (cfg.qk_norm()) {
      b.q_norm = norm(cfg.hd());
      b.k_norm = norm(cfg.hd());
    }
    m.blocks.push_back(b);
  }
  m.norm = norm(D);
  m.output = cfg.tied_head ? m.tok_embeddings : randn(cfg.vocab_size, D);
  return m;
}

void LlamaModel::check_shapes(const std::string& source) const {
  cfg.validate(source);
  auto expect = [&](const at::Tensor& t, std::vector<int64_t> shape, const std::string& name) {
    if (!t.defined()) fail(ErrorKind::Format, "{}: tensor {} is missing", source, name);
    if (t.sizes().vec() != shape)
      fail(ErrorKind::Format, "{}: tensor {} has shape {} but the model config needs {}", source, name,
           fmt::join(t.sizes(), "x"), fmt::join(shape, "x"));
  };
  expect(tok_embeddings, kLlamaTokenEmbd.shape(cfg), kLlamaTokenEmbd.gguf_name());
  if (static_cast<int64_t>(blocks.size()) != cfg.n_layers)
    fail(ErrorKind::Format, "{}: {} blocks but the config says {} layers", source, blocks.size(), cfg.n_layers);
  auto is_deferred = [&](int64_t l, at::Tensor LlamaBlock::*member) {
    if (l >= static_cast<int64_t>(deferred.size())) return false;
    for (const DeferredTensor& d : deferred[l])
      if (d.member == member) return true;
    return false;
  };
  for (int64_t l = 0; l < cfg.n_layers; ++l)
    for (const LlamaBlockTensor& t : llama_block_tensors()) {
      if (t.present(cfg)) {
        if (!(blocks[l].*t.member).defined() && is_deferred(l, t.member)) continue;
        expect(blocks[l].*t.member, t.shape(cfg), t.gguf_name(l));
      } else if ((blocks[l].*t.member).defined()) {
        fail(ErrorKind::Format, "{}: tensor {} is not part of the {} architecture", source, t.gguf_name(l),
             to_string(cfg.arch));
      }
    }
  for (const LlamaGlobalTensor* t : {&kLlamaOutputNorm, &kLlamaOutput})
    expect(this->*t->member, t->shape(cfg), t->gguf_name());
}

void LlamaModel::check_finite(const std::string& source) const {
  auto check = [&](const at::Tensor& t, const std::string& name) {
    if (!t.defined() || !at::isFloatingType(t.scalar_type()) || is_mapped_tensor(t)) return;
    const int64_t bad = (~at::isfinite(t)).sum().item<int64_t>();
    if (bad > 0)
      fail(ErrorKind::Format, "{}: tensor {} holds {} NaN / Inf value{} (expected finite weights: a corrupt file or a "
           "diverged model)", source, name, bad, bad == 1 ? "" : "s");
  };
  check(tok_embeddings, kLlamaTokenEmbd.gguf_name());
  for (int64_t l = 0; l < static_cast<int64_t>(blocks.size()); ++l)
    for (const LlamaBlockTensor& t : llama_block_tensors()) check(blocks[l].*t.member, t.gguf_name(l));
  check(norm, kLlamaOutputNorm.gguf_name());
  if (!cfg.tied_head) check(output, kLlamaOutput.gguf_name());
}

std::vector<LayerInfo> LlamaModel::layer_infos() const {
  std::vector<LayerInfo> v;
  // Shapes from the config (check_shapes holds the tensors to them), so a pipeline that drops finished blocks' tensors
  // (layer-streamed quantization) still has the layer list.
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    LayerInfo li;
    li.name = std::move(name);
    li.kind = LayerKind::Linear;
    li.macs_per_sample = shape.at(0) * shape.at(1);
    li.weight_shape = std::move(shape);
    li.index = static_cast<int>(v.size());
    v.push_back(std::move(li));
  };
  for (size_t l = 0; l < blocks.size(); ++l)
    for (int j = 0; j < kLinearsPerBlock; ++j) {
      const LlamaBlockTensor& t = llama_block_linear(j);
      add(t.gguf_base(static_cast<int64_t>(l)), t.shape(cfg));
    }
  add(kLlamaOutput.gguf, kLlamaOutput.shape(cfg));
  v.front().is_first = true;
  v.back().is_last = true;
  return v;
}

at::Tensor& LlamaModel::layer_weight(int64_t index) {
  const int64_t per = kLinearsPerBlock, nl = static_cast<int64_t>(blocks.size());
  CATQ_CHECK(index >= 0 && index <= nl * per, Usage, "layer index {} outside 0..{}", index, nl * per);
  if (index == nl * per) return output;
  return blocks[index / per].*llama_block_linear(static_cast<int>(index % per)).member;
}

const at::Tensor& LlamaModel::layer_weight(int64_t index) const {
  return const_cast<LlamaModel*>(this)->layer_weight(index);
}

void LlamaModel::bind(QuantContext* ctx) const {
  infos_ = layer_infos();
  if (!ctx) return;
  ctx->bind(infos_);
  if (std::find(bound_.begin(), bound_.end(), ctx) == bound_.end()) bound_.push_back(ctx);
}

at::Tensor LlamaModel::linear(const at::Tensor& x, const at::Tensor& w, int idx, QuantContext* ctx) const {
  if (!ctx) return at::linear(x, w);
  return ctx->linear(infos_[idx], x, w);
}

static at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * w;
}

// Rotates pairs (2i, 2i+1) of x [B, T, heads, hd] by angle pos * theta^(-2i/hd). cos/sin: [T, 1, hd/2].
static at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  auto sz = x.sizes().vec();
  auto xp = x.reshape({sz[0], sz[1], sz[2], sz[3] / 2, 2});
  auto x0 = xp.select(-1, 0), x1 = xp.select(-1, 1);
  auto y = at::stack({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, -1);
  return y.reshape(sz);
}

at::Tensor LlamaModel::forward(const at::Tensor& tokens, QuantContext* ctx) const {
  return forward_impl(tokens, nullptr, ctx);
}

at::Tensor LlamaModel::forward(const at::Tensor& tokens, KVCache& cache, QuantContext* ctx) const {
  return forward_impl(tokens, &cache, ctx);
}

KVCache LlamaModel::make_cache(int64_t batch, int64_t max_len) const {
  KVCache c;
  c.max_len = max_len > 0 ? max_len : cfg.seq_len;
  auto opt = tok_embeddings.options().requires_grad(false);
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    c.k.push_back(at::zeros({batch, cfg.n_kv_heads, c.max_len, cfg.hd()}, opt));
    c.v.push_back(at::zeros({batch, cfg.n_kv_heads, c.max_len, cfg.hd()}, opt));
  }
  return c;
}

// Weights may be held in their stored dtype (bf16 / f16 views of a memory-mapped file); compute is fp32, one tensor
// converted at a time.
static at::Tensor f32(const at::Tensor& t) {
  return t.defined() && t.scalar_type() != at::kFloat ? t.to(at::kFloat) : t;
}

struct LlamaModel::Positions {
  int64_t pos0 = 0, T = 0, S = 0;  // first position, new positions, keys attended to (pos0 + T)
  at::Tensor cos, sin;             // [T, 1, hd/2]
  at::Tensor mask;                 // [T, S] true where a query must not see a key; undefined = none
};

LlamaModel::Positions LlamaModel::positions(int64_t pos0, int64_t T, const at::Device& dev) const {
  Positions p;
  p.pos0 = pos0, p.T = T, p.S = pos0 + T;
  const int64_t hd = cfg.hd();
  // RoPE angles in double (then rounded once to float) for positions pos0..pos0+T-1.
  auto opt64 = at::TensorOptions().dtype(at::kDouble).device(dev);
  auto inv = at::pow(cfg.rope_theta, -at::arange(0, hd, 2, opt64) / static_cast<double>(hd));
  if (auto f = cfg.rope_freq_factors(); !f.empty()) inv = inv / at::tensor(f, opt64);
  auto ang = at::outer(at::arange(pos0, pos0 + T, opt64), inv);  // [T, hd/2]
  p.cos = ang.cos().to(at::kFloat).unsqueeze(1), p.sin = ang.sin().to(at::kFloat).unsqueeze(1);
  // The future, and with a sliding window the distant past, are masked.
  const bool windowed = cfg.sliding_window > 0 && p.S > cfg.sliding_window;
  if (T > 1 || windowed) {
    auto iopt = at::TensorOptions().dtype(at::kLong).device(dev);
    at::Tensor qpos = at::arange(pos0, pos0 + T, iopt).unsqueeze(1), kpos = at::arange(0, p.S, iopt).unsqueeze(0);
    p.mask = kpos > qpos;
    if (windowed) p.mask = p.mask.logical_or(qpos - kpos >= cfg.sliding_window);
  }
  return p;
}

at::Tensor LlamaModel::block_forward(int64_t l, const at::Tensor& x_in, const Positions& p, KVCache* cache,
                                     QuantContext* ctx) const {
  const LlamaBlock& b = blocks[l];
  const int64_t B = x_in.size(0), T = p.T, S = p.S;
  const int64_t H = cfg.n_heads, KV = cfg.n_kv_heads, hd = cfg.hd(), rep = H / KV;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  const int base = static_cast<int>(l) * kLinearsPerBlock;
  at::Tensor x = x_in;
  at::Tensor h = b.attn_in.apply(rms_norm(x, f32(b.attn_norm), cfg.norm_eps));
  at::Tensor q = linear(h, f32(b.wq), base + kLinQ, ctx), k = linear(h, f32(b.wk), base + kLinK, ctx),
             v = linear(h, f32(b.wv), base + kLinV, ctx);
  if (b.bq.defined()) q = q + f32(b.bq), k = k + f32(b.bk), v = v + f32(b.bv);
  q = q.view({B, T, H, hd}), k = k.view({B, T, KV, hd}), v = v.view({B, T, KV, hd});
  if (b.q_norm.defined())
    q = rms_norm(q, f32(b.q_norm), cfg.norm_eps), k = rms_norm(k, f32(b.k_norm), cfg.norm_eps);
  q = apply_rope(q, p.cos, p.sin), k = apply_rope(k, p.cos, p.sin);
  at::Tensor keys = k.transpose(1, 2), vals = v.transpose(1, 2);  // [B, KV, T, hd]
  if (ctx) {
    keys = ctx->kv_cache(l, false, keys);
    vals = ctx->kv_cache(l, true, vals);
  }
  if (cache) {
    cache->k[l].narrow(2, p.pos0, T).copy_(keys);
    cache->v[l].narrow(2, p.pos0, T).copy_(vals);
    keys = cache->k[l].narrow(2, 0, S);
    vals = cache->v[l].narrow(2, 0, S);
  }
  // Query head kv*rep + r attends with KV head kv: broadcast instead of materialising repeated keys.
  at::Tensor qg = q.view({B, T, KV, rep, hd}).permute({0, 2, 3, 1, 4});       // [B, KV, rep, T, hd]
  at::Tensor att = at::matmul(qg, keys.unsqueeze(2).transpose(-1, -2)) * scale;  // [B, KV, rep, T, S]
  if (p.mask.defined()) att = att.masked_fill(p.mask, -std::numeric_limits<float>::infinity());
  att = at::softmax(att, -1);
  at::Tensor o = at::matmul(att, vals.unsqueeze(2));                         // [B, KV, rep, T, hd]
  o = o.permute({0, 3, 1, 2, 4}).reshape({B, T, H * hd});
  x = x + linear(o, f32(b.wo), base + kLinO, ctx);

  h = b.ffn_in.apply(rms_norm(x, f32(b.ffn_norm), cfg.norm_eps));
  at::Tensor g = linear(h, f32(b.w1), base + kLinGate, ctx);
  at::Tensor u = linear(h, f32(b.w3), base + kLinUp, ctx);
  return x + linear(b.down_in.apply(at::silu(g) * u), f32(b.w2), base + kLinDown, ctx);
}

at::Tensor LlamaModel::embed(const at::Tensor& tokens, QuantContext* ctx) const {
  check_tokens(tokens);
  prepare(ctx);
  at::Tensor x = f32(at::embedding(tok_embeddings, tokens));  // [B, T, D]; rows only, whatever the stored dtype
  return ctx ? ctx->embedding(x) : x;
}

at::Tensor LlamaModel::block_forward(int64_t l, const at::Tensor& x, QuantContext* ctx) const {
  CATQ_CHECK(l >= 0 && l < cfg.n_layers, Usage, "llama block_forward: block {} outside 0..{}", l, cfg.n_layers - 1);
  CATQ_CHECK(x.dim() == 3 && x.size(2) == cfg.dim, Data, "llama block_forward: hidden states must be [B, T, {}]",
             cfg.dim);
  prepare(ctx);
  return block_forward(l, x, positions(0, x.size(1), x.device()), nullptr, ctx);
}

at::Tensor LlamaModel::head(const at::Tensor& x, QuantContext* ctx) const {
  prepare(ctx);
  return linear(rms_norm(x, f32(norm), cfg.norm_eps), f32(output), static_cast<int>(cfg.n_layers) * kLinearsPerBlock,
                ctx);
}

void LlamaModel::check_tokens(const at::Tensor& tokens) const {
  CATQ_CHECK(tokens.dim() == 2, Data, "llama forward: tokens must be [batch, time], got {} dims", tokens.dim());
  CATQ_CHECK(tokens.size(1) > 0 && tokens.size(0) > 0, Data, "llama forward: empty token batch");
  auto mm = at::aminmax(tokens);
  int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
  CATQ_CHECK(lo >= 0 && hi < cfg.vocab_size, Data, "llama forward: token id {} is outside the vocabulary (0..{})",
             lo < 0 ? lo : hi, cfg.vocab_size - 1);
}

void LlamaModel::prepare(QuantContext* ctx) const {
  if (infos_.empty()) infos_ = layer_infos();
  if (ctx && std::find(bound_.begin(), bound_.end(), ctx) == bound_.end()) bind(ctx);
}

at::Tensor LlamaModel::forward_impl(const at::Tensor& tokens, KVCache* cache, QuantContext* ctx) const {
  check_tokens(tokens);
  const int64_t B = tokens.size(0), T = tokens.size(1);
  const int64_t pos0 = cache ? cache->pos : 0;
  if (cache) {
    CATQ_CHECK(static_cast<int64_t>(cache->k.size()) == cfg.n_layers && cache->k[0].size(0) == B, Data,
               "llama forward: KV cache was made for another model or batch size");
    CATQ_CHECK(pos0 + T <= cache->max_len, Data,
               "llama forward: position {} exceeds the KV cache length {} (model seq_len {})", pos0 + T,
               cache->max_len, cfg.seq_len);
  }
  at::Tensor x = embed(tokens, ctx);
  const Positions p = positions(pos0, T, tok_embeddings.device());
  for (int64_t l = 0; l < cfg.n_layers; ++l) x = block_forward(l, x, p, cache, ctx);
  at::Tensor logits = head(x, ctx);
  if (cache) cache->pos = p.S;
  return logits;
}

std::vector<std::pair<std::string, at::Tensor>> LlamaModel::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> v;
  v.emplace_back(kLlamaTokenEmbd.gguf_name(), tok_embeddings);
  for (size_t l = 0; l < blocks.size(); ++l)
    for (const LlamaBlockTensor& t : llama_block_tensors())
      if (t.present(cfg)) v.emplace_back(t.gguf_name(static_cast<int64_t>(l)), blocks[l].*t.member);
  v.emplace_back(kLlamaOutputNorm.gguf_name(), norm);
  if (!cfg.tied_head) v.emplace_back(kLlamaOutput.gguf_name(), output);
  return v;
}

int64_t LlamaModel::num_parameters() const {
  auto numel = [](const std::vector<int64_t>& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  };
  int64_t n = numel(kLlamaTokenEmbd.shape(cfg)) + numel(kLlamaOutputNorm.shape(cfg));
  if (!cfg.tied_head) n += numel(kLlamaOutput.shape(cfg));
  for (const LlamaBlockTensor& t : llama_block_tensors())
    if (t.present(cfg)) n += cfg.n_layers * numel(t.shape(cfg));
  return n;
}

void LlamaModel::materialize_block(int64_t l) {
  if (l < 0 || l >= static_cast<int64_t>(deferred.size())) return;
  for (const DeferredTensor& d : deferred[l]) {
    at::Tensor& t = blocks.at(l).*d.member;
    if (!t.defined()) t = d.read();
  }
}

void LlamaModel::to(const at::Device& device) {
  torch::NoGradGuard ng;
  tok_embeddings = tok_embeddings.to(device);
  for (auto& b : blocks) {
    for (const LlamaBlockTensor& t : llama_block_tensors())
      if ((b.*t.member).defined()) b.*t.member = (b.*t.member).to(device);
    for (OnlineTransform* o : {&b.attn_in, &b.ffn_in, &b.down_in})
      o->to(device);
  }
  norm = norm.to(device);
  output = cfg.tied_head ? tok_embeddings : output.to(device);
}

SmallModelThreadGuard::SmallModelThreadGuard(const LlamaModel& m) : before_(at::get_num_threads()) {
  if (before_ > 1 && m.num_parameters() < 20'000'000) {
    at::set_num_threads(1);
    changed_ = true;
  }
}

SmallModelThreadGuard::~SmallModelThreadGuard() {
  if (changed_) at::set_num_threads(before_);
}

at::Tensor rope_permute_hf_to_interleaved(const at::Tensor& w, int64_t n_heads) {
  const int64_t out = w.size(0), in = w.dim() > 1 ? w.size(1) : 1, hd = out / n_heads;
  return w.reshape({n_heads, 2, hd / 2, in}).transpose(1, 2).reshape(w.sizes()).contiguous();
}

at::Tensor rope_permute_interleaved_to_hf(const at::Tensor& w, int64_t n_heads) {
  const int64_t out = w.size(0), in = w.dim() > 1 ? w.size(1) : 1, hd = out / n_heads;
  return w.reshape({n_heads, hd / 2, 2, in}).transpose(1, 2).reshape(w.sizes()).contiguous();
}

}  // namespace catq

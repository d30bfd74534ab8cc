#include "runtime/lean_llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "core/error.h"
#include "io/gguf.h"
#include "quant/ggml_blocks.h"
#include "llm/llama_tensors.h"
#include "runtime/vec_ops.h"

namespace catq {

struct LeanLlama::Source {
  GgufFile file;
  const uint8_t* embd = nullptr;  // token_embd data
  uint32_t embd_type = 0;
  int64_t embd_row_bytes = 0;
};

struct LeanLlama::Layer {
  std::vector<float> attn_norm, ffn_norm, bq, bk, bv, q_norm, k_norm;
  BlockMatrix wq, wk, wv, wo, w1, w2, w3;
  // q/k/v and gate/up stacked into one matrix each where their kernels agree (runtime/block_matvec.h stack_rows):
  // one pass and one thread split per input instead of three or two. The parts are then empty.
  BlockMatrix wqkv, w13;
  bool qkv_fused() const { return wqkv.rows > 0; }
  bool ffn_fused() const { return w13.rows > 0; }
  std::vector<const BlockMatrix*> matrices() const {
    std::vector<const BlockMatrix*> v;
    for (const BlockMatrix* w : {&wq, &wk, &wv, &wqkv, &wo, &w1, &w3, &w13, &w2})
      if (w->rows > 0) v.push_back(w);
    return v;
  }
};

namespace {

const GgufTensorInfo& tensor_of(const GgufFile& g, const std::string& name, const std::vector<int64_t>& shape) {
  const GgufTensorInfo* t = g.find_tensor(name);
  if (!t) fail(ErrorKind::Format, "{}: tensor {} is missing", g.path, name);
  if (t->shape() != shape)
    fail(ErrorKind::Format, "{}: tensor {} has shape {} (torch order) but the metadata implies {}", g.path, name,
         fmt::join(t->shape(), "x"), fmt::join(shape, "x"));
  return *t;
}

BlockMatrix matrix_of(const GgufFile& g, const std::string& name, int64_t rows, int64_t cols) {
  const GgufTensorInfo& t = tensor_of(g, name, {rows, cols});
  return block_matrix(t.type, rows, cols, g.tensor_data(t), t.nbytes, g.path + ": " + name);
}

std::vector<float> vector_of(const GgufFile& g, const std::string& name, int64_t n) {
  const GgufTensorInfo& t = tensor_of(g, name, {n});
  BlockMatrix m = block_matrix(t.type, 1, n, g.tensor_data(t), t.nbytes, g.path + ": " + name);
  return std::move(m.f32);
}

void add_into(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace

LeanLlama::LeanLlama(const std::string& path, const LeanLlamaOptions& opt)
    : isa_(block_matmul_isa(static_cast<int>(opt.isa) <= static_cast<int>(best_isa()) ? opt.isa : best_isa())),
      vec_isa_(static_cast<int>(opt.isa) <= static_cast<int>(best_isa()) ? opt.isa : best_isa()),
      pool_(opt.threads > 0 ? opt.threads : default_thread_count()) {
  src_ = std::make_unique<Source>();
  src_->file = read_gguf(path);
  const GgufFile& g = src_->file;
  cfg_ = gguf_llama_config(g);
  neox_ = llama_arch_traits(cfg_.arch).gguf_rope_hf_order;
  const int64_t D = cfg_.dim, Q = cfg_.q_dim(), K = cfg_.kv_dim(), H = cfg_.hidden_dim, V = cfg_.vocab_size;
  const int64_t hd = cfg_.hd();
  if (hd % 2 != 0) fail(ErrorKind::Unsupported, "{}: odd head size {} (RoPE needs pairs)", path, hd);

  const GgufTensorInfo& e = tensor_of(g, kLlamaTokenEmbd.gguf_name(), {V, D});
  src_->embd = g.tensor_data(e);
  src_->embd_type = e.type;
  const GgmlTypeTraits* embd_tr = ggml_type_traits(e.type);
  if (!embd_tr || D % embd_tr->block != 0)
    fail(ErrorKind::Unsupported, "{}: token_embd.weight of ggml type {} cannot be decoded by row", path, e.type);
  src_->embd_row_bytes = D / embd_tr->block * embd_tr->bytes;
  if (e.type != GGML_F32 && e.type != GGML_F16 && e.type != GGML_BF16 && !embd_tr->dequantize)
    fail(ErrorKind::Unsupported, "{}: token_embd.weight: ggml type {} cannot be decoded by catq", path,
         embd_tr->name);

  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    auto L = std::make_unique<Layer>();
    auto nm = [&](const char* base, const char* suffix = "weight") { return fmt::format("blk.{}.{}.{}", l, base, suffix); };
    L->attn_norm = vector_of(g, nm("attn_norm"), D);
    L->ffn_norm = vector_of(g, nm("ffn_norm"), D);
    L->wq = matrix_of(g, nm("attn_q"), Q, D);
    L->wk = matrix_of(g, nm("attn_k"), K, D);
    L->wv = matrix_of(g, nm("attn_v"), K, D);
    L->wo = matrix_of(g, nm("attn_output"), D, Q);
    L->w1 = matrix_of(g, nm("ffn_gate"), H, D);
    L->w3 = matrix_of(g, nm("ffn_up"), H, D);
    L->w2 = matrix_of(g, nm("ffn_down"), D, H);
    if (cfg_.qkv_bias()) {
      L->bq = vector_of(g, nm("attn_q", "bias"), Q);
      L->bk = vector_of(g, nm("attn_k", "bias"), K);
      L->bv = vector_of(g, nm("attn_v", "bias"), K);
    }
    if (cfg_.qk_norm()) {
      L->q_norm = vector_of(g, nm("attn_q_norm"), hd);
      L->k_norm = vector_of(g, nm("attn_k_norm"), hd);
    }
    if (stack_rows({&L->wq, &L->wk, &L->wv}, L->wqkv)) L->wq = L->wk = L->wv = BlockMatrix{};
    if (stack_rows({&L->w1, &L->w3}, L->w13)) L->w1 = L->w3 = BlockMatrix{};
    layers_.push_back(std::move(L));
  }
  norm_ = vector_of(g, kLlamaOutputNorm.gguf_name(), D);
  output_ = cfg_.tied_head ? matrix_of(g, kLlamaTokenEmbd.gguf_name(), V, D) : matrix_of(g, kLlamaOutput.gguf_name(), V, D);

  inv_freq_.resize(static_cast<size_t>(hd / 2));
  const std::vector<double> f = cfg_.rope_freq_factors();
  for (int64_t i = 0; i < hd / 2; ++i) {
    inv_freq_[i] = std::pow(cfg_.rope_theta, -static_cast<double>(2 * i) / static_cast<double>(hd));
    if (!f.empty()) inv_freq_[i] /= f[static_cast<size_t>(i)];
  }
  max_ctx_ = opt.max_context > 0 ? opt.max_context : std::min<int64_t>(cfg_.seq_len > 0 ? cfg_.seq_len : 4096, 4096);
  k_cache_.assign(static_cast<size_t>(cfg_.n_layers * max_ctx_ * K), 0.0f);
  v_cache_.assign(static_cast<size_t>(cfg_.n_layers * max_ctx_ * K), 0.0f);
}

LeanLlama::~LeanLlama() = default;

void LeanLlama::embed_row(int32_t token, float* out) const {
  decode_ggml_values(src_->embd_type, src_->embd + static_cast<int64_t>(token) * src_->embd_row_bytes, cfg_.dim, out);
}

void LeanLlama::linear(const BlockMatrix& w, const float* x, const ActQ8& xq, int64_t T, float* y) {
  // Row groups of 16 split across the pool.
  pool_.parallel_for(w.row_groups(), [&](int64_t g0, int64_t g1) { block_matmul(w, x, xq, T, y, w.rows, g0, g1, isa_); });
}

void LeanLlama::rms_norm(const float* x, const std::vector<float>& g, int64_t T, int64_t n, float* y) {
  pool_.parallel_for(T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) vec_rms_norm(x + t * n, g.data(), n, cfg_.norm_eps, y + t * n, vec_isa_);
  });
}

void LeanLlama::attention(int64_t l, int64_t T) {
  const int64_t Hn = cfg_.n_heads, KV = cfg_.n_kv_heads, hd = cfg_.hd(), Qd = cfg_.q_dim(), Kd = cfg_.kv_dim();
  const int64_t rep = Hn / KV;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const float* kc = k_cache_.data() + l * max_ctx_ * Kd;
  const float* vc = v_cache_.data() + l * max_ctx_ * Kd;
  const int64_t n = Hn * T;
  scores_.resize(static_cast<size_t>(pool_.size() * max_ctx_));
  // (head, token) pairs dealt round-robin across the pool (later tokens attend to more keys, so contiguous ranges would
  // be unbalanced); each pair's output is computed by one thread.
  pool_.run([&](int th, int nth) {
    float* sc = scores_.data() + th * max_ctx_;
    for (int64_t i = th; i < n; i += nth) {
      const int64_t h = i % Hn, t = i / Hn, p = pos_ + t, kvh = h / rep;
      const int64_t first = cfg_.sliding_window > 0 ? std::max<int64_t>(0, p - cfg_.sliding_window + 1) : 0;
      const float* q = q_.data() + t * Qd + h * hd;
      for (int64_t s = first; s <= p; ++s) sc[s] = vec_dot(q, kc + s * Kd + kvh * hd, hd, vec_isa_) * scale;
      vec_softmax(sc + first, p + 1 - first, vec_isa_);
      float* o = o_.data() + t * Qd + h * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t s = first; s <= p; ++s) vec_axpy(o, sc[s], vc + s * Kd + kvh * hd, hd, vec_isa_);
    }
  });
}

void LeanLlama::eval(const int32_t* tokens, int64_t T, std::vector<float>* logits, bool all_logits) {
  if (T <= 0) return;
  const int64_t D = cfg_.dim, Qd = cfg_.q_dim(), Kd = cfg_.kv_dim(), Hd = cfg_.hidden_dim, V = cfg_.vocab_size;
  const int64_t hd = cfg_.hd(), half = hd / 2;
  if (pos_ + T > max_ctx_)
    fail(ErrorKind::Usage, "lean runtime: {} tokens at position {} exceed the context of {}", T, pos_, max_ctx_);
  for (int64_t t = 0; t < T; ++t)
    if (tokens[t] < 0 || tokens[t] >= V)
      fail(ErrorKind::Usage, "lean runtime: token {} outside the vocabulary of {}", tokens[t], V);
  auto grow = [](std::vector<float>& b, int64_t n) {
    if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  };
  grow(x_, T * D), grow(h_, T * std::max(D, Hd)), grow(q_, T * Qd), grow(k_, T * Kd), grow(v_, T * Kd);
  grow(o_, T * Qd), grow(att_, T * D), grow(g_, T * Hd), grow(u_, T * Hd), grow(cos_, T * half), grow(sin_, T * half);
  grow(fused_, T * std::max(Qd + 2 * Kd, 2 * Hd));

  for (int64_t t = 0; t < T; ++t) {
    embed_row(tokens[t], x_.data() + t * D);
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(pos_ + t) * inv_freq_[static_cast<size_t>(i)];
      cos_[t * half + i] = static_cast<float>(std::cos(a));
      sin_[t * half + i] = static_cast<float>(std::sin(a));
    }
  }
  auto rope = [&](float* v, int64_t t) {
    const float* c = cos_.data() + t * half;
    const float* s = sin_.data() + t * half;
    for (int64_t i = 0; i < half; ++i) {
      float& a = neox_ ? v[i] : v[2 * i];
      float& b = neox_ ? v[i + half] : v[2 * i + 1];
      const float x0 = a, x1 = b;
      a = x0 * c[i] - x1 * s[i];
      b = x0 * s[i] + x1 * c[i];
    }
  };
  // xq_ holds the Q8 activations of one input (shared by q/k/v and by gate/up), quantized when a first quantized
  // matrix needs them.
  const float* quantized_input = nullptr;
  auto quantize = [&](const BlockMatrix& w, const float* x, int64_t cols) {
    if (w.quantized() && quantized_input != x) quantize_act_q8(x, T, cols, xq_, vec_isa_, &pool_), quantized_input = x;
  };

  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const Layer& L = *layers_[static_cast<size_t>(l)];
    rms_norm(x_.data(), L.attn_norm, T, D, h_.data());
    quantized_input = nullptr;  // h_ was rewritten
    if (L.qkv_fused()) {
      const int64_t n = Qd + 2 * Kd;
      quantize(L.wqkv, h_.data(), D);
      linear(L.wqkv, h_.data(), xq_, T, fused_.data());
      for (int64_t t = 0; t < T; ++t) {
        const float* r = fused_.data() + t * n;
        std::memcpy(q_.data() + t * Qd, r, static_cast<size_t>(Qd) * 4);
        std::memcpy(k_.data() + t * Kd, r + Qd, static_cast<size_t>(Kd) * 4);
        std::memcpy(v_.data() + t * Kd, r + Qd + Kd, static_cast<size_t>(Kd) * 4);
      }
    } else {
      quantize(L.wq, h_.data(), D);
      linear(L.wq, h_.data(), xq_, T, q_.data());
      quantize(L.wk, h_.data(), D);
      linear(L.wk, h_.data(), xq_, T, k_.data());
      quantize(L.wv, h_.data(), D);
      linear(L.wv, h_.data(), xq_, T, v_.data());
    }
    for (int64_t t = 0; t < T; ++t) {
      float* q = q_.data() + t * Qd;
      float* k = k_.data() + t * Kd;
      if (!L.bq.empty()) add_into(q, L.bq.data(), Qd), add_into(k, L.bk.data(), Kd), add_into(v_.data() + t * Kd, L.bv.data(), Kd);
      for (int64_t h = 0; h < cfg_.n_heads; ++h) {
        if (!L.q_norm.empty()) vec_rms_norm(q + h * hd, L.q_norm.data(), hd, cfg_.norm_eps, q + h * hd, vec_isa_);
        rope(q + h * hd, t);
      }
      for (int64_t h = 0; h < cfg_.n_kv_heads; ++h) {
        if (!L.k_norm.empty()) vec_rms_norm(k + h * hd, L.k_norm.data(), hd, cfg_.norm_eps, k + h * hd, vec_isa_);
        rope(k + h * hd, t);
      }
      const int64_t at = (l * max_ctx_ + pos_ + t) * Kd;
      std::memcpy(k_cache_.data() + at, k, static_cast<size_t>(Kd) * 4);
      std::memcpy(v_cache_.data() + at, v_.data() + t * Kd, static_cast<size_t>(Kd) * 4);
    }
    attention(l, T);
    quantize(L.wo, o_.data(), Qd);
    linear(L.wo, o_.data(), xq_, T, att_.data());
    add_into(x_.data(), att_.data(), T * D);

    rms_norm(x_.data(), L.ffn_norm, T, D, h_.data());
    quantized_input = nullptr;
    if (L.ffn_fused()) {
      // Token t's gate and up rows side by side: silu(gate)·up in place, then the gate half gathered for down.
      quantize(L.w13, h_.data(), D);
      linear(L.w13, h_.data(), xq_, T, fused_.data());
      pool_.parallel_for(T, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          float* r = fused_.data() + t * 2 * Hd;
          vec_silu_mul(r, r + Hd, Hd, vec_isa_);
          std::memcpy(g_.data() + t * Hd, r, static_cast<size_t>(Hd) * 4);
        }
      });
    } else {
      quantize(L.w1, h_.data(), D);
      linear(L.w1, h_.data(), xq_, T, g_.data());
      quantize(L.w3, h_.data(), D);
      linear(L.w3, h_.data(), xq_, T, u_.data());
      pool_.parallel_for(T, [&](int64_t t0, int64_t t1) {
        vec_silu_mul(g_.data() + t0 * Hd, u_.data() + t0 * Hd, (t1 - t0) * Hd, vec_isa_);
      });
    }
    quantize(L.w2, g_.data(), Hd);
    linear(L.w2, g_.data(), xq_, T, att_.data());
    add_into(x_.data(), att_.data(), T * D);
  }
  pos_ += T;
  if (!logits) return;
  const int64_t first = all_logits ? 0 : T - 1, n = T - first;
  rms_norm(x_.data() + first * D, norm_, n, D, h_.data());
  if (output_.quantized()) quantize_act_q8(h_.data(), n, D, xq_, vec_isa_, &pool_);
  logits->resize(static_cast<size_t>(n * V));
  pool_.parallel_for(output_.row_groups(),
                     [&](int64_t g0, int64_t g1) { block_matmul(output_, h_.data(), xq_, n, logits->data(), V, g0, g1, isa_); });
}

std::string LeanLlama::describe() const {
  std::map<std::string, int> n;
  auto add = [&](const BlockMatrix& w, int linears) {
    const GgmlTypeTraits* tr = ggml_type_traits(w.source_type);
    const std::string src = tr ? tr->name : "?";
    n[w.quantized() ? std::string(to_string(w.kernel)) : src + "->f32"] += linears;
  };
  for (const auto& L : layers_)
    for (const BlockMatrix* w : L->matrices()) add(*w, w == &L->wqkv ? 3 : w == &L->w13 ? 2 : 1);
  add(output_, 1);
  std::string s;
  for (const auto& [k, v] : n) s += fmt::format("{}{} x {}", s.empty() ? "" : ", ", k, v);
  return s;
}

uint64_t LeanLlama::weight_bytes() const {
  uint64_t b = output_.bytes();
  for (const auto& L : layers_)
    for (const BlockMatrix* w : L->matrices()) b += w->bytes();
  return b;
}

}  // namespace catq

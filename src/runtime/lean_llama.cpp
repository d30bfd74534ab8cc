#include "runtime/lean_llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "core/error.h"
#include "io/catq_file.h"
#include "io/gguf.h"
#include "quant/ggml_blocks.h"
#include "llm/llama_tensors.h"
#include "runtime/vec_ops.h"

namespace catq {

struct LeanLlama::Source {
  GgufFile file;                  // GGUF
  const uint8_t* embd = nullptr;  // token_embd data
  uint32_t embd_type = 0;
  int64_t embd_row_bytes = 0;
  std::vector<float> embd_f32;    // .catq: the FP token embeddings, V × D
};

// One linear: GGUF blocks or fp32 (BlockMatrix), or catq's integer codes with quantized activations (`ints`).
struct LeanLlama::Linear {
  BlockMatrix m;
  std::shared_ptr<const IntLinear> ints;
  int64_t rows() const { return ints ? ints->weights.w.rows : m.rows; }
  int64_t row_groups() const { return (rows() + 15) / 16; }
  bool empty() const { return rows() == 0; }
  bool q8_input() const { return !ints && m.quantized(); }  // reads ActQ8 activations
  uint64_t bytes() const {
    if (!ints) return m.bytes();
    const IntWeights& w = ints->weights;
    return w.w.q.size() + w.rows16.size() + 4 * (w.w.scale.size() + w.w.zero.size());
  }
  std::string kernel() const;
};

struct LeanLlama::Layer {
  std::vector<float> attn_norm, ffn_norm, bq, bk, bv, q_norm, k_norm;
  Linear wq, wk, wv, wo, w1, w2, w3;
  // q/k/v and gate/up stacked into one matrix each where their kernels agree (runtime/block_matvec.h stack_rows):
  // one pass and one thread split per input instead of three or two. The parts are then empty.
  Linear wqkv, w13;
  OnlineTransform attn_in, ffn_in, down_in;  // .catq: online transforms of the inputs (x ← T x)
  bool qkv_fused() const { return !wqkv.empty(); }
  bool ffn_fused() const { return !w13.empty(); }
  std::vector<const Linear*> matrices() const {
    std::vector<const Linear*> v;
    for (const Linear* w : {&wq, &wk, &wv, &wqkv, &wo, &w1, &w3, &w13, &w2})
      if (!w->empty()) v.push_back(w);
    return v;
  }
  void stack() {
    if (!wq.ints && !wk.ints && !wv.ints && stack_rows({&wq.m, &wk.m, &wv.m}, wqkv.m)) wq = wk = wv = Linear{};
    if (!w1.ints && !w3.ints && stack_rows({&w1.m, &w3.m}, w13.m)) w1 = w3 = Linear{};
  }
};

std::string LeanLlama::Linear::kernel() const {
  if (ints && ints->kind == IntLinear::Kind::WeightOnly)
    return fmt::format("W{}A16 packed{}", ints->weight_bits, ints->int16_activations() ? " (int16 GEMV)" : "");
  if (ints) return fmt::format("W{}A{} int", ints->weight_bits, ints->act_bits);
  if (m.quantized()) return to_string(m.kernel);
  if (m.source_type == GGML_F32) return "f32";
  const GgmlTypeTraits* tr = ggml_type_traits(m.source_type);
  return (tr ? std::string(tr->name) : std::string("?")) + "->f32";
}

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
  if (is_catq_file(path)) load_catq(path);
  else load_gguf(path);
  finish_load(opt);
}

void LeanLlama::load_gguf(const std::string& path) {
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
    L->wq.m = matrix_of(g, nm("attn_q"), Q, D);
    L->wk.m = matrix_of(g, nm("attn_k"), K, D);
    L->wv.m = matrix_of(g, nm("attn_v"), K, D);
    L->wo.m = matrix_of(g, nm("attn_output"), D, Q);
    L->w1.m = matrix_of(g, nm("ffn_gate"), H, D);
    L->w3.m = matrix_of(g, nm("ffn_up"), H, D);
    L->w2.m = matrix_of(g, nm("ffn_down"), D, H);
    if (cfg_.qkv_bias()) {
      L->bq = vector_of(g, nm("attn_q", "bias"), Q);
      L->bk = vector_of(g, nm("attn_k", "bias"), K);
      L->bv = vector_of(g, nm("attn_v", "bias"), K);
    }
    if (cfg_.qk_norm()) {
      L->q_norm = vector_of(g, nm("attn_q_norm"), hd);
      L->k_norm = vector_of(g, nm("attn_k_norm"), hd);
    }
    L->stack();
    layers_.push_back(std::move(L));
  }
  norm_ = vector_of(g, kLlamaOutputNorm.gguf_name(), D);
  output_ = std::make_unique<Linear>();
  output_->m = cfg_.tied_head ? matrix_of(g, kLlamaTokenEmbd.gguf_name(), V, D) : matrix_of(g, kLlamaOutput.gguf_name(), V, D);
}

namespace {
std::vector<float> floats(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kCPU, at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}
BlockMatrix f32_matrix(const at::Tensor& w) {
  const at::Tensor c = w.detach().to(at::kCPU, at::kFloat).contiguous();
  return block_matrix(GGML_F32, c.size(0), c.size(1), reinterpret_cast<const uint8_t*>(c.data_ptr<float>()),
                      static_cast<uint64_t>(c.numel()) * 4, "f32");
}
}  // namespace

void LeanLlama::load_catq(const std::string& path) {
  QuantizedLlama q = read_catq_llm(path);
  const LlamaModel& m = q.model;
  const SimQuant& sq = *q.sq;
  const QuantConfig& qc = sq.config();
  cfg_ = m.cfg;
  neox_ = false;  // catq's own q/k order: interleaved RoPE pairs for every architecture
  if (cfg_.hd() % 2 != 0) fail(ErrorKind::Unsupported, "{}: odd head size {} (RoPE needs pairs)", path, cfg_.hd());
  CATQ_CHECK(!qc.kv_cache.enabled, Unsupported, "{}: the lean runtime does not quantize the KV cache ({}); run it "
             "with --runtime int", path, qc.kv_cache.str());
  CATQ_CHECK(!qc.embedding.enabled, Unsupported, "{}: the lean runtime does not quantize token embeddings ({}); run "
             "it with --runtime int", path, qc.embedding.str());
  src_->embd_f32 = floats(m.tok_embeddings);
  // Each linear: the integer GEMM when its input is quantized (prepare_int_linear: the same codes and activation
  // quantizer as the simulation), else its weight as the simulation sees it (dequantized codes, or FP) in fp32.
  auto linear_of = [&](const LayerInfo& li) {
    Linear lin;
    const SimQuant::Layer& sl = sq.layer(li.name);
    const at::Tensor& w = m.layer_weight(li.index);
    if (sl.input_spec.enabled && sl.input_spec.bits <= 8) {
      std::string why;
      std::unique_ptr<IntLinear> il = prepare_int_linear(sl, w, &why);
      if (!il || il->kind != IntLinear::Kind::Integer)
        fail(ErrorKind::Unsupported, "{}: layer '{}' quantizes its input ({}) but has no integer kernel here: {}", path,
             li.name, sl.input_spec.str(), il ? "its weights are not integer codes" : why);
      lin.ints = std::move(il);
      return lin;
    }
    if (sl.weight_spec.enabled) {
      // Weight-only: the codes stay packed (runtime/packed.h); anything the kernels cannot run (codebooks, odd
      // groups) runs dequantized in fp32 as before.
      std::string why;
      std::unique_ptr<IntLinear> il = prepare_int_linear(sl, w, &why);
      if (il && il->kind == IntLinear::Kind::WeightOnly) {
        lin.ints = std::move(il);
        return lin;
      }
    }
    lin.m = f32_matrix(sl.weight_spec.enabled && sl.fixed_weight.defined() ? sl.fixed_weight : w);
    return lin;
  };
  const std::vector<LayerInfo> infos = m.layer_infos();
  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const LlamaBlock& b = m.blocks[static_cast<size_t>(l)];
    auto L = std::make_unique<Layer>();
    L->attn_norm = floats(b.attn_norm);
    L->ffn_norm = floats(b.ffn_norm);
    Linear* lins[kLinearsPerBlock] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w3, &L->w2};
    static_assert(kLinQ == 0 && kLinK == 1 && kLinV == 2 && kLinO == 3 && kLinGate == 4 && kLinUp == 5 && kLinDown == 6);
    for (int j = 0; j < kLinearsPerBlock; ++j) *lins[j] = linear_of(infos[static_cast<size_t>(l * kLinearsPerBlock + j)]);
    if (cfg_.qkv_bias()) L->bq = floats(b.bq), L->bk = floats(b.bk), L->bv = floats(b.bv);
    if (cfg_.qk_norm()) L->q_norm = floats(b.q_norm), L->k_norm = floats(b.k_norm);
    L->attn_in = b.attn_in, L->ffn_in = b.ffn_in, L->down_in = b.down_in;
    L->stack();
    layers_.push_back(std::move(L));
  }
  norm_ = floats(m.norm);
  output_ = std::make_unique<Linear>(linear_of(infos.back()));
}

void LeanLlama::finish_load(const LeanLlamaOptions& opt) {
  const int64_t hd = cfg_.hd(), K = cfg_.kv_dim();
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
  if (!src_->embd_f32.empty()) {
    std::memcpy(out, src_->embd_f32.data() + static_cast<int64_t>(token) * cfg_.dim, static_cast<size_t>(cfg_.dim) * 4);
    return;
  }
  decode_ggml_values(src_->embd_type, src_->embd + static_cast<int64_t>(token) * src_->embd_row_bytes, cfg_.dim, out);
}

void LeanLlama::linear(const Linear& w, const float* x, const ActQ8& xq, int64_t T, float* y) {
  // Row groups of 16 split across the pool.
  if (w.ints && w.ints->kind == IntLinear::Kind::WeightOnly) {
    linear_weight_only(*w.ints, x, T, y);
    return;
  }
  if (w.ints) {  // the activations quantized as the simulation does (per token, or the calibrated params)
    const IntWeights& iw = w.ints->weights;
    quantize_rows(x, T, w.ints->act, iw, rows_, vec_isa_);
    pool_.parallel_for(w.row_groups(), [&](int64_t g0, int64_t g1) {
      gemm_int_rows(iw, rows_, y, 16 * g0, 16 * g1, isa_ == KernelIsa::Avx512 ? isa_ : vec_isa_);
    });
    return;
  }
  pool_.parallel_for(w.row_groups(), [&](int64_t g0, int64_t g1) { block_matmul(w.m, x, xq, T, y, w.m.rows, g0, g1, isa_); });
}

// Weight-only layers (W8A16 / W4A16 / W2A16 .catq): decode runs the packed GEMV on each thread's rows (the codes are
// read once per token at 4 or 2 bits instead of 32). A prompt of more tokens is compute-bound: the codes are
// dequantized once for the call — (q − z)·s, the simulation's dequantization, so the same floats as the fp32 path —
// into a scratch matrix (split across the pool) and multiplied by libtorch's fp32 GEMM, as the integer runtime and
// llama.cpp do for prompt processing. Every decode row is computed whole by one thread (bit-identical across thread
// counts); the GEMM's blocking is libtorch's.
void LeanLlama::linear_weight_only(const IntLinear& il, const float* x, int64_t T, float* y) {
  const PackedWeights& pw = il.weights.w;
  const int64_t rows = pw.rows, cols = pw.cols, groups = (rows + 15) / 16;
  constexpr int64_t kGemvTokens = 4;
  if (T <= kGemvTokens) {
    const bool i16 = il.int16_activations() && isa_ == KernelIsa::Avx512;
    const KernelIsa gisa = isa_ == KernelIsa::Avx512 ? best_isa() : vec_isa_;
    pool_.parallel_for(groups, [&](int64_t g0, int64_t g1) {
      const int64_t r0 = 16 * g0, r1 = std::min(rows, 16 * g1);
      for (int64_t t = 0; t < T; ++t) {
        if (i16) gemv_packed_i16_rows(pw, x + t * cols, y + t * rows, r0, r1, gisa);
        else gemv_packed_rows(pw, x + t * cols, y + t * rows, r0, r1, gisa);
      }
    });
    return;
  }
  std::vector<float> wf(static_cast<size_t>(rows * cols));  // freed after the call
  pool_.parallel_for(groups, [&](int64_t g0, int64_t g1) { dequantize_rows(pw, wf.data(), 16 * g0, std::min(rows, 16 * g1)); });
  at::Tensor yt = at::from_blob(y, {T, rows}, at::kFloat);
  at::mm_out(yt, at::from_blob(const_cast<float*>(x), {T, cols}, at::kFloat),
             at::from_blob(wf.data(), {rows, cols}, at::kFloat).t());
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
  auto quantize = [&](const Linear& w, const float* x, int64_t cols) {
    if (w.q8_input() && quantized_input != x) quantize_act_q8(x, T, cols, xq_, vec_isa_, &pool_), quantized_input = x;
  };
  // x ← T x for a .catq's online transform of the rows [T, n] of buf (through libtorch; identity when undefined).
  auto transform = [&](const OnlineTransform& tr, float* buf, int64_t n) {
    if (!tr.defined()) return;
    const at::Tensor x = at::from_blob(buf, {T, n}, at::kFloat);
    const at::Tensor y = tr.apply(x).contiguous();
    std::memcpy(buf, y.data_ptr<float>(), static_cast<size_t>(T * n) * 4);
  };

  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    const Layer& L = *layers_[static_cast<size_t>(l)];
    rms_norm(x_.data(), L.attn_norm, T, D, h_.data());
    transform(L.attn_in, h_.data(), D);
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
    transform(L.ffn_in, h_.data(), D);
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
    transform(L.down_in, g_.data(), Hd);
    quantize(L.w2, g_.data(), Hd);
    linear(L.w2, g_.data(), xq_, T, att_.data());
    add_into(x_.data(), att_.data(), T * D);
  }
  pos_ += T;
  if (!logits) return;
  const int64_t first = all_logits ? 0 : T - 1, n = T - first;
  rms_norm(x_.data() + first * D, norm_, n, D, h_.data());
  if (output_->q8_input()) quantize_act_q8(h_.data(), n, D, xq_, vec_isa_, &pool_);
  logits->resize(static_cast<size_t>(n * V));
  linear(*output_, h_.data(), xq_, n, logits->data());
}

std::string LeanLlama::describe() const {
  std::map<std::string, int> n;
  auto add = [&](const Linear& w, int linears) { n[w.kernel()] += linears; };
  for (const auto& L : layers_)
    for (const Linear* w : L->matrices()) add(*w, w == &L->wqkv ? 3 : w == &L->w13 ? 2 : 1);
  add(*output_, 1);
  std::string s;
  for (const auto& [k, v] : n) s += fmt::format("{}{} x {}", s.empty() ? "" : ", ", k, v);
  return s;
}

uint64_t LeanLlama::weight_bytes() const {
  uint64_t b = output_->bytes();
  for (const auto& L : layers_)
    for (const Linear* w : L->matrices()) b += w->bytes();
  return b;
}

}  // namespace catq

#include "io/llama2c.h"

#include <cstring>

#include "core/error.h"
#include "core/file_util.h"

namespace catq {

LlamaModel read_llama2c(const std::string& path) {
  const auto bytes = read_file_bytes(path);
  ByteReader r(bytes.data(), bytes.size(), path);
  int32_t h[7];
  for (int i = 0; i < 7; ++i) h[i] = r.read<int32_t>("llama2.c header");
  LlamaConfig c;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.tied_head = h[5] > 0;
  c.vocab_size = h[5] > 0 ? h[5] : -static_cast<int64_t>(h[5]);
  c.seq_len = h[6];
  c.rope_theta = 10000.0;
  c.norm_eps = 1e-5;
  c.validate(path + " (llama2.c header)");

  const int64_t D = c.dim, L = c.n_layers, V = c.vocab_size, H = c.hidden_dim, hs = c.hd(), K = c.kv_dim();
  // Expected file size from the header (all products bounded by validate(), so no overflow).
  struct Arr { const char* name; std::vector<int64_t> shape; };
  std::vector<Arr> arrs = {{"token_embedding", {V, D}}, {"rms_att", {L, D}},  {"wq", {L, D, D}},
                           {"wk", {L, K, D}},            {"wv", {L, K, D}},     {"wo", {L, D, D}},
                           {"rms_ffn", {L, D}},          {"w1", {L, H, D}},     {"w2", {L, D, H}},
                           {"w3", {L, H, D}},            {"rms_final", {D}},    {"freq_cis_real", {c.seq_len, hs / 2}},
                           {"freq_cis_imag", {c.seq_len, hs / 2}}};
  if (!c.tied_head) arrs.push_back({"wcls", {V, D}});
  uint64_t expected = 28;
  for (auto& a : arrs) expected += 4 * checked_numel(a.shape, path, a.name);
  if (expected != bytes.size())
    fail(ErrorKind::Format,
         "{}: llama2.c header ({}) implies a file of {} bytes{}, but the file has {} bytes (truncated, or not a "
         "legacy llama2.c checkpoint)",
         path, c.summary(), expected, c.tied_head ? "" : " including the untied classifier", bytes.size());

  auto take = [&](const std::vector<int64_t>& shape, const char* what) {
    int64_t n = static_cast<int64_t>(checked_numel(shape, path, what));
    const uint8_t* p = r.take(static_cast<size_t>(n) * 4, what);
    at::Tensor t = at::empty(shape, at::kFloat);
    std::memcpy(t.data_ptr<float>(), p, static_cast<size_t>(n) * 4);
    return t;
  };
  LlamaModel m;
  m.cfg = c;
  m.tok_embeddings = take({V, D}, "token_embedding");
  m.blocks.resize(L);
  at::Tensor rms_att = take({L, D}, "rms_att"), wq = take({L, D, D}, "wq"), wk = take({L, K, D}, "wk"),
             wv = take({L, K, D}, "wv"), wo = take({L, D, D}, "wo"), rms_ffn = take({L, D}, "rms_ffn"),
             w1 = take({L, H, D}, "w1"), w2 = take({L, D, H}, "w2"), w3 = take({L, H, D}, "w3");
  for (int64_t l = 0; l < L; ++l) {
    auto& b = m.blocks[l];
    b.attn_norm = rms_att[l].clone();
    b.wq = wq[l].clone();
    b.wk = wk[l].clone();
    b.wv = wv[l].clone();
    b.wo = wo[l].clone();
    b.ffn_norm = rms_ffn[l].clone();
    b.w1 = w1[l].clone();
    b.w2 = w2[l].clone();
    b.w3 = w3[l].clone();
  }
  m.norm = take({D}, "rms_final");
  r.skip(static_cast<size_t>(c.seq_len * hs / 2) * 4 * 2, "RoPE tables");
  m.output = c.tied_head ? m.tok_embeddings : take({V, D}, "wcls");
  m.check_shapes(path);
  return m;
}

void write_llama2c(const LlamaModel& m, const std::string& path) {
  const auto& c = m.cfg;
  CATQ_CHECK(c.hd() * c.n_heads == c.dim, Unsupported,
             "{}: llama2.c checkpoints need head_dim * n_heads == dim (got {} * {} != {})", path, c.hd(), c.n_heads,
             c.dim);
  std::string out;
  auto put_i = [&](int64_t v) {
    int32_t x = static_cast<int32_t>(v);
    out.append(reinterpret_cast<const char*>(&x), 4);
  };
  auto put_t = [&](const at::Tensor& t) {
    at::Tensor f = t.detach().to(at::kCPU, at::kFloat).contiguous();
    out.append(reinterpret_cast<const char*>(f.data_ptr<float>()), f.numel() * 4);
  };
  put_i(c.dim);
  put_i(c.hidden_dim);
  put_i(c.n_layers);
  put_i(c.n_heads);
  put_i(c.n_kv_heads);
  put_i(c.tied_head ? c.vocab_size : -c.vocab_size);
  put_i(c.seq_len);
  put_t(m.tok_embeddings);
  auto each = [&](auto field) {
    for (const auto& b : m.blocks) put_t(b.*field);
  };
  each(&LlamaBlock::attn_norm);
  each(&LlamaBlock::wq);
  each(&LlamaBlock::wk);
  each(&LlamaBlock::wv);
  each(&LlamaBlock::wo);
  each(&LlamaBlock::ffn_norm);
  each(&LlamaBlock::w1);
  each(&LlamaBlock::w2);
  each(&LlamaBlock::w3);
  put_t(m.norm);
  // Legacy RoPE tables (llama2.c float32 formula), kept so other readers accept the file.
  const int64_t hs = c.hd();
  for (int part = 0; part < 2; ++part)
    for (int64_t p = 0; p < c.seq_len; ++p)
      for (int64_t i = 0; i < hs / 2; ++i) {
        float freq = 1.0f / std::pow(static_cast<float>(c.rope_theta), static_cast<float>(2 * i) / hs);
        float v = part == 0 ? std::cos(p * freq) : std::sin(p * freq);
        out.append(reinterpret_cast<const char*>(&v), 4);
      }
  if (!c.tied_head) put_t(m.output);
  write_file_atomic(path, out);
}

}  // namespace catq

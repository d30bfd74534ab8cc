// Llama-family models in GGUF: read_gguf_llama (general.architecture llama / qwen2 / qwen3, its "{arch}.*" metadata ->
// LlamaConfig, tensors by the tensor table of llm/llama_tensors.h, the tokenizer from tokenizer.ggml.*) and
// write_gguf_llama (the same, written). Qwen2/Qwen3 files keep q/k rows in Hugging Face's rotate-half order (llama.cpp
// runs them with NEOX RoPE), so they are permuted to catq's interleaved order on read and back on write. Llama 3.1
// RoPE scaling is the F32 tensor rope_freqs.weight [hd/2] of per-frequency divisors (what llama.cpp reads).
#include "io/gguf.h"

#include <cctype>
#include <cstring>

#include "core/error.h"
#include "core/file_util.h"
#include "quant/ggml_blocks.h"
#include "llm/llama_tensors.h"

namespace catq {

namespace {
const char* const kRopeFreqs = "rope_freqs.weight";
}  // namespace

LlamaConfig gguf_llama_config(const GgufFile& g) {
  const std::string& path = g.path;
  const GgufValue* arch = g.find("general.architecture");
  if (!arch || arch->type != GgufType::String)
    fail(ErrorKind::Format, "{}: metadata general.architecture is missing (required by GGUF)", path);
  const LlamaArchTraits* traits = llama_arch_from_gguf(arch->s);
  if (!traits)
    fail(ErrorKind::Unsupported, "{}: GGUF general.architecture \"{}\" is not supported (supported: {})", path, arch->s,
         llama_supported_archs(false));
  const std::string ap = std::string(traits->gguf) + ".";  // metadata key prefix

  auto get_int = [&](const std::string& key, std::optional<int64_t> def) -> int64_t {
    const GgufValue* v = g.find(key);
    if (!v) {
      if (def) return *def;
      fail(ErrorKind::Format, "{}: metadata {} is missing (needed for a llama model)", path, key);
    }
    if (!v->is_integer()) fail(ErrorKind::Format, "{}: metadata {} must be an integer, got {}", path, key, gguf_type_name(v->type));
    return v->as_int();
  };
  auto get_float = [&](const std::string& key, double def) -> double {
    const GgufValue* v = g.find(key);
    if (!v) return def;
    if (!v->is_number()) fail(ErrorKind::Format, "{}: metadata {} must be a number, got {}", path, key, gguf_type_name(v->type));
    return v->as_double();
  };

  LlamaConfig c;
  c.arch = traits->arch;
  c.dim = get_int(ap + "embedding_length", std::nullopt);
  c.hidden_dim = get_int(ap + "feed_forward_length", std::nullopt);
  c.n_layers = get_int(ap + "block_count", std::nullopt);
  c.n_heads = get_int(ap + "attention.head_count", std::nullopt);
  c.n_kv_heads = get_int(ap + "attention.head_count_kv", c.n_heads);
  c.seq_len = get_int(ap + "context_length", std::nullopt);
  c.head_dim = get_int(ap + "attention.key_length", 0);
  c.rope_theta = get_float(ap + "rope.freq_base", 10000.0);
  c.norm_eps = get_float(ap + "attention.layer_norm_rms_epsilon", 1e-5);
  if (c.head_dim > 0 && get_int(ap + "attention.value_length", c.head_dim) != c.head_dim)
    fail(ErrorKind::Unsupported, "{}: attention key and value lengths differ", path);
  if (c.head_dim > 0 && c.n_heads > 0 && c.head_dim * c.n_heads == c.dim) c.head_dim = 0;
  if (const GgufValue* s = g.find(ap + "rope.scaling.type"); s && s->type == GgufType::String && s->s != "none") {
    if (s->s != "linear")
      fail(ErrorKind::Unsupported, "{}: {}rope.scaling.type \"{}\" is not supported (supported: none, linear, or "
           "per-frequency factors in rope_freqs.weight)", path, ap, s->s);
    c.rope_scaling.type = "linear";
    c.rope_scaling.factor = get_float(ap + "rope.scaling.factor", 1.0);
  }

  const std::string emb_name = kLlamaTokenEmbd.gguf_name();
  const GgufTensorInfo* emb = g.find_tensor(emb_name);
  if (!emb) fail(ErrorKind::Format, "{}: tensor {} is missing", path, emb_name);
  if (emb->ne.size() != 2) fail(ErrorKind::Format, "{}: {} must be 2-D", path, emb_name);
  c.vocab_size = get_int(ap + "vocab_size", emb->ne[1]);
  c.tied_head = g.find_tensor(kLlamaOutput.gguf_name()) == nullptr;
  if (const GgufTensorInfo* rf = g.find_tensor(kRopeFreqs)) {
    if (c.rope_scaling.type != "none")
      fail(ErrorKind::Format, "{}: both {}rope.scaling.type and {} are set", path, ap, kRopeFreqs);
    const int64_t half = (c.head_dim > 0 ? c.head_dim : (c.n_heads > 0 ? c.dim / c.n_heads : 0)) / 2;
    if (rf->shape() != std::vector<int64_t>{half})
      fail(ErrorKind::Format, "{}: tensor {} has shape {}, the head size needs [{}]", path, kRopeFreqs,
           fmt::join(rf->shape(), "x"), half);
    at::Tensor f = g.tensor_f32(*rf).to(at::kDouble).contiguous();
    c.rope_scaling.type = "factors";
    c.rope_scaling.factors.assign(f.data_ptr<double>(), f.data_ptr<double>() + f.numel());
  }
  c.validate(path);
  if (int64_t rd = get_int(ap + "rope.dimension_count", c.hd()); rd != c.hd())
    fail(ErrorKind::Unsupported, "{}: partial rotary embedding (rope.dimension_count {} != head size {})", path, rd,
         c.hd());
  return c;
}

GgufLlama read_gguf_llama(const std::string& path, const LlmLoadOptions& opt) {
  GgufFile g = read_gguf(path);
  const LlamaConfig c = gguf_llama_config(g);
  const LlamaArchTraits* traits = &llama_arch_traits(c.arch);
  const std::string emb_name = kLlamaTokenEmbd.gguf_name();
  auto find = [&](const std::string& name, const std::vector<int64_t>& shape) {
    const GgufTensorInfo* t = g.find_tensor(name);
    if (!t) fail(ErrorKind::Format, "{}: tensor {} is missing", path, name);
    if (t->shape() != shape)
      fail(ErrorKind::Format, "{}: tensor {} has shape {} (torch order) but the metadata implies {}", path, name,
           fmt::join(t->shape(), "x"), fmt::join(shape, "x"));
    return t;
  };
  auto load = [&](const std::string& name, const std::vector<int64_t>& shape) {
    const GgufTensorInfo* t = find(name, shape);
    return opt.keep_stored_dtype ? g.tensor(*t) : g.tensor_f32(*t);
  };
  GgufLlama out;
  LlamaModel& m = out.model;
  m.cfg = c;
  m.tok_embeddings = load(emb_name, kLlamaTokenEmbd.shape(c));
  // Kept in their stored dtype, block-quantized linears are read (dequantized) only when a streamed pipeline reaches
  // their block: in fp32 they would need 4-8x their file size at once.
  const std::shared_ptr<const GgufFile> gp = opt.keep_stored_dtype ? std::make_shared<GgufFile>(g) : nullptr;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LlamaBlock b;
    std::vector<DeferredTensor> deferred;
    for (const LlamaBlockTensor& t : llama_block_tensors()) {
      if (!t.present(c)) continue;
      const std::string name = t.gguf_name(l);
      const bool permute = traits->gguf_rope_hf_order && t.rope != HfRope::None;
      const int64_t rope_heads = permute ? t.hf_rope_heads(c) : 0;
      // A copy in the interleaved RoPE order; the source pages are handed back.
      auto interleave = [gp_or_g = gp ? gp.get() : &g, name, rope_heads](at::Tensor w) {
        w = rope_permute_hf_to_interleaved(w, rope_heads);
        const GgufTensorInfo* ti = gp_or_g->find_tensor(name);
        gp_or_g->file->release(gp_or_g->data_offset + ti->offset, ti->nbytes);
        return w;
      };
      if (gp && t.linear >= 0 && !gguf_type_is_plain(find(name, t.shape(c))->type)) {
        deferred.push_back({t.member, [gp, name, permute, interleave]() {
                              at::Tensor w = gp->tensor_f32(*gp->find_tensor(name));
                              return permute ? interleave(w) : w;
                            }});
        continue;
      }
      at::Tensor w = load(name, t.shape(c));
      b.*t.member = permute ? interleave(w) : w;
    }
    m.blocks.push_back(std::move(b));
    m.deferred.push_back(std::move(deferred));
  }
  m.norm = load(kLlamaOutputNorm.gguf_name(), kLlamaOutputNorm.shape(c));
  m.output = c.tied_head ? m.tok_embeddings : load(kLlamaOutput.gguf_name(), kLlamaOutput.shape(c));
  m.check_shapes(path);
  out.tokenizer = read_gguf_tokenizer(g, c.vocab_size, out.tokenizer_note);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Writing

// llama_ftype values (llama.h): the pure K-quant files get the _S variant's number (the closest recipe).
const std::vector<GgufWeightTypeInfo>& gguf_weight_types() {
  static const std::vector<GgufWeightTypeInfo> kTypes = {
      {GgufWeightType::F32, "f32", GGML_F32, 0},        {GgufWeightType::F16, "f16", GGML_F16, 1},
      {GgufWeightType::BF16, "bf16", GGML_BF16, 32},    {GgufWeightType::Q8_0, "q8_0", GGML_Q8_0, 7},
      {GgufWeightType::Q4_0, "q4_0", GGML_Q4_0, 2},     {GgufWeightType::Q4_1, "q4_1", GGML_Q4_1, 3},
      {GgufWeightType::Q5_0, "q5_0", 6, 8},             {GgufWeightType::Q5_1, "q5_1", 7, 9},
      {GgufWeightType::IQ4_NL, "iq4_nl", 20, 25},       {GgufWeightType::Q2_K, "q2_k", 10, 10},
      {GgufWeightType::Q3_K, "q3_k", 11, 11},           {GgufWeightType::Q4_K, "q4_k", GGML_Q4_K, 14},
      {GgufWeightType::Q5_K, "q5_k", 13, 16},           {GgufWeightType::Q6_K, "q6_k", 14, 18},
  };
  return kTypes;
}

const GgufWeightTypeInfo& gguf_weight_type_info(GgufWeightType t) {
  for (const auto& i : gguf_weight_types())
    if (i.type == t) return i;
  fail(ErrorKind::Internal, "GGUF weight type {} not in the table", static_cast<int>(t));
}

GgufWeightType gguf_weight_type_of_ggml(uint32_t ggml) {
  for (const auto& i : gguf_weight_types())
    if (i.ggml == ggml) return i.type;
  fail(ErrorKind::Unsupported, "GGUF: catq writes no weights of ggml type {}", ggml_type_name(ggml));
}

GgufWeightType parse_gguf_weight_type(const std::string& s0) {
  std::string s, names;
  for (char c : s0) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& i : gguf_weight_types()) {
    if (s == i.name) return i.type;
    names += (names.empty() ? "" : ", ") + std::string(i.name);
  }
  fail(ErrorKind::Usage, "GGUF weight type '{}': expected one of {}", s0, names);
}

const char* to_string(GgufWeightType t) { return gguf_weight_type_info(t).name; }

GgufWeightType gguf_row_type(GgufWeightType t, int64_t row) {
  const GgmlTypeTraits* tt = ggml_type_traits(gguf_weight_type_info(t).ggml);
  if (row % tt->block == 0) return t;
  GgufWeightType fb = GgufWeightType::F16;
  switch (t) {
    case GgufWeightType::Q2_K: case GgufWeightType::Q3_K: fb = GgufWeightType::IQ4_NL; break;
    case GgufWeightType::Q4_K: fb = GgufWeightType::Q5_0; break;
    case GgufWeightType::Q5_K: fb = GgufWeightType::Q5_1; break;
    case GgufWeightType::Q6_K: fb = GgufWeightType::Q8_0; break;
    default: break;
  }
  return fb != GgufWeightType::F16 && row % kQK == 0 ? fb : GgufWeightType::F16;
}

GgufLlamaPlan plan_gguf_llama(const LlamaModel& m, const Tokenizer* tok, const std::string& path,
                              const GgufWriteOptions& opt, const std::map<std::string, uint32_t>& encoded_types) {
  GgufLlamaPlan plan;
  plan.alignment = opt.alignment;
  GgufBuilder& b = plan.builder;
  const LlamaConfig& c = m.cfg;
  c.validate(path);
  for (const LlamaBlock& blk : m.blocks)
    CATQ_CHECK(!blk.attn_in.defined() && !blk.ffn_in.defined() && !blk.down_in.defined(), Unsupported,
               "{}: the model has online transforms, which llama.cpp's graph cannot run", path);
  const LlamaArchTraits& traits = llama_arch_traits(c.arch);
  const std::string ap = std::string(traits.gguf) + ".";
  b.add_string("general.architecture", traits.gguf);
  b.add_string("general.name", opt.name);
  if (opt.alignment != 32) b.add_u32("general.alignment", opt.alignment);
  const GgufWeightTypeInfo& wi = gguf_weight_type_info(opt.weights);
  const bool quant = !gguf_type_is_plain(wi.ggml);
  b.add_u32("general.file_type", opt.file_type ? opt.file_type : wi.file_type);
  if (quant) b.add_u32("general.quantization_version", 2);
  // llama.cpp attends to the whole context for these architectures: a sliding-window model is exact only up to its
  // window, so that is the context length written.
  const int64_t ctx_len = c.sliding_window > 0 ? std::min(c.seq_len, c.sliding_window) : c.seq_len;
  b.add_u32(ap + "context_length", static_cast<uint32_t>(ctx_len));
  b.add_u32(ap + "embedding_length", static_cast<uint32_t>(c.dim));
  b.add_u32(ap + "block_count", static_cast<uint32_t>(c.n_layers));
  b.add_u32(ap + "feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  b.add_u32(ap + "attention.head_count", static_cast<uint32_t>(c.n_heads));
  b.add_u32(ap + "attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  b.add_f32(ap + "attention.layer_norm_rms_epsilon", static_cast<float>(c.norm_eps));
  b.add_f32(ap + "rope.freq_base", static_cast<float>(c.rope_theta));
  b.add_u32(ap + "rope.dimension_count", static_cast<uint32_t>(c.hd()));
  if (c.head_dim > 0) {
    b.add_u32(ap + "attention.key_length", static_cast<uint32_t>(c.head_dim));
    b.add_u32(ap + "attention.value_length", static_cast<uint32_t>(c.head_dim));
  }
  b.add_u32(ap + "vocab_size", static_cast<uint32_t>(c.vocab_size));
  if (tok) {
    CATQ_CHECK(tok->vocab_size() == c.vocab_size, Data, "{}: tokenizer has {} tokens but the model vocabulary is {}",
               path, tok->vocab_size(), c.vocab_size);
    add_gguf_tokenizer(b, *tok);
  }
  // Tensors in named_parameters() order, q/k rows back in HF order where the architecture stores them so
  // (rope_heads > 0: the permutation's heads).
  struct Out {
    std::string name;
    at::Tensor t;
    int64_t rope_heads = 0;
  };
  std::vector<Out> tensors;
  tensors.push_back({kLlamaTokenEmbd.gguf_name(), m.tok_embeddings});
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (const LlamaBlockTensor& t : llama_block_tensors()) {
      if (!t.present(c)) continue;
      const bool hf = traits.gguf_rope_hf_order && t.rope != HfRope::None;
      tensors.push_back({t.gguf_name(l), m.blocks[l].*t.member, hf ? t.hf_rope_heads(c) : 0});
    }
  tensors.push_back({kLlamaOutputNorm.gguf_name(), m.norm});
  if (!c.tied_head) tensors.push_back({kLlamaOutput.gguf_name(), m.output});
  if (c.rope_scaling.type == "linear") {
    b.add_string(ap + "rope.scaling.type", "linear");
    b.add_f32(ap + "rope.scaling.factor", static_cast<float>(c.rope_scaling.factor));
  } else if (auto f = c.rope_freq_factors(); !f.empty()) {
    tensors.push_back({kRopeFreqs, at::tensor(f, at::kDouble)});
  }
  for (const auto& [name, t0, rope_heads] : tensors) {
    GgufLlamaTensor e;
    e.name = name;
    e.ne.assign(t0.sizes().rbegin(), t0.sizes().rend());
    e.source = t0;
    e.rope_heads = rope_heads;
    if (auto it = encoded_types.find(name); it != encoded_types.end()) {
      CATQ_CHECK(t0.dim() == 2, Internal, "{}: tensor {} [{}] cannot be encoded", path, name, fmt::join(t0.sizes(), ","));
      e.type = it->second;
      e.encoded = true;
      e.source = at::Tensor();  // not needed, and not kept alive (a streaming caller drops blocks as it goes)
    } else {
      const GgufWeightType wt =
          t0.dim() == 1 || opt.fp_unencoded ? GgufWeightType::F32 : gguf_row_type(opt.weights, e.ne[0]);
      e.type = gguf_weight_type_info(wt).ggml;
    }
    b.declare_tensor(e.name, e.ne, e.type);
    plan.tensors.push_back(std::move(e));
  }
  return plan;
}

const GgufLlamaTensor& GgufLlamaPlan::tensor(const std::string& name) const {
  for (const GgufLlamaTensor& t : tensors)
    if (t.name == name) return t;
  fail(ErrorKind::Internal, "GGUF: the file has no tensor {}", name);
}

std::string gguf_llama_tensor_bytes(const GgufLlamaTensor& t, const QuantizedWeight* encoded) {
  if (t.encoded) {
    CATQ_CHECK(encoded && encoded->is_ggml() && encoded->traits().ggml == t.type &&
                   std::vector<int64_t>(encoded->shape.rbegin(), encoded->shape.rend()) == t.ne,
               Internal, "GGUF: tensor {} ({} [{}]) is supplied as {}", t.name, ggml_type_name(t.type),
               fmt::join(t.ne, ","), encoded ? encoded->str() : "nothing");
    const std::vector<uint8_t>& d = encoded->data;
    std::string bytes(d.begin(), d.end());
    if (t.rope_heads > 0) {  // whole rows move: a row's blocks stay together
      const int64_t rows = encoded->shape[0], row_bytes = static_cast<int64_t>(bytes.size()) / rows;
      const at::Tensor src = rope_permute_interleaved_to_hf(at::arange(rows, at::kFloat).unsqueeze(1), t.rope_heads)
                                 .to(at::kLong).contiguous();
      const int64_t* sp = src.data_ptr<int64_t>();
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(&bytes[r * row_bytes], d.data() + sp[r] * row_bytes, static_cast<size_t>(row_bytes));
    }
    return bytes;
  }
  const at::Tensor x = (t.rope_heads > 0 ? rope_permute_interleaved_to_hf(t.source.detach(), t.rope_heads)
                                         : t.source.detach()).to(at::kCPU, at::kFloat).contiguous();
  if (t.type == GGML_F32) return std::string(static_cast<const char*>(x.data_ptr()), x.numel() * 4);
  return quantize_gguf_blocks(x, t.type);  // F16 / BF16 round to nearest even, blocks their reference encoder
}

void write_gguf_llama(const LlamaModel& m, const Tokenizer* tok, const std::string& path, const GgufWriteOptions& opt) {
  std::map<std::string, uint32_t> types;
  if (opt.encoded)
    for (const auto& [name, w] : *opt.encoded) {
      CATQ_CHECK(w.is_ggml(), Internal, "{}: tensor {} encoded as {} (not a ggml format)", path, name, w.str());
      types[name] = w.traits().ggml;
    }
  const GgufLlamaPlan plan = plan_gguf_llama(m, tok, path, opt, types);
  for (const auto& [name, w] : types) plan.tensor(name);  // every encoded tensor is one of the file's
  GgufStreamWriter out(path, plan.builder, 3, plan.alignment);
  for (const GgufLlamaTensor& t : plan.tensors)
    out.write(t.name, gguf_llama_tensor_bytes(t, t.encoded ? &opt.encoded->at(t.name) : nullptr));
  out.finish();
}

}  // namespace catq

#include "io/gguf.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstring>

#include "core/error.h"
#include "core/file_util.h"

namespace catq {

namespace {

// Block size (elements) and bytes per block of each ggml type id (ggml-common.h); 0 = id not in use.
struct TypeInfo {
  const char* name;
  int64_t block;
  int64_t bytes;
};
const TypeInfo* type_info(uint32_t t) {
  static const TypeInfo table[] = {
      {"F32", 1, 4},        {"F16", 1, 2},       {"Q4_0", 32, 18},     {"Q4_1", 32, 20},    {nullptr, 0, 0},
      {nullptr, 0, 0},      {"Q5_0", 32, 22},    {"Q5_1", 32, 24},     {"Q8_0", 32, 34},    {"Q8_1", 32, 36},
      {"Q2_K", 256, 84},    {"Q3_K", 256, 110},  {"Q4_K", 256, 144},   {"Q5_K", 256, 176},  {"Q6_K", 256, 210},
      {"Q8_K", 256, 292},   {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
      {"IQ4_NL", 32, 18},   {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82},   {"IQ4_XS", 256, 136}, {"I8", 1, 1},
      {"I16", 1, 2},        {"I32", 1, 4},       {"I64", 1, 8},        {"F64", 1, 8},       {"IQ1_M", 256, 56},
      {"BF16", 1, 2},       {nullptr, 0, 0},     {nullptr, 0, 0},      {nullptr, 0, 0},     {"TQ1_0", 256, 54},
      {"TQ2_0", 256, 66},   {nullptr, 0, 0},     {nullptr, 0, 0},      {nullptr, 0, 0},     {"MXFP4", 32, 17},
  };
  if (t >= sizeof(table) / sizeof(table[0]) || !table[t].name) return nullptr;
  return &table[t];
}

size_t fixed_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

std::string read_gguf_string(ByteReader& r, const char* what) {
  uint64_t len = r.read<uint64_t>(what);
  r.need(len, what);  // a huge declared length fails here, before any allocation
  return r.read_string(static_cast<size_t>(len), what);
}

GgufValue read_value(ByteReader& r, GgufType type, const std::string& key, int depth) {
  GgufValue v;
  v.type = type;
  switch (type) {
    case GgufType::U8: v.u = r.read<uint8_t>("u8 value"); break;
    case GgufType::I8: v.i = r.read<int8_t>("i8 value"); break;
    case GgufType::U16: v.u = r.read<uint16_t>("u16 value"); break;
    case GgufType::I16: v.i = r.read<int16_t>("i16 value"); break;
    case GgufType::U32: v.u = r.read<uint32_t>("u32 value"); break;
    case GgufType::I32: v.i = r.read<int32_t>("i32 value"); break;
    case GgufType::U64: v.u = r.read<uint64_t>("u64 value"); break;
    case GgufType::I64: v.i = r.read<int64_t>("i64 value"); break;
    case GgufType::F32: v.f = r.read<float>("f32 value"); break;
    case GgufType::F64: v.f = r.read<double>("f64 value"); break;
    case GgufType::Bool: {
      uint8_t b = r.read<uint8_t>("bool value");
      if (b > 1) fail(ErrorKind::Format, "{}: metadata {}: bool value {} is neither 0 nor 1", r.name(), key, b);
      v.u = b;
      break;
    }
    case GgufType::String: v.s = read_gguf_string(r, "string value"); break;
    case GgufType::Array: {
      if (depth >= 8) fail(ErrorKind::Format, "{}: metadata {}: arrays nested more than 8 deep", r.name(), key);
      uint32_t et = r.read<uint32_t>("array element type");
      if (et > static_cast<uint32_t>(GgufType::F64))
        fail(ErrorKind::Format, "{}: metadata {}: unknown array element type {}", r.name(), key, et);
      v.elem_type = static_cast<GgufType>(et);
      uint64_t count = r.read<uint64_t>("array length");
      // Every element takes at least this many bytes, so the count is bounded by the bytes left.
      size_t min_size = fixed_size(v.elem_type);
      if (v.elem_type == GgufType::String) min_size = 8;
      if (v.elem_type == GgufType::Array) min_size = 12;
      if (count > r.remaining() / min_size)
        fail(ErrorKind::Format, "{}: metadata {}: array of {} {} elements cannot fit in the {} bytes left", r.name(),
             key, count, gguf_type_name(v.elem_type), r.remaining());
      v.arr.reserve(static_cast<size_t>(count));
      for (uint64_t k = 0; k < count; ++k) v.arr.push_back(read_value(r, v.elem_type, key, depth + 1));
      break;
    }
    default:
      fail(ErrorKind::Format, "{}: metadata {}: unknown value type {} at offset {}", r.name(), key,
           static_cast<uint32_t>(type), r.pos());
  }
  return v;
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8: return "u8";
    case GgufType::I8: return "i8";
    case GgufType::U16: return "u16";
    case GgufType::I16: return "i16";
    case GgufType::U32: return "u32";
    case GgufType::I32: return "i32";
    case GgufType::F32: return "f32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::U64: return "u64";
    case GgufType::I64: return "i64";
    case GgufType::F64: return "f64";
  }
  return "?";
}

std::string ggml_type_name(uint32_t type) {
  const TypeInfo* ti = type_info(type);
  return ti ? ti->name : fmt::format("type{}", type);
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
    case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
    default: return false;
  }
}

int64_t GgufValue::as_int() const {
  switch (type) {
    case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: return i;
    default: return u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(u);
  }
}

double GgufValue::as_double() const {
  if (type == GgufType::F32 || type == GgufType::F64) return f;
  return static_cast<double>(as_int());
}

std::string GgufValue::describe() const {
  switch (type) {
    case GgufType::String: return s.size() > 60 ? fmt::format("\"{}...\"", s.substr(0, 57)) : fmt::format("\"{}\"", s);
    case GgufType::Bool: return u ? "true" : "false";
    case GgufType::F32: case GgufType::F64: return fmt::format("{}", f);
    case GgufType::Array: return fmt::format("[{} x {}]", arr.size(), gguf_type_name(elem_type));
    default: return std::to_string(as_int());
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv[it->second].second;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors[it->second];
}

GgufFile read_gguf(const std::string& path) {
  GgufFile g;
  g.path = path;
  g.bytes = read_file_bytes(path);
  ByteReader r(g.bytes.data(), g.bytes.size(), path);
  const uint8_t* magic = r.take(4, "GGUF magic");
  if (std::memcmp(magic, "GGUF", 4) != 0)
    fail(ErrorKind::Format, "{}: not a GGUF file (magic bytes {:02x} {:02x} {:02x} {:02x}, expected \"GGUF\")", path,
         magic[0], magic[1], magic[2], magic[3]);
  g.version = r.read<uint32_t>("GGUF version");
  if (g.version != 2 && g.version != 3) {
    bool big_endian = g.version == 0x03000000u || g.version == 0x02000000u;
    fail(ErrorKind::Unsupported, "{}: GGUF version {}{} is not supported (catq reads versions 2 and 3)", path,
         g.version, big_endian ? " (a big-endian file?)" : "");
  }
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Minimum encoded sizes: a kv is >= 13 bytes, a tensor info >= 24 bytes.
  if (n_kv > r.remaining() / 13)
    fail(ErrorKind::Format, "{}: header declares {} metadata entries, more than the file ({} bytes) can hold", path,
         n_kv, g.bytes.size());
  if (n_tensors > r.remaining() / 24)
    fail(ErrorKind::Format, "{}: header declares {} tensors, more than the file ({} bytes) can hold", path, n_tensors,
         g.bytes.size());

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = read_gguf_string(r, "metadata key");
    uint32_t t = r.read<uint32_t>("metadata value type");
    if (t > static_cast<uint32_t>(GgufType::F64))
      fail(ErrorKind::Format, "{}: metadata {}: unknown value type {}", path, key, t);
    GgufValue v = read_value(r, static_cast<GgufType>(t), key, 0);
    if (!g.kv_index_.emplace(key, g.kv.size()).second)
      fail(ErrorKind::Format, "{}: duplicate metadata key {}", path, key);
    g.kv.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = g.find("general.alignment")) {
    if (!a->is_integer() || a->as_int() <= 0 || a->as_int() > (1 << 20) || (a->as_int() & (a->as_int() - 1)) != 0)
      fail(ErrorKind::Format, "{}: general.alignment {} must be a positive power of two (at most 2^20)", path,
           a->describe());
    g.alignment = static_cast<uint64_t>(a->as_int());
  }

  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.name = read_gguf_string(r, "tensor name");
    uint32_t nd = r.read<uint32_t>("tensor n_dims");
    if (nd < 1 || nd > 4)
      fail(ErrorKind::Format, "{}: tensor {} has {} dimensions (GGUF allows 1..4)", path, t.name, nd);
    for (uint32_t d = 0; d < nd; ++d) {
      uint64_t ne = r.read<uint64_t>("tensor dimension");
      if (ne > (1ull << 40)) fail(ErrorKind::Format, "{}: tensor {} declares dimension {} = {}", path, t.name, d, ne);
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    t.type = r.read<uint32_t>("tensor type");
    t.offset = r.read<uint64_t>("tensor data offset");
    const TypeInfo* ti = type_info(t.type);
    if (!ti) fail(ErrorKind::Format, "{}: tensor {} has unknown ggml type id {}", path, t.name, t.type);
    uint64_t numel = checked_numel(t.ne, path, "tensor " + t.name);
    if (t.ne[0] % ti->block != 0)
      fail(ErrorKind::Format, "{}: tensor {} of type {}: row length {} is not a multiple of the block size {}", path,
           t.name, ti->name, t.ne[0], ti->block);
    t.nbytes = numel / ti->block * ti->bytes;
    if (t.offset % g.alignment != 0)
      fail(ErrorKind::Format, "{}: tensor {} data offset {} is not a multiple of the alignment {}", path, t.name,
           t.offset, g.alignment);
    if (!g.tensor_index_.emplace(t.name, g.tensors.size()).second)
      fail(ErrorKind::Format, "{}: duplicate tensor name {}", path, t.name);
    g.tensors.push_back(std::move(t));
  }
  g.data_offset = (r.pos() + g.alignment - 1) / g.alignment * g.alignment;
  const uint64_t size = g.bytes.size();
  const uint64_t avail = size >= g.data_offset ? size - g.data_offset : 0;
  for (const auto& t : g.tensors) {
    if (g.data_offset > size || t.offset > avail || t.nbytes > avail - t.offset)
      fail(ErrorKind::Format, "{}: tensor {} data [{}, {}) lies past the end of the file ({} bytes): truncated?", path,
           t.name, g.data_offset + t.offset, g.data_offset + t.offset + t.nbytes, size);
  }
  return g;
}

at::Tensor GgufFile::tensor_f32(const GgufTensorInfo& t) const {
  const uint8_t* p = bytes.data() + data_offset + t.offset;
  const int64_t n = static_cast<int64_t>(checked_numel(t.ne, path, t.name));
  at::Tensor out;
  switch (t.type) {
    case GGML_F32:
      out = at::empty({n}, at::kFloat);
      std::memcpy(out.data_ptr(), p, t.nbytes);
      break;
    case GGML_F16:
      out = at::empty({n}, at::kHalf);
      std::memcpy(out.data_ptr(), p, t.nbytes);
      out = out.to(at::kFloat);
      break;
    case GGML_BF16:
      out = at::empty({n}, at::kBFloat16);
      std::memcpy(out.data_ptr(), p, t.nbytes);
      out = out.to(at::kFloat);
      break;
    case GGML_Q8_0: {
      // Block of 32: fp16 scale d, then 32 int8 q; x = q * d.
      out = at::empty({n}, at::kFloat);
      float* o = out.data_ptr<float>();
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = p + b * 34;
        uint16_t bits;
        std::memcpy(&bits, blk, 2);
        float d = static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
        for (int j = 0; j < 32; ++j) o[b * 32 + j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
      }
      break;
    }
    case GGML_Q4_0:
    case GGML_Q4_1: {
      // Block of 32: fp16 d (Q4_1: then fp16 m), 16 bytes of nibbles: low nibbles are values 0..15, high 16..31.
      const bool q41 = t.type == GGML_Q4_1;
      const int64_t bytes = q41 ? 20 : 18;
      out = at::empty({n}, at::kFloat);
      float* o = out.data_ptr<float>();
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint8_t* blk = p + b * bytes;
        uint16_t bits;
        std::memcpy(&bits, blk, 2);
        const float d = static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
        float m = -8 * d;
        if (q41) {
          std::memcpy(&bits, blk + 2, 2);
          m = static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
        }
        const uint8_t* qs = blk + (q41 ? 4 : 2);
        for (int j = 0; j < 16; ++j) {
          o[b * 32 + j] = d * static_cast<float>(qs[j] & 0x0F) + m;
          o[b * 32 + j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
        }
      }
      break;
    }
    default:
      fail(ErrorKind::Unsupported, "{}: tensor {} has ggml type {}; catq can read F32, F16, BF16, Q8_0, Q4_0 and Q4_1 "
           "tensors",
           path, t.name, ggml_type_name(t.type));
  }
  return out.reshape(t.shape());
}

// ---------------------------------------------------------------------------------------------------
// Llama from GGUF

namespace {

const std::string kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

std::optional<Tokenizer> gguf_tokenizer(const GgufFile& g, int64_t vocab, std::string& note) {
  const GgufValue* model = g.find("tokenizer.ggml.model");
  if (!model) {
    note = "the file has no tokenizer.ggml.model";
    return std::nullopt;
  }
  if (model->type != GgufType::String)
    fail(ErrorKind::Format, "{}: tokenizer.ggml.model must be a string", g.path);
  if (model->s != "llama") {
    note = fmt::format("tokenizer model \"{}\" is not supported (catq implements the \"llama\" SentencePiece BPE)",
                       model->s);
    return std::nullopt;
  }
  const GgufValue* toks = g.find("tokenizer.ggml.tokens");
  if (!toks || toks->type != GgufType::Array || toks->elem_type != GgufType::String)
    fail(ErrorKind::Format, "{}: tokenizer.ggml.tokens is missing or not an array of strings", g.path);
  const size_t n = toks->arr.size();
  if (static_cast<int64_t>(n) != vocab)
    fail(ErrorKind::Format, "{}: tokenizer has {} tokens but the model's vocabulary is {}", g.path, n, vocab);
  std::vector<std::string> pieces(n);
  std::vector<float> scores(n, 0.0f);
  std::vector<int32_t> types;
  for (size_t i = 0; i < n; ++i) pieces[i] = replace_all(toks->arr[i].s, kSpmSpace, " ");
  if (const GgufValue* sc = g.find("tokenizer.ggml.scores")) {
    if (sc->type != GgufType::Array || sc->arr.size() != n || (n && !sc->arr[0].is_number()))
      fail(ErrorKind::Format, "{}: tokenizer.ggml.scores must be a numeric array of {} elements", g.path, n);
    for (size_t i = 0; i < n; ++i) scores[i] = static_cast<float>(sc->arr[i].as_double());
  }
  if (const GgufValue* ty = g.find("tokenizer.ggml.token_type")) {
    if (ty->type != GgufType::Array || ty->arr.size() != n || (n && !ty->arr[0].is_integer()))
      fail(ErrorKind::Format, "{}: tokenizer.ggml.token_type must be an integer array of {} elements", g.path, n);
    types.resize(n);
    for (size_t i = 0; i < n; ++i) types[i] = static_cast<int32_t>(ty->arr[i].as_int());
  }
  auto id = [&](const char* key, int32_t def) -> int32_t {
    const GgufValue* v = g.find(key);
    if (!v) return def;
    if (!v->is_integer() || v->as_int() < 0 || v->as_int() >= static_cast<int64_t>(n))
      fail(ErrorKind::Format, "{}: {} = {} is not a token id (vocabulary of {})", g.path, key, v->describe(), n);
    return static_cast<int32_t>(v->as_int());
  };
  int32_t bos = id("tokenizer.ggml.bos_token_id", 1), eos = id("tokenizer.ggml.eos_token_id", 2),
          unk = id("tokenizer.ggml.unknown_token_id", 0);
  return Tokenizer(std::move(pieces), std::move(scores), std::move(types), bos, eos, unk);
}

}  // namespace

GgufLlama read_gguf_llama(const std::string& path) {
  GgufFile g = read_gguf(path);
  const GgufValue* arch = g.find("general.architecture");
  if (!arch || arch->type != GgufType::String)
    fail(ErrorKind::Format, "{}: metadata general.architecture is missing (required by GGUF)", path);
  if (arch->s != "llama")
    fail(ErrorKind::Unsupported, "{}: GGUF architecture \"{}\" is not supported (catq reads \"llama\")", path, arch->s);

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
  c.dim = get_int("llama.embedding_length", std::nullopt);
  c.hidden_dim = get_int("llama.feed_forward_length", std::nullopt);
  c.n_layers = get_int("llama.block_count", std::nullopt);
  c.n_heads = get_int("llama.attention.head_count", std::nullopt);
  c.n_kv_heads = get_int("llama.attention.head_count_kv", c.n_heads);
  c.seq_len = get_int("llama.context_length", std::nullopt);
  c.head_dim = get_int("llama.attention.key_length", 0);
  c.rope_theta = get_float("llama.rope.freq_base", 10000.0);
  c.norm_eps = get_float("llama.attention.layer_norm_rms_epsilon", 1e-5);
  if (c.head_dim > 0 && get_int("llama.attention.value_length", c.head_dim) != c.head_dim)
    fail(ErrorKind::Unsupported, "{}: attention key and value lengths differ", path);
  if (c.head_dim > 0 && c.n_heads > 0 && c.head_dim * c.n_heads == c.dim) c.head_dim = 0;
  if (const GgufValue* s = g.find("llama.rope.scaling.type"); s && s->type == GgufType::String && s->s != "none")
    fail(ErrorKind::Unsupported, "{}: RoPE scaling \"{}\" is not supported", path, s->s);
  if (g.find_tensor("rope_freqs.weight"))
    fail(ErrorKind::Unsupported, "{}: per-frequency RoPE factors (rope_freqs.weight, Llama 3.1 scaling) are not supported", path);

  const GgufTensorInfo* emb = g.find_tensor("token_embd.weight");
  if (!emb) fail(ErrorKind::Format, "{}: tensor token_embd.weight is missing", path);
  if (emb->ne.size() != 2) fail(ErrorKind::Format, "{}: token_embd.weight must be 2-D", path);
  c.vocab_size = get_int("llama.vocab_size", emb->ne[1]);
  c.tied_head = g.find_tensor("output.weight") == nullptr;
  c.validate(path);
  if (int64_t rd = get_int("llama.rope.dimension_count", c.hd()); rd != c.hd())
    fail(ErrorKind::Unsupported, "{}: partial rotary embedding (rope.dimension_count {} != head size {})", path, rd,
         c.hd());

  auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    const GgufTensorInfo* t = g.find_tensor(name);
    if (!t) fail(ErrorKind::Format, "{}: tensor {} is missing", path, name);
    if (t->shape() != shape)
      fail(ErrorKind::Format, "{}: tensor {} has shape {} (torch order) but the metadata implies {}", path, name,
           fmt::join(t->shape(), "x"), fmt::join(shape, "x"));
    return g.tensor_f32(*t);
  };
  const int64_t D = c.dim, Q = c.q_dim(), K = c.kv_dim(), H = c.hidden_dim, V = c.vocab_size;
  GgufLlama out;
  LlamaModel& m = out.model;
  m.cfg = c;
  m.tok_embeddings = load("token_embd.weight", {V, D});
  for (int64_t l = 0; l < c.n_layers; ++l) {
    auto n = [&](const char* s) { return fmt::format("blk.{}.{}.weight", l, s); };
    LlamaBlock b;
    b.attn_norm = load(n("attn_norm"), {D});
    b.wq = load(n("attn_q"), {Q, D});
    b.wk = load(n("attn_k"), {K, D});
    b.wv = load(n("attn_v"), {K, D});
    b.wo = load(n("attn_output"), {D, Q});
    b.ffn_norm = load(n("ffn_norm"), {D});
    b.w1 = load(n("ffn_gate"), {H, D});
    b.w2 = load(n("ffn_down"), {D, H});
    b.w3 = load(n("ffn_up"), {H, D});
    m.blocks.push_back(std::move(b));
  }
  m.norm = load("output_norm.weight", {D});
  m.output = c.tied_head ? m.tok_embeddings : load("output.weight", {V, D});
  m.check_shapes(path);
  out.tokenizer = gguf_tokenizer(g, V, out.tokenizer_note);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Writing

void GgufBuilder::key(const std::string& k, GgufType t) {
  uint64_t n = k.size();
  kv_.append(reinterpret_cast<const char*>(&n), 8);
  kv_ += k;
  uint32_t tt = static_cast<uint32_t>(t);
  kv_.append(reinterpret_cast<const char*>(&tt), 4);
  ++n_kv_;
}

template <typename T>
static void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
static void put_str(std::string& s, const std::string& v) {
  put<uint64_t>(s, v.size());
  s += v;
}

void GgufBuilder::add_u32(const std::string& k, uint32_t v) { key(k, GgufType::U32); put(kv_, v); }
void GgufBuilder::add_i32(const std::string& k, int32_t v) { key(k, GgufType::I32); put(kv_, v); }
void GgufBuilder::add_u64(const std::string& k, uint64_t v) { key(k, GgufType::U64); put(kv_, v); }
void GgufBuilder::add_f32(const std::string& k, float v) { key(k, GgufType::F32); put(kv_, v); }
void GgufBuilder::add_bool(const std::string& k, bool v) { key(k, GgufType::Bool); put<uint8_t>(kv_, v ? 1 : 0); }
void GgufBuilder::add_string(const std::string& k, const std::string& v) { key(k, GgufType::String); put_str(kv_, v); }
void GgufBuilder::add_string_array(const std::string& k, const std::vector<std::string>& v) {
  key(k, GgufType::Array);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufType::String));
  put<uint64_t>(kv_, v.size());
  for (auto& s : v) put_str(kv_, s);
}
void GgufBuilder::add_f32_array(const std::string& k, const std::vector<float>& v) {
  key(k, GgufType::Array);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufType::F32));
  put<uint64_t>(kv_, v.size());
  for (float x : v) put(kv_, x);
}
void GgufBuilder::add_i32_array(const std::string& k, const std::vector<int32_t>& v) {
  key(k, GgufType::Array);
  put<uint32_t>(kv_, static_cast<uint32_t>(GgufType::I32));
  put<uint64_t>(kv_, v.size());
  for (int32_t x : v) put(kv_, x);
}
void GgufBuilder::add_tensor(const std::string& name, const std::vector<int64_t>& ne, uint32_t type, std::string data) {
  tensors_.push_back({name, ne, type, std::move(data)});
}

std::string GgufBuilder::build(uint32_t version, uint32_t alignment) const {
  std::string s = "GGUF";
  put<uint32_t>(s, version);
  put<uint64_t>(s, tensors_.size());
  put<uint64_t>(s, n_kv_);
  s += kv_;
  auto align = [&](uint64_t x) { return (x + alignment - 1) / alignment * alignment; };
  uint64_t off = 0;
  std::vector<uint64_t> offs;
  for (const auto& t : tensors_) {
    put_str(s, t.name);
    put<uint32_t>(s, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<uint64_t>(s, static_cast<uint64_t>(d));
    put<uint32_t>(s, t.type);
    off = align(off);
    offs.push_back(off);
    put<uint64_t>(s, off);
    off += t.data.size();
  }
  s.resize(align(s.size()), '\0');
  const size_t base = s.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    s.resize(base + offs[i], '\0');
    s += tensors_[i].data;
  }
  return s;
}

std::string quantize_q8_0(const at::Tensor& w) {
  at::Tensor f = w.detach().to(at::kCPU, at::kFloat).contiguous();
  const int64_t n = f.numel();
  CATQ_CHECK(n % 32 == 0, Internal, "quantize_q8_0: {} elements is not a multiple of 32", n);
  const float* x = f.data_ptr<float>();
  std::string out(static_cast<size_t>(n / 32 * 34), '\0');
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    float d = amax / 127.0f;
    float id = d > 0 ? 1.0f / d : 0.0f;
    c10::Half dh(d);
    char* blk = &out[b * 34];
    std::memcpy(blk, &dh.x, 2);
    for (int j = 0; j < 32; ++j) blk[2 + j] = static_cast<char>(static_cast<int8_t>(std::lround(xb[j] * id)));
  }
  return out;
}

namespace {
// The fp16 value the decoder will see (ggml stores d rounded to fp16; codes are computed from the unrounded d,
// as ggml's reference quantizer does).
uint16_t half_bits(float v) { return c10::Half(v).x; }

std::string quantize_q4(const at::Tensor& w, bool with_min) {
  at::Tensor f = w.detach().to(at::kCPU, at::kFloat).contiguous();
  const int64_t n = f.numel();
  CATQ_CHECK(n % 32 == 0, Internal, "quantize_q4: {} elements is not a multiple of 32", n);
  const float* x = f.data_ptr<float>();
  const int64_t bytes = with_min ? 20 : 18;
  std::string out(static_cast<size_t>(n / 32 * bytes), '\0');
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + b * 32;
    char* blk = &out[b * bytes];
    uint8_t q[32];
    if (with_min) {
      float lo = xb[0], hi = xb[0];
      for (int j = 1; j < 32; ++j) lo = std::min(lo, xb[j]), hi = std::max(hi, xb[j]);
      const float d = (hi - lo) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
      const uint16_t dh = half_bits(d), mh = half_bits(lo);
      std::memcpy(blk, &dh, 2);
      std::memcpy(blk + 2, &mh, 2);
      for (int j = 0; j < 32; ++j)
        q[j] = static_cast<uint8_t>(std::min(15, static_cast<int>((xb[j] - lo) * id + 0.5f)));
    } else {
      float amax = 0, vmax = 0;
      for (int j = 0; j < 32; ++j)
        if (std::fabs(xb[j]) > amax) amax = std::fabs(xb[j]), vmax = xb[j];
      const float d = vmax / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
      const uint16_t dh = half_bits(d);
      std::memcpy(blk, &dh, 2);
      for (int j = 0; j < 32; ++j)
        q[j] = static_cast<uint8_t>(std::min(15, static_cast<int>(xb[j] * id + 8.5f)));
    }
    uint8_t* qs = reinterpret_cast<uint8_t*>(blk + (with_min ? 4 : 2));
    for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
  }
  return out;
}
}  // namespace

std::string quantize_q4_0(const at::Tensor& w) { return quantize_q4(w, false); }
std::string quantize_q4_1(const at::Tensor& w) { return quantize_q4(w, true); }

GgufWeightType parse_gguf_weight_type(const std::string& s0) {
  std::string s;
  for (char c : s0) s += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (auto t : {GgufWeightType::F32, GgufWeightType::F16, GgufWeightType::BF16, GgufWeightType::Q8_0,
                 GgufWeightType::Q4_0, GgufWeightType::Q4_1})
    if (s == to_string(t)) return t;
  fail(ErrorKind::Usage, "GGUF weight type '{}': expected f32, f16, bf16, q8_0, q4_0 or q4_1", s0);
}

const char* to_string(GgufWeightType t) {
  switch (t) {
    case GgufWeightType::F32: return "f32";
    case GgufWeightType::F16: return "f16";
    case GgufWeightType::BF16: return "bf16";
    case GgufWeightType::Q8_0: return "q8_0";
    case GgufWeightType::Q4_0: return "q4_0";
    case GgufWeightType::Q4_1: return "q4_1";
  }
  return "?";
}

void write_gguf_llama(const LlamaModel& m, const Tokenizer* tok, const std::string& path, const GgufWriteOptions& opt) {
  const LlamaConfig& c = m.cfg;
  GgufBuilder b;
  b.add_string("general.architecture", "llama");
  b.add_string("general.name", opt.name);
  if (opt.alignment != 32) b.add_u32("general.alignment", opt.alignment);
  const bool quant = opt.weights == GgufWeightType::Q8_0 || opt.weights == GgufWeightType::Q4_0 ||
                     opt.weights == GgufWeightType::Q4_1;
  // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q4_1 3, MOSTLY_Q8_0 7, MOSTLY_BF16 32.
  uint32_t ftype = 0;
  switch (opt.weights) {
    case GgufWeightType::F32: ftype = 0; break;
    case GgufWeightType::F16: ftype = 1; break;
    case GgufWeightType::Q4_0: ftype = 2; break;
    case GgufWeightType::Q4_1: ftype = 3; break;
    case GgufWeightType::Q8_0: ftype = 7; break;
    case GgufWeightType::BF16: ftype = 32; break;
  }
  b.add_u32("general.file_type", ftype);
  if (quant) b.add_u32("general.quantization_version", 2);
  b.add_u32("llama.context_length", static_cast<uint32_t>(c.seq_len));
  b.add_u32("llama.embedding_length", static_cast<uint32_t>(c.dim));
  b.add_u32("llama.block_count", static_cast<uint32_t>(c.n_layers));
  b.add_u32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  b.add_u32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
  b.add_u32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  b.add_f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.norm_eps));
  b.add_f32("llama.rope.freq_base", static_cast<float>(c.rope_theta));
  b.add_u32("llama.rope.dimension_count", static_cast<uint32_t>(c.hd()));
  if (c.head_dim > 0) {
    b.add_u32("llama.attention.key_length", static_cast<uint32_t>(c.head_dim));
    b.add_u32("llama.attention.value_length", static_cast<uint32_t>(c.head_dim));
  }
  b.add_u32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));
  if (tok) {
    CATQ_CHECK(tok->vocab_size() == c.vocab_size, Data, "{}: tokenizer has {} tokens but the model vocabulary is {}",
               path, tok->vocab_size(), c.vocab_size);
    std::vector<std::string> pieces;
    for (const auto& p : tok->pieces()) pieces.push_back(replace_all(p, " ", kSpmSpace));
    b.add_string("tokenizer.ggml.model", "llama");
    b.add_string_array("tokenizer.ggml.tokens", pieces);
    b.add_f32_array("tokenizer.ggml.scores", tok->scores());
    b.add_i32_array("tokenizer.ggml.token_type", tok->types());
    if (tok->bos_id() >= 0) b.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok->bos_id()));
    if (tok->eos_id() >= 0) b.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok->eos_id()));
    if (tok->unk_id() >= 0) b.add_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(tok->unk_id()));
  }
  for (const auto& [name, t0] : m.named_parameters()) {
    at::Tensor t = t0.detach().to(at::kCPU, at::kFloat).contiguous();
    std::vector<int64_t> ne(t.sizes().rbegin(), t.sizes().rend());
    GgufWeightType wt = t.dim() == 1 ? GgufWeightType::F32 : opt.weights;
    const bool blocked = wt == GgufWeightType::Q8_0 || wt == GgufWeightType::Q4_0 || wt == GgufWeightType::Q4_1;
    if (blocked && ne[0] % 32 != 0) wt = GgufWeightType::F16;
    switch (wt) {
      case GgufWeightType::F32:
        b.add_tensor(name, ne, GGML_F32, std::string(static_cast<const char*>(t.data_ptr()), t.numel() * 4));
        break;
      case GgufWeightType::F16: {
        at::Tensor h = t.to(at::kHalf).contiguous();
        b.add_tensor(name, ne, GGML_F16, std::string(static_cast<const char*>(h.data_ptr()), h.numel() * 2));
        break;
      }
      case GgufWeightType::BF16: {
        at::Tensor h = t.to(at::kBFloat16).contiguous();
        b.add_tensor(name, ne, GGML_BF16, std::string(static_cast<const char*>(h.data_ptr()), h.numel() * 2));
        break;
      }
      case GgufWeightType::Q8_0: b.add_tensor(name, ne, GGML_Q8_0, quantize_q8_0(t)); break;
      case GgufWeightType::Q4_0: b.add_tensor(name, ne, GGML_Q4_0, quantize_q4_0(t)); break;
      case GgufWeightType::Q4_1: b.add_tensor(name, ne, GGML_Q4_1, quantize_q4_1(t)); break;
    }
  }
  write_file_atomic(path, b.build(3, opt.alignment));
}

}  // namespace catq

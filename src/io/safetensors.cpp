#include "io/safetensors.h"

#include <sys/stat.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/json_read.h"
#include "llm/llama_tensors.h"

namespace catq {

using json = nlohmann::json;

static int64_t dtype_size(const std::string& d) {
  static const std::map<std::string, int64_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  auto it = sizes.find(d);
  return it == sizes.end() ? 0 : it->second;
}

SafetensorsFile read_safetensors(const std::string& path) {
  SafetensorsFile f;
  f.path = path;
  f.file = MappedFile::open(path);
  ByteReader r(f.file->data(), f.file->size(), path);
  uint64_t n = r.read<uint64_t>("safetensors header size");
  if (n > 100u * 1000 * 1000)
    fail(ErrorKind::Format, "{}: safetensors header size {} exceeds the 100 MB limit (not a safetensors file?)", path, n);
  std::string head = r.read_string(static_cast<size_t>(n), "safetensors JSON header");
  f.data_offset = 8 + n;
  const uint64_t buf = f.file->size() - f.data_offset;
  json j;
  try {
    j = parse_json(head);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: safetensors header is not valid JSON: {}", path, e.what());
  }
  if (!j.is_object()) fail(ErrorKind::Format, "{}: safetensors header must be a JSON object", path);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) fail(ErrorKind::Format, "{}: __metadata__ must be an object", path);
      for (auto m = e.begin(); m != e.end(); ++m)
        if (m.value().is_string()) f.metadata[m.key()] = m.value().get<std::string>();
      continue;
    }
    if (!e.is_object() || !e.contains("dtype") || !e["dtype"].is_string() || !e.contains("shape") ||
        !e["shape"].is_array() || !e.contains("data_offsets") || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2)
      fail(ErrorKind::Format, "{}: tensor {}: entry needs dtype (string), shape (array), data_offsets ([begin, end])",
           path, name);
    SafetensorsEntry t;
    t.dtype = e["dtype"].get<std::string>();
    for (const json& d : e["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (1ull << 40))
        fail(ErrorKind::Format, "{}: tensor {}: shape entries must be non-negative integers (got {})", path, name,
             d.dump());
      t.shape.push_back(d.get<int64_t>());
    }
    for (int k = 0; k < 2; ++k)
      if (!e["data_offsets"][k].is_number_unsigned())
        fail(ErrorKind::Format, "{}: tensor {}: data_offsets must be non-negative integers", path, name);
    t.begin = e["data_offsets"][0].get<uint64_t>();
    t.end = e["data_offsets"][1].get<uint64_t>();
    if (t.begin > t.end || t.end > buf)
      fail(ErrorKind::Format, "{}: tensor {}: data_offsets [{}, {}) outside the {}-byte data buffer (truncated file?)",
           path, name, t.begin, t.end, buf);
    uint64_t numel = checked_numel(t.shape, path, "tensor " + name);
    int64_t es = dtype_size(t.dtype);
    if (es == 0)
      fail(ErrorKind::Unsupported, "{}: tensor {} has unknown dtype {}", path, name, t.dtype);
    if (numel * static_cast<uint64_t>(es) != t.end - t.begin)
      fail(ErrorKind::Format, "{}: tensor {}: {} {} elements need {} bytes but data_offsets span {}", path, name, numel,
           t.dtype, numel * es, t.end - t.begin);
    if (t.end > t.begin) ranges.emplace_back(t.begin, t.end);
    f.tensors.emplace(name, std::move(t));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second)
      fail(ErrorKind::Format, "{}: tensor data ranges overlap at byte {}", path, ranges[i].first);
  return f;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail(ErrorKind::Format, "{}: tensor {} is missing", path, name);
  return it->second;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry& t = entry(name);
  at::ScalarType st;
  if (t.dtype == "F32") st = at::kFloat;
  else if (t.dtype == "F16") st = at::kHalf;
  else if (t.dtype == "BF16") st = at::kBFloat16;
  else if (t.dtype == "F64") st = at::kDouble;
  else fail(ErrorKind::Unsupported, "{}: tensor {} has dtype {}; catq reads F32, F16, BF16 and F64 weights", path, name, t.dtype);
  const uint64_t off = data_offset + t.begin;
  const uint8_t* p = file->data() + off;
  if (t.end > t.begin && reinterpret_cast<uintptr_t>(p) % c10::elementSize(st) == 0)
    return mapped_tensor(file, off, t.shape, st);
  // Misaligned (the data buffer may start at any byte offset) or empty: copy into a fresh, aligned tensor.
  at::Tensor out = at::empty(t.shape, at::TensorOptions().dtype(st));
  if (t.end > t.begin) std::memcpy(out.data_ptr(), p, t.end - t.begin);
  return out;
}

at::Tensor SafetensorsFile::tensor_f32(const std::string& name) const {
  at::Tensor v = tensor(name);
  // .to() copies unless v already is fp32; a mapped fp32 view is cloned so the result never aliases the mapping.
  at::Tensor out = v.scalar_type() != at::kFloat ? v.to(at::kFloat) : is_mapped_tensor(v) ? v.clone() : v;
  release(name);
  return out;
}

void SafetensorsFile::release(const std::string& name) const {
  const SafetensorsEntry& t = entry(name);
  file->release(data_offset + t.begin, t.end - t.begin);
}

// ---------------------------------------------------------------------------------------------------

namespace {

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string parent_dir(const std::string& p) {
  auto k = p.find_last_of('/');
  return k == std::string::npos ? "." : (k == 0 ? "/" : p.substr(0, k));
}

json read_json(const std::string& path) {
  std::string text = read_file_text(path);
  try {
    return parse_json(text);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: invalid JSON: {}", path, e.what());
  }
}

// config.json -> LlamaConfig for the architectures of llm/llama_tensors.h; refuses what catq's model cannot run,
// naming the field and the supported values.
LlamaConfig hf_llama_config(const json& cj, const std::string& cfg_path) {
  const std::string model_type = cj.contains("model_type") && cj["model_type"].is_string()
                                     ? cj["model_type"].get<std::string>() : std::string();
  const LlamaArchTraits* arch = llama_arch_from_hf(model_type);
  if (!arch && model_type.empty() && cj.contains("architectures") && cj["architectures"].is_array())
    for (const json& a : cj["architectures"])
      for (const LlamaArchTraits& t : llama_arch_table())
        if (a.is_string() && a.get<std::string>() == t.hf_class) arch = &t;
  if (!arch)
    fail(ErrorKind::Unsupported, "{}: model_type {} (architectures {}) is not supported; supported model_type: {}",
         cfg_path, cj.contains("model_type") ? cj["model_type"].dump() : "absent",
         cj.contains("architectures") ? cj["architectures"].dump() : "absent", llama_supported_archs(true));
  auto get_int = [&](const char* key, std::optional<int64_t> def) -> int64_t {
    if (!cj.contains(key) || cj[key].is_null()) {
      if (def) return *def;
      fail(ErrorKind::Format, "{}: {} is missing", cfg_path, key);
    }
    if (!cj[key].is_number_integer()) fail(ErrorKind::Format, "{}: {} must be an integer, got {}", cfg_path, key, cj[key].dump());
    return cj[key].get<int64_t>();
  };
  auto get_num = [&](const char* key, double def) -> double {
    if (!cj.contains(key) || cj[key].is_null()) return def;
    if (!cj[key].is_number()) fail(ErrorKind::Format, "{}: {} must be a number, got {}", cfg_path, key, cj[key].dump());
    return cj[key].get<double>();
  };
  LlamaConfig c;
  c.arch = arch->arch;
  c.dim = get_int("hidden_size", std::nullopt);
  c.hidden_dim = get_int("intermediate_size", std::nullopt);
  c.n_layers = get_int("num_hidden_layers", std::nullopt);
  c.n_heads = get_int("num_attention_heads", std::nullopt);
  c.n_kv_heads = get_int("num_key_value_heads", c.n_heads);
  c.vocab_size = get_int("vocab_size", std::nullopt);
  c.seq_len = get_int("max_position_embeddings", 2048);
  c.head_dim = get_int("head_dim", 0);
  if (c.n_heads > 0 && c.head_dim * c.n_heads == c.dim) c.head_dim = 0;
  c.rope_theta = get_num("rope_theta", 10000.0);
  c.norm_eps = get_num("rms_norm_eps", 1e-6);
  c.tied_head = cj.contains("tie_word_embeddings") && cj["tie_word_embeddings"].is_boolean()
                    ? cj["tie_word_embeddings"].get<bool>() : false;  // LlamaConfig's default
  if (cj.contains("rope_scaling") && !cj["rope_scaling"].is_null()) {
    const json& rs = cj["rope_scaling"];
    if (!rs.is_object()) fail(ErrorKind::Format, "{}: rope_scaling must be an object or null, got {}", cfg_path, rs.dump());
    const json& ty = rs.contains("rope_type") ? rs["rope_type"] : rs.contains("type") ? rs["type"] : json();
    const std::string type = ty.is_string() ? ty.get<std::string>() : "";
    auto num = [&](const char* key, std::optional<double> def) -> double {
      if (!rs.contains(key) || rs[key].is_null()) {
        if (def) return *def;
        fail(ErrorKind::Format, "{}: rope_scaling.{} is missing (needed for rope_type {})", cfg_path, key, type);
      }
      if (!rs[key].is_number()) fail(ErrorKind::Format, "{}: rope_scaling.{} must be a number", cfg_path, key);
      return rs[key].get<double>();
    };
    if (type == "llama3") {
      c.rope_scaling.type = "llama3";
      c.rope_scaling.factor = num("factor", std::nullopt);
      c.rope_scaling.low_freq_factor = num("low_freq_factor", std::nullopt);
      c.rope_scaling.high_freq_factor = num("high_freq_factor", std::nullopt);
      c.rope_scaling.original_max_position =
          static_cast<int64_t>(num("original_max_position_embeddings", std::nullopt));
    } else if (type == "linear") {
      c.rope_scaling.type = "linear";
      c.rope_scaling.factor = num("factor", std::nullopt);
    } else if (type != "default") {
      fail(ErrorKind::Unsupported, "{}: rope_scaling type {} is not supported (supported: default, linear, llama3)",
           cfg_path, ty.dump());
    }
  }
  auto flag = [&](const char* k) { return cj.contains(k) && cj[k].is_boolean() && cj[k].get<bool>(); };
  if (flag("attention_bias"))
    fail(ErrorKind::Unsupported, "{}: attention_bias = true is not supported (biases on q, k, v only, as model_type "
         "qwen2)", cfg_path);
  if (flag("mlp_bias")) fail(ErrorKind::Unsupported, "{}: mlp_bias = true is not supported", cfg_path);
  if (flag("use_sliding_window"))
    fail(ErrorKind::Unsupported, "{}: use_sliding_window = true is not supported for {}", cfg_path, model_type);
  if (model_type == "mistral" && cj.contains("sliding_window") && !cj["sliding_window"].is_null()) {
    c.sliding_window = get_int("sliding_window", 0);
    if (c.sliding_window >= c.seq_len) c.sliding_window = 0;  // never reached: plain causal attention
  }
  if (cj.contains("hidden_act") && cj["hidden_act"] != "silu")
    fail(ErrorKind::Unsupported, "{}: hidden_act {} is not supported (only silu)", cfg_path, cj["hidden_act"].dump());
  c.validate(cfg_path);
  return c;
}

}  // namespace

LlamaModel read_hf_llama(const std::string& path, const LlmLoadOptions& opt) {
  std::string dir = is_dir(path) ? path : parent_dir(path);
  const std::string cfg_path = dir + "/config.json";
  if (!file_exists(cfg_path)) fail(ErrorKind::Io, "{}: no config.json next to the weights ({} is missing)", path, cfg_path);
  json cj = read_json(cfg_path);
  if (!cj.is_object()) fail(ErrorKind::Format, "{}: must be a JSON object", cfg_path);

  LlamaConfig c = hf_llama_config(cj, cfg_path);

  // Which file holds each tensor.
  std::map<std::string, std::string> where;
  std::map<std::string, SafetensorsFile> files;
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (!is_dir(path)) {
    files.emplace(path, read_safetensors(path));
    for (auto& [n, e] : files.at(path).tensors) where[n] = path;
  } else if (file_exists(index_path)) {
    json ij = read_json(index_path);
    if (!ij.is_object() || !ij.contains("weight_map") || !ij["weight_map"].is_object())
      fail(ErrorKind::Format, "{}: needs a \"weight_map\" object", index_path);
    for (auto it = ij["weight_map"].begin(); it != ij["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail(ErrorKind::Format, "{}: weight_map[{}] must be a file name", index_path, it.key());
      std::string fn = it.value().get<std::string>();
      if (fn.empty() || fn.find('/') != std::string::npos || fn == "..")
        fail(ErrorKind::Format, "{}: weight_map[{}] = \"{}\" is not a file name in the folder", index_path, it.key(), fn);
      where[it.key()] = dir + "/" + fn;
    }
    for (auto& [n, file] : where)
      if (!files.count(file)) files.emplace(file, read_safetensors(file));
    for (auto& [n, file] : where)
      if (!files.at(file).tensors.count(n))
        fail(ErrorKind::Format, "{}: lists tensor {} in {}, which does not contain it", index_path, n, file);
  } else {
    const std::string single = dir + "/model.safetensors";
    if (!file_exists(single))
      fail(ErrorKind::Io, "{}: neither model.safetensors nor model.safetensors.index.json found", dir);
    files.emplace(single, read_safetensors(single));
    for (auto& [n, e] : files.at(single).tensors) where[n] = single;
  }

  auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    auto it = where.find(name);
    if (it == where.end()) fail(ErrorKind::Format, "{}: tensor {} is missing", dir, name);
    const SafetensorsFile& f = files.at(it->second);
    const auto& e = f.tensors.at(name);
    if (e.shape != shape)
      fail(ErrorKind::Format, "{}: tensor {} has shape {} but config.json implies {}", f.path, name,
           fmt::join(e.shape, "x"), fmt::join(shape, "x"));
    if (!opt.keep_stored_dtype) return f.tensor_f32(name);
    at::Tensor w = f.tensor(name);
    return w.scalar_type() == at::kDouble ? f.tensor_f32(name) : w;
  };
  // A tensor whose rows are permuted: the permuted copy (stored dtype when keep_stored_dtype) replaces the view, and
  // the source pages are handed back.
  auto load_permuted = [&](const std::string& name, std::vector<int64_t> shape, int64_t heads) {
    at::Tensor w = rope_permute_hf_to_interleaved(load(name, std::move(shape)), heads);
    files.at(where.at(name)).release(name);
    return w;
  };
  LlamaModel m;
  m.cfg = c;
  m.tok_embeddings = load(kLlamaTokenEmbd.hf_name(), kLlamaTokenEmbd.shape(c));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LlamaBlock b;
    for (const LlamaBlockTensor& t : llama_block_tensors()) {
      if (!t.present(c)) continue;
      b.*t.member = t.rope == HfRope::None ? load(t.hf_name(l), t.shape(c))
                                           : load_permuted(t.hf_name(l), t.shape(c), t.hf_rope_heads(c));
    }
    m.blocks.push_back(std::move(b));
  }
  m.norm = load(kLlamaOutputNorm.hf_name(), kLlamaOutputNorm.shape(c));
  m.output = c.tied_head ? m.tok_embeddings : load(kLlamaOutput.hf_name(), kLlamaOutput.shape(c));
  m.check_shapes(dir);
  return m;
}

// ---------------------------------------------------------------------------------------------------

namespace {

const char* dtype_name(SafetensorsDtype d) {
  return d == SafetensorsDtype::F32 ? "F32" : d == SafetensorsDtype::F16 ? "F16" : "BF16";
}
at::ScalarType dtype_scalar(SafetensorsDtype d) {
  return d == SafetensorsDtype::F32 ? at::kFloat : d == SafetensorsDtype::F16 ? at::kHalf : at::kBFloat16;
}
int64_t dtype_bytes(SafetensorsDtype d) { return d == SafetensorsDtype::F32 ? 4 : 2; }


}  // namespace

uint64_t write_safetensors_streamed(const std::string& path, const std::vector<SafetensorsTensorSpec>& specs,
                                    SafetensorsDtype dtype, const std::function<at::Tensor(size_t)>& produce,
                                    const std::map<std::string, std::string>& metadata) {
  const char* dname = dtype_name(dtype);
  const at::ScalarType st = dtype_scalar(dtype);
  const int64_t es = dtype_bytes(dtype);
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  size_t offset = 0;
  std::vector<size_t> nbytes;
  for (const SafetensorsTensorSpec& s : specs) {
    size_t nb = static_cast<size_t>(checked_numel(s.shape, path, "tensor " + s.name)) * es;
    CATQ_CHECK(!h.contains(s.name) && s.name != "__metadata__", Usage, "{}: tensor name {} given twice (or reserved)",
               path, s.name);
    h[s.name] = {{"dtype", dname}, {"shape", s.shape}, {"data_offsets", {offset, offset + nb}}};
    offset += nb;
    nbytes.push_back(nb);
  }
  std::string hs = h.dump();
  hs.resize((hs.size() + 7) / 8 * 8, ' ');  // pad so the data buffer is 8-byte aligned (allowed by the spec)
  AtomicFile out(path);
  const uint64_t n = hs.size();
  out.write(&n, 8);
  out.write(hs.data(), hs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    at::Tensor t = produce(i);
    CATQ_CHECK(t.defined() && t.sizes().vec() == specs[i].shape, Internal,
               "{}: tensor {}: produced shape {} but the header says {}", path, specs[i].name,
               t.defined() ? fmt::format("{}", fmt::join(t.sizes(), "x")) : std::string("(undefined)"),
               fmt::join(specs[i].shape, "x"));
    t = t.detach().to(at::kCPU).to(st).contiguous();
    out.write(t.data_ptr(), nbytes[i]);
  }
  const uint64_t total = out.written();
  out.commit();
  return total;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       SafetensorsDtype dtype, const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsTensorSpec> specs;
  for (const auto& [name, t] : tensors) specs.push_back({name, t.sizes().vec()});
  write_safetensors_streamed(path, specs, dtype, [&](size_t i) { return tensors[i].second; }, metadata);
}

namespace {

// config.json for c; Error(Unsupported) for what Hugging Face cannot express.
json hf_config_json(const LlamaConfig& c, SafetensorsDtype dtype, const std::string& folder, HfTokenIds ids) {
  const char* tdtype = dtype == SafetensorsDtype::F32 ? "float32" : dtype == SafetensorsDtype::F16 ? "float16" : "bfloat16";
  const LlamaArchTraits& arch = llama_arch_traits(c.arch);
  const bool mistral = c.arch == LlamaArch::Llama && c.sliding_window > 0;
  json cfg = {{"architectures", {mistral ? "MistralForCausalLM" : arch.hf_class}},
              {"model_type", mistral ? "mistral" : arch.hf_types[0]},
              {"hidden_size", c.dim},
              {"intermediate_size", c.hidden_dim},
              {"num_hidden_layers", c.n_layers},
              {"num_attention_heads", c.n_heads},
              {"num_key_value_heads", c.n_kv_heads},
              {"head_dim", c.hd()},
              {"vocab_size", c.vocab_size},
              {"max_position_embeddings", c.seq_len},
              {"rope_theta", c.rope_theta},
              {"rms_norm_eps", c.norm_eps},
              {"tie_word_embeddings", c.tied_head},
              {"hidden_act", "silu"},
              {"rope_scaling", nullptr},
              {"bos_token_id", ids.bos >= 0 ? json(ids.bos) : json(nullptr)},
              {"eos_token_id", ids.eos >= 0 ? json(ids.eos) : json(nullptr)},
              {"torch_dtype", tdtype}};
  if (c.arch != LlamaArch::Qwen2) cfg["attention_bias"] = false;
  if (c.arch == LlamaArch::Llama) cfg["mlp_bias"] = false;
  if (c.arch != LlamaArch::Llama) cfg["use_sliding_window"] = false;
  if (mistral) cfg["sliding_window"] = c.sliding_window;
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type == "linear") {
    cfg["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rs.factor}};
  } else if (rs.type == "llama3") {
    cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", rs.factor}, {"low_freq_factor", rs.low_freq_factor},
                           {"high_freq_factor", rs.high_freq_factor},
                           {"original_max_position_embeddings", rs.original_max_position}};
  } else if (rs.type != "none") {
    fail(ErrorKind::Unsupported, "{}: RoPE scaling \"{}\" (per-frequency factors from a GGUF) has no config.json "
         "equivalent", folder, rs.type);
  }
  return cfg;
}

}  // namespace

std::vector<SafetensorsTensorSpec> hf_llama_tensor_specs(const LlamaConfig& c) {
  std::vector<SafetensorsTensorSpec> specs;
  specs.push_back({kLlamaTokenEmbd.hf_name(), kLlamaTokenEmbd.shape(c)});
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (const LlamaBlockTensor* t : llama_block_tensors_hf_order())
      if (t->present(c)) specs.push_back({t->hf_name(l), t->shape(c)});
  specs.push_back({kLlamaOutputNorm.hf_name(), kLlamaOutputNorm.shape(c)});
  if (!c.tied_head) specs.push_back({kLlamaOutput.hf_name(), kLlamaOutput.shape(c)});
  return specs;
}

void write_hf_llama_streamed(const LlamaConfig& c, const std::string& folder, SafetensorsDtype dtype, int shards,
                             const std::function<at::Tensor(size_t)>& produce, HfTokenIds ids) {
  CATQ_CHECK(shards >= 1, Usage, "write_hf_llama: shards must be >= 1");
  if (!is_dir(folder) && ::mkdir(folder.c_str(), 0755) != 0)
    fail(ErrorKind::Io, "{}: cannot create folder: {}", folder, std::strerror(errno));
  const std::vector<SafetensorsTensorSpec> ts = hf_llama_tensor_specs(c);
  write_file_atomic(folder + "/config.json", hf_config_json(c, dtype, folder, ids).dump(2) + "\n");

  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (shards == 1) {
    write_safetensors_streamed(folder + "/model.safetensors", ts, dtype, produce, meta);
    return;
  }
  json wm = json::object();
  size_t per = (ts.size() + shards - 1) / shards;
  int64_t total = 0;
  for (int s = 0; s < shards; ++s) {
    std::string fn = fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards);
    const size_t first = std::min(ts.size(), s * per), last = std::min(ts.size(), (s + 1) * per);
    std::vector<SafetensorsTensorSpec> part(ts.begin() + first, ts.begin() + last);
    for (const SafetensorsTensorSpec& t : part) {
      wm[t.name] = fn;
      total += static_cast<int64_t>(checked_numel(t.shape, folder, t.name)) * dtype_bytes(dtype);
    }
    write_safetensors_streamed(folder + "/" + fn, part, dtype, [&](size_t i) { return produce(first + i); }, meta);
  }
  json idx = {{"metadata", {{"total_size", total}}}, {"weight_map", wm}};
  write_file_atomic(folder + "/model.safetensors.index.json", idx.dump(2) + "\n");
}

void write_hf_llama(const LlamaModel& m, const std::string& folder, SafetensorsDtype dtype, int shards, HfTokenIds ids) {
  const LlamaConfig& c = m.cfg;
  CATQ_CHECK(shards >= 1, Usage, "write_hf_llama: shards must be >= 1");
  for (const OnlineTransform* o : {&m.blocks.at(0).attn_in, &m.blocks.at(0).ffn_in, &m.blocks.at(0).down_in})
    CATQ_CHECK(!o->defined(), Unsupported, "{}: a model with online transforms has no Hugging Face equivalent", folder);
  // The model's tensors in hf_llama_tensor_specs order; q/k rows are permuted back to HF order one at a time.
  struct Src {
    const at::Tensor* w;
    int64_t rope_heads;  // 0 = as is
  };
  std::vector<Src> ts;
  ts.push_back({&m.tok_embeddings, 0});
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (const LlamaBlockTensor* t : llama_block_tensors_hf_order()) {
      if (!t->present(c)) continue;
      ts.push_back({&(m.blocks[l].*t->member), t->rope == HfRope::None ? 0 : t->hf_rope_heads(c)});
    }
  ts.push_back({&m.norm, 0});
  if (!c.tied_head) ts.push_back({&m.output, 0});
  write_hf_llama_streamed(c, folder, dtype, shards, [&](size_t i) {
    const Src& s = ts.at(i);
    return s.rope_heads == 0 ? *s.w : rope_permute_interleaved_to_hf(s.w->detach(), s.rope_heads);
  }, ids);
}

}  // namespace catq

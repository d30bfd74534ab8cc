// The quantized-Llama .catq file: CatqLlmWriter (the streaming writer) and write_catq_llm on top of it, read_catq_llm
// (config, FP tensors, bit-packed weight codes and params, online transforms, the tokenizer) on the shared container
// (catq_container.h).
#include "io/catq_file.h"

#include <cstdio>
#include <cstring>
#include <optional>
#include <random>

#include "core/error.h"
#include "io/catq_container.h"
#include "io/hf_tokenizer.h"
#include "io/llama_config_json.h"
#include "llm/llama_tensors.h"

namespace catq {

using nlohmann::json;

// ---- The streaming writer ------------------------------------------------------------------------------------

namespace {

at::Tensor bytes_tensor(const std::string& s) {
  at::Tensor b = at::empty({static_cast<int64_t>(s.size())}, at::kByte);
  if (!s.empty()) std::memcpy(b.data_ptr(), s.data(), s.size());
  return b;
}

std::string tensor_text(const at::Tensor& b) {
  return std::string(reinterpret_cast<const char*>(b.data_ptr()), static_cast<size_t>(b.numel()));
}

}  // namespace

struct CatqLlmWriter::Impl {
  std::string path, blob_path;
  LlamaConfig cfg;
  json h, tensors = json::object(), layers = json::array();
  std::unique_ptr<CatqBlobWriter> blob;
  std::vector<std::string> names;                 // layer_infos() order
  std::vector<std::vector<int64_t>> shapes;       // their weight shapes
  size_t next = 0;                                // layers added so far
  bool has_tokenizer = false, finished = false;
};

CatqLlmWriter::CatqLlmWriter(const std::string& path, const LlamaConfig& cfg, const QuantConfig& qc,
                             const json& metadata)
    : impl_(std::make_unique<Impl>()) {
  Impl& w = *impl_;
  w.path = path;
  w.cfg = cfg;
  std::random_device rd;
  w.blob_path = fmt::format("{}.blob.tmp{:08x}", path, rd());
  w.h["format"] = kCatqLlmFormat;
  w.h["version"] = kCatqVersion;
  w.h["metadata"] = metadata;
  w.h["quant_config"] = qc.to_json();
  w.h["config"] = llama_config_to_json(cfg);
  for (int64_t l = 0; l < cfg.n_layers; ++l)
    for (int j = 0; j < kLinearsPerBlock; ++j) {
      w.names.push_back(llama_block_linear(j).gguf_base(l));
      w.shapes.push_back(llama_block_linear(j).shape(cfg));
    }
  w.names.push_back(kLlamaOutput.gguf);
  w.shapes.push_back(kLlamaOutput.shape(cfg));
  w.blob = std::make_unique<CatqBlobWriter>(w.blob_path);
}

CatqLlmWriter::~CatqLlmWriter() {
  if (!impl_) return;
  impl_->blob.reset();  // closes the temp blob
  std::remove(impl_->blob_path.c_str());
}

void CatqLlmWriter::add_tensor(const std::string& key, const at::Tensor& t) {
  Impl& w = *impl_;
  CATQ_CHECK(!w.finished, Internal, "{}: CatqLlmWriter: tensor '{}' added after finish()", w.path, key);
  CATQ_CHECK(t.defined(), Internal, "{}: CatqLlmWriter: tensor '{}' is undefined", w.path, key);
  CATQ_CHECK(!w.tensors.contains(key), Internal, "{}: CatqLlmWriter: tensor '{}' added twice", w.path, key);
  w.tensors[key] = w.blob->add(t);
}

namespace {
constexpr const char* kOnlineNames[3] = {"attn_in", "ffn_in", "down_in"};
constexpr int kMaxOnlineFactors = 64;
}  // namespace

void CatqLlmWriter::add_online_transforms(int64_t l, const LlamaBlock& b) {
  const OnlineTransform* online[3] = {&b.attn_in, &b.ffn_in, &b.down_in};
  for (int k = 0; k < 3; ++k) {
    const auto& fs = online[k]->factors;
    CATQ_CHECK(static_cast<int>(fs.size()) <= kMaxOnlineFactors, Internal, "blk.{}.{}: {} factors (at most {})", l,
               kOnlineNames[k], fs.size(), kMaxOnlineFactors);
    for (size_t i = 0; i < fs.size(); ++i) {
      const std::string key = fmt::format("blk.{}.{}.{}", l, kOnlineNames[k], i);
      add_tensor(fmt::format("{}.{}", key, to_string(fs[i].kind)), fs[i].t.to(at::kFloat));
      if (fs[i].kind == OnlineFactor::Kind::Hadamard) add_tensor(key + ".signs", fs[i].signs.to(at::kFloat));
    }
  }
}

size_t CatqLlmWriter::next_layer(const std::string& name) {
  const Impl& w = *impl_;
  CATQ_CHECK(!w.finished, Internal, "{}: CatqLlmWriter: layer '{}' added after finish()", w.path, name);
  CATQ_CHECK(w.next < w.names.size(), Internal, "{}: CatqLlmWriter: layer '{}' is one more than the model's {} linear "
             "layers", w.path, name, w.names.size());
  CATQ_CHECK(name == w.names[w.next], Internal, "{}: CatqLlmWriter: layer {} is '{}', expected '{}' (layer_infos() "
             "order)", w.path, w.next, name, w.names[w.next]);
  return w.next;
}

void CatqLlmWriter::add_quantized_layer(const std::string& name, const QuantizedWeight& weight,
                                        const QuantParams* ip) {
  Impl& w = *impl_;
  const size_t i = next_layer(name);
  CATQ_CHECK(weight.shape == w.shapes[i], Internal, "{}: CatqLlmWriter: layer '{}': codes of shape [{}], expected [{}]",
             w.path, name, fmt::join(weight.shape, ","), fmt::join(w.shapes[i], ","));
  json lj = {{"name", name}, {"weight", w.blob->add_weight(weight)}};
  if (ip) lj["input"] = params_to_json(*ip, *w.blob);
  w.layers.push_back(std::move(lj));
  ++w.next;
}

void CatqLlmWriter::add_fp_layer(const std::string& name, const at::Tensor& weight, const QuantParams* ip) {
  Impl& w = *impl_;
  const size_t i = next_layer(name);
  const bool tied_fp_head = name == kLlamaOutput.gguf && w.cfg.tied_head;
  if (!tied_fp_head) {
    CATQ_CHECK(weight.defined() && weight.sizes().vec() == w.shapes[i], Internal,
               "{}: CatqLlmWriter: layer '{}': weight of shape [{}], expected [{}]", w.path, name,
               weight.defined() ? fmt::format("{}", fmt::join(weight.sizes(), ",")) : "undefined",
               fmt::join(w.shapes[i], ","));
    CATQ_CHECK(!w.tensors.contains(name), Internal, "{}: CatqLlmWriter: tensor '{}' added twice", w.path, name);
    w.tensors[name] = w.blob->add(weight);
  }
  json lj = {{"name", name}};
  if (ip) lj["input"] = params_to_json(*ip, *w.blob);
  w.layers.push_back(std::move(lj));
  ++w.next;
}

void CatqLlmWriter::add_layer(const std::string& name, const QuantParams* wp, const at::Tensor& cw,
                              const QuantParams* ip) {
  if (!wp) return add_fp_layer(name, cw, ip);
  CATQ_CHECK(cw.defined(), Internal, "{}: CatqLlmWriter: layer '{}': codes undefined", impl_->path, name);
  CATQ_CHECK(wp->qmax > wp->qmin, Internal, "{}: CatqLlmWriter: layer '{}': empty integer range [{}, {}]", impl_->path,
             name, wp->qmin, wp->qmax);
  next_layer(name);  // order first, so a misplaced layer is named as such
  CATQ_CHECK(cw.sizes().vec() == impl_->shapes[impl_->next], Internal,
             "{}: CatqLlmWriter: layer '{}': codes of shape [{}], expected [{}]", impl_->path, name,
             fmt::join(cw.sizes(), ","), fmt::join(impl_->shapes[impl_->next], ","));
  add_quantized_layer(name, make_quantized_weight(cw, *wp), ip);
}

void CatqLlmWriter::set_tokenizer(const Tokenizer& tok) {
  Impl& w = *impl_;
  CATQ_CHECK(!w.finished && !w.has_tokenizer, Internal, "{}: CatqLlmWriter: set_tokenizer called twice or after "
             "finish()", w.path);
  const int64_t V = w.cfg.vocab_size;
  CATQ_CHECK(tok.is_bpe() ? tok.vocab_size() <= V : tok.vocab_size() == V, Data,
             "{}: the tokenizer has {} tokens but the model's vocabulary is {}", w.path, tok.vocab_size(), V);
  CatqBlobWriter& blob = *w.blob;
  if (tok.is_bpe()) {
    // Hugging Face texts (io/hf_tokenizer.h: reading them back gives an identical tokenizer).
    w.h["tokenizer"] = {{"kind", to_string(tok.kind())},
                        {"tokenizer_json", blob.add(bytes_tensor(hf_tokenizer_json(tok)))},
                        {"tokenizer_config_json", blob.add(bytes_tensor(hf_tokenizer_config_json(tok)))},
                        {"bos", tok.bos_id()}, {"eos", tok.eos_id()}, {"unk", tok.unk_id()}};
  } else {
    std::string bytes;
    std::vector<int32_t> lens;
    for (const auto& p : tok.pieces()) bytes += p, lens.push_back(static_cast<int32_t>(p.size()));
    w.h["tokenizer"] = {{"bytes", blob.add(bytes_tensor(bytes))}, {"lengths", blob.add(at::tensor(lens, at::kInt))},
                        {"scores", blob.add(at::tensor(tok.scores(), at::kFloat))},
                        {"types", blob.add(at::tensor(tok.types(), at::kInt))},
                        {"bos", tok.bos_id()}, {"eos", tok.eos_id()}, {"unk", tok.unk_id()}};
  }
  w.has_tokenizer = true;
}

void CatqLlmWriter::set_metadata(const json& metadata) {
  CATQ_CHECK(!impl_->finished, Internal, "{}: CatqLlmWriter: set_metadata called after finish()", impl_->path);
  impl_->h["metadata"] = metadata;
}

void CatqLlmWriter::finish() {
  Impl& w = *impl_;
  CATQ_CHECK(!w.finished, Internal, "{}: CatqLlmWriter: finish() called twice", w.path);
  CATQ_CHECK(w.next == w.names.size(), Internal, "{}: CatqLlmWriter: {} of the model's {} linear layers were added",
             w.path, w.next, w.names.size());
  std::vector<std::string> required = {kLlamaTokenEmbd.gguf, kLlamaOutputNorm.gguf};
  for (int64_t l = 0; l < w.cfg.n_layers; ++l)
    for (const LlamaBlockTensor& t : llama_block_tensors())
      if (t.linear < 0 && t.present(w.cfg)) required.push_back(t.catq_key(l));
  for (const std::string& k : required)
    CATQ_CHECK(w.tensors.contains(k), Internal, "{}: CatqLlmWriter: tensor '{}' was never added", w.path, k);
  w.h["layers"] = std::move(w.layers);
  w.h["tensors"] = std::move(w.tensors);
  w.finished = true;  // no more additions, whatever happens below
  write_catq_container(w.path, w.h, *w.blob);
  w.blob.reset();
  std::remove(w.blob_path.c_str());
}

void write_catq_llm(const std::string& path, const LlamaModel& m, const SimQuant& sq, const Tokenizer* tok,
                    const json& metadata) {
  // Calls in the order of the original one-shot writer (FP tensors, layers, tokenizer): the same bytes.
  CatqLlmWriter w(path, m.cfg, sq.config(), metadata);
  w.add_tensor(kLlamaTokenEmbd.gguf, m.tok_embeddings);
  w.add_tensor(kLlamaOutputNorm.gguf, m.norm);
  for (size_t l = 0; l < m.blocks.size(); ++l) {
    const LlamaBlock& b = m.blocks[l];
    for (const LlamaBlockTensor& t : llama_block_tensors())  // RMSNorm weights and biases; linears are layers
      if (t.linear < 0 && t.present(m.cfg)) w.add_tensor(t.catq_key(static_cast<int64_t>(l)), b.*t.member);
    w.add_online_transforms(static_cast<int64_t>(l), b);
  }
  for (const LayerInfo& l : m.layer_infos()) {
    const SimQuant::Layer& sl = sq.layer(l.name);
    const QuantParams* ip = nullptr;
    if (sl.input_spec.enabled && sl.input_spec.granularity != Granularity::PerToken) {
      ip = sq.input_params(l.name);
      CATQ_CHECK(ip != nullptr, Internal, "write_catq_llm: layer '{}' has no input params (calibrate first)", l.name);
    }
    if (sl.weight_spec.enabled) w.add_quantized_layer(l.name, sq.quantized_weight(l.name, m.layer_weight(l.index)), ip);
    else w.add_fp_layer(l.name, m.layer_weight(l.index), ip);
  }
  if (tok) w.set_tokenizer(*tok);
  w.finish();
}

QuantizedLlama read_catq_llm(const std::string& path) {
  const CatqContainer c = read_catq_container(path);
  const CatqBlobReader blob = c.blob();
  QuantizedLlama q;
  try {
    const json& h = c.header;
    CATQ_CHECK(h.value("format", "") == kCatqLlmFormat, Format, "{}: header 'format' is '{}', expected {} (a quantized "
               "language model)", path, h.value("format", ""), kCatqLlmFormat);
    q.metadata = h.value("metadata", json::object());
    LlamaModel& m = q.model;
    m.cfg = llama_config_from_json(h.at("config"), path);
    m.cfg.validate(path);
    const json& tj = h.at("tensors");
    auto tensor = [&](const std::string& name) {
      CATQ_CHECK(tj.contains(name), Format, "{}: tensor '{}' is missing", path, name);
      return blob.get(tj.at(name), name);
    };
    m.tok_embeddings = tensor(kLlamaTokenEmbd.gguf);
    m.norm = tensor(kLlamaOutputNorm.gguf);
    m.blocks.resize(m.cfg.n_layers);
    for (int64_t l = 0; l < m.cfg.n_layers; ++l) {
      LlamaBlock& b = m.blocks[l];
      for (const LlamaBlockTensor& t : llama_block_tensors())
        if (t.linear < 0 && t.present(m.cfg)) b.*t.member = tensor(t.catq_key(l));
      const int64_t dims[3] = {m.cfg.dim, m.cfg.dim, m.cfg.hidden_dim};
      OnlineTransform* online[3] = {&b.attn_in, &b.ffn_in, &b.down_in};
      for (int k = 0; k < 3; ++k) {
        const std::string base = fmt::format("blk.{}.{}", l, kOnlineNames[k]);
        if (tj.contains(base)) {  // files before structured transforms: one dense matrix
          OnlineFactor f = OnlineFactor::dense(tensor(base));
          check_online_factor(f, dims[k], path + ": " + base);
          online[k]->factors.push_back(std::move(f));
          continue;
        }
        for (int i = 0;; ++i) {
          const std::string key = fmt::format("{}.{}", base, i);
          std::optional<OnlineFactor> f;
          for (OnlineFactor::Kind kind : {OnlineFactor::Kind::Dense, OnlineFactor::Kind::BlockDiag,
                                          OnlineFactor::Kind::Hadamard}) {
            const std::string name = fmt::format("{}.{}", key, to_string(kind));
            if (!tj.contains(name)) continue;
            CATQ_CHECK(!f, Format, "{}: online transform factor {} is stored twice", path, key);
            f = OnlineFactor{kind, tensor(name), kind == OnlineFactor::Kind::Hadamard ? tensor(key + ".signs") : at::Tensor()};
          }
          if (!f) break;
          CATQ_CHECK(i < kMaxOnlineFactors, Format, "{}: {} has more than {} factors", path, base, kMaxOnlineFactors);
          check_online_factor(*f, dims[k], path + ": " + key);
          online[k]->factors.push_back(std::move(*f));
        }
      }
    }
    // Layer shapes from the config (layer_infos() order: q, k, v, o, gate, up, down per block, then the head).
    const int64_t n_layers = m.cfg.n_layers * kLinearsPerBlock + 1;
    auto shape_of = [&](int64_t i) {
      return i == n_layers - 1 ? kLlamaOutput.shape(m.cfg)
                               : llama_block_linear(static_cast<int>(i % kLinearsPerBlock)).shape(m.cfg);
    };
    const json& lj = h.at("layers");
    CATQ_CHECK(lj.is_array() && static_cast<int64_t>(lj.size()) == n_layers, Format,
               "{}: {} layer entries, the model has {} linear layers", path, lj.is_array() ? lj.size() : 0, n_layers);
    // Weights: FP tensors as stored, quantized ones as placeholders of the right shape (codes installed below).
    for (int64_t i = 0; i < n_layers; ++i) {
      const json& e = lj.at(i);
      at::Tensor& w = m.layer_weight(i);
      const std::string name = e.at("name").get<std::string>();
      if (e.contains("weight")) w = at::zeros({1}).expand(shape_of(i));
      else if (i == n_layers - 1 && m.cfg.tied_head) w = m.tok_embeddings;
      else w = tensor(name);
    }
    const auto infos = m.layer_infos();
    for (const LayerInfo& l : infos)
      CATQ_CHECK(lj.at(l.index).at("name").get<std::string>() == l.name, Format, "{}: layer {} is '{}', expected '{}'",
                 path, l.index, lj.at(l.index).at("name").get<std::string>(), l.name);
    if (lj.at(infos.back().index).contains("weight")) m.cfg.tied_head = false;  // a quantized head is its own tensor
    auto infos2 = m.layer_infos();  // shapes from the config (placeholders are fine for shapes)
    q.sq = std::make_unique<SimQuant>(QuantConfig::from_json(h.at("quant_config").dump(), path + ": quant_config"));
    q.sq->bind(infos2);
    for (const LayerInfo& l : infos2) {
      const json& e = lj.at(l.index);
      const std::string where = "layer '" + l.name + "'";
      const SimQuant::Layer& sl = q.sq->layer(l.name);
      CATQ_CHECK(sl.weight_spec.enabled == e.contains("weight"), Format,
                 "{}: {}: the quant_config and the stored weight disagree on whether it is quantized", path, where);
      if (e.contains("weight")) {
        const QuantizedWeight qw = blob.get_weight(e.at("weight"), where + " weight");
        try {
          q.sq->set_quantized_weight(l.name, qw);
        } catch (const Error& err) {
          fail(ErrorKind::Format, "{}: {}", path, err.what());
        }
        m.layer_weight(l.index) = q.sq->layer(l.name).fixed_weight.clone();
      }
      if (e.contains("input")) {
        CATQ_CHECK(sl.input_spec.enabled, Format, "{}: {}: input params stored but the config keeps the input FP", path,
                   where);
        q.sq->set_input_params(l.name, params_from_json(e.at("input"), blob, where + " input", path));
      } else {
        CATQ_CHECK(!sl.input_spec.enabled || sl.input_spec.granularity == Granularity::PerToken, Format,
                   "{}: {}: the config quantizes the input statically but no params are stored", path, where);
      }
    }
    m.check_shapes(path);
    q.sq->set_mode(SimQuant::Mode::Quantize);
    if (h.contains("tokenizer")) {
      const json& k = h.at("tokenizer");
      const std::string kind = k.value("kind", "llama2c");  // files before BPE kinds have no "kind"
      if (kind != "llama2c") {
        CATQ_CHECK(kind == to_string(TokenizerKind::SpmBpe) || kind == to_string(TokenizerKind::ByteLevelBpe),
                   Unsupported, "{}: tokenizer kind '{}', this catq reads llama2c, spm-bpe and byte-level-bpe", path,
                   kind);
        auto text = [&](const char* key) {
          at::Tensor b = blob.get(k.at(key), std::string("tokenizer ") + key);
          CATQ_CHECK(b.scalar_type() == at::kByte && b.dim() == 1, Format, "{}: tokenizer {} must be U8 bytes", path,
                     key);
          return tensor_text(b);
        };
        Tokenizer t = parse_hf_tokenizer(text("tokenizer_json"), text("tokenizer_config_json"),
                                         path + " (embedded tokenizer.json)");
        CATQ_CHECK(to_string(t.kind()) == kind && t.vocab_size() <= m.cfg.vocab_size, Format,
                   "{}: the embedded {} tokenizer ({} tokens) does not match its kind '{}' or the vocabulary of {}",
                   path, to_string(t.kind()), t.vocab_size(), kind, m.cfg.vocab_size);
        q.tokenizer.emplace(std::move(t));
      } else {
        at::Tensor bytes = blob.get(k.at("bytes"), "tokenizer bytes"), lens = blob.get(k.at("lengths"), "tokenizer lengths");
        at::Tensor scores = blob.get(k.at("scores"), "tokenizer scores"), types = blob.get(k.at("types"), "tokenizer types");
        CATQ_CHECK(lens.numel() == m.cfg.vocab_size && scores.numel() == lens.numel() && types.numel() == lens.numel() &&
                       lens.scalar_type() == at::kInt && types.scalar_type() == at::kInt &&
                       scores.scalar_type() == at::kFloat && bytes.scalar_type() == at::kByte,
                   Format, "{}: the tokenizer does not match the vocabulary of {}", path, m.cfg.vocab_size);
        std::vector<std::string> pieces;
        const char* p = reinterpret_cast<const char*>(bytes.data_ptr());
        const int32_t* lp = lens.data_ptr<int32_t>();
        int64_t off = 0;
        for (int64_t i = 0; i < lens.numel(); ++i) {
          const int64_t n = lp[i];
          CATQ_CHECK(n >= 0 && off + n <= bytes.numel(), Format, "{}: tokenizer piece {} overruns its bytes", path, i);
          pieces.emplace_back(p + off, static_cast<size_t>(n));
          off += n;
        }
        std::vector<float> sc(scores.data_ptr<float>(), scores.data_ptr<float>() + scores.numel());
        std::vector<int32_t> ty(types.data_ptr<int32_t>(), types.data_ptr<int32_t>() + types.numel());
        q.tokenizer.emplace(std::move(pieces), std::move(sc), std::move(ty), k.at("bos").get<int32_t>(),
                            k.at("eos").get<int32_t>(), k.at("unk").get<int32_t>());
      }
    }
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: malformed header: {}", path, e.what());
  }
  return q;
}

}  // namespace catq

// The quantized-Llama .catq file: write_catq_llm / read_catq_llm (config, FP tensors, bit-packed weight codes and
// params, online transforms, the tokenizer) on the shared container (catq_container.h).
#include "io/catq_file.h"

#include <cstring>

#include "core/error.h"
#include "io/catq_container.h"
#include "io/llama_config_json.h"
#include "llm/llama_tensors.h"

namespace catq {

using nlohmann::json;

void write_catq_llm(const std::string& path, const LlamaModel& m, const SimQuant& sq, const Tokenizer* tok,
                    const json& metadata) {
  CatqBlobWriter blob;
  json h;
  h["format"] = kCatqLlmFormat;
  h["version"] = kCatqVersion;
  h["metadata"] = metadata;
  h["quant_config"] = sq.config().to_json();
  h["config"] = llama_config_to_json(m.cfg);
  json tensors = json::object();
  tensors[kLlamaTokenEmbd.gguf] = blob.add(m.tok_embeddings);
  tensors[kLlamaOutputNorm.gguf] = blob.add(m.norm);
  for (size_t l = 0; l < m.blocks.size(); ++l) {
    const LlamaBlock& b = m.blocks[l];
    for (const LlamaBlockTensor& t : llama_block_tensors())  // RMSNorm weights and biases; linears are layers
      if (t.linear < 0 && t.present(m.cfg)) tensors[t.catq_key(static_cast<int64_t>(l))] = blob.add(b.*t.member);
    if (b.attn_in.defined()) tensors[fmt::format("blk.{}.attn_in", l)] = blob.add(b.attn_in.matrix);
    if (b.ffn_in.defined()) tensors[fmt::format("blk.{}.ffn_in", l)] = blob.add(b.ffn_in.matrix);
    if (b.down_in.defined()) tensors[fmt::format("blk.{}.down_in", l)] = blob.add(b.down_in.matrix);
  }
  json layers = json::array();
  for (const LayerInfo& l : m.layer_infos()) {
    const SimQuant::Layer& sl = sq.layer(l.name);
    json lj = {{"name", l.name}};
    const at::Tensor& w = m.layer_weight(l.index);
    if (sl.weight_spec.enabled) {
      const QuantParams* wp = sq.weight_params(l.name);
      CATQ_CHECK(wp != nullptr, Internal,
                 "write_catq_llm: layer '{}' has no weight params (run a quantized forward first)", l.name);
      at::Tensor codes = sl.weight_codes.defined() ? sl.weight_codes : quantize(w.detach(), *wp);
      json wj = params_to_json(*wp, blob);
      int bits = 1;
      while ((int64_t{1} << bits) <= wp->qmax - wp->qmin) ++bits;
      wj["codes"] = blob.add_packed(codes, bits, wp->qmin);
      lj["weight"] = wj;
    } else if (!(l.name == kLlamaOutput.gguf && m.cfg.tied_head)) {
      tensors[l.name] = blob.add(w);
    }
    if (sl.input_spec.enabled && sl.input_spec.granularity != Granularity::PerToken) {
      const QuantParams* ip = sq.input_params(l.name);
      CATQ_CHECK(ip != nullptr, Internal, "write_catq_llm: layer '{}' has no input params (calibrate first)", l.name);
      lj["input"] = params_to_json(*ip, blob);
    }
    layers.push_back(lj);
  }
  h["layers"] = layers;
  h["tensors"] = tensors;
  if (tok) {
    std::string bytes;
    std::vector<int32_t> lens;
    for (const auto& p : tok->pieces()) bytes += p, lens.push_back(static_cast<int32_t>(p.size()));
    at::Tensor b = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
    if (!bytes.empty()) std::memcpy(b.data_ptr(), bytes.data(), bytes.size());
    h["tokenizer"] = {{"bytes", blob.add(b)}, {"lengths", blob.add(at::tensor(lens, at::kInt))},
                      {"scores", blob.add(at::tensor(tok->scores(), at::kFloat))},
                      {"types", blob.add(at::tensor(tok->types(), at::kInt))},
                      {"bos", tok->bos_id()}, {"eos", tok->eos_id()}, {"unk", tok->unk_id()}};
  }
  write_catq_container(path, h, blob);
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
      const char* names[3] = {"attn_in", "ffn_in", "down_in"};
      for (int k = 0; k < 3; ++k) {
        const std::string n = fmt::format("blk.{}.{}", l, names[k]);
        if (!tj.contains(n)) continue;
        online[k]->matrix = tensor(n);
        CATQ_CHECK(online[k]->matrix.sizes() == at::IntArrayRef({dims[k], dims[k]}), Format,
                   "{}: online transform {} must be {}x{}", path, n, dims[k], dims[k]);
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
        QuantParams wp = params_from_json(e.at("weight"), blob, where + " weight", path);
        at::Tensor codes = blob.get(e.at("weight").at("codes"), where + " codes");
        try {
          q.sq->set_quantized_weight(l.name, codes, wp);
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
      at::Tensor bytes = blob.get(k.at("bytes"), "tokenizer bytes"), lens = blob.get(k.at("lengths"), "tokenizer lengths");
      at::Tensor scores = blob.get(k.at("scores"), "tokenizer scores"), types = blob.get(k.at("types"), "tokenizer types");
      CATQ_CHECK(lens.numel() == m.cfg.vocab_size && scores.numel() == lens.numel() && types.numel() == lens.numel() &&
                     lens.scalar_type() == at::kInt && types.scalar_type() == at::kInt && bytes.scalar_type() == at::kByte,
                 Format, "{}: the tokenizer does not match the vocabulary of {}", path, m.cfg.vocab_size);
      std::vector<std::string> pieces;
      const char* p = reinterpret_cast<const char*>(bytes.data_ptr());
      int64_t off = 0;
      for (int64_t i = 0; i < lens.numel(); ++i) {
        const int64_t n = lens[i].item<int>();
        CATQ_CHECK(n >= 0 && off + n <= bytes.numel(), Format, "{}: tokenizer piece {} overruns its bytes", path, i);
        pieces.emplace_back(p + off, static_cast<size_t>(n));
        off += n;
      }
      std::vector<float> sc(scores.data_ptr<float>(), scores.data_ptr<float>() + scores.numel());
      std::vector<int32_t> ty(types.data_ptr<int32_t>(), types.data_ptr<int32_t>() + types.numel());
      q.tokenizer.emplace(std::move(pieces), std::move(sc), std::move(ty), k.at("bos").get<int32_t>(),
                          k.at("eos").get<int32_t>(), k.at("unk").get<int32_t>());
    }
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: malformed header: {}", path, e.what());
  }
  return q;
}

}  // namespace catq

#include "io/catq_file.h"

#include <cstring>
#include <set>

#include "core/error.h"
#include "core/file_util.h"

namespace catq {

using nlohmann::json;

namespace {

constexpr char kMagic[8] = {'C', 'A', 'T', 'Q', 'M', 'D', 'L', '\0'};
constexpr uint32_t kVersion = 1;
constexpr size_t kAlign = 64;

size_t align_up(size_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kInt: return "I32";
    case at::kLong: return "I64";
    case at::kByte: return "U8";
    case at::kChar: return "I8";
    case at::kBool: return "BOOL";
    default: fail(ErrorKind::Unsupported, "catq file: tensors of type {} cannot be stored", c10::toString(t));
  }
}

std::optional<at::ScalarType> parse_dtype(const std::string& s) {
  if (s == "F32") return at::kFloat;
  if (s == "I32") return at::kInt;
  if (s == "I64") return at::kLong;
  if (s == "U8") return at::kByte;
  if (s == "I8") return at::kChar;
  if (s == "BOOL") return at::kBool;
  return std::nullopt;
}

// Collects tensors into the blob while the header is built.
class BlobWriter {
 public:
  // Raw tensor; returns its header entry.
  json add(const at::Tensor& t_in) {
    at::Tensor t = t_in.detach().contiguous().cpu();
    if (at::isFloatingType(t.scalar_type())) t = t.to(at::kFloat);
    json e = {{"dtype", dtype_name(t.scalar_type())}, {"shape", t.sizes().vec()}};
    const size_t nbytes = static_cast<size_t>(t.numel()) * t.element_size();
    e["offset"] = place(static_cast<const uint8_t*>(t.data_ptr()), nbytes);
    e["nbytes"] = nbytes;
    return e;
  }
  // Integer codes q ∈ [lo, lo + 2^bits − 1], stored as (q − lo) at `bits` bits each, LSB first, row-major.
  json add_packed(const at::Tensor& q_in, int bits, int64_t lo) {
    at::Tensor q = q_in.to(at::kLong).contiguous().reshape({-1});
    const int64_t n = q.numel();
    std::vector<uint8_t> bytes((static_cast<size_t>(n) * bits + 7) / 8, 0);
    const int64_t* p = q.data_ptr<int64_t>();
    const uint64_t mask = (uint64_t{1} << bits) - 1;
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t v = static_cast<uint64_t>(p[i] - lo);
      CATQ_CHECK(v <= mask, Internal, "catq file: code {} outside the {}-bit range starting at {}", p[i], bits, lo);
      const uint64_t bit = static_cast<uint64_t>(i) * bits;
      for (int b = 0; b < bits; ++b)
        if ((v >> b) & 1) bytes[(bit + b) / 8] |= static_cast<uint8_t>(1u << ((bit + b) % 8));
    }
    json e = {{"dtype", "PACKED"}, {"bits", bits}, {"min", lo}, {"shape", q_in.sizes().vec()}};
    e["offset"] = place(bytes.data(), bytes.size());
    e["nbytes"] = bytes.size();
    return e;
  }
  const std::vector<uint8_t>& data() const { return blob_; }

 private:
  size_t place(const uint8_t* p, size_t n) {
    const size_t off = align_up(blob_.size());
    blob_.resize(off + n, 0);
    if (n) std::memcpy(blob_.data() + off, p, n);
    return off;
  }
  std::vector<uint8_t> blob_;
};

// Reads tensors back from the blob, validating every entry against the file.
class BlobReader {
 public:
  BlobReader(const uint8_t* blob, size_t size, std::string file) : blob_(blob), size_(size), file_(std::move(file)) {}

  at::Tensor get(const json& e, const std::string& what) const {
    try {
      const std::string dtype = e.at("dtype").get<std::string>();
      const std::vector<int64_t> shape = e.at("shape").get<std::vector<int64_t>>();
      for (int64_t d : shape)
        CATQ_CHECK(d >= 0, Format, "{}: {}: negative dimension in shape", file_, what);
      const uint64_t numel = checked_numel(shape, file_, what);
      const uint64_t off = e.at("offset").get<uint64_t>(), nbytes = e.at("nbytes").get<uint64_t>();
      CATQ_CHECK(off <= size_ && nbytes <= size_ - off, Format,
                 "{}: {}: data [{}, +{}) lies outside the {}-byte tensor area (truncated file?)", file_, what, off, nbytes,
                 size_);
      const uint8_t* p = blob_ + off;
      if (dtype == "PACKED") {
        const int bits = e.at("bits").get<int>();
        const int64_t lo = e.at("min").get<int64_t>();
        CATQ_CHECK(bits >= 1 && bits <= 16, Format, "{}: {}: packed width {} outside 1..16", file_, what, bits);
        CATQ_CHECK(nbytes == (numel * bits + 7) / 8, Format, "{}: {}: {} bytes hold {} values of {} bits, expected {}",
                   file_, what, nbytes, numel, bits, (numel * bits + 7) / 8);
        at::Tensor q = at::empty({static_cast<int64_t>(numel)}, at::kInt);
        int32_t* out = q.data_ptr<int32_t>();
        for (uint64_t i = 0; i < numel; ++i) {
          uint32_t v = 0;
          const uint64_t bit = i * bits;
          for (int b = 0; b < bits; ++b) v |= static_cast<uint32_t>((p[(bit + b) / 8] >> ((bit + b) % 8)) & 1u) << b;
          out[i] = static_cast<int32_t>(lo + v);
        }
        return q.reshape(shape);
      }
      auto st = parse_dtype(dtype);
      CATQ_CHECK(st.has_value(), Format, "{}: {}: unknown dtype '{}', expected F32, I32, I64, U8, I8, BOOL or PACKED",
                 file_, what, dtype);
      const uint64_t esize = c10::elementSize(*st);
      CATQ_CHECK(nbytes == numel * esize, Format, "{}: {}: {} bytes for {} values of {}, expected {}", file_, what, nbytes,
                 numel, dtype, numel * esize);
      at::Tensor t = at::empty(shape, at::TensorOptions().dtype(*st));
      if (nbytes) std::memcpy(t.data_ptr(), p, nbytes);
      if (*st == at::kFloat)
        CATQ_CHECK(at::isfinite(t).all().item<bool>(), Format, "{}: {}: contains NaN or Inf", file_, what);
      return t;
    } catch (const json::exception& ex) {
      fail(ErrorKind::Format, "{}: {}: malformed tensor entry: {}", file_, what, ex.what());
    }
  }

 private:
  const uint8_t* blob_;
  size_t size_;
  std::string file_;
};

json params_to_json(const QuantParams& p, BlobWriter& blob) {
  json j = {{"scheme", to_string(p.scheme)}, {"granularity", to_string(p.granularity)}, {"axis", p.axis},
            {"group_size", p.group_size}, {"bits", p.bits}, {"qmin", p.qmin}, {"qmax", p.qmax}};
  if (p.scale.defined()) j["scale"] = blob.add(p.scale);
  if (p.zero_point.defined()) j["zero_point"] = blob.add(p.zero_point.to(at::kInt));
  if (p.codebook.defined()) j["codebook"] = blob.add(p.codebook);
  if (p.threshold.defined()) j["threshold"] = blob.add(p.threshold);
  return j;
}

QuantParams params_from_json(const json& j, const BlobReader& blob, const std::string& where, const std::string& file) {
  QuantParams p;
  auto scheme = parse_scheme(j.at("scheme").get<std::string>());
  auto gran = parse_granularity(j.at("granularity").get<std::string>());
  CATQ_CHECK(scheme && gran, Format, "{}: {}: unknown scheme or granularity", file, where);
  p.scheme = *scheme;
  p.granularity = *gran;
  p.axis = j.at("axis").get<int>();
  p.group_size = j.at("group_size").get<int64_t>();
  p.bits = j.at("bits").get<int>();
  p.qmin = j.at("qmin").get<int64_t>();
  p.qmax = j.at("qmax").get<int64_t>();
  CATQ_CHECK(p.bits >= 1 && p.bits <= 16 && p.qmin < p.qmax && p.qmax - p.qmin < (int64_t{1} << p.bits), Format,
             "{}: {}: inconsistent integer range [{}, {}] for {} bits", file, where, p.qmin, p.qmax, p.bits);
  if (j.contains("scale")) p.scale = blob.get(j["scale"], where + ".scale");
  if (j.contains("zero_point")) p.zero_point = blob.get(j["zero_point"], where + ".zero_point");
  if (j.contains("codebook")) p.codebook = blob.get(j["codebook"], where + ".codebook");
  if (j.contains("threshold")) p.threshold = blob.get(j["threshold"], where + ".threshold");
  if (p.scheme == Scheme::Uniform || p.scheme == Scheme::Binary || p.scheme == Scheme::Ternary) {
    CATQ_CHECK(p.scale.defined() && p.zero_point.defined() && p.scale.sizes() == p.zero_point.sizes(), Format,
               "{}: {}: scale and zero_point must both be present with the same shape", file, where);
    CATQ_CHECK((p.scale > 0).all().item<bool>(), Format, "{}: {}: scales must be positive", file, where);
  }
  return p;
}

json attr_to_json(const Attribute& a, BlobWriter& blob, const std::string& where) {
  switch (a.type) {
    case Attribute::Type::Int: return {{"type", "int"}, {"value", a.i}};
    case Attribute::Type::Float: return {{"type", "float"}, {"value", a.f}};
    case Attribute::Type::String: return {{"type", "string"}, {"value", a.s}};
    case Attribute::Type::Ints: return {{"type", "ints"}, {"value", a.ints}};
    case Attribute::Type::Floats: return {{"type", "floats"}, {"value", a.floats}};
    case Attribute::Type::Strings: return {{"type", "strings"}, {"value", a.strings}};
    case Attribute::Type::Tensor: return {{"type", "tensor"}, {"value", blob.add(a.t)}};
    default: fail(ErrorKind::Unsupported, "catq file: attribute {} has a type that cannot be stored (graph / unknown)", where);
  }
}

Attribute attr_from_json(const json& j, const BlobReader& blob, const std::string& where) {
  Attribute a;
  const std::string t = j.at("type").get<std::string>();
  const json& v = j.at("value");
  if (t == "int") { a.type = Attribute::Type::Int; a.i = v.get<int64_t>(); }
  else if (t == "float") { a.type = Attribute::Type::Float; a.f = v.get<float>(); }
  else if (t == "string") { a.type = Attribute::Type::String; a.s = v.get<std::string>(); }
  else if (t == "ints") { a.type = Attribute::Type::Ints; a.ints = v.get<std::vector<int64_t>>(); }
  else if (t == "floats") { a.type = Attribute::Type::Floats; a.floats = v.get<std::vector<float>>(); }
  else if (t == "strings") { a.type = Attribute::Type::Strings; a.strings = v.get<std::vector<std::string>>(); }
  else if (t == "tensor") { a.type = Attribute::Type::Tensor; a.t = blob.get(v, where); }
  else fail(ErrorKind::Format, "attribute {}: unknown type '{}'", where, t);
  return a;
}

json value_info_to_json(const ValueInfo& v) {
  return {{"name", v.name}, {"dtype", c10::toString(v.dtype)}, {"shape", v.shape}, {"has_shape", v.has_shape}};
}

ValueInfo value_info_from_json(const json& j) {
  ValueInfo v;
  v.name = j.at("name").get<std::string>();
  v.dtype = at::kFloat;
  v.shape = j.at("shape").get<std::vector<int64_t>>();
  v.has_shape = j.at("has_shape").get<bool>();
  return v;
}

// Puts a layer's weight (in the QuantContext layout) back into the graph's initializer layout.
at::Tensor to_initializer_layout(const Node& n, const LayerInfo& l, const at::Tensor& w) {
  if (l.kind == LayerKind::Conv || (n.op_type == "Gemm" && n.attr_int("transB", 0))) return w.contiguous();
  return w.t().contiguous();
}

constexpr const char* kCnnFormat = "catq-quantized-model";
constexpr const char* kLlmFormat = "catq-quantized-llm";

void write_container(const std::string& path, const json& h, const BlobWriter& blob) {
  const std::string header = h.dump();
  std::string out(kMagic, 8);
  auto put_u32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  auto put_u64 = [&](uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); };
  put_u32(kVersion);
  put_u32(0);
  put_u64(header.size());
  out += header;
  out.resize(align_up(out.size()), '\0');
  out.append(reinterpret_cast<const char*>(blob.data().data()), blob.data().size());
  write_file_atomic(path, out);
}

struct Container {
  std::vector<uint8_t> bytes;
  json header;
  size_t blob_start = 0;
};

Container read_container(const std::string& path) {
  Container c;
  c.bytes = read_file_bytes(path);
  ByteReader r(c.bytes.data(), c.bytes.size(), path);
  std::string magic = r.read_string(8, "magic");
  CATQ_CHECK(std::memcmp(magic.data(), kMagic, 8) == 0, Format, "{}: not a catq quantized model (wrong magic, expected "
             "\"CATQMDL\\0\")", path);
  const uint32_t version = r.read<uint32_t>("version");
  CATQ_CHECK(version == kVersion, Unsupported, "{}: catq file version {}, this catq reads version {}", path, version,
             kVersion);
  r.read<uint32_t>("reserved");
  const uint64_t hlen = r.read<uint64_t>("header length");
  CATQ_CHECK(hlen <= r.remaining(), Format, "{}: header length {} exceeds the {} bytes left (truncated file?)", path, hlen,
             r.remaining());
  const std::string header = r.read_string(hlen, "header");
  c.blob_start = align_up(r.pos());
  CATQ_CHECK(c.blob_start <= c.bytes.size(), Format, "{}: truncated after the header", path);
  try {
    c.header = json::parse(header);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: malformed header: {}", path, e.what());
  }
  CATQ_CHECK(c.header.is_object(), Format, "{}: the header is not a JSON object", path);
  return c;
}

}  // namespace

std::string catq_file_kind(const std::string& path) {
  Container c = read_container(path);
  const std::string f = c.header.value("format", "");
  if (f == kCnnFormat) return "cnn";
  if (f == kLlmFormat) return "llm";
  fail(ErrorKind::Format, "{}: header 'format' is '{}', expected {} or {}", path, f, kCnnFormat, kLlmFormat);
}

bool is_catq_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char head[8] = {0};
  size_t n = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  return n == 8 && std::memcmp(head, kMagic, 8) == 0;
}

void write_catq(const std::string& path, const GraphExecutor& ex, const SimQuant& sq, const CatHead* head,
                const json& metadata) {
  const Graph& g = ex.graph();
  BlobWriter blob;
  json h;
  h["format"] = kCnnFormat;
  h["version"] = kVersion;
  h["metadata"] = metadata;
  h["quant_config"] = sq.config().to_json();

  // Layers: codes and params. Their weight initializers are not stored (the codes are the weights).
  std::set<std::string> weight_inits;
  json layers = json::array();
  for (const LayerInfo& l : ex.layers()) {
    const SimQuant::Layer& sl = sq.layer(l.name);
    json lj = {{"name", l.name}};
    if (sl.weight_spec.enabled) {
      const QuantParams* wp = sq.weight_params(l.name);
      CATQ_CHECK(wp != nullptr, Internal, "write_catq: layer '{}' has no weight params (run a quantized forward first)",
                 l.name);
      at::Tensor codes = sl.weight_codes.defined() ? sl.weight_codes : quantize(ex.layer_weight(l).detach(), *wp);
      json wj = params_to_json(*wp, blob);
      const int64_t lo = wp->scheme == Scheme::Uniform ? wp->qmin : codes.min().item<int64_t>();
      const int64_t hi = wp->scheme == Scheme::Uniform ? wp->qmax : codes.max().item<int64_t>();
      int bits = 1;
      while ((int64_t{1} << bits) <= hi - lo) ++bits;
      wj["codes"] = blob.add_packed(codes, bits, lo);
      lj["weight"] = wj;
      weight_inits.insert(ex.weight_name(l));
    }
    if (sl.input_spec.enabled && sl.input_spec.granularity != Granularity::PerToken) {
      const QuantParams* ip = sq.input_params(l.name);
      CATQ_CHECK(ip != nullptr, Internal, "write_catq: layer '{}' has no input params (calibrate first)", l.name);
      lj["input"] = params_to_json(*ip, blob);
    }
    layers.push_back(lj);
  }
  h["layers"] = layers;

  json gj;
  gj["name"] = g.name;
  gj["opset"] = g.opset;
  for (const auto& v : g.inputs) gj["inputs"].push_back(value_info_to_json(v));
  for (const auto& v : g.outputs) gj["outputs"].push_back(value_info_to_json(v));
  json nodes = json::array();
  for (const Node& n : g.nodes) {
    json nj = {{"name", n.name}, {"op_type", n.op_type}, {"domain", n.domain}, {"inputs", n.inputs}, {"outputs", n.outputs}};
    nj["attrs"] = json::object();
    for (const auto& [k, a] : n.attrs) nj["attrs"][k] = attr_to_json(a, blob, n.name + "." + k);
    nodes.push_back(nj);
  }
  gj["nodes"] = nodes;
  gj["initializers"] = json::object();
  for (const auto& [name, t] : g.initializers)
    if (!weight_inits.count(name)) gj["initializers"][name] = blob.add(t);
  gj["quantized_weights"] = json::array();
  for (const LayerInfo& l : ex.layers())
    if (weight_inits.count(ex.weight_name(l))) gj["quantized_weights"].push_back({{"layer", l.name}, {"initializer", ex.weight_name(l)}});
  h["graph"] = gj;

  if (head) {
    h["cat_head"] = {{"k", head->k},         {"classes", head->classes}, {"dims", head->dims},
                     {"alpha", head->alpha}, {"pca", head->pca},         {"cluster_sizes", head->cluster_sizes},
                     {"pca_mean", blob.add(head->pca_mean)},   {"pca_basis", blob.add(head->pca_basis)},
                     {"centroids", blob.add(head->centroids)}, {"gamma", blob.add(head->gamma)},
                     {"beta", blob.add(head->beta)}};
  }

  write_container(path, h, blob);
}

QuantizedCnn read_catq(const std::string& path) {
  Container c = read_container(path);
  BlobReader blob(c.bytes.data() + c.blob_start, c.bytes.size() - c.blob_start, path);
  QuantizedCnn m;
  try {
    const json& h = c.header;
    CATQ_CHECK(h.value("format", "") == kCnnFormat, Format, "{}: header 'format' is '{}', expected {} (a quantized "
               "CNN; this file holds another kind of model)", path, h.value("format", ""), kCnnFormat);
    m.metadata = h.value("metadata", json::object());

    // Graph.
    const json& gj = h.at("graph");
    Graph g;
    g.source = path;
    g.name = gj.at("name").get<std::string>();
    g.opset = gj.at("opset").get<int64_t>();
    for (const auto& v : gj.at("inputs")) g.inputs.push_back(value_info_from_json(v));
    for (const auto& v : gj.at("outputs")) g.outputs.push_back(value_info_from_json(v));
    for (const auto& nj : gj.at("nodes")) {
      Node n;
      n.name = nj.at("name").get<std::string>();
      n.op_type = nj.at("op_type").get<std::string>();
      n.domain = nj.at("domain").get<std::string>();
      n.inputs = nj.at("inputs").get<std::vector<std::string>>();
      n.outputs = nj.at("outputs").get<std::vector<std::string>>();
      CATQ_CHECK(n.domain.empty() && is_supported_op(n.op_type), Unsupported, "{}: node '{}' has unsupported op '{}'",
                 path, n.name, n.op_type);
      for (const auto& [k, aj] : nj.at("attrs").items()) n.attrs[k] = attr_from_json(aj, blob, n.name + "." + k);
      g.nodes.push_back(std::move(n));
    }
    for (const auto& [name, tj] : gj.at("initializers").items()) g.initializers[name] = blob.get(tj, "initializer " + name);
    // Placeholders for quantized weights so the executor finds its layers; replaced by dequantized codes below.
    std::map<std::string, std::string> init_of_layer;
    for (const auto& q : gj.at("quantized_weights"))
      init_of_layer[q.at("layer").get<std::string>()] = q.at("initializer").get<std::string>();
    std::map<std::string, const json*> layer_json;
    for (const auto& lj : h.at("layers")) layer_json[lj.at("name").get<std::string>()] = &lj;
    for (const auto& [layer, init] : init_of_layer) {
      auto it = layer_json.find(layer);
      CATQ_CHECK(it != layer_json.end() && it->second->contains("weight"), Format,
                 "{}: quantized weight '{}' of layer '{}' has no codes", path, init, layer);
      const json& cj = it->second->at("weight").at("codes");
      std::vector<int64_t> shape = cj.at("shape").get<std::vector<int64_t>>();
      const Node* node = nullptr;
      for (const Node& n : g.nodes)
        if (n.name == layer) node = &n;
      CATQ_CHECK(node != nullptr, Format, "{}: quantized layer '{}' is not a node of the graph", path, layer);
      if (!(node->op_type == "Conv" || (node->op_type == "Gemm" && node->attr_int("transB", 0))))
        std::swap(shape.at(0), shape.at(1));
      checked_numel(shape, path, "codes of layer '" + layer + "'");
      g.initializers[init] = at::zeros({1}).expand(shape);  // shape only; no allocation
    }

    auto ex = std::make_unique<GraphExecutor>(std::move(g));
    CATQ_CHECK(ex->layers().size() == layer_json.size(), Format, "{}: the graph has {} quantizable layers but the header "
               "lists {}", path, ex->layers().size(), layer_json.size());
    auto sq = std::make_unique<SimQuant>(QuantConfig::from_json(h.at("quant_config").dump(), path + ": quant_config"));
    sq->bind(ex->layers());
    for (const LayerInfo& l : ex->layers()) {
      auto it = layer_json.find(l.name);
      CATQ_CHECK(it != layer_json.end(), Format, "{}: layer '{}' of the graph is missing from the header", path, l.name);
      const json& lj = *it->second;
      const std::string where = "layer '" + l.name + "'";
      const SimQuant::Layer& sl = sq->layer(l.name);
      CATQ_CHECK(sl.weight_spec.enabled == lj.contains("weight"), Format,
                 "{}: {}: the quant_config and the stored weight disagree on whether it is quantized", path, where);
      if (lj.contains("weight")) {
        const json& wj = lj.at("weight");
        QuantParams wp = params_from_json(wj, blob, where + " weight", path);
        at::Tensor codes = blob.get(wj.at("codes"), where + " codes");
        CATQ_CHECK(codes.sizes().vec() == l.weight_shape, Format, "{}: {}: codes have shape [{}], the layer's weight is [{}]",
                   path, where, fmt::join(codes.sizes(), ","), fmt::join(l.weight_shape, ","));
        try {
          sq->set_quantized_weight(l.name, codes, wp);
        } catch (const Error& e) {
          fail(ErrorKind::Format, "{}: {}", path, e.what());
        }
        const Node& n = ex->graph().nodes[ex->node_index(l)];
        ex->graph().initializers[ex->weight_name(l)] =
            to_initializer_layout(n, l, sq->layer(l.name).fixed_weight);
      }
      if (lj.contains("input")) {
        CATQ_CHECK(sl.input_spec.enabled, Format, "{}: {}: input params stored but the quant_config keeps the input FP",
                   path, where);
        sq->set_input_params(l.name, params_from_json(lj.at("input"), blob, where + " input", path));
      } else {
        CATQ_CHECK(!sl.input_spec.enabled || sl.input_spec.granularity == Granularity::PerToken, Format,
                   "{}: {}: the quant_config quantizes the input but no params are stored", path, where);
      }
    }
    sq->set_mode(SimQuant::Mode::Quantize);
    m.ex = std::move(ex);
    m.sq = std::move(sq);

    if (h.contains("cat_head") && !h["cat_head"].is_null()) {
      const json& cj = h["cat_head"];
      CatHead head;
      head.k = cj.at("k").get<int64_t>();
      head.classes = cj.at("classes").get<int64_t>();
      head.dims = cj.at("dims").get<int64_t>();
      head.alpha = cj.at("alpha").get<double>();
      head.pca = cj.at("pca").get<bool>();
      head.cluster_sizes = cj.value("cluster_sizes", std::vector<int64_t>{});
      head.pca_mean = blob.get(cj.at("pca_mean"), "cat_head.pca_mean");
      head.pca_basis = blob.get(cj.at("pca_basis"), "cat_head.pca_basis");
      head.centroids = blob.get(cj.at("centroids"), "cat_head.centroids");
      head.gamma = blob.get(cj.at("gamma"), "cat_head.gamma");
      head.beta = blob.get(cj.at("beta"), "cat_head.beta");
      head.validate(path);
      m.head = std::move(head);
    }
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: malformed header: {}", path, e.what());
  }
  return m;
}


// ---- Quantized Llama models ------------------------------------------------------------------------------

namespace {

json llama_config_json(const LlamaConfig& c) {
  return {{"dim", c.dim},           {"hidden_dim", c.hidden_dim}, {"n_layers", c.n_layers},
          {"n_heads", c.n_heads},   {"n_kv_heads", c.n_kv_heads}, {"vocab_size", c.vocab_size},
          {"seq_len", c.seq_len},   {"head_dim", c.head_dim},     {"rope_theta", c.rope_theta},
          {"norm_eps", c.norm_eps}, {"tied_head", c.tied_head}};
}

LlamaConfig llama_config_from_json(const json& j) {
  LlamaConfig c;
  c.dim = j.at("dim").get<int64_t>();
  c.hidden_dim = j.at("hidden_dim").get<int64_t>();
  c.n_layers = j.at("n_layers").get<int64_t>();
  c.n_heads = j.at("n_heads").get<int64_t>();
  c.n_kv_heads = j.at("n_kv_heads").get<int64_t>();
  c.vocab_size = j.at("vocab_size").get<int64_t>();
  c.seq_len = j.at("seq_len").get<int64_t>();
  c.head_dim = j.at("head_dim").get<int64_t>();
  c.rope_theta = j.at("rope_theta").get<double>();
  c.norm_eps = j.at("norm_eps").get<double>();
  c.tied_head = j.at("tied_head").get<bool>();
  return c;
}

}  // namespace

void write_catq_llm(const std::string& path, const LlamaModel& m, const SimQuant& sq, const Tokenizer* tok,
                    const json& metadata) {
  BlobWriter blob;
  json h;
  h["format"] = kLlmFormat;
  h["version"] = kVersion;
  h["metadata"] = metadata;
  h["quant_config"] = sq.config().to_json();
  h["config"] = llama_config_json(m.cfg);
  json tensors = json::object();
  tensors["token_embd"] = blob.add(m.tok_embeddings);
  tensors["output_norm"] = blob.add(m.norm);
  for (size_t l = 0; l < m.blocks.size(); ++l) {
    const LlamaBlock& b = m.blocks[l];
    tensors[fmt::format("blk.{}.attn_norm", l)] = blob.add(b.attn_norm);
    tensors[fmt::format("blk.{}.ffn_norm", l)] = blob.add(b.ffn_norm);
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
    } else if (!(l.name == "output" && m.cfg.tied_head)) {
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
  write_container(path, h, blob);
}

QuantizedLlama read_catq_llm(const std::string& path) {
  Container c = read_container(path);
  BlobReader blob(c.bytes.data() + c.blob_start, c.bytes.size() - c.blob_start, path);
  QuantizedLlama q;
  try {
    const json& h = c.header;
    CATQ_CHECK(h.value("format", "") == kLlmFormat, Format, "{}: header 'format' is '{}', expected {} (a quantized "
               "language model)", path, h.value("format", ""), kLlmFormat);
    q.metadata = h.value("metadata", json::object());
    LlamaModel& m = q.model;
    m.cfg = llama_config_from_json(h.at("config"));
    m.cfg.validate(path);
    const json& tj = h.at("tensors");
    auto tensor = [&](const std::string& name) {
      CATQ_CHECK(tj.contains(name), Format, "{}: tensor '{}' is missing", path, name);
      return blob.get(tj.at(name), name);
    };
    m.tok_embeddings = tensor("token_embd");
    m.norm = tensor("output_norm");
    m.blocks.resize(m.cfg.n_layers);
    for (int64_t l = 0; l < m.cfg.n_layers; ++l) {
      LlamaBlock& b = m.blocks[l];
      b.attn_norm = tensor(fmt::format("blk.{}.attn_norm", l));
      b.ffn_norm = tensor(fmt::format("blk.{}.ffn_norm", l));
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
    const int64_t D = m.cfg.dim, Q = m.cfg.q_dim(), K = m.cfg.kv_dim(), H = m.cfg.hidden_dim, V = m.cfg.vocab_size;
    const std::vector<std::vector<int64_t>> block_shapes = {{Q, D}, {K, D}, {K, D}, {D, Q}, {H, D}, {H, D}, {D, H}};
    const int64_t n_layers = m.cfg.n_layers * 7 + 1;
    auto shape_of = [&](int64_t i) { return i == n_layers - 1 ? std::vector<int64_t>{V, D} : block_shapes[i % 7]; };
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

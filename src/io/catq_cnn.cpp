// The quantized-CNN .catq file: write_catq / read_catq (the graph, bit-packed weight codes and params, activation
// params, the CAT head) on the shared container (catq_container.h).
#include "io/catq_file.h"

#include <set>

#include "core/error.h"
#include "core/file_util.h"
#include "io/catq_container.h"

namespace catq {

using nlohmann::json;

namespace {

json attr_to_json(const Attribute& a, CatqBlobWriter& blob, const std::string& where) {
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

Attribute attr_from_json(const json& j, const CatqBlobReader& blob, const std::string& where) {
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

}  // namespace

void write_catq(const std::string& path, const GraphExecutor& ex, const SimQuant& sq, const CatHead* head,
                const json& metadata) {
  const Graph& g = ex.graph();
  CatqBlobWriter blob;
  json h;
  h["format"] = kCatqCnnFormat;
  h["version"] = kCatqVersion;
  h["metadata"] = metadata;
  h["quant_config"] = sq.config().to_json();

  // Layers: codes and params. Their weight initializers are not stored (the codes are the weights).
  std::set<std::string> weight_inits;
  json layers = json::array();
  for (const LayerInfo& l : ex.layers()) {
    const SimQuant::Layer& sl = sq.layer(l.name);
    json lj = {{"name", l.name}};
    if (sl.weight_spec.enabled) {
      lj["weight"] = blob.add_weight(sq.quantized_weight(l.name, ex.layer_weight(l)));
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

  write_catq_container(path, h, blob);
}

QuantizedCnn read_catq(const std::string& path) {
  const CatqContainer c = read_catq_container(path);
  const CatqBlobReader blob = c.blob();
  QuantizedCnn m;
  try {
    const json& h = c.header;
    CATQ_CHECK(h.value("format", "") == kCatqCnnFormat, Format, "{}: header 'format' is '{}', expected {} (a quantized "
               "CNN; this file holds another kind of model)", path, h.value("format", ""), kCatqCnnFormat);
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
        const QuantizedWeight qw = blob.get_weight(wj, where + " weight");
        CATQ_CHECK(qw.shape == l.weight_shape, Format, "{}: {}: codes have shape [{}], the layer's weight is [{}]", path,
                   where, fmt::join(qw.shape, ","), fmt::join(l.weight_shape, ","));
        try {
          sq->set_quantized_weight(l.name, qw);
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

}  // namespace catq

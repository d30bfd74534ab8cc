#include "io/onnx_writer.h"

#include <onnx/onnx_pb.h>

#include <set>

#include <fmt/ranges.h>

#include "core/error.h"
#include "core/file_util.h"
#include "io/onnx_reader.h"

namespace catq {

namespace {

void fill_tensor(onnx::TensorProto* p, const std::string& name, const at::Tensor& t0, const std::string& where) {
  at::Tensor t = t0.detach().to(at::kCPU).contiguous();
  const int32_t dt = torch_dtype_to_onnx(t.scalar_type());
  CATQ_CHECK(dt != onnx::TensorProto::UNDEFINED, Unsupported, "{}: tensor '{}' has a type ONNX cannot store ({})", where,
             name, c10::toString(t.scalar_type()));
  p->set_name(name);
  p->set_data_type(dt);
  for (int64_t d : t.sizes()) p->add_dims(d);
  p->set_raw_data(std::string(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size()));
}

void fill_attr(onnx::AttributeProto* a, const std::string& name, const Attribute& v, const std::string& where) {
  using AP = onnx::AttributeProto;
  a->set_name(name);
  switch (v.type) {
    case Attribute::Type::Int: a->set_type(AP::INT); a->set_i(v.i); break;
    case Attribute::Type::Float: a->set_type(AP::FLOAT); a->set_f(v.f); break;
    case Attribute::Type::String: a->set_type(AP::STRING); a->set_s(v.s); break;
    case Attribute::Type::Ints: a->set_type(AP::INTS); for (auto x : v.ints) a->add_ints(x); break;
    case Attribute::Type::Floats: a->set_type(AP::FLOATS); for (auto x : v.floats) a->add_floats(x); break;
    case Attribute::Type::Strings: a->set_type(AP::STRINGS); for (const auto& x : v.strings) a->add_strings(x); break;
    case Attribute::Type::Tensor: a->set_type(AP::TENSOR); fill_tensor(a->mutable_t(), name, v.t, where); break;
    default: fail(ErrorKind::Unsupported, "{}: attribute '{}' (a graph or unknown type) cannot be written", where, name);
  }
}

void fill_value_info(onnx::ValueInfoProto* p, const ValueInfo& v) {
  p->set_name(v.name);
  auto* tt = p->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(torch_dtype_to_onnx(v.dtype));
  if (v.has_shape) {
    auto* sh = tt->mutable_shape();
    for (size_t i = 0; i < v.shape.size(); ++i) {
      auto* d = sh->add_dim();
      if (v.shape[i] >= 0) d->set_dim_value(v.shape[i]);
      else d->set_dim_param(i == 0 ? "N" : fmt::format("d{}", i));
    }
  }
}

}  // namespace

void write_onnx(const Graph& g, const std::string& path, int64_t min_opset) {
  const int64_t opset = std::max(g.opset, min_opset);
  if (opset >= 13 && g.opset < 13) {
    // Ops whose attributes became inputs at opset 13 would change meaning.
    for (const Node& n : g.nodes)
      CATQ_CHECK(n.op_type != "Squeeze" && n.op_type != "Unsqueeze" && n.op_type != "Split" && n.op_type != "ReduceSum",
                 Unsupported, "{}: node '{}' ({}) is opset-{} and changed at opset 13; cannot write it as opset {}", path,
                 n.name, n.op_type, g.opset, opset);
  }
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("catq");
  m.set_producer_version("0.1.0");
  auto* os = m.add_opset_import();
  os->set_domain("");
  os->set_version(opset);
  auto* gp = m.mutable_graph();
  gp->set_name(g.name.empty() ? "catq" : g.name);
  for (const auto& [name, t] : g.initializers) fill_tensor(gp->add_initializer(), name, t, path);
  for (const ValueInfo& v : g.inputs) fill_value_info(gp->add_input(), v);
  for (const ValueInfo& v : g.outputs) fill_value_info(gp->add_output(), v);
  for (const Node& n : g.nodes) {
    auto* np = gp->add_node();
    np->set_name(n.name);
    np->set_op_type(n.op_type);
    if (!n.domain.empty()) np->set_domain(n.domain);
    for (const auto& i : n.inputs) np->add_input(i);
    for (const auto& o : n.outputs) np->add_output(o);
    for (const auto& [k, a] : n.attrs) fill_attr(np->add_attribute(), k, a, path + ": node " + n.name);
  }
  std::string bytes;
  CATQ_CHECK(m.SerializeToString(&bytes), Internal, "{}: ONNX serialization failed", path);
  write_file_atomic(path, bytes);
}

Graph qdq_graph(const GraphExecutor& ex, const SimQuant& sq) {
  Graph g = ex.graph();
  g.opset = std::max<int64_t>(g.opset, 13);
  std::set<std::string> names;
  for (const auto& [k, v] : g.initializers) names.insert(k);
  for (const Node& n : g.nodes)
    for (const auto& o : n.outputs) names.insert(o);
  auto fresh = [&](const std::string& base) {
    std::string s = base;
    for (int i = 1; names.count(s); ++i) s = fmt::format("{}_{}", base, i);
    names.insert(s);
    return s;
  };
  auto scalar = [&](const std::string& base, const at::Tensor& t) {
    const std::string n = fresh(base);
    g.initializers[n] = t;
    return n;
  };
  // Codes live in an 8-bit container: uint8 when the integer range is non-negative, else int8.
  auto container = [&](const QuantParams& p, const std::string& what) {
    CATQ_CHECK(p.scheme == Scheme::Uniform && p.bits <= 8 && p.qmin >= -128 && p.qmax <= 255, Unsupported,
               "{}: a {}-bit {} quantizer has no QDQ form (uniform, at most 8 bits)", g.source, p.bits, what);
    return p.qmin >= 0 ? at::kByte : at::kChar;
  };

  std::vector<Node> out;
  std::map<size_t, const LayerInfo*> layer_at;
  for (const LayerInfo& l : ex.layers()) layer_at[ex.node_index(l)] = &l;
  // Values read by a layer: the first reader (execution order) owns the quantized copy that other nodes read.
  std::map<std::string, const LayerInfo*> first_reader;
  for (const LayerInfo& l : ex.layers()) first_reader.emplace(g.nodes[ex.node_index(l)].inputs.at(0), &l);

  std::set<std::string> graph_outputs;
  for (const auto& o : g.outputs) graph_outputs.insert(o.name);
  std::map<std::string, std::vector<size_t>> readers;  // value -> reading nodes (once per input slot)
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& v : g.nodes[i].inputs)
      if (!v.empty()) readers[v].push_back(i);
  // A layer input v = Relu(y), y the output of a convolution read by that Relu alone, v read by this layer and by
  // non-layer nodes only, quantized with zero-point = qmin: then Q(y) equals Q(v) (codes below the zero-point clamp
  // to it, i.e. to 0.0), so the chain quantizes y and the Relu is dropped. ONNX Runtime's QDQ fusion wants a
  // quantize directly after a Conv (DQ → Conv → Q becomes QLinearConv, 1.5× faster on ResNet-20 W8A8 than the float
  // convolution ORT runs otherwise); this puts it there, for convolutions whose weights share one zero-point.
  auto relu_fold = [&](const LayerInfo& l, const std::string& v, const QuantParams& ip) -> int {
    const int p = ex.producer_index(v);
    if (p < 0 || g.nodes[static_cast<size_t>(p)].op_type != "Relu" || graph_outputs.count(v)) return -1;
    if (ip.zero_point.item<int64_t>() != ip.qmin) return -1;
    for (size_t r : readers[v])
      if (layer_at.count(r) && layer_at.at(r) != &l) return -1;
    const std::string& y = g.nodes[static_cast<size_t>(p)].inputs.at(0);
    const int c = ex.producer_index(y);
    if (c < 0 || !layer_at.count(static_cast<size_t>(c)) || g.nodes[static_cast<size_t>(c)].op_type != "Conv") return -1;
    if (graph_outputs.count(y) || readers[y].size() != 1) return -1;
    // ONNX Runtime then runs the Conv as QLinearConv, whose kernel refuses per-channel weights with different
    // zero-points (asymmetric weights): keep the Relu there, and ORT keeps the float convolution.
    const QuantParams* wp = sq.weight_params(layer_at.at(static_cast<size_t>(c))->name);
    if (!wp || wp->zero_point.numel() == 0 || (wp->zero_point != wp->zero_point.reshape({-1})[0]).any().item<bool>())
      return -1;
    return p;
  };
  std::set<size_t> dropped;  // Relu nodes folded into a quantizer

  // Each quantized layer input: a Clip → Q → DQ chain (Q → DQ → Clip after a folded Relu), emitted just before the
  // first node that needs it.
  struct Chain { std::vector<Node> nodes; std::string dq; bool emitted = false; };
  std::map<std::string, Chain> chains;  // layer name -> chain
  for (const LayerInfo& l : ex.layers()) {
    const QuantParams* ip = sq.input_params(l.name);
    if (!ip) continue;
    CATQ_CHECK(ip->granularity == Granularity::PerTensor, Unsupported,
               "{}: layer {}: only per-tensor static activation quantizers have a QDQ form", g.source, l.name);
    const std::string v = g.nodes[ex.node_index(l)].inputs.at(0);
    const at::ScalarType ct = container(*ip, "activation");
    const float s = ip->scale.item<float>();
    const int64_t z = ip->zero_point.item<int64_t>();
    const std::string sn = scalar(l.name + "_in_scale", at::scalar_tensor(s, at::kFloat));
    const std::string zn = scalar(l.name + "_in_zp", at::scalar_tensor(z, at::kLong).to(ct));
    const std::string clipped = fresh(v + "_clip_" + l.name), q = fresh(v + "_q_" + l.name),
                      dq = fresh(v + "_dq_" + l.name);
    Chain c;
    // An 8-bit grid is the container's own saturation range: no Clip (ONNX Runtime would fuse it away anyway, and
    // its fusion fails on a Clip that reads a graph input).
    const bool full = (ct == at::kByte && ip->qmin == 0 && ip->qmax == 255) ||
                      (ct == at::kChar && ip->qmin == -128 && ip->qmax == 127);
    const int relu = relu_fold(l, v, *ip);
    if (relu >= 0) {
      // Q(y) → DQ [→ Clip to the grid: clamping after dequantization equals clamping the codes].
      dropped.insert(static_cast<size_t>(relu));
      const std::string& y = g.nodes[static_cast<size_t>(relu)].inputs.at(0);
      c.nodes.push_back(Node{fresh(l.name + "_in_quant"), "QuantizeLinear", "", {y, sn, zn}, {q}, {}});
      c.nodes.push_back(Node{fresh(l.name + "_in_dequant"), "DequantizeLinear", "", {q, sn, zn}, {dq}, {}});
      c.dq = dq;
      if (!full) {
        const std::string lo = scalar(l.name + "_in_lo", at::scalar_tensor(s * static_cast<float>(ip->qmin - z)));
        const std::string hi = scalar(l.name + "_in_hi", at::scalar_tensor(s * static_cast<float>(ip->qmax - z)));
        c.nodes.push_back(Node{fresh(l.name + "_in_clip"), "Clip", "", {dq, lo, hi}, {clipped}, {}});
        c.dq = clipped;
      }
      chains[l.name] = std::move(c);
      continue;
    }
    if (!full) {
      const std::string lo = scalar(l.name + "_in_lo", at::scalar_tensor(s * static_cast<float>(ip->qmin - z)));
      const std::string hi = scalar(l.name + "_in_hi", at::scalar_tensor(s * static_cast<float>(ip->qmax - z)));
      c.nodes.push_back(Node{fresh(l.name + "_in_clip"), "Clip", "", {v, lo, hi}, {clipped}, {}});
    }
    c.nodes.push_back(Node{fresh(l.name + "_in_quant"), "QuantizeLinear", "", {full ? v : clipped, sn, zn}, {q}, {}});
    c.nodes.push_back(Node{fresh(l.name + "_in_dequant"), "DequantizeLinear", "", {q, sn, zn}, {dq}, {}});
    c.dq = dq;
    chains[l.name] = std::move(c);
  }
  auto emit = [&](const std::string& layer) -> const std::string* {
    auto it = chains.find(layer);
    if (it == chains.end()) return nullptr;
    if (!it->second.emitted) {
      for (auto& n : it->second.nodes) out.push_back(n);
      it->second.emitted = true;
    }
    return &it->second.dq;
  };

  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (dropped.count(i)) continue;
    Node n = g.nodes[i];
    auto lit = layer_at.find(i);
    if (lit != layer_at.end()) {
      const LayerInfo& l = *lit->second;
      if (const std::string* dq = emit(l.name)) n.inputs[0] = *dq;
      // Weight: codes ─ DequantizeLinear (per output channel).
      if (const QuantParams* wp = sq.weight_params(l.name)) {
        at::Tensor codes = sq.quantized_weight_codes(l.name);
        CATQ_CHECK(codes.defined(), Unsupported, "{}: layer {} has no integer weight codes installed", g.source, l.name);
        const at::ScalarType ct = container(*wp, "weight");
        CATQ_CHECK(wp->granularity == Granularity::PerChannel || wp->granularity == Granularity::PerTensor, Unsupported,
                   "{}: layer {}: per-{} weights have no opset-13 QDQ form (per-tensor or per-channel only)", g.source,
                   l.name, to_string(wp->granularity));
        const std::string& wname = n.inputs.at(1);
        CATQ_CHECK(g.initializers.count(wname), Unsupported, "{}: layer {}: weight '{}' is not an initializer", g.source,
                   l.name, wname);
        const at::Tensor& w = g.initializers.at(wname);
        int64_t axis = wp->axis;
        // The codes use the layer layout (conv [O, I, kh, kw]; linear [out, in]); a Gemm with transB = 0 or a
        // MatMul stores [in, out].
        if (!w.sizes().equals(codes.sizes())) {
          CATQ_CHECK(codes.dim() == 2 && w.dim() == 2 && w.size(0) == codes.size(1) && w.size(1) == codes.size(0),
                     Internal, "{}: layer {}: codes [{}] do not match weight [{}]", g.source, l.name,
                     fmt::join(codes.sizes(), ", "), fmt::join(w.sizes(), ", "));
          codes = codes.t().contiguous();
          axis = 1 - axis;
        }
        const std::string qn = fresh(wname + "_quantized"), dqn = fresh(wname + "_dequantized");
        g.initializers[qn] = codes.to(ct);
        at::Tensor sc = wp->scale.to(at::kFloat).reshape({-1}), zp = wp->zero_point.to(at::kLong).reshape({-1}).to(ct);
        if (wp->granularity == Granularity::PerTensor) sc = sc.reshape({}), zp = zp.reshape({});
        const std::string sn = scalar(l.name + "_w_scale", sc), zn = scalar(l.name + "_w_zp", zp);
        Node dq{fresh(l.name + "_w_dequant"), "DequantizeLinear", "", {qn, sn, zn}, {dqn}, {}};
        if (wp->granularity == Granularity::PerChannel) {
          Attribute a;
          a.type = Attribute::Type::Int;
          a.i = axis;
          dq.attrs["axis"] = a;
        }
        out.push_back(dq);
        n.inputs[1] = dqn;
      }
    } else {
      // Non-layer nodes read the owner's quantized copy of a layer input.
      for (auto& in : n.inputs) {
        auto it = first_reader.find(in);
        if (it == first_reader.end()) continue;
        if (const std::string* dq = emit(it->second->name)) in = *dq;
      }
    }
    out.push_back(std::move(n));
  }
  g.nodes = std::move(out);
  // Unreferenced float weights of quantized layers are dropped.
  std::set<std::string> used;
  for (const Node& n : g.nodes)
    for (const auto& i : n.inputs) used.insert(i);
  for (auto it = g.initializers.begin(); it != g.initializers.end();)
    it = used.count(it->first) ? std::next(it) : g.initializers.erase(it);
  return g;
}

void append_cat_head(Graph& g, const CatHead& h) {
  CATQ_CHECK(!g.outputs.empty(), Internal, "append_cat_head: the graph has no output");
  if (h.alpha == 0) return;
  const std::string z = g.outputs[0].name;
  const std::string in = z + "/before_cat_head";
  // The logits' producer now writes `in`; the head writes the output name.
  for (Node& n : g.nodes)
    for (auto& o : n.outputs)
      if (o == z) o = in;
  for (Node& n : g.nodes)
    for (auto& i : n.inputs)
      if (i == z) i = in;
  int counter = 0;
  auto constant = [&](const std::string& base, const at::Tensor& t) {
    const std::string name = fmt::format("cat_head/{}", base);
    g.initializers[name] = t.to(at::kFloat).contiguous();
    return name;
  };
  auto node = [&](const std::string& op, std::vector<std::string> inputs, std::map<std::string, Attribute> attrs = {},
                  std::string out = "") {
    Node n;
    n.op_type = op;
    n.name = fmt::format("cat_head/{}_{}", op, counter++);
    n.inputs = std::move(inputs);
    n.outputs = {out.empty() ? n.name + ":out" : out};
    n.attrs = std::move(attrs);
    g.nodes.push_back(n);
    return n.outputs[0];
  };
  const float a = static_cast<float>(h.alpha);
  const at::Tensor gamma = (1 - a) + a * h.gamma.to(at::kFloat), beta = a * h.beta.to(at::kFloat);
  if (h.k == 1) {
    node("Add", {node("Mul", {in, constant("gamma", gamma.reshape({-1}))}), constant("beta", beta.reshape({-1}))}, {}, z);
    return;
  }
  std::string p = in;
  if (h.pca) p = node("MatMul", {node("Sub", {in, constant("pca_mean", h.pca_mean)}), constant("pca_basis", h.pca_basis)});
  const at::Tensor c = h.centroids.to(at::kFloat);
  const std::string dist =
      node("Add", {node("MatMul", {p, constant("centroids_t_x_minus2", (-2 * c).t().contiguous())}),
                   constant("centroid_norms", c.square().sum(1))});
  Attribute axis, keep;
  axis.type = keep.type = Attribute::Type::Int;
  axis.i = 1;
  keep.i = 0;
  const std::string k = node("ArgMin", {dist}, {{"axis", axis}, {"keepdims", keep}});
  Attribute gaxis;
  gaxis.type = Attribute::Type::Int;
  gaxis.i = 0;
  const std::string gk = node("Gather", {constant("gamma", gamma), k}, {{"axis", gaxis}});
  const std::string bk = node("Gather", {constant("beta", beta), k}, {{"axis", gaxis}});
  node("Add", {node("Mul", {in, gk}), bk}, {}, z);
}

}  // namespace catq

#include "io/onnx_reader.h"

#include <onnx/onnx_pb.h>

#include <set>

#include "core/error.h"
#include "core/file_util.h"

namespace catq {

at::Tensor tensor_from_proto(const onnx::TensorProto& t, const std::string& file, const std::string& base_dir) {
  std::string what = fmt::format("tensor '{}'", t.name());
  at::ScalarType dt = onnx_dtype_to_torch(t.data_type(), fmt::format("{}: {}", file, what));
  std::vector<int64_t> shape(t.dims().begin(), t.dims().end());
  uint64_t n = checked_numel(shape, file, what);
  size_t esz = c10::elementSize(dt);
  // Every storage is checked against the declared shape BEFORE the tensor is allocated: a few bytes of protobuf can
  // declare 2^40 elements.
  auto alloc = [&] { return at::empty(shape, at::TensorOptions().dtype(dt)); };

  if (t.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    uint64_t offset = 0, length = n * esz;
    auto number = [&](const std::string& key, const std::string& v) {
      CATQ_CHECK(!v.empty() && v.size() <= 20 && v.find_first_not_of("0123456789") == std::string::npos, Format,
                 "{}: {} has external data {} '{}', expected a non-negative integer", file, what, key, v);
      try {
        return static_cast<uint64_t>(std::stoull(v));
      } catch (const std::exception&) {
        fail(ErrorKind::Format, "{}: {} has external data {} '{}', too large", file, what, key, v);
      }
    };
    for (const auto& kv : t.external_data()) {
      if (kv.key() == "location") location = kv.value();
      else if (kv.key() == "offset") offset = number("offset", kv.value());
      else if (kv.key() == "length") length = number("length", kv.value());
    }
    CATQ_CHECK(!location.empty() && location.find("..") == std::string::npos && location[0] != '/' &&
                   location.find('\0') == std::string::npos,
               Format, "{}: {} has external data without a valid location (a path relative to the model's folder)",
               file, what);
    std::string p = base_dir.empty() ? location : base_dir + "/" + location;
    CATQ_CHECK(length == n * esz, Format, "{}: {} external length {} != {} bytes for its shape", file, what, length, n * esz);
    uint64_t fs = file_size(p);
    CATQ_CHECK(offset <= fs && length <= fs - offset, Format, "{}: {} external data [{}, +{}) is outside {} ({} bytes)",
               file, what, offset, length, p, fs);
    std::FILE* f = std::fopen(p.c_str(), "rb");
    CATQ_CHECK(f, Io, "{}: cannot open external data file {}", file, p);
    at::Tensor out = alloc();
    auto* dst = static_cast<uint8_t*>(out.data_ptr());
    const bool sought = std::fseek(f, static_cast<long>(offset), SEEK_SET) == 0;
    size_t got = length && sought ? std::fread(dst, 1, length, f) : 0;
    std::fclose(f);
    CATQ_CHECK(got == length, Io, "{}: short read of external data {}", file, p);
    return out;
  }

  if (t.has_raw_data()) {
    const std::string& raw = t.raw_data();
    CATQ_CHECK(raw.size() == n * esz, Format, "{}: {} has {} bytes of raw data, expected {} for shape {} of {}", file,
               what, raw.size(), n * esz, fmt::join(shape, "x"), c10::toString(dt));
    at::Tensor out = alloc();
    if (n) std::memcpy(out.data_ptr(), raw.data(), raw.size());
    return out;
  }

  auto check_count = [&](size_t have) {
    CATQ_CHECK(have == n, Format, "{}: {} has {} values, expected {} for shape [{}]", file, what, have, n,
               fmt::join(shape, ","));
  };
  using TP = onnx::TensorProto;
  auto copy = [&](const void* src) {
    at::Tensor out = alloc();
    if (n) std::memcpy(out.data_ptr(), src, n * esz);
    return out;
  };
  switch (t.data_type()) {
    case TP::FLOAT: check_count(t.float_data_size()); return copy(t.float_data().data());
    case TP::DOUBLE: check_count(t.double_data_size()); return copy(t.double_data().data());
    case TP::INT64: check_count(t.int64_data_size()); return copy(t.int64_data().data());
    case TP::INT32: check_count(t.int32_data_size()); return copy(t.int32_data().data());
    case TP::INT16: case TP::INT8: case TP::UINT8: case TP::BOOL: case TP::FLOAT16: case TP::BFLOAT16: {
      // These are stored one value (or 16-bit pattern) per int32 element.
      check_count(t.int32_data_size());
      at::Tensor out = alloc();
      auto* dst = static_cast<uint8_t*>(out.data_ptr());
      for (uint64_t i = 0; i < n; ++i) {
        int32_t v = t.int32_data(static_cast<int>(i));
        if (t.data_type() == TP::BOOL) dst[i] = v != 0;  // torch bools must be 0 or 1
        else if (esz == 1) dst[i] = static_cast<uint8_t>(v);
        else { uint16_t h = static_cast<uint16_t>(v); std::memcpy(dst + 2 * i, &h, 2); }
      }
      return out;
    }
    default:
      fail(ErrorKind::Unsupported, "{}: {} uses an unsupported storage for data type {}", file, what, t.data_type());
  }
}

at::Tensor load_tensor_pb(const std::string& path) {
  auto bytes = read_file_bytes(path);
  onnx::TensorProto t;
  CATQ_CHECK(t.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())), Format,
             "{}: not a valid serialized ONNX TensorProto", path);
  std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
  return tensor_from_proto(t, path, dir);
}

static Attribute convert_attr(const onnx::AttributeProto& a, const std::string& file, const std::string& base_dir) {
  Attribute r;
  using AP = onnx::AttributeProto;
  switch (a.type()) {
    case AP::INT: r.type = Attribute::Type::Int; r.i = a.i(); break;
    case AP::FLOAT: r.type = Attribute::Type::Float; r.f = a.f(); break;
    case AP::STRING: r.type = Attribute::Type::String; r.s = a.s(); break;
    case AP::INTS: r.type = Attribute::Type::Ints; r.ints.assign(a.ints().begin(), a.ints().end()); break;
    case AP::FLOATS: r.type = Attribute::Type::Floats; r.floats.assign(a.floats().begin(), a.floats().end()); break;
    case AP::STRINGS: r.type = Attribute::Type::Strings; r.strings.assign(a.strings().begin(), a.strings().end()); break;
    case AP::TENSOR: r.type = Attribute::Type::Tensor; r.t = tensor_from_proto(a.t(), file, base_dir); break;
    case AP::GRAPH: case AP::GRAPHS: r.type = Attribute::Type::Graph; break;
    default:
      // Older files may omit `type`; infer from which field is set.
      if (a.has_i()) { r.type = Attribute::Type::Int; r.i = a.i(); }
      else if (a.has_f()) { r.type = Attribute::Type::Float; r.f = a.f(); }
      else if (a.has_s()) { r.type = Attribute::Type::String; r.s = a.s(); }
      else if (a.ints_size()) { r.type = Attribute::Type::Ints; r.ints.assign(a.ints().begin(), a.ints().end()); }
      else if (a.floats_size()) { r.type = Attribute::Type::Floats; r.floats.assign(a.floats().begin(), a.floats().end()); }
      else if (a.has_t()) { r.type = Attribute::Type::Tensor; r.t = tensor_from_proto(a.t(), file, base_dir); }
  }
  return r;
}

static ValueInfo convert_value_info(const onnx::ValueInfoProto& v, const std::string& file) {
  ValueInfo r;
  r.name = v.name();
  if (v.type().has_tensor_type()) {
    const auto& tt = v.type().tensor_type();
    if (tt.elem_type() != 0) {
      try { r.dtype = onnx_dtype_to_torch(tt.elem_type(), file + ": value '" + v.name() + "'"); }
      catch (const Error&) { r.dtype = at::kFloat; }
    }
    if (tt.has_shape()) {
      r.has_shape = true;
      for (const auto& d : tt.shape().dim()) r.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
    }
  }
  return r;
}

Graph parse_onnx(const void* data, size_t size, const std::string& name, const std::string& base_dir,
                 const OnnxReadOptions& opts) {
  onnx::ModelProto m;
  CATQ_CHECK(size <= static_cast<size_t>(INT32_MAX), Unsupported,
             "{}: ONNX files over 2 GB must keep weights as external data", name);
  CATQ_CHECK(size > 0, Format, "{}: empty file (expected an ONNX ModelProto)", name);
  CATQ_CHECK(m.ParseFromArray(data, static_cast<int>(size)), Format,
             "{}: not a valid ONNX model (protobuf parse failed: truncated or not ONNX)", name);
  CATQ_CHECK(m.has_graph() && m.graph().node_size() > 0, Format, "{}: ONNX model has no graph nodes", name);

  Graph g;
  g.source = name;
  g.name = m.graph().name();
  g.opset = -1;
  for (const auto& os : m.opset_import())
    if (os.domain().empty() || os.domain() == "ai.onnx") g.opset = os.version();
  CATQ_CHECK(g.opset != -1, Format, "{}: no opset_import for the default ONNX domain", name);
  CATQ_CHECK(g.opset >= 7 && g.opset <= 18, Unsupported, "{}: opset {} is outside the supported range 7-18 "
             "(tested: 11-17)", name, g.opset);

  const auto& gp = m.graph();
  for (const auto& t : gp.initializer()) {
    CATQ_CHECK(!t.name().empty(), Format, "{}: initializer without a name", name);
    g.initializers[t.name()] = tensor_from_proto(t, name, base_dir);
  }
  for (const auto& v : gp.input())
    if (!g.initializers.count(v.name())) g.inputs.push_back(convert_value_info(v, name));
  for (const auto& v : gp.output()) g.outputs.push_back(convert_value_info(v, name));
  CATQ_CHECK(!g.outputs.empty(), Format, "{}: graph has no outputs", name);

  std::set<std::string> defined;
  for (const auto& [k, v] : g.initializers) defined.insert(k);
  for (const auto& v : g.inputs) defined.insert(v.name);
  std::set<std::string> names;
  int idx = 0;
  for (const auto& np : gp.node()) {
    Node n;
    n.op_type = np.op_type();
    n.domain = np.domain() == "ai.onnx" ? "" : np.domain();
    n.name = np.name().empty() || names.count(np.name()) ? fmt::format("{}_{}", n.op_type, idx) : np.name();
    names.insert(n.name);
    ++idx;
    n.inputs.assign(np.input().begin(), np.input().end());
    n.outputs.assign(np.output().begin(), np.output().end());
    if (opts.check_ops) {
      CATQ_CHECK(n.domain.empty(), Unsupported, "{}: node '{}' uses op '{}' from domain '{}' (only the default ONNX "
                 "domain is supported)", name, n.name, n.op_type, n.domain);
      CATQ_CHECK(is_supported_op(n.op_type), Unsupported, "{}: unsupported op '{}' in node '{}' (supported: {})", name,
                 n.op_type, n.name, fmt::join(supported_ops(), ", "));
    }
    for (const auto& a : np.attribute()) n.attrs[a.name()] = convert_attr(a, name, base_dir);
    for (const auto& in : n.inputs)
      CATQ_CHECK(in.empty() || defined.count(in), Format,
                 "{}: node '{}' ({}) reads '{}' which is not defined before it (graph not topologically sorted or "
                 "dangling input)", name, n.name, n.op_type, in);
    for (const auto& o : n.outputs) if (!o.empty()) defined.insert(o);
    g.nodes.push_back(std::move(n));
  }
  for (const auto& o : g.outputs)
    CATQ_CHECK(defined.count(o.name), Format, "{}: graph output '{}' is never produced", name, o.name);
  return g;
}

Graph load_onnx(const std::string& path, const OnnxReadOptions& opts) {
  auto bytes = read_file_bytes(path);
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  return parse_onnx(bytes.data(), bytes.size(), path, dir, opts);
}

}  // namespace catq

// TFLite reading and writing: the FlatBuffer tables of the schema, by field id, to and from TfliteModel.
#include "io/tflite.h"

#include <cmath>
#include <cstring>

#include "core/file_util.h"
#include "io/flatbuf.h"

namespace catq {

namespace {

// Field ids of the schema tables catq reads (the order of declaration in the schema; a union takes two ids: its
// type, then its value).
namespace model_f { enum { version = 0, operator_codes = 1, subgraphs = 2, description = 3, buffers = 4 }; }
namespace opcode_f { enum { deprecated_builtin_code = 0, custom_code = 1, version = 2, builtin_code = 3 }; }
namespace subgraph_f { enum { tensors = 0, inputs = 1, outputs = 2, operators = 3, name = 4 }; }
namespace buffer_f { enum { data = 0, offset = 1, size = 2 }; }
namespace tensor_f { enum { shape = 0, type = 1, buffer = 2, name = 3, quantization = 4, is_variable = 5, sparsity = 6 }; }
namespace quant_f { enum { min = 0, max = 1, scale = 2, zero_point = 3, details_type = 4, details = 5, quantized_dimension = 6 }; }
namespace operator_f {
enum { opcode_index = 0, inputs = 1, outputs = 2, builtin_options_type = 3, builtin_options = 4, custom_options = 5 };
}
// BuiltinOptions union members (their position in the union, 1-based).
namespace opt_t {
enum : uint8_t {
  Conv2D = 1, DepthwiseConv2D = 2, Pool2D = 5, FullyConnected = 8, Softmax = 9, Concatenation = 10, Add = 11,
  Reshape = 17, Mul = 21, Pad = 22, Reducer = 27, Squeeze = 30, Dequantize = 38, Quantize = 89
};
}

// The builtin operator names of the schema, by code (0..161).
const char* const kOpNames[] = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE",
    "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP", "L2_NORMALIZATION", "L2_POOL_2D",
    "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU",
    "RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH",
    "CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL", "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD",
    "UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB",
    "DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP", "TOPK_V2",
    "SPLIT", "LOG_SOFTMAX", "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM", "ARG_MAX",
    "MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL", "SELECT", "SLICE", "SIN",
    "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT",
    "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT",
    "LOGICAL_AND", "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE", "FILL",
    "FLOOR_MOD", "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE", "MIRROR_PAD", "ABS",
    "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS", "WHERE", "RANK", "ELU",
    "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH", "IF", "WHILE",
    "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM",
    "BATCH_MATMUL", "PLACEHOLDER_FOR_GREATER_OP_CODES", "CUMSUM", "CALL_ONCE", "BROADCAST_TO", "RFFT2D", "CONV_3D",
    "IMAG", "REAL", "COMPLEX_ABS", "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "REDUCE_ALL",
    "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "BROADCAST_ARGS",
    "RANDOM_STANDARD_NORMAL", "BUCKETIZE", "RANDOM_UNIFORM", "MULTINOMIAL", "GELU", "DYNAMIC_UPDATE_SLICE",
    "RELU_0_TO_1", "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX", "UNSORTED_SEGMENT_SUM", "ATAN2",
    "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST", "BITWISE_XOR", "RIGHT_SHIFT"};
constexpr int32_t kNumOpNames = static_cast<int32_t>(sizeof(kOpNames) / sizeof(kOpNames[0]));

bool known_type(int8_t t) {
  switch (t) {
    case 0: case 1: case 2: case 3: case 4: case 6: case 7: case 9: return true;
    default: return false;
  }
}

// The union member the options of an operator must be (0 = the operator has no options catq reads).
uint8_t expected_options(int32_t code) {
  switch (code) {
    case tfl::CONV_2D: return opt_t::Conv2D;
    case tfl::DEPTHWISE_CONV_2D: return opt_t::DepthwiseConv2D;
    case tfl::AVERAGE_POOL_2D: case tfl::MAX_POOL_2D: return opt_t::Pool2D;
    case tfl::FULLY_CONNECTED: return opt_t::FullyConnected;
    case tfl::SOFTMAX: return opt_t::Softmax;
    case tfl::CONCATENATION: return opt_t::Concatenation;
    case tfl::ADD: return opt_t::Add;
    case tfl::RESHAPE: return opt_t::Reshape;
    case tfl::MUL: return opt_t::Mul;
    case tfl::MEAN: return opt_t::Reducer;
    case tfl::SQUEEZE: return opt_t::Squeeze;
    default: return 0;
  }
}

TfliteOptions read_options(int32_t code, const FbTable& op, const std::string& where) {
  TfliteOptions o;
  const uint8_t type = op.scalar<uint8_t>(operator_f::builtin_options_type, 0);
  const uint8_t want = expected_options(code);
  if (want == 0 || type == 0) {
    if (code == tfl::SOFTMAX) o.beta = 1.f;
    return o;
  }
  if (type != want)
    fail(ErrorKind::Format, "{}: builtin options of type {} do not belong to a {} operator (expected type {})", where,
         static_cast<int>(type), tflite_op_name(code), static_cast<int>(want));
  auto t = op.table(operator_f::builtin_options, where + " options");
  if (!t) {
    if (code == tfl::SOFTMAX) o.beta = 1.f;
    return o;
  }
  switch (type) {
    case opt_t::Conv2D:
      o.padding = t->scalar<int8_t>(0, 0);
      o.stride_w = t->scalar<int32_t>(1, 0);
      o.stride_h = t->scalar<int32_t>(2, 0);
      o.activation = t->scalar<int8_t>(3, 0);
      o.dilation_w = t->scalar<int32_t>(4, 1);
      o.dilation_h = t->scalar<int32_t>(5, 1);
      break;
    case opt_t::DepthwiseConv2D:
      o.padding = t->scalar<int8_t>(0, 0);
      o.stride_w = t->scalar<int32_t>(1, 0);
      o.stride_h = t->scalar<int32_t>(2, 0);
      o.depth_multiplier = t->scalar<int32_t>(3, 0);
      o.activation = t->scalar<int8_t>(4, 0);
      o.dilation_w = t->scalar<int32_t>(5, 1);
      o.dilation_h = t->scalar<int32_t>(6, 1);
      break;
    case opt_t::Pool2D:
      o.padding = t->scalar<int8_t>(0, 0);
      o.stride_w = t->scalar<int32_t>(1, 0);
      o.stride_h = t->scalar<int32_t>(2, 0);
      o.filter_w = t->scalar<int32_t>(3, 0);
      o.filter_h = t->scalar<int32_t>(4, 0);
      o.activation = t->scalar<int8_t>(5, 0);
      break;
    case opt_t::FullyConnected:
      o.activation = t->scalar<int8_t>(0, 0);
      o.weights_format = t->scalar<int8_t>(1, 0);
      o.keep_num_dims = t->scalar<uint8_t>(2, 0) != 0;
      break;
    case opt_t::Softmax: o.beta = t->scalar<float>(0, 0.f); break;
    case opt_t::Concatenation:
      o.axis = t->scalar<int32_t>(0, 0);
      o.activation = t->scalar<int8_t>(1, 0);
      break;
    case opt_t::Add: case opt_t::Mul: o.activation = t->scalar<int8_t>(0, 0); break;
    case opt_t::Reshape: o.new_shape = t->scalars<int32_t>(0, where + " new_shape"); break;
    case opt_t::Reducer: o.keep_dims = t->scalar<uint8_t>(0, 0) != 0; break;
    case opt_t::Squeeze: o.squeeze_dims = t->scalars<int32_t>(0, where + " squeeze_dims"); break;
    default: break;
  }
  return o;
}

}  // namespace

const char* tflite_type_name(int type) {
  static const char* const names[] = {"FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL", "INT16",
                                      "COMPLEX64", "INT8", "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE", "VARIANT",
                                      "UINT32", "UINT16", "INT4"};
  if (type >= 0 && type < static_cast<int>(sizeof(names) / sizeof(names[0]))) return names[type];
  return "unknown type";
}

size_t tflite_type_size(TfliteType t) {
  switch (t) {
    case TfliteType::Float32: case TfliteType::Int32: return 4;
    case TfliteType::Float16: case TfliteType::Int16: return 2;
    case TfliteType::Int64: return 8;
    default: return 1;
  }
}

std::string tflite_op_name(int32_t code) {
  if (code >= 0 && code < kNumOpNames) return kOpNames[code];
  return fmt::format("builtin {}", code);
}

std::string TfliteOp::name() const {
  if (code == 32) return fmt::format("CUSTOM({})", custom_code);
  return tflite_op_name(code);
}

int64_t TfliteTensor::numel() const {
  int64_t n = 1;
  for (int32_t d : shape) n *= d;
  return n;
}

at::Tensor TfliteTensor::to_tensor(const std::string& file) const {
  CATQ_CHECK(is_constant(), Internal, "{}: tensor '{}' has no data", file, name);
  std::vector<int64_t> sizes(shape.begin(), shape.end());
  at::ScalarType st;
  switch (type) {
    case TfliteType::Float32: st = at::kFloat; break;
    case TfliteType::Float16: st = at::kHalf; break;
    case TfliteType::Int32: st = at::kInt; break;
    case TfliteType::Int64: st = at::kLong; break;
    case TfliteType::Int8: st = at::kChar; break;
    case TfliteType::UInt8: st = at::kByte; break;
    case TfliteType::Int16: st = at::kShort; break;
    case TfliteType::Bool: st = at::kBool; break;
    default: fail(ErrorKind::Unsupported, "{}: tensor '{}' has type {}", file, name, tflite_type_name(static_cast<int>(type)));
  }
  at::Tensor t = at::empty(sizes, st);
  std::memcpy(t.data_ptr(), data.data(), data.size());
  if (st == at::kHalf) t = t.to(at::kFloat);
  return t;
}

bool TfliteModel::is_integer() const {
  for (int32_t i : inputs)
    if (tensor(i).type != TfliteType::Int8 && tensor(i).type != TfliteType::UInt8) return false;
  return !inputs.empty();
}

std::map<std::string, int> TfliteModel::op_histogram() const {
  std::map<std::string, int> h;
  for (const auto& op : ops) h[op.name()]++;
  return h;
}

bool is_tflite_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  uint8_t head[8] = {0};
  const size_t n = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  return n == 8 && std::memcmp(head + 4, "TFL3", 4) == 0;
}

TfliteModel read_tflite(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return parse_tflite(bytes.data(), bytes.size(), path);
}

TfliteModel parse_tflite(const uint8_t* data, size_t size, const std::string& name) {
  const FbBuffer buf{data, size, name};
  const FbTable root = FbTable::root(buf, "TFL3", "TFLite");
  TfliteModel m;
  m.path = name;
  m.version = root.scalar<uint32_t>(model_f::version, 0);
  CATQ_CHECK(m.version == 3, Unsupported, "{}: TFLite schema version {}, catq reads version 3", name, m.version);
  m.description = root.string(model_f::description, "model description");

  // Operator codes.
  std::vector<std::pair<int32_t, std::string>> codes;
  std::vector<int32_t> code_versions;
  if (auto v = root.vector(model_f::operator_codes, 4, "operator_codes")) {
    for (size_t i = 0; i < v->size(); ++i) {
      const FbTable c = v->table(i, fmt::format("operator_codes[{}]", i));
      const int32_t dep = c.scalar<int8_t>(opcode_f::deprecated_builtin_code, 0);
      const int32_t code = c.scalar<int32_t>(opcode_f::builtin_code, 0);
      // Older writers fill only the byte-sized field; newer ones both (the larger one is the code).
      codes.emplace_back(std::max(dep, code), c.string(opcode_f::custom_code, "custom_code"));
      code_versions.push_back(c.scalar<int32_t>(opcode_f::version, 1));
    }
  }

  // Buffers.
  auto buffers = root.vector(model_f::buffers, 4, "buffers");
  const size_t num_buffers = buffers ? buffers->size() : 0;

  auto subgraphs = root.vector(model_f::subgraphs, 4, "subgraphs");
  CATQ_CHECK(subgraphs && subgraphs->size() >= 1, Format, "{}: the model has no subgraph", name);
  m.subgraphs = static_cast<int64_t>(subgraphs->size());
  const FbTable sg = subgraphs->table(0, "subgraphs[0]");

  auto tensors = sg.vector(subgraph_f::tensors, 4, "tensors");
  const size_t nt = tensors ? tensors->size() : 0;
  for (size_t i = 0; i < nt; ++i) {
    const std::string what = fmt::format("tensors[{}]", i);
    const FbTable t = tensors->table(i, what);
    TfliteTensor x;
    x.name = t.string(tensor_f::name, what + " name");
    const std::string where = fmt::format("{}: tensor {} '{}'", name, i, x.name);
    x.shape = t.scalars<int32_t>(tensor_f::shape, what + " shape");
    for (int32_t d : x.shape)
      CATQ_CHECK(d >= 0, Format, "{}: shape [{}] has a negative dimension", where, fmt::join(x.shape, ","));
    checked_numel(std::vector<int64_t>(x.shape.begin(), x.shape.end()), name, what + " shape", uint64_t{1} << 32);
    const int8_t type = t.scalar<int8_t>(tensor_f::type, 0);
    CATQ_CHECK(known_type(type), Unsupported, "{}: tensor type {} ({}) is not supported (float32, float16, int8, "
               "uint8, int16, int32, int64, bool)", where, tflite_type_name(type), static_cast<int>(type));
    x.type = static_cast<TfliteType>(type);
    CATQ_CHECK(!t.has(tensor_f::sparsity), Unsupported, "{}: sparse tensors are not supported", where);
    const uint32_t b = t.scalar<uint32_t>(tensor_f::buffer, 0);
    CATQ_CHECK(b < std::max<size_t>(num_buffers, 1), Format, "{}: buffer index {} but the model has {} buffers", where,
               b, num_buffers);
    if (b > 0) {
      const FbTable bt = buffers->table(b, fmt::format("buffers[{}]", b));
      CATQ_CHECK(bt.scalar<uint64_t>(buffer_f::offset, 0) <= 1, Unsupported,
                 "{}: data stored outside the FlatBuffer (a model over 2 GB) is not supported", where);
      if (auto d = bt.vector(buffer_f::data, 1, fmt::format("buffers[{}] data", b))) {
        x.data.assign(d->bytes(), d->bytes() + d->size());
        const uint64_t want = static_cast<uint64_t>(x.numel()) * tflite_type_size(x.type);
        CATQ_CHECK(x.data.size() == want, Format, "{}: {} bytes of data, but shape [{}] of {} needs {}", where,
                   x.data.size(), fmt::join(x.shape, ","), tflite_type_name(type), want);
      }
    }
    if (auto q = t.table(tensor_f::quantization, what + " quantization")) {
      CATQ_CHECK(q->scalar<uint8_t>(quant_f::details_type, 0) == 0, Unsupported,
                 "{}: custom quantization details are not supported", where);
      x.quant.scale = q->scalars<float>(quant_f::scale, what + " scale");
      x.quant.zero_point = q->scalars<int64_t>(quant_f::zero_point, what + " zero_point");
      x.quant.axis = q->scalar<int32_t>(quant_f::quantized_dimension, 0);
      if (x.quant.present()) {
        for (float s : x.quant.scale)
          CATQ_CHECK(std::isfinite(s) && s > 0, Format, "{}: quantization scale {} must be positive and finite", where, s);
        if (x.quant.zero_point.empty()) x.quant.zero_point.assign(x.quant.scale.size(), 0);
        CATQ_CHECK(x.quant.zero_point.size() == x.quant.scale.size(), Format, "{}: {} scales but {} zero-points", where,
                   x.quant.scale.size(), x.quant.zero_point.size());
        if (x.quant.per_channel())
          CATQ_CHECK(x.quant.axis >= 0 && x.quant.axis < static_cast<int32_t>(x.shape.size()) &&
                         x.shape[x.quant.axis] == static_cast<int32_t>(x.quant.scale.size()),
                     Format, "{}: {} per-channel scales along dimension {} of shape [{}]", where, x.quant.scale.size(),
                     x.quant.axis, fmt::join(x.shape, ","));
      }
    }
    m.tensors.push_back(std::move(x));
  }
  auto check_index = [&](int32_t i, bool optional, const std::string& where) {
    CATQ_CHECK((optional && i == -1) || (i >= 0 && static_cast<size_t>(i) < nt), Format,
               "{}: {} refers to tensor {}, but the subgraph has {} tensors", name, where, i, nt);
  };
  m.inputs = sg.scalars<int32_t>(subgraph_f::inputs, "subgraph inputs");
  m.outputs = sg.scalars<int32_t>(subgraph_f::outputs, "subgraph outputs");
  for (int32_t i : m.inputs) check_index(i, false, "the subgraph's input list");
  for (int32_t i : m.outputs) check_index(i, false, "the subgraph's output list");
  CATQ_CHECK(!m.inputs.empty() && !m.outputs.empty(), Format, "{}: the subgraph has {} inputs and {} outputs", name,
             m.inputs.size(), m.outputs.size());

  if (auto ops = sg.vector(subgraph_f::operators, 4, "operators")) {
    for (size_t i = 0; i < ops->size(); ++i) {
      const std::string what = fmt::format("operators[{}]", i);
      const FbTable o = ops->table(i, what);
      TfliteOp op;
      const uint32_t ci = o.scalar<uint32_t>(operator_f::opcode_index, 0);
      CATQ_CHECK(ci < codes.size(), Format, "{}: operator {} has opcode index {}, the model has {} operator codes", name,
                 i, ci, codes.size());
      op.code = codes[ci].first;
      op.custom_code = codes[ci].second;
      op.version = code_versions[ci];
      op.inputs = o.scalars<int32_t>(operator_f::inputs, what + " inputs");
      op.outputs = o.scalars<int32_t>(operator_f::outputs, what + " outputs");
      const std::string where = fmt::format("operator {} ({})", i, op.name());
      for (int32_t t : op.inputs) check_index(t, true, where + " input");
      for (int32_t t : op.outputs) check_index(t, false, where + " output");
      op.options = read_options(op.code, o, fmt::format("{}: {}", name, where));
      m.ops.push_back(std::move(op));
    }
  }
  return m;
}

// ---- writer ----

namespace {

FbNodePtr options_table(const TfliteOp& op, uint8_t& type) {
  const TfliteOptions& o = op.options;
  type = expected_options(op.code);
  auto t = fb_table();
  switch (type) {
    case opt_t::Conv2D:
      t->scalar<int8_t>(0, o.padding).scalar<int32_t>(1, o.stride_w).scalar<int32_t>(2, o.stride_h);
      t->scalar<int8_t>(3, o.activation).scalar<int32_t>(4, o.dilation_w).scalar<int32_t>(5, o.dilation_h);
      break;
    case opt_t::DepthwiseConv2D:
      t->scalar<int8_t>(0, o.padding).scalar<int32_t>(1, o.stride_w).scalar<int32_t>(2, o.stride_h);
      t->scalar<int32_t>(3, o.depth_multiplier).scalar<int8_t>(4, o.activation);
      t->scalar<int32_t>(5, o.dilation_w).scalar<int32_t>(6, o.dilation_h);
      break;
    case opt_t::Pool2D:
      t->scalar<int8_t>(0, o.padding).scalar<int32_t>(1, o.stride_w).scalar<int32_t>(2, o.stride_h);
      t->scalar<int32_t>(3, o.filter_w).scalar<int32_t>(4, o.filter_h).scalar<int8_t>(5, o.activation);
      break;
    case opt_t::FullyConnected:
      t->scalar<int8_t>(0, o.activation).scalar<int8_t>(1, o.weights_format);
      t->scalar<uint8_t>(2, o.keep_num_dims ? 1 : 0);
      break;
    case opt_t::Softmax: t->scalar<float>(0, o.beta); break;
    case opt_t::Concatenation: t->scalar<int32_t>(0, o.axis).scalar<int8_t>(1, o.activation); break;
    case opt_t::Add: case opt_t::Mul: t->scalar<int8_t>(0, o.activation); break;
    case opt_t::Reshape:
      if (!o.new_shape.empty()) t->ref(0, fb_vector(o.new_shape));
      break;
    case opt_t::Reducer: t->scalar<uint8_t>(0, o.keep_dims ? 1 : 0); break;
    case opt_t::Squeeze:
      if (!o.squeeze_dims.empty()) t->ref(0, fb_vector(o.squeeze_dims));
      break;
    default: return nullptr;
  }
  return t;
}

}  // namespace

std::vector<uint8_t> serialize_tflite(const TfliteModel& m) {
  // Operator codes in order of first use.
  std::vector<std::pair<int32_t, int32_t>> codes;  // (code, version)
  std::vector<uint32_t> op_code_index;
  for (const TfliteOp& op : m.ops) {
    CATQ_CHECK(op.code != 32, Unsupported, "{}: writing custom operators is not supported", m.path);
    size_t k = 0;
    while (k < codes.size() && codes[k].first != op.code) ++k;
    if (k == codes.size()) codes.emplace_back(op.code, op.version);
    codes[k].second = std::max(codes[k].second, op.version);
    op_code_index.push_back(static_cast<uint32_t>(k));
  }
  std::vector<FbNodePtr> code_nodes;
  for (auto [code, version] : codes) {
    auto c = fb_table();
    c->scalar<int8_t>(opcode_f::deprecated_builtin_code, static_cast<int8_t>(std::min<int32_t>(code, 127)));
    c->scalar<int32_t>(opcode_f::version, version);
    c->scalar<int32_t>(opcode_f::builtin_code, code);
    code_nodes.push_back(c);
  }

  std::vector<FbNodePtr> buffers = {fb_table()};  // buffer 0: the empty sentinel
  std::vector<FbNodePtr> tensors;
  for (const TfliteTensor& t : m.tensors) {
    auto n = fb_table();
    n->ref(tensor_f::shape, fb_vector(t.shape));
    n->scalar<int8_t>(tensor_f::type, static_cast<int8_t>(t.type));
    if (t.is_constant()) {
      auto b = fb_table();
      b->ref(buffer_f::data, fb_bytes(t.data.data(), t.data.size(), 1, 16));
      n->scalar<uint32_t>(tensor_f::buffer, static_cast<uint32_t>(buffers.size()));
      buffers.push_back(b);
    }
    n->ref(tensor_f::name, fb_string(t.name));
    if (t.quant.present()) {
      auto q = fb_table();
      q->ref(quant_f::scale, fb_vector(t.quant.scale));
      q->ref(quant_f::zero_point, fb_vector(t.quant.zero_point));
      q->scalar<int32_t>(quant_f::quantized_dimension, t.quant.axis);
      n->ref(tensor_f::quantization, q);
    }
    tensors.push_back(n);
  }
  std::vector<FbNodePtr> ops;
  for (size_t i = 0; i < m.ops.size(); ++i) {
    const TfliteOp& op = m.ops[i];
    auto n = fb_table();
    n->scalar<uint32_t>(operator_f::opcode_index, op_code_index[i]);
    n->ref(operator_f::inputs, fb_vector(op.inputs));
    n->ref(operator_f::outputs, fb_vector(op.outputs));
    uint8_t type = 0;
    if (auto opts = options_table(op, type)) {
      n->scalar<uint8_t>(operator_f::builtin_options_type, type);
      n->ref(operator_f::builtin_options, opts);
    }
    ops.push_back(n);
  }
  auto sg = fb_table();
  sg->ref(subgraph_f::tensors, fb_refs(tensors));
  sg->ref(subgraph_f::inputs, fb_vector(m.inputs));
  sg->ref(subgraph_f::outputs, fb_vector(m.outputs));
  sg->ref(subgraph_f::operators, fb_refs(ops));
  sg->ref(subgraph_f::name, fb_string("main"));

  auto root = fb_table();
  root->scalar<uint32_t>(model_f::version, 3);
  root->ref(model_f::operator_codes, fb_refs(code_nodes));
  root->ref(model_f::subgraphs, fb_refs({sg}));
  root->ref(model_f::description, fb_string(m.description.empty() ? "written by catq" : m.description));
  root->ref(model_f::buffers, fb_refs(buffers));
  return fb_finish(root, "TFL3");
}

TfliteModel tflite_with_float_io(const TfliteModel& in, bool drop_final_softmax) {
  TfliteModel m = in;
  CATQ_CHECK(m.inputs.size() == 1 && m.outputs.size() == 1, Unsupported,
             "{}: float input / output for a model with {} inputs and {} outputs", m.path, m.inputs.size(), m.outputs.size());
  auto add = [&](const std::string& name, const std::vector<int32_t>& shape) {
    TfliteTensor t;
    t.name = name;
    t.shape = shape;
    t.type = TfliteType::Float32;
    m.tensors.push_back(std::move(t));
    return static_cast<int32_t>(m.tensors.size() - 1);
  };
  const int32_t x = m.inputs[0];
  if (m.tensor(x).type != TfliteType::Float32) {
    const int32_t xf = add(m.tensor(x).name + "/float", m.tensor(x).shape);
    TfliteOp q;
    q.code = tfl::QUANTIZE;
    q.inputs = {xf};
    q.outputs = {x};
    m.ops.insert(m.ops.begin(), q);
    m.inputs = {xf};
  }
  int32_t y = m.outputs[0];
  if (drop_final_softmax && !m.ops.empty() && m.ops.back().code == tfl::SOFTMAX && m.ops.back().outputs == m.outputs) {
    y = m.ops.back().inputs.at(0);
    m.ops.pop_back();
  }
  if (m.tensor(y).type != TfliteType::Float32) {
    const int32_t yf = add(m.tensor(y).name + "/float", m.tensor(y).shape);
    TfliteOp d;
    d.code = tfl::DEQUANTIZE;
    d.inputs = {y};
    d.outputs = {yf};
    m.ops.push_back(d);
    y = yf;
  }
  m.outputs = {y};
  return m;
}

void write_tflite(const std::string& path, const TfliteModel& m) {
  const std::vector<uint8_t> bytes = serialize_tflite(m);
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace catq

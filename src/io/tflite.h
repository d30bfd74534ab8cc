// TFLite (LiteRT) model files: reading them (our own FlatBuffers reading, io/flatbuf.h) into a plain TfliteModel,
// writing a TfliteModel back, and importing a model into the graph IR.
//
// What a .tflite file holds (schema "TFL3", version 3; field ids of each table in tflite.cpp):
//   Model       operator_codes, subgraphs (the first is the model), buffers (buffer 0 is the empty sentinel)
//   SubGraph    tensors, input / output tensor indices, operators in execution order
//   Tensor      shape (NHWC for images: [batch, height, width, channels]), type, buffer index (constant data,
//               little-endian, row-major), name, quantization (scale / zero-point per tensor or per channel along
//               quantized_dimension: real = scale · (q − zero_point))
//   Operator    opcode index, input / output tensor indices (−1 = omitted optional input), builtin options
// Weight layouts: CONV_2D [O, kh, kw, I] (OHWI), DEPTHWISE_CONV_2D [1, kh, kw, C·M] (channel c·M + m reads input
// channel c), FULLY_CONNECTED [O, I]; biases [O] (int32 in integer models, scale s_in · s_w[o], zero-point 0).
//
// Reading checks every offset and every size: a truncated or malformed file is Error(Format) naming the file, the
// object and the offset; tensor data whose size does not match its shape and type is Error(Format); unknown tensor
// types, sparse tensors, external buffers (models over 2 GB) are Error(Unsupported). Operators are checked when a
// model is imported or executed (what the reader itself accepts is any builtin operator).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace catq {

enum class TfliteType : int8_t { Float32 = 0, Float16 = 1, Int32 = 2, UInt8 = 3, Int64 = 4, Bool = 6, Int16 = 7, Int8 = 9 };
const char* tflite_type_name(int type);  // also for codes catq does not handle ("COMPLEX64", "type 42")
size_t tflite_type_size(TfliteType t);

// Builtin operator codes catq knows by number (all others are refused by name, tflite_op_name()).
namespace tfl {
enum Op : int32_t {
  ADD = 0, AVERAGE_POOL_2D = 1, CONCATENATION = 2, CONV_2D = 3, DEPTHWISE_CONV_2D = 4, DEQUANTIZE = 6,
  FULLY_CONNECTED = 9, LOGISTIC = 14, MAX_POOL_2D = 17, MUL = 18, RELU = 19, RELU_N1_TO_1 = 20, RELU6 = 21,
  RESHAPE = 22, SOFTMAX = 25, PAD = 34, MEAN = 40, SQUEEZE = 43, QUANTIZE = 114
};
enum Activation : int8_t { ACT_NONE = 0, ACT_RELU = 1, ACT_RELU_N1_TO_1 = 2, ACT_RELU6 = 3, ACT_TANH = 4, ACT_SIGN_BIT = 5 };
enum Padding : int8_t { SAME = 0, VALID = 1 };
}  // namespace tfl
// "CONV_2D", ... for every builtin code of the schema; "CUSTOM(name)" for custom operators; "builtin 300" otherwise.
std::string tflite_op_name(int32_t code);

struct TfliteQuant {
  std::vector<float> scale;
  std::vector<int64_t> zero_point;
  int32_t axis = 0;  // quantized_dimension (per-channel params)
  bool present() const { return !scale.empty(); }
  bool per_channel() const { return scale.size() > 1; }
};

struct TfliteTensor {
  std::string name;
  std::vector<int32_t> shape;
  TfliteType type = TfliteType::Float32;
  TfliteQuant quant;
  std::vector<uint8_t> data;  // constant data (empty for activations)
  bool is_constant() const { return !data.empty(); }
  int64_t numel() const;
  // Constant data as a tensor of its own type (float32, float16 → float32, int8, uint8, int32, int64) and shape.
  at::Tensor to_tensor(const std::string& file) const;
};

// The builtin options catq reads, flattened (fields an operator does not have keep their defaults).
struct TfliteOptions {
  int8_t padding = tfl::SAME;
  int32_t stride_w = 1, stride_h = 1, dilation_w = 1, dilation_h = 1;
  int32_t depth_multiplier = 1;
  int32_t filter_w = 0, filter_h = 0;
  int8_t activation = tfl::ACT_NONE;
  bool keep_dims = false, keep_num_dims = false;
  int8_t weights_format = 0;
  float beta = 1.f;
  std::vector<int32_t> new_shape;
  std::vector<int32_t> squeeze_dims;
  int32_t axis = 0;
};

struct TfliteOp {
  int32_t code = 0;         // builtin operator code
  std::string custom_code;  // for CUSTOM operators
  int32_t version = 1;
  std::vector<int32_t> inputs, outputs;  // tensor indices, −1 = omitted
  TfliteOptions options;
  std::string name() const;  // the operator's name (tflite_op_name)
};

struct TfliteModel {
  std::string path;
  uint32_t version = 3;
  std::string description;
  std::vector<TfliteTensor> tensors;
  std::vector<TfliteOp> ops;
  std::vector<int32_t> inputs, outputs;
  int64_t subgraphs = 1;

  const TfliteTensor& tensor(int32_t i) const { return tensors.at(static_cast<size_t>(i)); }
  // True when the model's input and output tensors are integer (the official int8 MLPerf Tiny files).
  bool is_integer() const;
  // Operator name → count.
  std::map<std::string, int> op_histogram() const;
};

// Reads a .tflite file. Error(Io) when unreadable, Error(Format) for a malformed file, Error(Unsupported) for
// features catq does not read (above).
TfliteModel read_tflite(const std::string& path);
TfliteModel parse_tflite(const uint8_t* data, size_t size, const std::string& name);
bool is_tflite_file(const std::string& path);  // "TFL3" at bytes 4..7

// Serialises a model (one subgraph, builtin operators with the options above) as a .tflite FlatBuffer;
// write_tflite writes it atomically (temp file + rename).
std::vector<uint8_t> serialize_tflite(const TfliteModel& m);
void write_tflite(const std::string& path, const TfliteModel& m);

// The same integer model with float32 input and output: a QUANTIZE (float → the input's int8 parameters) in front
// and a DEQUANTIZE after the output — after the final SOFTMAX's input (the logits) when `drop_final_softmax`. For
// runtimes whose API has no int8 tensors (LiteRT.js); every other tensor and operator is unchanged.
TfliteModel tflite_with_float_io(const TfliteModel& m, bool drop_final_softmax = true);

// Import into the graph IR (docs/tflite.md). The graph is NCHW: a 4-D activation [N, H, W, C] becomes [N, C, H, W]
// (graph input included: images go in as the image data sets hold them), weights are permuted to ONNX layouts
// (conv OIHW; depthwise [C·M, 1, kh, kw] with group = C; fully connected stays [O, I] as Gemm with transB), SAME
// padding becomes explicit pads, fused activations become Relu / Clip nodes. RESHAPE of a 4-D activation whose
// spatial size is not 1×1 is preceded by a Transpose back to NHWC, so flattening keeps TFLite's element order.
// Integer models import with dequantized weights and biases and a QuantizeLinear → DequantizeLinear pair after
// every quantized activation (the float simulation of the integer model; runtime/tflite_int8.h runs it with
// TFLite's integer arithmetic).
struct TfliteImportOptions {
  // A SOFTMAX producing a graph output is left out, so the graph outputs logits (catq's classifiers, KL and the CAT
  // head work on logits; the argmax is the same).
  bool drop_final_softmax = true;
};
// Error(Unsupported) naming the operator (and its index and output tensor) for operators outside the imported set:
// ADD, AVERAGE_POOL_2D, MAX_POOL_2D, CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, RESHAPE, SQUEEZE, SOFTMAX, PAD,
// MEAN, RELU, RELU6, RELU_N1_TO_1, LOGISTIC, MUL, CONCATENATION (channel axis), QUANTIZE, DEQUANTIZE; Error(Data)
// for shapes that do not fit the operator.
Graph tflite_to_graph(const TfliteModel& m, const TfliteImportOptions& o = {});
Graph load_tflite_graph(const std::string& path, const TfliteImportOptions& o = {});

}  // namespace catq

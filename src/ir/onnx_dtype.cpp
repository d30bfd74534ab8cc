#include "ir/onnx_dtype.h"

#include <onnx/onnx_pb.h>

#include "core/error.h"

namespace catq {

at::ScalarType onnx_dtype_to_torch(int32_t t, const std::string& where) {
  using TP = onnx::TensorProto;
  switch (t) {
    case TP::FLOAT: return at::kFloat;
    case TP::DOUBLE: return at::kDouble;
    case TP::FLOAT16: return at::kHalf;
    case TP::BFLOAT16: return at::kBFloat16;
    case TP::INT8: return at::kChar;
    case TP::UINT8: return at::kByte;
    case TP::INT16: return at::kShort;
    case TP::INT32: return at::kInt;
    case TP::INT64: return at::kLong;
    case TP::BOOL: return at::kBool;
    default: break;
  }
  fail(ErrorKind::Unsupported, "{}: ONNX data type {} ({}) is not supported (supported: float, double, float16, "
       "bfloat16, int8, uint8, int16, int32, int64, bool)", where, t,
       onnx::TensorProto_DataType_IsValid(t) ? onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(t)) : "invalid");
}

int32_t torch_dtype_to_onnx(at::ScalarType t) {
  using TP = onnx::TensorProto;
  switch (t) {
    case at::kFloat: return TP::FLOAT;
    case at::kDouble: return TP::DOUBLE;
    case at::kHalf: return TP::FLOAT16;
    case at::kBFloat16: return TP::BFLOAT16;
    case at::kChar: return TP::INT8;
    case at::kByte: return TP::UINT8;
    case at::kShort: return TP::INT16;
    case at::kInt: return TP::INT32;
    case at::kLong: return TP::INT64;
    case at::kBool: return TP::BOOL;
    default: return TP::UNDEFINED;
  }
}
}  // namespace catq

// The IR's value types are ONNX's: TensorProto data type codes <-> torch dtypes (used by the ONNX reader and
// writer, and by the executor's Cast).
#pragma once
#include <cstdint>
#include <string>

#include <ATen/ATen.h>

namespace catq {

// ONNX TensorProto data type code -> torch dtype; Error(Unsupported) for types torch cannot hold.
at::ScalarType onnx_dtype_to_torch(int32_t onnx_type, const std::string& where);
// torch dtype -> ONNX code (UNDEFINED = 0 for dtypes ONNX cannot name here).
int32_t torch_dtype_to_onnx(at::ScalarType t);

}  // namespace catq

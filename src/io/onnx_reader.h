// ONNX import: ModelProto (opsets 7-17 of the default domain; 11-17 are the tested range) -> Graph.
#pragma once
#include <string>

#include "ir/graph.h"
#include "ir/onnx_dtype.h"

namespace onnx {
class TensorProto;
}

namespace catq {

struct OnnxReadOptions {
  bool check_ops = true;  // reject ops the executor does not implement (Error(Unsupported) naming op and node)
};

Graph load_onnx(const std::string& path, const OnnxReadOptions& opts = {});
Graph parse_onnx(const void* data, size_t size, const std::string& name, const std::string& base_dir,
                 const OnnxReadOptions& opts = {});

// A TensorProto as an at::Tensor (copying its data). `file` names the source in error messages;
// `base_dir` resolves external data.
at::Tensor tensor_from_proto(const onnx::TensorProto& t, const std::string& file, const std::string& base_dir);
// Reads a serialized TensorProto file (the *.pb files of ONNX test cases).
at::Tensor load_tensor_pb(const std::string& path);

}  // namespace catq

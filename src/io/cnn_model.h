// The FP CNN a command starts from, whatever its file: ONNX (constants and shape arithmetic folded) or TFLite (a float
// model imported into the graph IR, io/tflite.h), and the pixel scaling its data needs.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "io/image_data.h"
#include "ir/graph.h"

namespace catq {

// True for an ONNX or TFLite file.
bool is_cnn_model_file(const std::string& path);
// Loads an FP CNN: ONNX → load_onnx + fold_constants; TFLite → load_tflite_graph. Error(Unsupported) for other
// formats and for integer TFLite models (they run on runtime/tflite_int8.h, not as an FP graph).
Graph load_cnn_graph(const std::string& path);
// DataOptions::pixels resolved for a model and a data file when "auto": a TFLite model on CIFAR-10 takes raw pixels
// 0..255 (MLPerf Tiny's ResNet-8 was trained so), an ONNX model the ImageNet-normalised images of the project's
// ResNets; VWW images are RGB/255 for both (the MLPerf Tiny MobileNet's convention). `o.pixels` when not "auto".
DataOptions data_options_for(const std::string& model, const std::string& data, DataOptions o);
// The scaling a quantized CNN was calibrated with (metadata "data_options", written by catq quantize) where `o` leaves
// it "auto"; then data_options_for(reference, data, ·).
DataOptions data_options_for_catq(const nlohmann::json& metadata, const std::string& reference, const std::string& data,
                                  DataOptions o);

}  // namespace catq

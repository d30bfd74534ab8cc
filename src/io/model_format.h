// Which reader a model file needs, decided from its magic bytes (not its extension).
#pragma once
#include <string>

namespace catq {

enum class ModelFormat { Onnx, Llama2c, Gguf, Safetensors, CatqQuantized, Tflite, Unknown };

// A directory with config.json + *.safetensors counts as Safetensors. Throws Error(Io) if missing.
ModelFormat detect_model_format(const std::string& path);
const char* model_format_name(ModelFormat f);

}  // namespace catq

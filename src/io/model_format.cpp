#include "io/model_format.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/file_util.h"

namespace catq {

const char* model_format_name(ModelFormat f) {
  switch (f) {
    case ModelFormat::Onnx: return "onnx";
    case ModelFormat::Llama2c: return "llama2c";
    case ModelFormat::Gguf: return "gguf";
    case ModelFormat::Safetensors: return "safetensors";
    case ModelFormat::CatqQuantized: return "catq";
    case ModelFormat::Tflite: return "tflite";
    default: return "unknown";
  }
}

static bool ends_with(const std::string& s, const char* suf) {
  size_t n = std::strlen(suf);
  return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
}

ModelFormat detect_model_format(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) fail(ErrorKind::Io, "{}: no such file or directory", path);
  if (S_ISDIR(st.st_mode)) {
    if (file_exists(path + "/config.json")) return ModelFormat::Safetensors;
    fail(ErrorKind::Format, "{}: a directory without config.json (expected a Hugging Face model folder)", path);
  }
  uint8_t head[32] = {0};
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail(ErrorKind::Io, "{}: cannot open", path);
  size_t n = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  if (n >= 4 && std::memcmp(head, "GGUF", 4) == 0) return ModelFormat::Gguf;
  if (n >= 4 && std::memcmp(head, "CATQ", 4) == 0) return ModelFormat::CatqQuantized;
  if (n >= 8 && std::memcmp(head + 4, "TFL3", 4) == 0) return ModelFormat::Tflite;  // the FlatBuffer identifier
  if (ends_with(path, ".tflite")) return ModelFormat::Tflite;  // let the TFLite reader explain what is wrong
  if (ends_with(path, ".safetensors")) return ModelFormat::Safetensors;
  if (n >= 9 && head[8] == '{') return ModelFormat::Safetensors;
  if (ends_with(path, ".onnx")) return ModelFormat::Onnx;
  if (n >= 28) {  // llama2.c header: 7 positive int32 (vocab may be negative = untied head)
    int32_t h[7];
    std::memcpy(h, head, sizeof h);
    bool ok = h[0] > 0 && h[0] < (1 << 20) && h[1] > 0 && h[2] > 0 && h[2] < 4096 && h[3] > 0 && h[4] > 0 &&
              h[6] > 0 && h[5] != 0;
    if (ok) return ModelFormat::Llama2c;
  }
  if (n >= 1 && head[0] == 0x08) return ModelFormat::Onnx;  // ModelProto field 1 (ir_version) varint
  if (ends_with(path, ".bin")) return ModelFormat::Llama2c;   // let the llama2.c reader explain what is wrong
  return ModelFormat::Unknown;
}

}  // namespace catq

#include "io/cnn_model.h"

#include "core/error.h"
#include "io/model_format.h"
#include "io/onnx_reader.h"
#include "io/tflite.h"
#include "sim/fold_constants.h"

namespace catq {

bool is_cnn_model_file(const std::string& path) {
  const ModelFormat f = detect_model_format(path);
  return f == ModelFormat::Onnx || f == ModelFormat::Tflite;
}

Graph load_cnn_graph(const std::string& path) {
  const ModelFormat f = detect_model_format(path);
  if (f == ModelFormat::Tflite) {
    TfliteModel m = read_tflite(path);
    CATQ_CHECK(!m.is_integer(), Unsupported, "{}: an integer TFLite model; it runs as it is (catq eval) but is not an "
               "FP model to quantize or compare with: give the float model", path);
    return tflite_to_graph(m);
  }
  CATQ_CHECK(f == ModelFormat::Onnx, Unsupported, "{}: expected an ONNX or TFLite CNN, this is {}", path,
             model_format_name(f));
  Graph g = load_onnx(path);
  fold_constants(g);
  return g;
}

DataOptions data_options_for(const std::string& model, const std::string& data, DataOptions o) {
  if (o.pixels != "auto") return o;
  const std::string df = data_format_of(data, o);
  if (df == "cifar10")
    o.pixels = !model.empty() && detect_model_format(model) == ModelFormat::Tflite ? "raw" : "imagenet";
  else if (df == "vww")
    o.pixels = "unit";
  return o;
}

DataOptions data_options_for_catq(const nlohmann::json& metadata, const std::string& reference, const std::string& data,
                                  DataOptions o) {
  if (const auto d = metadata.find("data_options"); d != metadata.end() && d->is_object()) {
    if (o.pixels == "auto") o.pixels = d->value("pixels", std::string("auto"));
    o.feature_scale = d->value("feature_scale", o.feature_scale);
    o.feature_zero_point = d->value("feature_zero_point", o.feature_zero_point);
  }
  return data_options_for(reference, data, o);
}

}  // namespace catq

// The `catq eval` jobs for a CNN, as data, and the functions that run them:
//   run_onnx_eval_job  an FP ONNX classifier's top-1 / top-5; with `quant`, also RTN-quantized (calibrated on a split
//                      disjoint from the evaluated one) against FP32: KL, top-1 agreement, optionally per-layer SQNR;
//   run_catq_eval_job  a quantized .catq model, with and without its CAT head, optionally on the integer runtime and
//                      against the FP reference.
// The results carry the JSON `catq eval --json` prints; the CLI prints its text form from them.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/image_data.h"

namespace catq {

struct CnnEvalJob {
  std::string model;                // .onnx / float .tflite (FP), .catq (quantized) or an integer .tflite
  std::string data;                 // CIFAR-10 binary file or an EEMBC set (required; io/image_data.h)
  DataOptions data_options;         // format and pixel scaling ("auto": chosen for the model, io/cnn_model.h)
  std::string split = "eval";       // all | calib | eval
  std::string quant;                // ONNX only: RTN-quantize with this config (JSON file or compact string)
  std::string calib_data;           // ONNX + quant: calibration file (default: data)
  std::string calib_split = "calib";
  int64_t calib_size = 0;           // the first N calibration images (0 = all)
  std::string reference;            // .catq only: the FP ONNX model to compare with
  std::string runtime = "sim";      // sim | int (.catq only: the integer CNN executor)
  int64_t batch = 250, limit = 0;   // images per forward; evaluate only the first N (0 = all)
  bool no_fold_bn = false;          // ONNX: keep BatchNormalization separate
  bool per_layer = false;           // ONNX + quant: per-layer quantizers and output SQNR on 500 evaluation images
};

struct CnnEvalReport {
  nlohmann::json json;                                      // what --json prints
  std::string quantizer_table;                              // per_layer: the quantizers (SimQuant::report_table)
  std::vector<std::pair<std::string, double>> layer_sqnr;  // per_layer: output SQNR (dB), execution order
};

// Error(Usage) for missing or contradictory options (e.g. calibrating on the evaluated split), Error(Data) for
// images that do not fit the model.
CnnEvalReport run_onnx_eval_job(const CnnEvalJob& job);  // ONNX or float TFLite
nlohmann::json run_catq_eval_job(const CnnEvalJob& job);
// An integer TFLite model on catq's TFLite integer executor (runtime/tflite_int8.h): top-1 / top-5, images/s; with
// `reference` (an FP ONNX / TFLite model) also its FP32 accuracy, KL and top-1 agreement.
nlohmann::json run_tflite_int8_eval_job(const CnnEvalJob& job);

}  // namespace catq

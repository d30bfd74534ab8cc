// `catq export X.catq --format tflite --calib DATA -o X.tflite`: a quantized CNN as a full-integer int8 TFLite file
// (io/tflite_export.h), read back and run on catq's TFLite integer executor (runtime/tflite_int8.h) against the
// simulation on the calibration images. (A real TFLite runtime, LiteRT.js, runs such files in bench/edge_export.sh and
// the PeerLiteRt tests, where npm @litertjs/core is installed.)
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "methods/cnn/quantize_job.h"

namespace catq {

struct TfliteExportJob {
  std::string model;          // a quantized-CNN .catq (W8A8 with symmetric weights: --bits w8a8-wsym)
  std::string out;            // the .tflite written (atomically)
  ImageSource calib{"", "calib", 500, {}};  // images whose ranges fix the tensors the simulation keeps in float
  uint64_t seed = 0;          // the random subset of calibration images
};

// Error(Usage) for a missing -o / --calib or calibrating on the evaluation split; Error(Unsupported) for a model the
// exporter cannot express (naming the layer or node). Returns output, bytes, operators, tensors with measured ranges,
// inserted QUANTIZE / PAD operators, and the read-back check: decisions of the file on catq's integer executor equal
// to the simulation's on the calibration images (%).
nlohmann::json run_tflite_export_job(TfliteExportJob job);

}  // namespace catq

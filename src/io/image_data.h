// Image / feature data sets by file: CIFAR-10 binaries (io/cifar.h) and the EEMBC evaluation sets of MLPerf Tiny
// (visual wake words, keyword spotting), with the calibration / evaluation split of each.
//
// EEMBC files (../shared/README.md): records of 1 label byte + a payload, nothing else, in the order of the
// `.names.txt` beside the file.
//   vww    96·96·3 uint8 RGB, row-major HWC (record 27,649 bytes); labels 0 (no person), 1 (person)
//          → float [3, 96, 96] = RGB / 255 (pixels "unit"), or 0..255 (pixels "raw")
//   kws    490 int8 = 49×10 MFCC features quantized with the int8 DS-CNN's input scale / zero-point (record 491
//          bytes); labels 0..11 → float [1, 49, 10] = scale · (q − zero_point)
//   kws raw audio (kws_eval1000_audio_s16.bin) is not read: catq computes no MFCC (Error(Unsupported)).
// Split of the EEMBC sets (1,000 records each): calibration = records i with i % 5 == 0 (200 records), evaluation =
// the other 800. Never calibrate on the evaluation part. CIFAR-10 keeps the project's split (io/cifar.h).
#pragma once
#include <string>

#include "data/dataset.h"

namespace catq {

inline constexpr int64_t kVwwSide = 96;
inline constexpr int64_t kVwwRecordBytes = 1 + kVwwSide * kVwwSide * 3;
inline constexpr int64_t kKwsFrames = 49, kKwsCoefficients = 10, kKwsClasses = 12;
inline constexpr int64_t kKwsRecordBytes = 1 + kKwsFrames * kKwsCoefficients;
// The input parameters of kws_dscnn_int8.tflite, with which the features were quantized (the test
// EdgeData.KwsFeaturesUseTheInt8ModelsInputParams reads them from the file).
inline constexpr float kKwsFeatureScale = 0.5847029f;
inline constexpr int64_t kKwsFeatureZeroPoint = 83;

inline bool eembc_is_calib_record(int64_t i) { return i % 5 == 0; }

struct DataOptions {
  // cifar10 | vww | kws | auto (from the file name: "vww" → vww, "kws" with "mfcc" → kws, "kws" with "audio" →
  // refused, anything else → cifar10)
  std::string format = "auto";
  // Image scaling: imagenet (RGB/255 then ImageNet mean / std, the project's CIFAR ResNets), unit (RGB/255), raw
  // (0..255, MLPerf Tiny's ResNet-8). "auto" = imagenet for CIFAR-10, unit for VWW.
  std::string pixels = "auto";
  // KWS features: dequantized with these (the int8 model's input parameters).
  float feature_scale = kKwsFeatureScale;
  int64_t feature_zero_point = kKwsFeatureZeroPoint;
};

// "cifar10" | "vww" | "kws" for a file (options.format unless "auto"); Error(Usage) for an unknown format name,
// Error(Unsupported) for the raw-audio KWS file.
std::string data_format_of(const std::string& path, const DataOptions& o = {});

// Loads `split` ("all" | "calib" | "eval") of a data file. Error(Io) when unreadable; Error(Format) naming the file,
// the record size and the problem when the size is not a positive whole number of records or a label is out of
// range. Result name "<format>:<file name>[<split>]".
ImageDataset load_image_data(const std::string& path, const std::string& split, const DataOptions& o = {});

ImageDataset load_vww(const std::string& path, const std::string& split, const std::string& pixels = "unit");
ImageDataset load_kws_mfcc(const std::string& path, const std::string& split, float scale = kKwsFeatureScale,
                           int64_t zero_point = kKwsFeatureZeroPoint);

// <CATQ_SOURCE_DIR>/../shared/assets/mlperf-tiny (may not exist).
std::string default_mlperf_tiny_dir();

}  // namespace catq

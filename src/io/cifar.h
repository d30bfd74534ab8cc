// CIFAR-10 binary reader (test.bin, train_jpeg10k.bin) and the project's calibration / evaluation split.
//
// File layout: a sequence of 3073-byte records, nothing else:
//   byte 0        label, 0..9
//   bytes 1..1024    red   plane, 32x32 row-major
//   bytes 1025..2048 green plane
//   bytes 2049..3072 blue  plane
// Records become images float32 [3, 32, 32] = RGB / 255, then (x - mean[c]) / std[c].
#pragma once
#include <string>
#include <vector>

#include "data/dataset.h"

namespace catq {

inline constexpr int64_t kCifarRecordBytes = 3073;
inline constexpr int64_t kCifarClasses = 10;

// Which records of the file to keep. The standard split of the project (defined on test.bin):
//   Calib = records i with i % 1000 < 100  (1,000 images, 100 per class on test.bin)
//   Eval  = every other record              (9,000 images)
// Never calibrate or tune on Eval. On other files the same index rule applies but carries no class balance.
enum class CifarSplit { All, Calib, Eval };

// "all" | "calib" | "eval" (the values of --split); anything else is Error(Usage).
CifarSplit parse_cifar_split(const std::string& s);
const char* cifar_split_name(CifarSplit s);
inline bool cifar_is_calib_record(int64_t i) { return i % 1000 < 100; }

// Reads a CIFAR-10 binary file. Error(Io) if it cannot be read; Error(Format), naming the file, the record and
// the value, if its size is not a positive multiple of 3073 or a label is outside 0..9; Error(Config) if `norm`
// does not have 3 channels. Result name: "cifar10:<file name>[<split>]".
ImageDataset load_cifar10(const std::string& path, CifarSplit split = CifarSplit::All,
                          const Normalize& norm = Normalize::imagenet());

// <CATQ_SOURCE_DIR>/../shared/assets/cifar10 (where test.bin and train_jpeg10k.bin live); may not exist.
std::string default_cifar10_dir();

// The ten class names in label order (airplane ... truck).
const std::vector<std::string>& cifar10_class_names();

}  // namespace catq

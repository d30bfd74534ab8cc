#include "io/cifar.h"

#include <cstring>
#include <filesystem>

#include "core/file_util.h"
#include "core/source_dir.h"

namespace catq {

CifarSplit parse_cifar_split(const std::string& s) {
  if (s == "all") return CifarSplit::All;
  if (s == "calib") return CifarSplit::Calib;
  if (s == "eval") return CifarSplit::Eval;
  fail(ErrorKind::Usage, "unknown CIFAR-10 split '{}': expected all, calib or eval", s);
}

const char* cifar_split_name(CifarSplit s) {
  switch (s) {
    case CifarSplit::All: return "all";
    case CifarSplit::Calib: return "calib";
    case CifarSplit::Eval: return "eval";
  }
  return "?";
}

ImageDataset load_cifar10(const std::string& path, CifarSplit split, const Normalize& norm) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (size == 0 || size % kCifarRecordBytes != 0)
    fail(ErrorKind::Format,
         "{}: not a CIFAR-10 binary file: size {} bytes is not a positive multiple of the record size {} "
         "(1 label byte + 3x32x32 pixel bytes)",
         path, size, kCifarRecordBytes);
  const int64_t n_records = size / kCifarRecordBytes;

  std::vector<int64_t> keep;
  keep.reserve(n_records);
  for (int64_t i = 0; i < n_records; ++i) {
    bool calib = cifar_is_calib_record(i);
    if (split == CifarSplit::All || (split == CifarSplit::Calib) == calib) keep.push_back(i);
  }
  const int64_t n = static_cast<int64_t>(keep.size());
  CATQ_CHECK(n > 0, Data, "{}: split '{}' selects no records out of {}", path, cifar_split_name(split), n_records);

  // Pixels are copied as bytes and converted in one tensor op; the record layout (planes R, G, B, each
  // 32x32 row-major) already is the CHW layout of one image.
  constexpr int64_t kPixels = kCifarRecordBytes - 1;
  at::Tensor raw = at::empty({n, 3, 32, 32}, at::kByte);
  at::Tensor labels = at::empty({n}, at::kLong);
  uint8_t* dst = raw.data_ptr<uint8_t>();
  int64_t* lab = labels.data_ptr<int64_t>();
  ByteReader rd(bytes.data(), bytes.size(), path);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = keep[k];
    rd.seek(static_cast<size_t>(i * kCifarRecordBytes), "record");
    uint8_t label = rd.read<uint8_t>("label byte");
    if (label >= kCifarClasses)
      fail(ErrorKind::Format, "{}: record {} (byte offset {}) has label {}, expected 0..9", path, i,
           i * kCifarRecordBytes, static_cast<int>(label));
    lab[k] = label;
    std::memcpy(dst + k * kPixels, rd.take(kPixels, "pixels"), kPixels);
  }
  // A label error in a record outside the chosen split would otherwise go unnoticed and point at a broken file.
  for (int64_t i = 0; i < n_records; ++i) {
    uint8_t label = bytes[static_cast<size_t>(i * kCifarRecordBytes)];
    if (label >= kCifarClasses)
      fail(ErrorKind::Format, "{}: record {} (byte offset {}) has label {}, expected 0..9", path, i,
           i * kCifarRecordBytes, static_cast<int>(label));
  }

  at::Tensor images = raw.to(at::kFloat).div_(255.0);
  std::string name = fmt::format("cifar10:{}[{}]", std::filesystem::path(path).filename().string(),
                                 cifar_split_name(split));
  norm.apply(images, name);
  return {images, labels, name};
}

std::string default_cifar10_dir() { return std::string(CATQ_SOURCE_DIR) + "/../shared/assets/cifar10"; }

const std::vector<std::string>& cifar10_class_names() {
  static const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                 "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

}  // namespace catq

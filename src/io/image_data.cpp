#include "io/image_data.h"

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/file_util.h"
#include "io/cifar.h"

namespace catq {

namespace {

std::string lower_name(const std::string& path) {
  std::string n = std::filesystem::path(path).filename().string();
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return n;
}

// The records of an EEMBC file in `split`: checks the size and every label (also outside the split: a broken label
// anywhere means a broken file).
std::vector<int64_t> eembc_records(const std::vector<uint8_t>& bytes, const std::string& path, int64_t record,
                                   int64_t classes, const std::string& split, const char* what) {
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (size == 0 || size % record != 0)
    fail(ErrorKind::Format, "{}: not a {} file: size {} bytes is not a positive multiple of the record size {} "
         "(1 label byte + {} payload bytes)", path, what, size, record, record - 1);
  const int64_t n = size / record;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t label = bytes[static_cast<size_t>(i * record)];
    if (label >= classes)
      fail(ErrorKind::Format, "{}: record {} (byte offset {}) has label {}, expected 0..{}", path, i, i * record,
           static_cast<int>(label), classes - 1);
  }
  CATQ_CHECK(split == "all" || split == "calib" || split == "eval", Usage,
             "unknown split '{}': expected all, calib or eval", split);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < n; ++i)
    if (split == "all" || (split == "calib") == eembc_is_calib_record(i)) keep.push_back(i);
  CATQ_CHECK(!keep.empty(), Data, "{}: split '{}' selects no records out of {}", path, split, n);
  return keep;
}

}  // namespace

std::string data_format_of(const std::string& path, const DataOptions& o) {
  if (o.format != "auto") {
    CATQ_CHECK(o.format == "cifar10" || o.format == "vww" || o.format == "kws", Usage,
               "--data-format '{}': expected auto, cifar10, vww or kws", o.format);
    return o.format;
  }
  const std::string n = lower_name(path);
  if (n.find("vww") != std::string::npos) return "vww";
  if (n.find("kws") != std::string::npos) {
    CATQ_CHECK(n.find("audio") == std::string::npos, Unsupported,
               "{}: raw keyword-spotting audio is not supported (catq computes no MFCC); use the MFCC feature file "
               "kws_eval1000_mfcc_s8.bin", path);
    return "kws";
  }
  return "cifar10";
}

ImageDataset load_vww(const std::string& path, const std::string& split, const std::string& pixels) {
  CATQ_CHECK(pixels == "unit" || pixels == "raw", Usage, "--pixels '{}' for visual wake words: expected unit or raw",
             pixels);
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  const std::vector<int64_t> keep = eembc_records(bytes, path, kVwwRecordBytes, 2, split, "visual wake words (96x96x3)");
  const int64_t n = static_cast<int64_t>(keep.size()), px = kVwwRecordBytes - 1;
  at::Tensor raw = at::empty({n, kVwwSide, kVwwSide, 3}, at::kByte);
  at::Tensor labels = at::empty({n}, at::kLong);
  for (int64_t k = 0; k < n; ++k) {
    const size_t off = static_cast<size_t>(keep[k] * kVwwRecordBytes);
    labels[k] = static_cast<int64_t>(bytes[off]);
    std::memcpy(raw.data_ptr<uint8_t>() + k * px, bytes.data() + off + 1, static_cast<size_t>(px));
  }
  at::Tensor images = raw.permute({0, 3, 1, 2}).to(at::kFloat).contiguous();  // HWC → CHW
  if (pixels == "unit") images.div_(255.0);
  return {images, labels, fmt::format("vww:{}[{}]", std::filesystem::path(path).filename().string(), split)};
}

ImageDataset load_kws_mfcc(const std::string& path, const std::string& split, float scale, int64_t zero_point) {
  CATQ_CHECK(std::isfinite(scale) && scale > 0, Config, "KWS feature scale {} must be positive", scale);
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  const std::vector<int64_t> keep =
      eembc_records(bytes, path, kKwsRecordBytes, kKwsClasses, split, "keyword-spotting MFCC (49x10 int8)");
  const int64_t n = static_cast<int64_t>(keep.size()), px = kKwsRecordBytes - 1;
  at::Tensor q = at::empty({n, 1, kKwsFrames, kKwsCoefficients}, at::kChar);
  at::Tensor labels = at::empty({n}, at::kLong);
  for (int64_t k = 0; k < n; ++k) {
    const size_t off = static_cast<size_t>(keep[k] * kKwsRecordBytes);
    labels[k] = static_cast<int64_t>(bytes[off]);
    std::memcpy(q.data_ptr<int8_t>() + k * px, bytes.data() + off + 1, static_cast<size_t>(px));
  }
  at::Tensor features = (q.to(at::kFloat) - static_cast<float>(zero_point)) * scale;
  return {features.contiguous(), labels, fmt::format("kws:{}[{}]", std::filesystem::path(path).filename().string(), split)};
}

ImageDataset load_image_data(const std::string& path, const std::string& split, const DataOptions& o) {
  const std::string f = data_format_of(path, o);
  if (f == "vww") return load_vww(path, split, o.pixels == "auto" ? "unit" : o.pixels);
  if (f == "kws") return load_kws_mfcc(path, split, o.feature_scale, o.feature_zero_point);
  const std::string px = o.pixels == "auto" ? "imagenet" : o.pixels;
  Normalize norm;
  if (px == "imagenet") norm = Normalize::imagenet();
  else if (px == "unit") norm = Normalize::none();
  else if (px != "raw") fail(ErrorKind::Usage, "--pixels '{}': expected imagenet, unit or raw", px);
  ImageDataset d = load_cifar10(path, parse_cifar_split(split), norm);
  if (px == "raw") d.images.mul_(255.0).round_();  // the bytes again, exactly
  return d;
}

std::string default_mlperf_tiny_dir() { return std::string(CATQ_SOURCE_DIR) + "/../shared/assets/mlperf-tiny"; }

}  // namespace catq

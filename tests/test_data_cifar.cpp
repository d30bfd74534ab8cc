#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/file_util.h"
#include "io/cifar.h"

namespace {

using catq::CifarSplit;
namespace fs = std::filesystem;

// A fresh folder per test under the system temp dir (tests of other developers run in parallel).
std::string temp_dir(const std::string& tag) {
  static int counter = 0;
  fs::path p = fs::temp_directory_path() / fmt::format("catq_test_cifar_{}_{}_{}", getpid(), tag, counter++);
  fs::create_directories(p);
  return p.string();
}

// Record i: label i % 10, pixel byte of (channel c, position p) = (i + 7c + p) % 256.
std::string synthetic_records(int64_t n) {
  std::string s;
  for (int64_t i = 0; i < n; ++i) {
    s.push_back(static_cast<char>(i % 10));
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) s.push_back(static_cast<char>((i + 7 * c + p) % 256));
  }
  return s;
}

std::string write(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::string path = dir + "/" + name;
  catq::write_file_atomic(path, bytes);
  return path;
}

TEST(DataCifar, LayoutAndNormalisation) {
  std::string path = write(temp_dir("layout"), "five.bin", synthetic_records(5));
  catq::ImageDataset raw = catq::load_cifar10(path, CifarSplit::All, catq::Normalize::none());
  ASSERT_EQ(raw.images.sizes(), (std::vector<int64_t>{5, 3, 32, 32}));
  ASSERT_EQ(raw.images.scalar_type(), at::kFloat);
  ASSERT_EQ(raw.labels.scalar_type(), at::kLong);
  EXPECT_EQ(raw.name, "cifar10:five.bin[all]");
  for (int64_t i = 0; i < 5; ++i) {
    EXPECT_EQ(raw.labels[i].item<int64_t>(), i % 10);
    for (int c = 0; c < 3; ++c)
      for (int y : {0, 5, 31})
        for (int x : {0, 17, 31}) {
          int p = y * 32 + x;
          EXPECT_FLOAT_EQ(raw.images[i][c][y][x].item<float>(), ((i + 7 * c + p) % 256) / 255.0f);
        }
  }
  catq::ImageDataset norm = catq::load_cifar10(path);  // default: ImageNet statistics
  auto st = catq::Normalize::imagenet();
  for (int c = 0; c < 3; ++c) {
    float expect = static_cast<float>((raw.images[3][c][2][9].item<float>() - st.mean[c]) / st.std[c]);
    EXPECT_NEAR(norm.images[3][c][2][9].item<float>(), expect, 1e-6);
  }
}

TEST(DataCifar, SplitFollowsRecordIndex) {
  std::string path = write(temp_dir("split"), "two_k.bin", synthetic_records(2000));
  auto all = catq::load_cifar10(path, CifarSplit::All, catq::Normalize::none());
  auto cal = catq::load_cifar10(path, CifarSplit::Calib, catq::Normalize::none());
  auto ev = catq::load_cifar10(path, CifarSplit::Eval, catq::Normalize::none());
  EXPECT_EQ(all.size(), 2000);
  EXPECT_EQ(cal.size(), 200);
  EXPECT_EQ(ev.size(), 1800);
  // Calib record k is file record (k/100)*1000 + k%100; its first red pixel encodes the record index.
  for (int64_t k : {0, 99, 100, 199}) {
    int64_t i = (k / 100) * 1000 + k % 100;
    EXPECT_FLOAT_EQ(cal.images[k][0][0][0].item<float>(), (i % 256) / 255.0f) << k;
    EXPECT_EQ(cal.labels[k].item<int64_t>(), i % 10);
  }
  // Eval record 0 is file record 100, eval record 900 is file record 1100.
  EXPECT_FLOAT_EQ(ev.images[0][0][0][0].item<float>(), (100 % 256) / 255.0f);
  EXPECT_FLOAT_EQ(ev.images[900][0][0][0].item<float>(), (1100 % 256) / 255.0f);
  EXPECT_EQ(catq::parse_cifar_split("calib"), CifarSplit::Calib);
  EXPECT_STREQ(catq::cifar_split_name(CifarSplit::Eval), "eval");
  EXPECT_EQ(catq::cifar10_class_names().at(3), "cat");
}

TEST(BadInputCifar, SizeNotMultipleOfRecord) {
  std::string dir = temp_dir("badsize");
  for (const std::string& bytes : {synthetic_records(2) + "abcde", std::string(), std::string(3072, '\0')}) {
    std::string path = write(dir, "bad.bin", bytes);
    try {
      catq::load_cifar10(path);
      FAIL() << "expected an error for " << bytes.size() << " bytes";
    } catch (const catq::Error& e) {
      EXPECT_EQ(e.kind(), catq::ErrorKind::Format);
      std::string m = e.what();
      EXPECT_NE(m.find("bad.bin"), std::string::npos) << m;
      EXPECT_NE(m.find("3073"), std::string::npos) << m;
    }
  }
}

TEST(BadInputCifar, LabelOutOfRange) {
  std::string bytes = synthetic_records(1200);
  bytes[3 * 3073] = 10;  // record 3 (in the calibration part)
  std::string dir = temp_dir("badlabel");
  std::string path = write(dir, "labels.bin", bytes);
  for (CifarSplit s : {CifarSplit::All, CifarSplit::Calib, CifarSplit::Eval}) {
    try {
      catq::load_cifar10(path, s);
      FAIL() << "expected an error";
    } catch (const catq::Error& e) {
      EXPECT_EQ(e.kind(), catq::ErrorKind::Format);
      std::string m = e.what();
      EXPECT_NE(m.find("labels.bin"), std::string::npos) << m;
      EXPECT_NE(m.find("record 3 "), std::string::npos) << m;
      EXPECT_NE(m.find("label 10"), std::string::npos) << m;
    }
  }
  bytes = synthetic_records(3);
  bytes[2 * 3073] = static_cast<char>(255);
  path = write(dir, "labels2.bin", bytes);
  EXPECT_THROW(catq::load_cifar10(path), catq::Error);
}

TEST(BadInputCifar, MissingFileBadSplitBadNormalisation) {
  try {
    catq::load_cifar10("/nonexistent/cifar/test.bin");
    FAIL();
  } catch (const catq::Error& e) {
    EXPECT_EQ(e.kind(), catq::ErrorKind::Io);
  }
  try {
    catq::parse_cifar_split("train");
    FAIL();
  } catch (const catq::Error& e) {
    EXPECT_EQ(e.kind(), catq::ErrorKind::Usage);
  }
  std::string path = write(temp_dir("badnorm"), "ok.bin", synthetic_records(2));
  try {
    catq::load_cifar10(path, CifarSplit::All, catq::Normalize::mnist());
    FAIL();
  } catch (const catq::Error& e) {
    EXPECT_EQ(e.kind(), catq::ErrorKind::Config);
  }
  try {
    catq::load_cifar10(path, CifarSplit::All, {{0, 0, 0}, {1, 0, 1}});
    FAIL();
  } catch (const catq::Error& e) {
    EXPECT_EQ(e.kind(), catq::ErrorKind::Config);
  }
  // 2 records: the calibration split has both, the evaluation split none.
  try {
    catq::load_cifar10(path, CifarSplit::Eval);
    FAIL();
  } catch (const catq::Error& e) {
    EXPECT_EQ(e.kind(), catq::ErrorKind::Data);
  }
}

TEST(DataCifarShared, TestBinSplitSizesAndBalance) {
  std::string path = catq::default_cifar10_dir() + "/test.bin";
  if (!catq::file_exists(path)) GTEST_SKIP() << path << " not present (../shared/assets missing)";
  auto cal = catq::load_cifar10(path, CifarSplit::Calib);
  auto ev = catq::load_cifar10(path, CifarSplit::Eval);
  ASSERT_EQ(cal.size(), 1000);
  ASSERT_EQ(ev.size(), 9000);
  at::Tensor cal_counts = at::bincount(cal.labels, {}, 10), ev_counts = at::bincount(ev.labels, {}, 10);
  for (int c = 0; c < 10; ++c) {
    EXPECT_EQ(cal_counts[c].item<int64_t>(), 100);
    EXPECT_EQ(ev_counts[c].item<int64_t>(), 900);
  }
  // Normalised pixels of natural images: mean near 0, all within the ImageNet-normalised [0,1] range.
  EXPECT_NEAR(ev.images.mean().item<double>(), 0.0, 0.5);
  EXPECT_GE(ev.images.min().item<float>(), -0.485f / 0.229f - 1e-4f);
  EXPECT_LE(ev.images.max().item<float>(), (1 - 0.406f) / 0.225f + 1e-4f);
}

TEST(DataCifarShared, TrainJpegReads) {
  std::string path = catq::default_cifar10_dir() + "/train_jpeg10k.bin";
  if (!catq::file_exists(path)) GTEST_SKIP() << path << " not present (../shared/assets missing)";
  auto all = catq::load_cifar10(path);
  ASSERT_EQ(all.size(), 10000);
  at::Tensor counts = at::bincount(all.labels, {}, 10);
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c].item<int64_t>(), 1000);
}

}  // namespace

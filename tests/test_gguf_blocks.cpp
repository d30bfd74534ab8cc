// GGUF block formats against llama.cpp itself: the ggml library that the npm package node-llama-cpp installs
// (scripts/setup.sh) quantizes rows into every format catq reads; catq's decoder must reproduce ggml's own decoder
// bit for bit, and catq's encoders (Q8_0, Q4_0, Q4_1) must write ggml's bytes. Skips when the library is absent.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "io/gguf_blocks.h"

namespace {

using ToFloat = void (*)(const void*, float*, int64_t);
using QuantizeChunk = size_t (*)(int, const float*, void*, int64_t, int64_t, int64_t, const float*);
using QuantizeInit = void (*)(int);
using GetTraits = const void* (*)(int);

// ggml_type_traits has gained fields over time; both layouts seen in ggml's history are recognised by checking the
// block size and byte size they report against the format's (a wrong guess is never used).
struct TraitsWithInterleave {
  const char* type_name;
  int64_t blck_size, blck_size_interleave;
  size_t type_size;
  bool is_quantized;
  ToFloat to_float;
};
struct TraitsPlain {
  const char* type_name;
  int64_t blck_size;
  size_t type_size;
  bool is_quantized;
  ToFloat to_float;
};

struct Ggml {
  void* lib = nullptr;
  QuantizeChunk quantize = nullptr;
  QuantizeInit init = nullptr;
  GetTraits traits = nullptr;

  Ggml() {
    const char* e = std::getenv("CATQ_PEERS");
    const std::string peers = e && *e ? e : std::string(CATQ_SOURCE_DIR) + "/.cache/peers";
    const std::string path = peers + "/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
    if (!catq::file_exists(path)) return;
    lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    quantize = reinterpret_cast<QuantizeChunk>(dlsym(lib, "ggml_quantize_chunk"));
    init = reinterpret_cast<QuantizeInit>(dlsym(lib, "ggml_quantize_init"));
    traits = reinterpret_cast<GetTraits>(dlsym(lib, "ggml_get_type_traits"));
  }
  bool ok() const { return quantize && init && traits; }
  // ggml's decoder for `type`, or null when the traits layout is not recognised.
  ToFloat to_float(int type, int64_t block, int64_t bytes) const {
    const void* t = traits(type);
    const auto* a = static_cast<const TraitsWithInterleave*>(t);
    if (a->blck_size == block && static_cast<int64_t>(a->type_size) == bytes && a->is_quantized) return a->to_float;
    const auto* b = static_cast<const TraitsPlain*>(t);
    if (b->blck_size == block && static_cast<int64_t>(b->type_size) == bytes && b->is_quantized) return b->to_float;
    return nullptr;
  }
};

const Ggml& ggml() {
  static Ggml g;
  return g;
}

// Rows of Gaussian weights with a few outliers and an all-zero stretch (the edge cases of every scale search).
std::vector<float> test_rows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng);
  for (int64_t i = 0; i < n; i += 97) x[i] *= 12.0f;
  for (int64_t i = 256; i < 320 && i < n; ++i) x[i] = 0.0f;
  return x;
}

}  // namespace

TEST(GgufBlocks, DecodersMatchLlamaCppBitForBit) {
  if (!ggml().ok()) GTEST_SKIP() << "needs node-llama-cpp's libggml-base.so in .cache/peers (scripts/setup.sh)";
  const int64_t rows = 4, per_row = 1024, n = rows * per_row;
  const std::vector<float> x = test_rows(n, 7);
  for (int type : {2, 3, 6, 7, 8, 10, 11, 12, 13, 14, 20}) {
    const catq::GgmlTypeTraits* tt = catq::ggml_type_traits(type);
    ASSERT_NE(tt, nullptr) << type;
    ASSERT_NE(tt->dequantize, nullptr) << tt->name;
    ToFloat ref = ggml().to_float(type, tt->block, tt->bytes);
    if (!ref) GTEST_SKIP() << "ggml_type_traits layout not recognised (type " << tt->name << ")";
    ggml().init(type);
    std::vector<uint8_t> blocks(static_cast<size_t>(n / tt->block * tt->bytes));
    const size_t written = ggml().quantize(type, x.data(), blocks.data(), 0, rows, per_row, nullptr);
    ASSERT_EQ(written, blocks.size()) << tt->name << ": block size / bytes per block differ from ggml's";
    std::vector<float> ours(n), theirs(n);
    for (int64_t b = 0; b < n / tt->block; ++b) tt->dequantize(&blocks[b * tt->bytes], &ours[b * tt->block]);
    ref(blocks.data(), theirs.data(), n);
    EXPECT_EQ(std::memcmp(ours.data(), theirs.data(), n * sizeof(float)), 0) << tt->name;
    double err = 0, energy = 0;
    for (int64_t i = 0; i < n; ++i) err += (ours[i] - x[i]) * (ours[i] - x[i]), energy += x[i] * x[i];
    EXPECT_LT(err / energy, 0.2) << tt->name << ": decoded values are far from the input (layout?)";
  }
}

TEST(GgufBlocks, EncodersWriteLlamaCppBytes) {
  if (!ggml().ok()) GTEST_SKIP() << "needs node-llama-cpp's libggml-base.so in .cache/peers (scripts/setup.sh)";
  const int64_t n = 4096;
  const std::vector<float> x = test_rows(n, 11);
  for (int type : {2, 3, 8}) {
    const catq::GgmlTypeTraits* tt = catq::ggml_type_traits(type);
    ASSERT_NE(tt->quantize, nullptr) << tt->name;
    std::vector<uint8_t> ours(static_cast<size_t>(n / tt->block * tt->bytes)), theirs(ours.size());
    for (int64_t b = 0; b < n / tt->block; ++b) tt->quantize(&x[b * tt->block], &ours[b * tt->bytes]);
    ggml().init(type);
    ASSERT_EQ(ggml().quantize(type, x.data(), theirs.data(), 0, 1, n, nullptr), theirs.size()) << tt->name;
    EXPECT_EQ(ours, theirs) << tt->name;
  }
}

// ONNX ModelProto -> Graph import (io/onnx_reader.h), then the passes that need no execution (dead nodes, BN folding).
// External data is resolved against an empty folder of its own, so a model can name files but finds none.
#include "fuzz_common.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string base = catq::fuzz::scratch_dir() + "/external";
  static const bool made = std::filesystem::create_directories(base) || true;
  (void)made;
  catq::fuzz::expect_clean([&] {
    catq::Graph g = catq::parse_onnx(data, size, "fuzz.onnx", base);
    catq::remove_dead_nodes(g);
    catq::fold_batchnorm(g);
  });
  return 0;
}

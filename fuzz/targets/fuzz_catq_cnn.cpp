// A quantized-CNN .catq file (io/catq_file.h read_catq): container preamble, JSON header, graph, bit-packed codes,
// quantizer params, CAT head.
#include "fuzz_common.h"
#include "io/catq_file.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = catq::fuzz::write_input("model.catq", data, size);
  catq::fuzz::expect_clean([&] { (void)catq::catq_file_kind(path); });
  catq::fuzz::expect_clean([&] { catq::QuantizedCnn m = catq::read_catq(path); });
  return 0;
}

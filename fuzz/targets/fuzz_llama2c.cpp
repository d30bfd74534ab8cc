// A llama2.c legacy checkpoint (io/llama2c.h): the 7-int header, then the fp32 arrays it implies.
#include "fuzz_common.h"
#include "io/llama2c.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = catq::fuzz::write_input("model.bin", data, size);
  catq::fuzz::expect_clean([&] { catq::LlamaModel m = catq::read_llama2c(path); });
  return 0;
}

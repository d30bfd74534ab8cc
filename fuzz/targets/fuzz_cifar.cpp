// A CIFAR-10 binary file (io/cifar.h load_cifar10), with each split.
#include "fuzz_common.h"
#include "io/cifar.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = catq::fuzz::write_input("data.bin", data, size);
  for (auto split : {catq::CifarSplit::All, catq::CifarSplit::Calib, catq::CifarSplit::Eval})
    catq::fuzz::expect_clean([&] { catq::ImageDataset d = catq::load_cifar10(path, split); });
  return 0;
}

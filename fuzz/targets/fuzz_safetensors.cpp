// One safetensors file (io/safetensors.h): the length-prefixed JSON header (dtypes, shapes, byte ranges, metadata),
// then every tensor read in its stored dtype and as fp32.
#include "fuzz_common.h"
#include "io/safetensors.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = catq::fuzz::write_input("model.safetensors", data, size);
  catq::SafetensorsFile f;
  if (!catq::fuzz::expect_clean([&] { f = catq::read_safetensors(path); })) return 0;
  for (const auto& kv : f.tensors) {
    const std::string& name = kv.first;
    catq::fuzz::expect_clean([&] {
      at::Tensor t = f.tensor(name);
      at::Tensor t32 = f.tensor_f32(name);
      (void)t32.sum().item<float>();
      f.release(name);
    });
  }
  return 0;
}

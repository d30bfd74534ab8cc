// A quantized-LLM .catq file (io/catq_file.h read_catq_llm): container preamble, JSON header with the Llama config,
// FP tensors, quantized layers (codes + params), online transforms, the embedded tokenizer.
#include "fuzz_common.h"
#include "io/catq_file.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = catq::fuzz::write_input("model.catq", data, size);
  catq::fuzz::expect_clean([&] { catq::QuantizedLlama m = catq::read_catq_llm(path); });
  return 0;
}

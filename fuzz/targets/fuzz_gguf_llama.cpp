// A GGUF file loaded as a Llama model (io/gguf.h read_gguf_llama: config, weights of any block type, tokenizer), in
// both load modes (stored dtype views of the mapping, fp32 copies).
#include "fuzz_common.h"
#include "io/gguf.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = catq::fuzz::write_input("model.gguf", data, size);
  for (bool keep : {false, true}) {
    catq::LlmLoadOptions opt;
    opt.keep_stored_dtype = keep;
    catq::fuzz::expect_clean([&] { catq::GgufLlama m = catq::read_gguf_llama(path, opt); });
  }
  return 0;
}

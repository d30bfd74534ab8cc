// A llama2.c tokenizer file (llm/tokenizer.h read_llama2c_tokenizer), read to the end of the file, then used: encode
// and decode a text with spaces, digits, multi-byte UTF-8 and a special-token lookalike.
#include "fuzz_common.h"
#include "llm/tokenizer.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = catq::fuzz::write_input("tok.bin", data, size);
  catq::fuzz::expect_clean([&] {
    catq::Tokenizer tok = catq::read_llama2c_tokenizer(path, 0);
    auto ids = tok.encode("Once upon a time, 42 caf\xC3\xA9s \xF0\x9F\x98\x80 <s>\n", true, true);
    (void)tok.decode(ids);
  });
  return 0;
}

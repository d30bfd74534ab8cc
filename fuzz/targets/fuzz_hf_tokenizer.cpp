// A Hugging Face tokenizer (io/hf_tokenizer.h parse_hf_tokenizer): tokenizer.json and tokenizer_config.json (two parts
// separated by kPartSeparator), then used: encode / decode a text with added-token lookalikes, digits, spaces and
// multi-byte UTF-8, and written back as JSON.
#include "fuzz_common.h"
#include "io/hf_tokenizer.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = catq::fuzz::split_parts(data, size, 2);
  catq::fuzz::expect_clean([&] {
    catq::Tokenizer tok = catq::parse_hf_tokenizer(std::string(parts[0]), std::string(parts[1]), "fuzz/tokenizer.json");
    for (bool special : {false, true}) {
      auto ids = tok.encode("<|begin_of_text|>Hello  world, 2024!\n\tcaf\xC3\xA9 \xE2\x96\x81x </s>", true, true, special);
      (void)tok.decode(ids);
    }
    (void)catq::hf_tokenizer_json(tok);
    (void)catq::hf_tokenizer_config_json(tok);
  });
  return 0;
}

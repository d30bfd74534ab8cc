// GGUF container (io/gguf.h): header, metadata of every value type, tensor table, then every tensor's data
// dequantized to fp32 (each block format's decoder), the Llama config the metadata describes and the embedded
// tokenizer.
#include "fuzz_common.h"
#include "io/gguf.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = catq::fuzz::write_input("model.gguf", data, size);
  catq::GgufFile g;
  if (!catq::fuzz::expect_clean([&] { g = catq::read_gguf(path); })) return 0;
  catq::fuzz::expect_clean([&] {
    for (const auto& kv : g.kv) (void)kv.second.describe();
    (void)catq::gguf_tensors_by_type(g);
    (void)catq::gguf_bits_per_weight(g);
  });
  for (const catq::GgufTensorInfo& t : g.tensors) {
    catq::fuzz::expect_clean([&] {
      at::Tensor a = g.tensor(t);
      at::Tensor f = g.tensor_f32(t);
      (void)f.sum().item<float>();
    });
  }
  int64_t vocab = 0;
  catq::fuzz::expect_clean([&] { vocab = catq::gguf_llama_config(g).vocab_size; });
  catq::fuzz::expect_clean([&] {
    std::string note;
    auto tok = catq::read_gguf_tokenizer(g, vocab, note);
    if (tok) {
      auto ids = tok->encode("Once upon a time, 123 \xE2\x96\x81 <s>", true, true);
      (void)tok->decode(ids);
    }
  });
  return 0;
}

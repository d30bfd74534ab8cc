// A Hugging Face Llama folder (io/safetensors.h read_hf_llama): config.json, model.safetensors.index.json and the
// safetensors shards it names. The input holds up to four parts separated by kPartSeparator: config.json, the index
// (absent when the part is empty: a single model.safetensors), model.safetensors (or shard 1), shard 2.
#include "fuzz_common.h"
#include "io/safetensors.h"

CATQ_FUZZ_INIT()

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = catq::fuzz::scratch_dir() + "/hf";
  static const bool made = std::filesystem::create_directories(dir) || true;
  (void)made;
  auto parts = catq::fuzz::split_parts(data, size, 4);
  catq::fuzz::write_input("hf/config.json", parts[0]);
  if (parts[1].empty()) {
    catq::fuzz::remove_input("hf/model.safetensors.index.json");
    catq::fuzz::write_input("hf/model.safetensors", parts[2]);
  } else {
    catq::fuzz::write_input("hf/model.safetensors.index.json", parts[1]);
    catq::fuzz::remove_input("hf/model.safetensors");
    catq::fuzz::write_input("hf/model-00001-of-00002.safetensors", parts[2]);
    catq::fuzz::write_input("hf/model-00002-of-00002.safetensors", parts[3]);
  }
  for (bool keep : {false, true}) {
    catq::LlmLoadOptions opt;
    opt.keep_stored_dtype = keep;
    catq::fuzz::expect_clean([&] { catq::LlamaModel m = catq::read_hf_llama(dir, opt); });
  }
  return 0;
}

// Layer-streamed weight-only RTN (methods/llm/stream_quantize.h): from a bf16 checkpoint kept memory-mapped, the
// streamed file holds the same codes and gives the same logits as the in-memory pipeline's, for every architecture.
#include <gtest/gtest.h>

#include <fstream>

#include "io/catq_file.h"
#include "io/gguf.h"
#include "io/llm_loader.h"
#include "io/safetensors.h"
#include "methods/llm/quantize_job.h"
#include "methods/llm/stream_quantize.h"
#include "sim/quant_config.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

TEST(LlmStream, StreamedRtnEqualsInMemoryForEveryArchitecture) {
  const Tokenizer tok = tiny_tokenizer();
  at::Tensor t = sample_tokens(tok.vocab_size(), 1, 16, 3);
  TempDir d;
  {
    std::ofstream f(d / "calib.txt");
    for (int i = 0; i < 200; ++i) f << "the cat sat on the mat and then it ran. ";
  }
  int index = 0;
  for (const ArchCase& a : arch_cases(tok.vocab_size())) {
    SCOPED_TRACE(a.name);
    const std::string src = d / ("m" + std::to_string(index++));
    write_hf_llama(LlamaModel::random(a.cfg, 5), src, SafetensorsDtype::BF16, 2);
    write_llama2c_tokenizer(tok, src + "/tokenizer.bin");
    for (const char* cfg : {"bench/configs/llm_w4a16g32.json", "w4a16g32"}) {
      SCOPED_TRACE(cfg);
      const std::string config = std::string(cfg).find(".json") != std::string::npos
                                     ? std::string(CATQ_SOURCE_DIR) + "/" + cfg : cfg;
      LlmQuantizeJob j;
      j.model = src;
      j.config = config;
      j.text = d / "calib.txt";
      j.window = 32;
      j.out = d / "streamed.catq";
      j.stream = "always";
      nlohmann::json ms = run_llm_quantize_job(j);
      EXPECT_TRUE(ms["quantization"].value("streamed", false));
      EXPECT_GT(ms["quantization"]["weight_quantization"].value("weights_per_second", 0.0), 0.0);
      j.out = d / "memory.catq";
      j.stream = "never";
      nlohmann::json mm = run_llm_quantize_job(j);
      EXPECT_FALSE(mm["quantization"].value("streamed", false));
      EXPECT_EQ(ms.value("weight_bytes", 0), mm.value("weight_bytes", 0));
      QuantizedLlama s = read_catq_llm(d / "streamed.catq"), m = read_catq_llm(d / "memory.catq");
      ASSERT_TRUE(s.tokenizer.has_value());
      EXPECT_EQ(s.tokenizer->encode("the cat", true, false), tok.encode("the cat", true, false));
      at::NoGradGuard ng;
      EXPECT_TRUE(at::equal(s.model.forward(t, s.sq.get()), m.model.forward(t, m.sq.get())));
    }
  }
}

TEST(LlmStream, JobsThatNeedCalibrationAreNotStreamed) {
  const Tokenizer tok = tiny_tokenizer();
  TempDir d;
  write_hf_llama(LlamaModel::random(tiny_config(tok.vocab_size()), 5), d / "m", SafetensorsDtype::BF16);
  LlmQuantizeJob j;
  j.model = d / "m";
  j.out = d / "o.catq";
  j.stream = "always";
  for (auto [config, transform, weights, needle] :
       {std::tuple{"w4a8", "none", "rtn", "input activations"}, std::tuple{"w4a16g32", "quarot", "rtn", "transform"},
        std::tuple{"w4a16g32", "none", "gptq", "gptq"}}) {
    j.config = config;
    j.transform = transform;
    j.weights = weights;
    expect_error([&] { run_llm_quantize_job(j); }, ErrorKind::Usage, needle, config);
    EXPECT_FALSE(file_exists(d / "o.catq"));
  }
}

TEST(LlmStream, BigWeightsQuantizedInRowSlicesEqualTheWholeTensor) {
  // 2100 x 4096 = 8.6 M values: over the 8 Mi slice, so the row-slice path runs (and ends on a partial slice).
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const at::Tensor w = at::normal(0.0, 0.02, {2100, 4096}, gen, at::TensorOptions().dtype(at::kFloat)).to(at::kBFloat16);
  for (const char* compact : {"w4a16g128", "w3a16g32", "w8a16"}) {
    SCOPED_TRACE(compact);
    LayerInfo li;
    li.name = "blk.0.ffn_up";
    li.kind = LayerKind::Linear;
    li.weight_shape = w.sizes().vec();
    const QuantSpec spec = QuantConfig::from_string(compact).resolve(li).weight;
    int64_t peak = 0;
    auto [p, codes] = rtn_quantize_weight(spec, w, &peak);
    EXPECT_LT(peak, w.numel() * 4);  // never the whole weight in fp32
    const at::Tensor w32 = w.to(at::kFloat);
    const QuantParams ref = compute_params(spec, w32);
    EXPECT_TRUE(at::equal(p.scale, ref.scale));
    EXPECT_TRUE(at::equal(p.zero_point, ref.zero_point));
    EXPECT_TRUE(at::equal(codes.to(at::kInt), quantize(w32, ref).to(at::kInt)));
  }
}

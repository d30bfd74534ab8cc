// Layer-streamed weight-only RTN (methods/llm/stream_quantize.h): from a bf16 checkpoint kept memory-mapped, the
// streamed file holds the same codes and gives the same logits as the in-memory pipeline's, for every architecture.
#include <gtest/gtest.h>

#include <fstream>

#include "io/catq_file.h"
#include "io/gguf.h"
#include "io/llm_loader.h"
#include "io/safetensors.h"
#include "methods/llm/gptq.h"
#include "methods/llm/pipeline.h"
#include "methods/llm/quantize_job.h"
#include "methods/llm/stream_quantize.h"
#include "sim/quant_config.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

namespace {
// A small calibration text in `d`; returns its path.
std::string write_calib_text(const TempDir& d) {
  std::ofstream f(d / "calib.txt");
  for (int i = 0; i < 200; ++i) f << "the cat sat on the mat and then it ran. ";
  return d / "calib.txt";
}
}  // namespace

TEST(LlmStream, StreamedRtnEqualsInMemoryForEveryArchitecture) {
  const Tokenizer tok = tiny_tokenizer();
  at::Tensor t = sample_tokens(tok.vocab_size(), 1, 16, 3);
  TempDir d;
  const std::string calib_txt = write_calib_text(d);
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
      j.text = calib_txt;
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

// GPTQ, static input ranges, per-token activations, a quantized KV cache and embedding table: the streamed job (a
// bf16 checkpoint kept mapped, calibration states flowing block by block) writes what the in-memory pipeline writes.
TEST(LlmStream, CalibratedJobsStreamedEqualInMemory) {
  const Tokenizer tok = tiny_tokenizer();
  at::Tensor t = sample_tokens(tok.vocab_size(), 1, 16, 3);
  TempDir d;
  const std::string calib_txt = write_calib_text(d);
  auto arch = arch_cases(tok.vocab_size());
  const std::string src = d / "m";
  write_hf_llama(LlamaModel::random(arch.back().cfg, 7), src, SafetensorsDtype::BF16, 2);  // the last: Qwen3
  write_llama2c_tokenizer(tok, src + "/tokenizer.bin");
  const std::string cfgs = std::string(CATQ_SOURCE_DIR) + "/bench/configs/";
  struct Case {
    std::string config, weights;
    bool act_order, calibrated;
    std::string transform = "none";
  };
  for (const Case& c : {Case{"w4a16g32", "gptq", false, true}, Case{"w3a16", "gptq", true, true},
                        Case{"w4a8", "rtn", false, true}, Case{"w4a8", "gptq", false, true},
                        Case{cfgs + "llm_w4a8_kv4.json", "rtn", false, false},
                        Case{cfgs + "llm_w4a8_emb4.json", "rtn", false, false},
                        Case{"w4a16g32", "rtn", false, false, "quarot"}, Case{"w4a8", "gptq", false, true, "quarot"},
                        Case{"w4a8", "rtn", false, true, "smoothquant"}, Case{"w4a4-tok-sym", "rtn", false, true, "rms"},
                        Case{"w4a4-tok-sym", "gptq", false, true, "blockcat:k=4"}}) {
    SCOPED_TRACE(c.config + " " + c.weights + " " + c.transform);
    // With a transform the streamed pipeline takes block l's statistics from states that passed through the
    // transformed blocks before it, the in-memory one from the untransformed model: function-preserving transforms
    // make them equal up to rounding, and on this model the files come out identical (measured, so asserted).
    LlmQuantizeJob j;
    j.model = src;
    j.config = c.config;
    j.weights = c.weights;
    j.transform = c.transform;
    j.act_order = c.act_order;
    j.text = calib_txt;
    j.window = 32;
    j.calib_chars = 4000;
    j.out = d / "streamed.catq";
    j.stream = "always";
    nlohmann::json ms = run_llm_quantize_job(j);
    EXPECT_TRUE(ms["quantization"].value("streamed", false));
    ASSERT_TRUE(ms.contains("calibration"));  // --text given: checked and recorded even when not needed
    EXPECT_EQ(ms["calibration"].value("needed", !c.calibrated), c.calibrated);
    if (c.weights == "gptq") {
      const auto& g = ms["quantization"]["gptq"];
      EXPECT_LT(g.value("proxy_gptq_total", 0.0), g.value("proxy_rtn_total", 0.0));
      EXPECT_GT(ms["quantization"]["weight_quantization"].value("state_bytes", 0), 0);
    }
    j.out = d / "memory.catq";
    j.stream = "never";
    nlohmann::json mm = run_llm_quantize_job(j);
    EXPECT_EQ(ms.value("weight_bytes", 0), mm.value("weight_bytes", 0));
    EXPECT_EQ(ms.value("embedding_bytes", 0), mm.value("embedding_bytes", 0));
    nlohmann::json cs = ms["calibration"];
    cs.erase("needed");
    EXPECT_EQ(cs, mm["calibration"]);
    QuantizedLlama s = read_catq_llm(d / "streamed.catq"), m = read_catq_llm(d / "memory.catq");
    // GPTQ after a calibrated transform: the streamed statistics of block l come from states through the transformed
    // (fp32-rounded) blocks before it, the in-memory ones from the untransformed model; GPTQ turns those ~1e-7
    // differences into a few flipped codes, so the two files agree closely rather than exactly.
    const bool chaotic = c.weights == "gptq" && c.transform != "none" && c.transform != "quarot";
    int static_inputs = 0;
    for (const auto& l : m.sq->layers()) {
      SCOPED_TRACE(l.info.name);
      const QuantParams* ws = s.sq->weight_params(l.info.name);
      const QuantParams* wm = m.sq->weight_params(l.info.name);
      ASSERT_EQ(ws == nullptr, wm == nullptr);
      if (wm) {
        const at::Tensor cs = s.sq->quantized_weight_codes(l.info.name), cm = m.sq->quantized_weight_codes(l.info.name);
        if (chaotic) {
          EXPECT_GE((cs == cm).to(at::kDouble).mean().item<double>(), 0.95);
        } else {
          EXPECT_TRUE(at::equal(cs, cm));
        }
        EXPECT_TRUE(at::allclose(ws->scale, wm->scale, chaotic ? 1e-4 : 1e-6, 0));
      }
      const QuantParams* is = s.sq->input_params(l.info.name);
      const QuantParams* im = m.sq->input_params(l.info.name);
      ASSERT_EQ(is == nullptr, im == nullptr);
      if (im) {
        ++static_inputs;
        EXPECT_TRUE(at::allclose(is->scale, im->scale, 1e-6, 0));
        EXPECT_TRUE(at::equal(is->zero_point, im->zero_point));
      }
    }
    if (c.config == "w4a8") EXPECT_GT(static_inputs, 0);  // the compact w4a8: static per-tensor inputs
    at::NoGradGuard ng;
    const at::Tensor ls = s.model.forward(t, s.sq.get()), lm = m.model.forward(t, m.sq.get());
    const double rel = ((ls - lm).norm() / lm.norm()).item<double>();
    EXPECT_LT(rel, chaotic ? 2e-2 : 1e-5) << rel;
    if (!chaotic) EXPECT_TRUE(at::allclose(ls, lm, 1e-4, 1e-4));
    // The transform is in the file: QuaRot / block CAT's online transform before ffn_down, changed RMSNorm weights.
    EXPECT_EQ(s.model.blocks[0].down_in.defined(), c.transform == "quarot" || c.transform.rfind("blockcat", 0) == 0);
    EXPECT_EQ(s.model.blocks[0].down_in.defined(), m.model.blocks[0].down_in.defined());
    EXPECT_EQ(at::equal(s.model.blocks[1].attn_norm, at::ones_like(s.model.blocks[1].attn_norm)),
              c.transform == "quarot");  // folded to 1 by QuaRot, smoothed by the others, random otherwise
    EXPECT_TRUE(at::allclose(s.model.blocks[1].attn_norm, m.model.blocks[1].attn_norm, 1e-6, 1e-7));
  }
}

TEST(LlmStream, CalibratedJobsNeedText) {
  const Tokenizer tok = tiny_tokenizer();
  TempDir d;
  write_hf_llama(LlamaModel::random(tiny_config(tok.vocab_size()), 5), d / "m", SafetensorsDtype::BF16);
  write_llama2c_tokenizer(tok, (d / "m") + "/tokenizer.bin");
  LlmQuantizeJob j;
  j.model = d / "m";
  j.out = d / "o.catq";
  for (auto [config, transform, weights] : {std::tuple{"w4a8", "none", "rtn"}, std::tuple{"w4a16g32", "none", "gptq"},
                                            std::tuple{"w4a16g32", "smoothquant", "rtn"}}) {
    j.config = config;
    j.transform = transform;
    j.weights = weights;
    expect_error([&] { run_llm_quantize_job(j); }, ErrorKind::Usage, "--text", config);
    EXPECT_FALSE(file_exists(d / "o.catq"));
  }
  j.stream = "sometimes";
  expect_error([&] { run_llm_quantize_job(j); }, ErrorKind::Usage, "--stream", "bad --stream");
  // QuaRot with weight-only RTN needs no calibration.
  j.stream = "auto";
  j.config = "w4a16g32";
  j.transform = "quarot";
  j.weights = "rtn";
  const nlohmann::json meta = run_llm_quantize_job(j);
  EXPECT_EQ(meta["quantization"].value("transform", ""), "quarot");
  EXPECT_FALSE(meta.contains("calibration"));
  EXPECT_TRUE(file_exists(d / "o.catq"));
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

// Sequential GPTQ: each layer's Hessian comes from the inputs the model produces with every earlier layer already
// quantized (and the later ones in FP). Recomputed here with full-model forwards, the way the pipeline once did it,
// GPTQ from that Hessian gives the codes the block-by-block pipeline installed.
TEST(LlmStream, BlockwiseGptqUsesTheQuantizedPrefixOfTheWholeModel) {
  const Tokenizer tok = tiny_tokenizer();
  LlamaModel m = LlamaModel::random(tiny_config(tok.vocab_size(), /*tied=*/false), 11);
  const at::Tensor calib = sample_tokens(tok.vocab_size(), 12, 16, 5);
  SimQuant sq(QuantConfig::from_string("w3a16g16"));
  LlmPtqOptions po;
  po.weights = "gptq";
  po.batch = 5;  // batches of 5, 5, 2 windows
  quantize_llama(m, sq, calib, po);
  struct Recorder : QuantContext {
    SimQuant* sq = nullptr;
    int target = 0;
    at::Tensor h;
    at::Tensor weight(const LayerInfo& l, const at::Tensor& w) override { return l.index < target ? sq->weight(l, w) : w; }
    at::Tensor input(const LayerInfo& l, const at::Tensor& x) override {
      if (l.index == target) {
        const at::Tensor r = x.reshape({-1, x.size(-1)}).to(at::kDouble);
        h = h.defined() ? h + at::matmul(r.t(), r) : at::matmul(r.t(), r);
      }
      return x;
    }
  };
  at::NoGradGuard ng;
  for (const char* name : {"blk.0.attn_k", "blk.1.attn_output", "blk.1.ffn_up", "blk.1.ffn_down", "output"}) {
    SCOPED_TRACE(name);
    const SimQuant::Layer& sl = sq.layer(name);
    Recorder rec;
    rec.sq = &sq;
    rec.target = sl.info.index;
    for (int64_t i = 0; i < calib.size(0); i += po.batch) m.forward(calib.slice(0, i, i + po.batch), &rec);
    const GptqResult r = gptq_quantize(m.layer_weight(sl.info.index), rec.h, sl.weight_spec, po.gptq);
    const at::Tensor installed = sq.quantized_weight_codes(name);
    ASSERT_TRUE(installed.defined());
    const double agree = (installed == r.codes).to(at::kDouble).mean().item<double>();
    EXPECT_GE(agree, 0.9999);  // equal up to a rare tie (measured: all equal)
    // And not trivially: plain RTN codes differ.
    EXPECT_LT((quantize(m.layer_weight(sl.info.index), r.params).to(at::kInt) == installed).to(at::kDouble)
                  .mean().item<double>(), 0.99);
  }
  // Big weights go in slices of rows (the LM head of an 8 B model; here forced with a tiny slice): the same codes.
  LlamaModel m2 = LlamaModel::random(tiny_config(tok.vocab_size(), /*tied=*/false), 11);
  SimQuant sq2(QuantConfig::from_string("w3a16g16"));
  LlmPtqOptions sliced = po;
  sliced.gptq.row_slice = 3 * 16;  // GPTQ weight slices of 12 × 16 values: several per layer, a partial last one
  quantize_llama(m2, sq2, calib, sliced);
  for (const SimQuant::Layer& l : sq.layers()) {
    if (!l.weight_spec.enabled) continue;
    SCOPED_TRACE(l.info.name);
    EXPECT_TRUE(at::equal(sq2.quantized_weight_codes(l.info.name), sq.quantized_weight_codes(l.info.name)));
    EXPECT_TRUE(at::equal(sq2.weight_params(l.info.name)->scale, sq.weight_params(l.info.name)->scale));
  }
}

// A GGUF of block-quantized linears: the streamed job reads (dequantizes) them block by block — never the whole model
// in fp32 — and writes what the in-memory pipeline writes from the fully dequantized model.
TEST(LlmStream, GgufBlockQuantizedWeightsAreReadBlockByBlock) {
  const Tokenizer tok = tiny_tokenizer();
  TempDir d;
  const std::string calib_txt = write_calib_text(d);
  const LlamaModel src = LlamaModel::random(tiny_config(tok.vocab_size(), /*tied=*/false), 9);
  at::Tensor t = sample_tokens(tok.vocab_size(), 1, 16, 3);
  for (GgufWeightType wt : {GgufWeightType::Q4_0, GgufWeightType::Q8_0}) {
    SCOPED_TRACE(to_string(wt));
    const std::string path = d / fmt::format("m_{}.gguf", to_string(wt));
    write_gguf_llama(src, &tok, path, {.weights = wt});
    for (const char* weights : {"rtn", "gptq"}) {
      SCOPED_TRACE(weights);
      LlmQuantizeJob j;
      j.model = path;
      j.config = "w4a16g32";
      j.weights = weights;
      j.text = calib_txt;
      j.window = 32;
      j.calib_chars = 4000;
      j.out = d / "streamed.catq";
      run_llm_quantize_job(j);
      j.out = d / "memory.catq";
      j.stream = "never";
      run_llm_quantize_job(j);
      QuantizedLlama s = read_catq_llm(d / "streamed.catq"), m = read_catq_llm(d / "memory.catq");
      for (const auto& l : m.sq->layers())
        if (m.sq->weight_params(l.info.name))
          EXPECT_TRUE(at::equal(s.sq->quantized_weight_codes(l.info.name), m.sq->quantized_weight_codes(l.info.name)))
              << l.info.name;
      at::NoGradGuard ng;
      EXPECT_TRUE(at::allclose(s.model.forward(t, s.sq.get()), m.model.forward(t, m.sq.get()), 1e-5, 1e-5));
    }
  }
}

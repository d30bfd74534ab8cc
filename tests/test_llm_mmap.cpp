// Memory-mapped checkpoints (core/mapped_file.h) and weights kept in their stored dtype (LlmLoadOptions): zero-copy
// bf16 views, the copy path for misaligned data, the streaming safetensors writer, and the RSS a bf16 load costs.
#include <gtest/gtest.h>

#include <dirent.h>

#include <cstring>
#include <fstream>

#include "core/mapped_file.h"
#include "core/memory_usage.h"
#include "io/gguf.h"
#include "io/llm_loader.h"
#include "io/safetensors.h"
#include "llm/llama_tensors.h"
#include "test_llm_util.h"

using namespace catq;
using namespace catq::testing_llm;

namespace {

int64_t rss_bytes() { return resident_bytes(); }

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) out.push_back(e->d_name);
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// What LlamaModel::forward needs today: an fp32 copy of every weight (tying kept).
LlamaModel to_fp32(const LlamaModel& m) {
  LlamaModel out = m;
  auto f = [](at::Tensor& t) {
    if (t.defined()) t = t.to(at::kFloat).clone();
  };
  f(out.tok_embeddings);
  f(out.norm);
  out.output = m.cfg.tied_head ? out.tok_embeddings : out.output.to(at::kFloat).clone();
  for (LlamaBlock& b : out.blocks)
    for (const LlamaBlockTensor& t : llama_block_tensors()) f(b.*t.member);
  return out;
}

at::Tensor logits(const LlamaModel& m) {
  at::Tensor tokens = at::arange(0, 12, at::kLong).remainder(m.cfg.vocab_size).unsqueeze(0);
  return m.forward(tokens);
}

LlamaConfig medium_config() {  // ~45 M parameters: 90 MB of bf16, 180 MB of fp32
  LlamaConfig c;
  c.dim = 512;
  c.hidden_dim = 1536;
  c.n_layers = 4;
  c.n_heads = 8;
  c.n_kv_heads = 2;
  c.vocab_size = 32000;
  c.seq_len = 256;
  c.tied_head = false;
  return c;
}

bool is_rope_permuted(const std::string& hf_name) {
  return hf_name.find("q_proj") != std::string::npos || hf_name.find("k_proj") != std::string::npos ||
         hf_name.find("q_norm") != std::string::npos || hf_name.find("k_norm") != std::string::npos;
}

}  // namespace

TEST(LlmMmap, MappedFileBasics) {
  TempDir d;
  write_file_atomic(d / "f.bin", std::string("hello, mapping"));
  auto f = MappedFile::open(d / "f.bin", MappedFile::Advice::Sequential);
  ASSERT_EQ(f->size(), 14u);
  EXPECT_TRUE(f->is_mapped());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f->data()), f->size()), "hello, mapping");
  EXPECT_TRUE(f->contains(f->data() + 3, 11));
  EXPECT_FALSE(f->contains(f->data() + 3, 12));
  f->advise(0, 14, MappedFile::Advice::WillNeed);
  f->release(0, 14);  // the data is read again from the file
  EXPECT_EQ(f->data()[7], 'm');

  write_file_atomic(d / "empty.bin", std::string());
  auto e = MappedFile::open(d / "empty.bin");
  EXPECT_EQ(e->size(), 0u);
  EXPECT_NE(e->data(), nullptr);
  e->release(0, 100);
}

TEST(BadInputLlmMmap, MappedFileErrorsNameTheFile) {
  TempDir d;
  expect_error([&] { MappedFile::open(d / "absent.bin"); }, ErrorKind::Io, "absent.bin");
  expect_error([&] { MappedFile::open(d.path); }, ErrorKind::Io, "not a regular file");
  write_file_atomic(d / "empty.safetensors", std::string());
  expect_error([&] { read_safetensors(d / "empty.safetensors"); }, ErrorKind::Format, "empty.safetensors");
  write_file_atomic(d / "empty.gguf", std::string());
  expect_error([&] { read_gguf(d / "empty.gguf"); }, ErrorKind::Format, "empty.gguf");
}

TEST(LlmMmap, SafetensorsTensorsAreZeroCopyViews) {
  TempDir d;
  at::Tensor a = at::randn({7, 5});
  at::Tensor b = at::randn({3, 4});
  write_safetensors(d / "t.safetensors", {{"a", a}, {"b", b}}, SafetensorsDtype::BF16);
  at::Tensor va;
  std::shared_ptr<const MappedFile> mf;
  {
    SafetensorsFile f = read_safetensors(d / "t.safetensors");
    mf = f.file;
    va = f.tensor("a");
    EXPECT_EQ(va.scalar_type(), at::kBFloat16);
    EXPECT_EQ(va.sizes().vec(), (std::vector<int64_t>{7, 5}));
    EXPECT_TRUE(is_mapped_tensor(va));
    EXPECT_EQ(mapped_tensor_file(va), f.file);
    EXPECT_TRUE(f.file->contains(va.data_ptr(), va.numel() * 2));
    EXPECT_TRUE(at::equal(f.tensor_f32("a"), a.to(at::kBFloat16).to(at::kFloat)));
    EXPECT_FALSE(is_mapped_tensor(f.tensor_f32("a")));
    EXPECT_TRUE(at::equal(f.tensor("b").to(at::kFloat), b.to(at::kBFloat16).to(at::kFloat)));
    expect_error([&] { f.tensor("c"); }, ErrorKind::Format, "tensor c is missing");
  }
  // The view keeps the mapping alive after the SafetensorsFile is gone, and an atomic rewrite of the file (a new
  // inode, as write_file_atomic and every catq writer do) does not change it.
  mf.reset();
  write_safetensors(d / "t.safetensors", {{"a", at::zeros({7, 5})}}, SafetensorsDtype::BF16);
  EXPECT_TRUE(at::equal(va.to(at::kFloat), a.to(at::kBFloat16).to(at::kFloat)));
  // Views of a mapped tensor are mapped too; an fp32 view's tensor_f32 is a private copy.
  EXPECT_TRUE(is_mapped_tensor(va.narrow(0, 1, 2)));
  write_safetensors(d / "f.safetensors", {{"a", a}}, SafetensorsDtype::F32);
  SafetensorsFile f = read_safetensors(d / "f.safetensors");
  EXPECT_TRUE(is_mapped_tensor(f.tensor("a")));
  at::Tensor c = f.tensor_f32("a");
  EXPECT_FALSE(is_mapped_tensor(c));
  c.mul_(2);  // writable
  EXPECT_TRUE(at::equal(f.tensor("a"), a));
}

TEST(BadInputLlmMmap, MisalignedDataIsCopied) {
  // A hand-made file whose data buffer starts at an odd offset (the spec only asks for 8-byte alignment, and not
  // every writer pads): F32 "a" at buffer offset 0 and BF16 "b" at 12 are misaligned, F32 "c" at 23 is aligned.
  TempDir d;
  std::string head = R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},)"
                     R"("b":{"dtype":"BF16","shape":[5],"data_offsets":[12,22]},)"
                     R"("c":{"dtype":"F32","shape":[3],"data_offsets":[23,35]}})";
  while ((8 + head.size()) % 4 != 1) head += ' ';
  std::string s(8, '\0');
  uint64_t n = head.size();
  std::memcpy(&s[0], &n, 8);
  s += head;
  const float av[3] = {1.5f, -2.25f, 3.0f}, cv[3] = {0.5f, 7.0f, -1.0f};
  const at::Tensor bt = at::tensor({1.0f, 2.0f, -3.0f, 0.125f, 8.0f}).to(at::kBFloat16);
  s.append(reinterpret_cast<const char*>(av), 12);
  s.append(static_cast<const char*>(bt.data_ptr()), 10);
  s += '\x7f';
  s.append(reinterpret_cast<const char*>(cv), 12);
  write_file_atomic(d / "m.safetensors", s);
  SafetensorsFile f = read_safetensors(d / "m.safetensors");
  at::Tensor a = f.tensor("a"), b = f.tensor("b"), c = f.tensor("c");
  EXPECT_FALSE(is_mapped_tensor(a));
  EXPECT_FALSE(is_mapped_tensor(b));
  EXPECT_TRUE(is_mapped_tensor(c));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data_ptr()) % 4, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data_ptr()) % 2, 0u);
  EXPECT_TRUE(at::equal(a, at::tensor({1.5f, -2.25f, 3.0f})));
  EXPECT_TRUE(at::equal(b, bt));
  EXPECT_TRUE(at::equal(c, at::tensor({0.5f, 7.0f, -1.0f})));
  EXPECT_TRUE(at::equal(f.tensor_f32("b"), bt.to(at::kFloat)));
}

TEST(BadInputLlmMmap, MisalignedHfCheckpointLoadsThroughCopies) {
  // write_hf_llama's file with one more space in the header: every tensor is then 1 byte off its alignment.
  TempDir d;
  LlamaModel m = LlamaModel::random(tiny_config(300, false), 4);
  write_hf_llama(m, d / "hf", SafetensorsDtype::BF16);
  const std::string st = d / "hf/model.safetensors";
  std::string s = read_file_text(st);
  uint64_t n;
  std::memcpy(&n, s.data(), 8);
  s.insert(8 + n, " ");
  ++n;
  std::memcpy(&s[0], &n, 8);
  write_file_atomic(st, s);
  LlamaModel k = read_hf_llama(d / "hf", {.keep_stored_dtype = true});
  for (const auto& [name, w] : k.named_parameters()) {
    EXPECT_EQ(w.scalar_type(), at::kBFloat16) << name;
    EXPECT_FALSE(is_mapped_tensor(w)) << name;
  }
  LlamaModel f = read_hf_llama(d / "hf");
  EXPECT_TRUE(at::equal(logits(to_fp32(k)), logits(f)));
}

TEST(BadInputLlmMmap, TruncatedFilesWithKeepStoredDtype) {
  TempDir d;
  LlamaModel m = LlamaModel::random(tiny_config(300), 5);
  write_hf_llama(m, d / "hf", SafetensorsDtype::BF16);
  const std::string st = d / "hf/model.safetensors";
  const std::string full = read_file_text(st);
  for (size_t cut : {size_t(0), size_t(5), size_t(8), size_t(40), full.size() / 2, full.size() - 1}) {
    write_file_atomic(st, full.substr(0, cut));
    for (bool keep : {false, true})
      expect_error([&] { read_hf_llama(d / "hf", {.keep_stored_dtype = keep}); }, ErrorKind::Format,
                   "model.safetensors", fmt::format("cut {} keep {}", cut, keep));
  }
  write_gguf_llama(m, nullptr, d / "m.gguf", {.weights = GgufWeightType::BF16});
  const std::string g = read_file_text(d / "m.gguf");
  for (size_t cut : {size_t(0), size_t(3), size_t(100), g.size() / 2, g.size() - 1}) {
    write_file_atomic(d / "cut.gguf", g.substr(0, cut));
    expect_error([&] { read_gguf_llama(d / "cut.gguf", {.keep_stored_dtype = true}); }, ErrorKind::Format, "cut.gguf",
                 fmt::format("gguf cut {}", cut));
  }
}

TEST(LlmMmap, HfBf16KeepStoredDtype) {
  TempDir d;
  const LlamaConfig c = medium_config();
  const std::string dir = d / "hf";
  {
    LlamaModel m = LlamaModel::random(c, 7);
    write_hf_llama(m, dir, SafetensorsDtype::BF16, 2);
  }
  const int64_t fp32_bytes = [&] {
    int64_t n = 0;
    for (const SafetensorsTensorSpec& s : hf_llama_tensor_specs(c)) n += checked_numel(s.shape, "", "") * 4;
    return n;
  }();

  const int64_t rss0 = rss_bytes();
  LoadedLlama k = load_llama(dir, "", {.keep_stored_dtype = true});
  const int64_t rss1 = rss_bytes();
  EXPECT_TRUE(k.weights_mapped);
  // (a) bf16, and views of the mapping except the RoPE-permuted q/k copies.
  std::map<std::string, at::Tensor> by_hf;
  by_hf[kLlamaTokenEmbd.hf_name()] = k.model.tok_embeddings;
  by_hf[kLlamaOutputNorm.hf_name()] = k.model.norm;
  by_hf[kLlamaOutput.hf_name()] = k.model.output;
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (const LlamaBlockTensor& t : llama_block_tensors())
      if (t.present(c)) by_hf[t.hf_name(l)] = k.model.blocks[l].*t.member;
  EXPECT_EQ(by_hf.size(), hf_llama_tensor_specs(c).size());
  for (const auto& [name, w] : by_hf) {
    EXPECT_EQ(w.scalar_type(), at::kBFloat16) << name;
    if (is_rope_permuted(name)) {
      EXPECT_FALSE(is_mapped_tensor(w)) << name;
    } else {
      ASSERT_TRUE(is_mapped_tensor(w)) << name;
      auto mf = mapped_tensor_file(w);
      EXPECT_TRUE(mf->contains(w.data_ptr(), w.numel() * 2)) << name;
    }
  }
  // (c) RSS: the views cost nothing until touched; only the q/k copies (~2.6 MB) are private memory.
  const int64_t grew = rss1 - rss0;
  std::printf("[ rss ] keep_stored_dtype load of a %.0f MB (fp32) model: RSS +%.1f MB\n", fp32_bytes / 1e6,
              grew / 1e6);
  EXPECT_LT(grew, fp32_bytes / 8);

  // (b) The same logits as the fp32 load, once converted.
  const int64_t rss2 = rss_bytes();
  LoadedLlama f = load_llama(dir);
  const int64_t rss3 = rss_bytes();
  std::printf("[ rss ] default (fp32) load: RSS +%.1f MB\n", (rss3 - rss2) / 1e6);
  EXPECT_FALSE(f.weights_mapped);
  for (const auto& [name, w] : f.model.named_parameters()) {
    EXPECT_EQ(w.scalar_type(), at::kFloat) << name;
    EXPECT_FALSE(is_mapped_tensor(w)) << name;
  }
  EXPECT_TRUE(at::equal(logits(to_fp32(k.model)), logits(f.model)));

  // Reading the views brought their pages in (file-backed RSS); release_mapped_pages hands them back.
  int64_t mapped_bytes = 0;
  double sum = 0;
  for (const auto& [name, w] : k.model.named_parameters())
    if (is_mapped_tensor(w)) {
      mapped_bytes += w.numel() * w.element_size();
      sum += w.sum().item<double>();
    }
  const int64_t rss4 = rss_bytes();
  for (const auto& [name, w] : k.model.named_parameters()) release_mapped_pages(w);
  const int64_t rss5 = rss_bytes();
  std::printf("[ rss ] %.1f MB of views touched; release_mapped_pages: RSS -%.1f MB\n", mapped_bytes / 1e6,
              (rss4 - rss5) / 1e6);
  EXPECT_GT(rss4 - rss5, mapped_bytes / 2);
  double sum2 = 0;  // still readable: the pages come back from the file
  for (const auto& [name, w] : k.model.named_parameters())
    if (is_mapped_tensor(w)) sum2 += w.sum().item<double>();
  EXPECT_EQ(sum, sum2);
}

TEST(LlmMmap, HfTiedAndQwenKeepStoredDtype) {
  TempDir d;
  for (LlamaArch arch : {LlamaArch::Llama, LlamaArch::Qwen2, LlamaArch::Qwen3}) {
    LlamaConfig c = tiny_config(300, true);
    c.arch = arch;
    LlamaModel m = LlamaModel::random(c, 9);
    const std::string dir = d / fmt::format("hf{}", static_cast<int>(arch));
    write_hf_llama(m, dir, SafetensorsDtype::F16);
    LlamaModel k = read_hf_llama(dir, {.keep_stored_dtype = true});
    EXPECT_TRUE(k.output.is_same(k.tok_embeddings));
    EXPECT_TRUE(is_mapped_tensor(k.tok_embeddings));
    EXPECT_EQ(k.blocks[0].wq.scalar_type(), at::kHalf);
    EXPECT_FALSE(is_mapped_tensor(k.blocks[0].wq));
    EXPECT_TRUE(is_mapped_tensor(k.blocks[0].wv));
    if (c.qkv_bias()) {
      EXPECT_FALSE(is_mapped_tensor(k.blocks[0].bq));
      EXPECT_TRUE(is_mapped_tensor(k.blocks[0].bv));
    }
    if (c.qk_norm()) {
      EXPECT_EQ(k.blocks[1].k_norm.scalar_type(), at::kHalf);
    }
    EXPECT_TRUE(at::equal(logits(to_fp32(k)), logits(read_hf_llama(dir)))) << to_string(arch);
  }
}

TEST(LlmMmap, GgufKeepStoredDtype) {
  TempDir d;
  for (LlamaArch arch : {LlamaArch::Llama, LlamaArch::Qwen2}) {
    LlamaConfig c = tiny_config(300, false);
    c.arch = arch;
    LlamaModel m = LlamaModel::random(c, 11);
    for (GgufWeightType wt : {GgufWeightType::BF16, GgufWeightType::F16, GgufWeightType::Q8_0}) {
      for (uint32_t align : {32u, 1u}) {
        const std::string p = d / fmt::format("m{}_{}_{}.gguf", static_cast<int>(arch), to_string(wt), align);
        write_gguf_llama(m, nullptr, p, {.weights = wt, .alignment = align});
        GgufLlama k = read_gguf_llama(p, {.keep_stored_dtype = true});
        const at::ScalarType want = wt == GgufWeightType::BF16 ? at::kBFloat16 : wt == GgufWeightType::F16 ? at::kHalf
                                                                                                          : at::kFloat;
        const std::string what = fmt::format("{} {} align {}", to_string(arch), to_string(wt), align);
        if (wt == GgufWeightType::Q8_0) {
          // Block-quantized linears are deferred: read (dequantized to fp32) block by block on demand.
          ASSERT_EQ(k.model.deferred.size(), static_cast<size_t>(c.n_layers)) << what;
          EXPECT_EQ(k.model.deferred[0].size(), 7u) << what;
          EXPECT_FALSE(k.model.blocks[0].w2.defined()) << what;
          EXPECT_TRUE(k.model.blocks[0].attn_norm.defined()) << what;
          EXPECT_EQ(k.model.num_parameters(), m.num_parameters()) << what;
          for (int64_t l = 0; l < c.n_layers; ++l) k.model.materialize_block(l);
          k.model.check_shapes(p);
        }
        EXPECT_EQ(k.model.blocks[0].w2.scalar_type(), want) << what;
        EXPECT_EQ(k.model.norm.scalar_type(), at::kFloat) << what;  // norms are always F32 in GGUF
        if (align == 32) {
          EXPECT_EQ(is_mapped_tensor(k.model.blocks[0].w2), wt != GgufWeightType::Q8_0) << what;
          EXPECT_TRUE(is_mapped_tensor(k.model.norm)) << what;
          // Qwen2 keeps q/k in HF order in GGUF: permuted copies.
          EXPECT_EQ(is_mapped_tensor(k.model.blocks[0].wq), arch == LlamaArch::Llama && wt != GgufWeightType::Q8_0)
              << what;
        }
        for (const auto& [name, w] : k.model.named_parameters()) {
          if (is_mapped_tensor(w)) {
            EXPECT_EQ(reinterpret_cast<uintptr_t>(w.data_ptr()) % w.element_size(), 0u) << what << " " << name;
          }
        }
        GgufLlama f = read_gguf_llama(p);
        for (const auto& [name, w] : f.model.named_parameters()) EXPECT_FALSE(is_mapped_tensor(w)) << name;
        EXPECT_TRUE(at::equal(logits(to_fp32(k.model)), logits(f.model))) << what;
      }
    }
  }
}

TEST(LlmMmap, StreamedWriterMatchesWriteHfLlama) {
  TempDir d;
  LlamaConfig c = tiny_config(300, false);
  c.arch = LlamaArch::Qwen2;
  LlamaModel m = LlamaModel::random(c, 13);
  write_hf_llama(m, d / "a", SafetensorsDtype::BF16, 3);
  // The same files from the tensor list alone (q/k given in HF order, as a checkpoint stores them).
  std::map<std::string, at::Tensor> hf;
  hf[kLlamaTokenEmbd.hf_name()] = m.tok_embeddings;
  hf[kLlamaOutputNorm.hf_name()] = m.norm;
  hf[kLlamaOutput.hf_name()] = m.output;
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (const LlamaBlockTensor& t : llama_block_tensors())
      if (t.present(c)) {
        const at::Tensor& w = m.blocks[l].*t.member;
        hf[t.hf_name(l)] = t.rope == HfRope::None ? w : rope_permute_interleaved_to_hf(w, t.hf_rope_heads(c));
      }
  const auto specs = hf_llama_tensor_specs(c);
  size_t calls = 0;
  write_hf_llama_streamed(c, d / "b", SafetensorsDtype::BF16, 3, [&](size_t i) {
    EXPECT_EQ(i, calls++);  // in order, once each
    return hf.at(specs[i].name);
  });
  EXPECT_EQ(calls, specs.size());
  ASSERT_EQ(list_dir(d / "a"), list_dir(d / "b"));
  for (const std::string& fn : list_dir(d / "a")) EXPECT_EQ(read_file_text(d / "a/" + fn), read_file_text(d / "b/" + fn)) << fn;
}

TEST(BadInputLlmMmap, StreamedWriterFailuresLeaveNoFile) {
  TempDir d;
  const std::vector<SafetensorsTensorSpec> specs = {{"x", {4, 4}}, {"y", {3}}};
  expect_error(
      [&] {
        write_safetensors_streamed(d / "t.safetensors", specs, SafetensorsDtype::BF16, [&](size_t i) -> at::Tensor {
          if (i == 1) fail(ErrorKind::Data, "producer gave up");
          return at::ones({4, 4});
        });
      },
      ErrorKind::Data, "producer gave up");
  EXPECT_TRUE(list_dir(d.path).empty());
  expect_error(
      [&] {
        write_safetensors_streamed(d / "t.safetensors", specs, SafetensorsDtype::F32,
                                   [&](size_t i) { return at::ones({4, 4}); });
      },
      ErrorKind::Internal, "tensor y");
  EXPECT_TRUE(list_dir(d.path).empty());
  expect_error([&] { write_safetensors_streamed(d / "no/such/dir/t.safetensors", specs, SafetensorsDtype::F32,
                                                [&](size_t i) { return at::ones(specs[i].shape); }); },
               ErrorKind::Io, "no/such/dir");
  const uint64_t n = write_safetensors_streamed(d / "t.safetensors", specs, SafetensorsDtype::F16,
                                                [&](size_t i) { return at::full(specs[i].shape, 0.5 + i); });
  EXPECT_EQ(n, file_size(d / "t.safetensors"));
  SafetensorsFile f = read_safetensors(d / "t.safetensors");
  EXPECT_EQ(f.tensor("y").scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(f.tensor_f32("y"), at::full({3}, 1.5f)));
  EXPECT_EQ(list_dir(d.path), std::vector<std::string>{"t.safetensors"});
}

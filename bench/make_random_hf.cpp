// bench/make_random_hf: writes a random Llama model in Hugging Face layout (config.json, safetensors shards,
// model.safetensors.index.json) of any size without holding more than one tensor in memory (the streaming
// writer of io/safetensors.h), to test loading and quantizing huge checkpoints on small machines. Built on demand:
//   cmake --build build --target catq_bench_make_random_hf
//   build/catq_bench_make_random_hf --shape llama3.2-1b --shards 2 -o /tmp/l1b [--seed S] [--load-check]
//   build/catq_bench_make_random_hf --shape custom --dim 1024 --ffn 2816 --layers 8 --heads 16 --kv-heads 4
//       --vocab 32000 -o /tmp/m
// Weights ~ N(0, 0.02), RMSNorm weights 1, biases N(0, 0.02); q/k are random, so they are simply declared to be in
// HF's rotate-half order. Each tensor has its own generator (seed, index), so a file does not depend on the
// sharding. Progress and MB/s on stderr; --load-check then loads the folder with keep_stored_dtype and reports the
// RSS that costs.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <ATen/CPUGeneratorImpl.h>

#include "core/error.h"
#include "core/file_util.h"
#include "io/llm_loader.h"
#include "io/safetensors.h"

using namespace catq;

namespace {

int64_t proc_status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') return std::stoll(line.substr(n + 1));
  return -1;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

LlamaConfig shape_config(const std::string& shape) {
  LlamaConfig c;
  c.arch = LlamaArch::Llama;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  c.vocab_size = 128256;
  c.rope_theta = 500000.0;
  c.norm_eps = 1e-5;
  if (shape == "llama3-8b") {
    c.dim = 4096;
    c.hidden_dim = 14336;
    c.n_layers = 32;
    c.seq_len = 8192;
    c.tied_head = false;
  } else if (shape == "llama3.2-1b") {
    c.dim = 2048;
    c.hidden_dim = 8192;
    c.n_layers = 16;
    c.seq_len = 131072;
    c.tied_head = true;
    c.rope_scaling.type = "llama3";
    c.rope_scaling.factor = 32.0;
    c.rope_scaling.low_freq_factor = 1.0;
    c.rope_scaling.high_freq_factor = 4.0;
    c.rope_scaling.original_max_position = 8192;
  } else if (shape == "custom") {
    c.seq_len = 4096;
    c.tied_head = false;
  } else {
    fail(ErrorKind::Usage, "--shape {}: expected llama3-8b, llama3.2-1b or custom", shape);
  }
  return c;
}

// Tensor `index` of the checkpoint, generated in row chunks straight into the stored dtype. The output is a view of
// one staging buffer reused for every tensor (the writer has written tensor i before it asks for i + 1), so memory is
// the largest tensor plus one fp32 chunk of 64 MB, and no page is faulted in twice.
at::Tensor random_tensor(const SafetensorsTensorSpec& s, at::ScalarType st, uint64_t seed, size_t index,
                         at::Tensor& stage, at::Tensor& chunk) {
  const int64_t numel = static_cast<int64_t>(checked_numel(s.shape, s.name, s.name));
  if (!stage.defined() || stage.numel() < numel) {
    stage = at::Tensor();  // release the old one first
    stage = at::empty({numel}, at::TensorOptions().dtype(st));
  }
  at::Tensor out = stage.narrow(0, 0, numel).view(s.shape);
  const bool norm = s.shape.size() == 1 && s.name.find("norm") != std::string::npos;
  if (norm || numel == 0) return norm ? out.fill_(1.0) : out;
  at::Generator gen = at::detail::createCPUGenerator(seed * 1000003ull + index);
  at::Tensor flat = out.view({s.shape[0], -1});
  const int64_t cols = flat.size(1);
  const int64_t rows_per = std::max<int64_t>(1, (16 << 20) / std::max<int64_t>(cols, 1));
  if (!chunk.defined() || chunk.numel() < rows_per * cols) chunk = at::empty({rows_per * cols}, at::kFloat);
  for (int64_t r = 0; r < flat.size(0); r += rows_per) {
    const int64_t n = std::min(rows_per, flat.size(0) - r);
    at::Tensor c = chunk.narrow(0, 0, n * cols).view({n, cols});
    c.normal_(0.0, 0.02, gen);
    flat.narrow(0, r, n).copy_(c);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write a random Llama model in Hugging Face layout, one tensor at a time"};
  std::string shape = "llama3.2-1b", dtype_s = "bf16", out, arch_s = "llama";
  int shards = 1;
  uint64_t seed = 1;
  bool load_check = false;
  int64_t dim = 0, ffn = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0, head_dim = 0;
  std::string tied_s;
  app.add_option("--shape", shape, "llama3-8b, llama3.2-1b or custom (give --dim --ffn --layers --heads ...)");
  app.add_option("--dtype", dtype_s, "bf16, f16 or f32");
  app.add_option("--shards", shards, "Number of safetensors shards (split by tensor count, as write_hf_llama)");
  app.add_option("-o,--output", out, "Output folder (created)")->required();
  app.add_option("--seed", seed, "Random seed");
  app.add_option("--arch", arch_s, "custom: llama, qwen2 or qwen3");
  app.add_option("--dim", dim, "Model width (overrides the shape's)");
  app.add_option("--ffn", ffn, "FFN width");
  app.add_option("--layers", layers, "Number of blocks");
  app.add_option("--heads", heads, "Attention heads");
  app.add_option("--kv-heads", kv_heads, "KV heads");
  app.add_option("--vocab", vocab, "Vocabulary size");
  app.add_option("--head-dim", head_dim, "Explicit head size (0 = dim / heads)");
  app.add_option("--tied", tied_s, "true / false: LM head tied to the embedding");
  app.add_flag("--load-check", load_check, "Afterwards load the folder with keep_stored_dtype and report RSS");
  CLI11_PARSE(app, argc, argv);
  try {
    LlamaConfig c = shape_config(shape);
    if (arch_s == "qwen2") c.arch = LlamaArch::Qwen2;
    else if (arch_s == "qwen3") c.arch = LlamaArch::Qwen3;
    else if (arch_s != "llama") fail(ErrorKind::Usage, "--arch {}: expected llama, qwen2 or qwen3", arch_s);
    if (dim) c.dim = dim;
    if (ffn) c.hidden_dim = ffn;
    if (layers) c.n_layers = layers;
    if (heads) c.n_heads = heads;
    if (kv_heads) c.n_kv_heads = kv_heads;
    if (vocab) c.vocab_size = vocab;
    if (head_dim) c.head_dim = head_dim;
    if (!tied_s.empty()) c.tied_head = tied_s == "true" || tied_s == "1";
    c.validate("--shape " + shape);
    const SafetensorsDtype dtype = dtype_s == "bf16"  ? SafetensorsDtype::BF16
                                   : dtype_s == "f16" ? SafetensorsDtype::F16
                                   : dtype_s == "f32" ? SafetensorsDtype::F32
                                                      : (fail(ErrorKind::Usage, "--dtype {}: expected bf16, f16 or f32",
                                                              dtype_s), SafetensorsDtype::F32);
    const at::ScalarType st = dtype == SafetensorsDtype::BF16  ? at::kBFloat16
                              : dtype == SafetensorsDtype::F16 ? at::kHalf
                                                               : at::kFloat;
    const int64_t es = dtype == SafetensorsDtype::F32 ? 4 : 2;
    const std::vector<SafetensorsTensorSpec> specs = hf_llama_tensor_specs(c);
    int64_t total_params = 0;
    for (const auto& s : specs) total_params += checked_numel(s.shape, out, s.name);
    std::fprintf(stderr, "%s: %s, %zu tensors, %.3f G parameters, %.2f GB of %s in %d shard(s) -> %s\n", shape.c_str(),
                 c.summary().c_str(), specs.size(), total_params / 1e9, total_params * es / 1e9, dtype_s.c_str(),
                 shards, out.c_str());

    const double t0 = now_s();
    double gen_s = 0, last_print = t0;
    int64_t done_bytes = 0;
    size_t done = 0;
    at::Tensor stage, chunk;
    write_hf_llama_streamed(c, out, dtype, shards, [&](size_t i) {
      // Called when tensor i-1 has been written: report progress.
      const double t = now_s();
      if (done > 0 && (t - last_print > 2.0 || i + 1 == specs.size())) {
        std::fprintf(stderr, "  [%zu/%zu] %.2f GB, %.0f MB/s, RSS %.0f MB\n", done, specs.size(), done_bytes / 1e9,
                     done_bytes / 1e6 / (t - t0), proc_status_kb("VmRSS") / 1e3);
        last_print = t;
      }
      at::Tensor w = random_tensor(specs[i], st, seed, i, stage, chunk);
      gen_s += now_s() - t;
      done_bytes += w.numel() * es;
      ++done;
      return w;
    });
    const double secs = now_s() - t0;
    stage = chunk = at::Tensor();
    std::fprintf(stderr, "wrote %.2f GB in %.1f s: %.0f MB/s (random generation %.1f s); peak RSS %.0f MB\n",
                 done_bytes / 1e9, secs, done_bytes / 1e6 / secs, gen_s, proc_status_kb("VmHWM") / 1e3);

    if (load_check) {
      const int64_t rss0 = proc_status_kb("VmRSS");
      const double l0 = now_s();
      LoadedLlama m = load_llama(out, "", {.keep_stored_dtype = true});
      const double l1 = now_s();
      const int64_t rss1 = proc_status_kb("VmRSS");
      int64_t mapped = 0, copied = 0;
      for (const auto& [name, w] : m.model.named_parameters())
        (is_mapped_tensor(w) ? mapped : copied) += w.numel() * w.element_size();
      std::fprintf(stderr,
                   "load_llama(keep_stored_dtype): %.2f s, RSS %.0f -> %.0f MB (+%.0f MB); %.2f GB mapped views, "
                   "%.2f GB private copies (q/k permuted); fp32 would be %.2f GB\n",
                   l1 - l0, rss0 / 1e3, rss1 / 1e3, (rss1 - rss0) / 1e3, mapped / 1e9, copied / 1e9,
                   total_params * 4 / 1e9);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return e.exit_code();
  }
  return 0;
}

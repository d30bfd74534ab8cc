// bench/gguf_ggml: the llama.cpp baseline of bench/gguf_quality.sh — the same block-by-block GGUF quantization as
// `catq quantize --gguf` (methods/llm/gguf_quantize.h), but every tensor encoded by llama.cpp's own quantizer
// (ggml_quantize_chunk from node-llama-cpp's prebuilt libggml-base.so, loaded at run time; nothing of it is in this
// repository). --weights rtn = llama-quantize without an importance matrix, imatrix = with one (diag of each layer's
// calibration H, what llama-imatrix collects), gptq = catq's GPTQ on the grid ggml's imatrix encoding chose.
//   cmake --build build --target catq_bench_gguf_ggml
//   build/catq_bench_gguf_ggml MODEL [--tokenizer T] --text F --skip-chars 12000 --type q4_k --weights imatrix -o OUT.gguf
// Prints the quantize report as JSON. --windows-out W.json (with --text) instead writes the perplexity protocol's
// windows of the model's tokenizer (eval/perplexity.h defaults: the first 12,000 characters) as [[bos, t0, ...], ...]
// for tests/peers/llama_cpp_check.mjs, and exits.
#include <CLI/CLI.hpp>
#include <dlfcn.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "core/error.h"
#include "core/file_util.h"
#include "core/source_dir.h"
#include "eval/perplexity.h"
#include "io/gguf.h"
#include "quant/ggml_blocks.h"
#include "io/llm_loader.h"
#include "methods/llm/gguf_quantize.h"

using namespace catq;

namespace {

using QuantizeChunk = size_t (*)(int type, const float* src, void* dst, int64_t start, int64_t nrows,
                                 int64_t n_per_row, const float* imatrix);
using QuantizeInit = void (*)(int type);

struct GgmlQuantizer {
  QuantizeChunk chunk = nullptr;
  QuantizeInit init = nullptr;
  explicit GgmlQuantizer(const std::string& lib_path) {
    void* lib = dlopen(lib_path.c_str(), RTLD_NOW | RTLD_LOCAL);
    CATQ_CHECK(lib, Io, "{}: cannot load llama.cpp's ggml library ({}); scripts/setup.sh installs node-llama-cpp",
               lib_path, dlerror());
    chunk = reinterpret_cast<QuantizeChunk>(dlsym(lib, "ggml_quantize_chunk"));
    init = reinterpret_cast<QuantizeInit>(dlsym(lib, "ggml_quantize_init"));
    CATQ_CHECK(chunk && init, Io, "{}: ggml_quantize_chunk / ggml_quantize_init not found", lib_path);
  }
  std::string operator()(const at::Tensor& w, uint32_t type, const at::Tensor& importance) const {
    const at::Tensor x = w.to(at::kFloat).contiguous();
    const int64_t rows = x.size(0), row = x.size(1);
    const GgmlTypeTraits* tt = ggml_type_traits(type);
    std::string out(static_cast<size_t>(rows * (row / tt->block) * tt->bytes), '\0');
    at::Tensor imp = importance.defined() ? importance.to(at::kFloat).contiguous() : at::Tensor();
    init(static_cast<int>(type));
    const size_t n = chunk(static_cast<int>(type), x.data_ptr<float>(), out.data(), 0, rows, row,
                           imp.defined() ? imp.data_ptr<float>() : nullptr);
    CATQ_CHECK(n == out.size(), Internal, "ggml_quantize_chunk wrote {} bytes, expected {}", n, out.size());
    return out;
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GGUF quantization with llama.cpp's own encoder (baseline for bench/gguf_quality.sh)"};
  std::string model, tokenizer, text, type = "q4_k", weights = "rtn", out, windows_out;
  std::string lib = std::string(CATQ_SOURCE_DIR) +
                    "/.cache/peers/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
  int64_t skip = 12000, calib_chars = 24000, window = 256;
  app.add_option("model", model)->required();
  app.add_option("--tokenizer", tokenizer);
  app.add_option("--text", text);
  app.add_option("--skip-chars", skip);
  app.add_option("--calib-chars", calib_chars);
  app.add_option("--window", window);
  app.add_option("--type", type);
  app.add_option("--weights", weights);
  app.add_option("--ggml-lib", lib);
  app.add_option("-o", out);
  app.add_option("--windows-out", windows_out);
  CLI11_PARSE(app, argc, argv);
  try {
    if (!windows_out.empty()) {
      LoadedLlama m = load_llama(model, tokenizer);
      const EvalWindows w = make_eval_windows(require_tokenizer(m), read_file_text(text), PerplexityOptions{});
      nlohmann::json all = nlohmann::json::array();
      for (int64_t i = 0; i < w.n_windows(); ++i) {
        std::vector<int64_t> seq = {w.inputs[i][0].item<int64_t>()};
        for (int64_t j = 0; j < w.targets.size(1) && w.score[i][j].item<bool>(); ++j)
          seq.push_back(w.targets[i][j].item<int64_t>());
        all.push_back(seq);
      }
      write_file_atomic(windows_out, all.dump());
      return 0;
    }
    CATQ_CHECK(!out.empty(), Usage, "-o OUT.gguf is required");
    GgufQuantizeOptions o;
    o.recipe = find_gguf_recipe(type);  // q4_k_m …: catq's per-tensor mix, each tensor by ggml's quantizer
    if (!o.recipe) o.type = parse_gguf_weight_type(type);
    o.weights = weights;
    o.name = "ggml-" + weights;
    o.encoder = GgmlQuantizer(lib);
    LlmLoadOptions lo;
    lo.keep_stored_dtype = true;
    LoadedLlama m = load_llama(model, tokenizer, lo);
    const Tokenizer& tok = require_tokenizer(m);
    at::Tensor calib;
    if (gguf_weight_method_needs_calibration(weights)) {
      PerplexityOptions co;
      co.max_chars = calib_chars;
      co.window = std::min(window, m.model.cfg.seq_len);
      calib = make_eval_windows(tok, utf8_skip(read_file_text(text), skip), co).inputs;
    }
    nlohmann::json rep = quantize_llama_gguf(m.model, tok, calib, o, out);
    const GgufFile g = read_gguf(out);
    rep["bytes"] = file_size(out);
    rep["bits_per_weight"] = gguf_bits_per_weight(g);
    rep.erase("layers");
    std::cout << rep.dump(2) << "\n";
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

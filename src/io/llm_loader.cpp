#include "io/llm_loader.h"

#include "core/error.h"
#include "core/file_util.h"
#include "core/mapped_file.h"
#include "io/catq_file.h"
#include "io/gguf.h"
#include "io/hf_tokenizer.h"
#include "io/llama2c.h"
#include "io/model_format.h"
#include "io/safetensors.h"

namespace catq {

bool is_llm_model_file(const std::string& path) {
  ModelFormat f = detect_model_format(path);
  if (f == ModelFormat::CatqQuantized) return catq_file_kind(path) == "llm";
  return f == ModelFormat::Llama2c || f == ModelFormat::Gguf || f == ModelFormat::Safetensors;
}

static std::string dir_of(const std::string& p) {
  auto k = p.find_last_of('/');
  return k == std::string::npos ? "." : p.substr(0, k);
}

LoadedLlama load_llama(const std::string& model_path, const std::string& tokenizer_path, const LlmLoadOptions& opt) {
  LoadedLlama out;
  out.path = model_path;
  ModelFormat f = detect_model_format(model_path);
  out.format = model_format_name(f);
  std::string search_dir = dir_of(model_path);
  switch (f) {
    case ModelFormat::Llama2c: out.model = read_llama2c(model_path); break;
    case ModelFormat::Gguf: {
      GgufLlama g = read_gguf_llama(model_path, opt);
      out.model = std::move(g.model);
      out.tokenizer = std::move(g.tokenizer);
      out.tokenizer_note = g.tokenizer_note;
      if (out.tokenizer) out.tokenizer_path = "(embedded in GGUF)";
      break;
    }
    case ModelFormat::Safetensors: {
      out.model = read_hf_llama(model_path, opt);
      if (model_path.find(".safetensors") == std::string::npos) search_dir = model_path;
      break;
    }
    case ModelFormat::CatqQuantized: {
      CATQ_CHECK(catq_file_kind(model_path) == "llm", Unsupported, "{}: a quantized CNN, not a language model",
                 model_path);
      QuantizedLlama q = read_catq_llm(model_path);
      out.model = std::move(q.model);
      out.quant = std::shared_ptr<SimQuant>(std::move(q.sq));
      out.tokenizer = std::move(q.tokenizer);
      out.metadata = std::move(q.metadata);
      if (out.tokenizer) out.tokenizer_path = "(embedded in the .catq file)";
      else out.tokenizer_note = "the .catq file carries no tokenizer";
      break;
    }
    default:
      fail(ErrorKind::Unsupported, "{}: a {} file is not a language model catq can read (llama2.c .bin, GGUF, a "
           "Hugging Face safetensors folder, or a quantized .catq)", model_path, model_format_name(f));
  }
  out.model.check_finite(model_path);  // weights held in memory; mapped ones are checked when quantized
  if (opt.keep_stored_dtype)
    for (const auto& [name, w] : out.model.named_parameters())
      if (is_mapped_tensor(w)) out.weights_mapped = true;
  const int64_t V = out.model.cfg.vocab_size;
  // A tokenizer file: Hugging Face tokenizer.json (or a folder holding one), else llama2.c.
  auto read_tok = [&](const std::string& p) {
    return is_hf_tokenizer_path(p) ? read_hf_tokenizer(p) : read_llama2c_tokenizer(p, V);
  };
  if (!tokenizer_path.empty()) {
    out.tokenizer = read_tok(tokenizer_path);
    out.tokenizer_path = tokenizer_path;
    out.tokenizer_note.clear();
  } else if (!out.tokenizer) {
    // A Hugging Face folder's own tokenizer.json first; llama2.c files next to a checkpoint.
    std::vector<std::string> cands = {fmt::format("{}/tok{}.bin", search_dir, V), search_dir + "/tokenizer.bin",
                                      search_dir + "/tokenizer.json"};
    if (f == ModelFormat::Safetensors) std::rotate(cands.begin(), cands.begin() + 2, cands.end());
    for (const std::string& cand : cands) {
      if (file_exists(cand)) {
        out.tokenizer = read_tok(cand);
        out.tokenizer_path = cand;
        out.tokenizer_note.clear();
        break;
      }
    }
    if (!out.tokenizer && out.tokenizer_note.empty())
      out.tokenizer_note =
          fmt::format("no --tokenizer given and no tok{}.bin / tokenizer.bin / tokenizer.json next to the model", V);
  }
  // Hugging Face checkpoints often pad the embedding past the tokenizer (Qwen2: 151936 rows, 151665 tokens): pad a
  // BPE tokenizer with unused "[PAD{id}]" tokens, as llama.cpp's converter does.
  if (out.tokenizer && out.tokenizer->is_bpe() && out.tokenizer->vocab_size() < V) {
    BpeSpec s = out.tokenizer->spec();
    for (int64_t i = static_cast<int64_t>(s.pieces.size()); i < V; ++i) {
      s.pieces.push_back(fmt::format("[PAD{}]", i));
      s.types.push_back(static_cast<int32_t>(TokenType::Unused));
    }
    out.tokenizer = Tokenizer(std::move(s));
  }
  if (out.tokenizer && out.tokenizer->vocab_size() != V)
    fail(ErrorKind::Data, "{}: tokenizer has {} tokens but the model's vocabulary is {}", out.tokenizer_path,
         out.tokenizer->vocab_size(), V);
  return out;
}

const Tokenizer& require_tokenizer(const LoadedLlama& m) {
  if (!m.tokenizer)
    fail(ErrorKind::Usage, "{}: no tokenizer ({}); pass one with --tokenizer FILE (llama2.c format or a "
         "Hugging Face tokenizer.json)", m.path,
         m.tokenizer_note);
  return *m.tokenizer;
}

}  // namespace catq

#include "io/llm_loader.h"

#include "core/error.h"
#include "core/file_util.h"
#include "io/catq_file.h"
#include "io/gguf.h"
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

LoadedLlama load_llama(const std::string& model_path, const std::string& tokenizer_path) {
  LoadedLlama out;
  out.path = model_path;
  ModelFormat f = detect_model_format(model_path);
  out.format = model_format_name(f);
  std::string search_dir = dir_of(model_path);
  switch (f) {
    case ModelFormat::Llama2c: out.model = read_llama2c(model_path); break;
    case ModelFormat::Gguf: {
      GgufLlama g = read_gguf_llama(model_path);
      out.model = std::move(g.model);
      out.tokenizer = std::move(g.tokenizer);
      out.tokenizer_note = g.tokenizer_note;
      if (out.tokenizer) out.tokenizer_path = "(embedded in GGUF)";
      break;
    }
    case ModelFormat::Safetensors: {
      out.model = read_hf_llama(model_path);
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
  const int64_t V = out.model.cfg.vocab_size;
  if (!tokenizer_path.empty()) {
    out.tokenizer = read_llama2c_tokenizer(tokenizer_path, V);
    out.tokenizer_path = tokenizer_path;
    out.tokenizer_note.clear();
  } else if (!out.tokenizer) {
    for (const std::string& cand : {fmt::format("{}/tok{}.bin", search_dir, V), search_dir + "/tokenizer.bin"}) {
      if (file_exists(cand)) {
        out.tokenizer = read_llama2c_tokenizer(cand, V);
        out.tokenizer_path = cand;
        out.tokenizer_note.clear();
        break;
      }
    }
    if (!out.tokenizer && out.tokenizer_note.empty())
      out.tokenizer_note = fmt::format("no --tokenizer given and no tok{}.bin / tokenizer.bin next to the model", V);
  }
  if (out.tokenizer && out.tokenizer->vocab_size() != V)
    fail(ErrorKind::Data, "{}: tokenizer has {} tokens but the model's vocabulary is {}", out.tokenizer_path,
         out.tokenizer->vocab_size(), V);
  return out;
}

const Tokenizer& require_tokenizer(const LoadedLlama& m) {
  if (!m.tokenizer)
    fail(ErrorKind::Usage, "{}: no tokenizer ({}); pass one with --tokenizer FILE (llama2.c format)", m.path,
         m.tokenizer_note);
  return *m.tokenizer;
}

}  // namespace catq

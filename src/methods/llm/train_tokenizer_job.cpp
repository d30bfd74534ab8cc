#include "methods/llm/train_tokenizer_job.h"

#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "core/file_util.h"
#include "io/hf_tokenizer.h"
#include "llm/train_tokenizer.h"

namespace catq {

TrainTokenizerResult run_train_tokenizer_job(const TrainTokenizerJob& job) {
  CATQ_CHECK(!job.texts.empty(), Usage, "train-tokenizer: give at least one training TEXT file");
  CATQ_CHECK(!job.out.empty(), Usage, "train-tokenizer: -o tokenizer.json is required");
  CATQ_CHECK(job.model == "byte-level" || job.model == "spm", Usage,
             "train-tokenizer: --model \"{}\" is not byte-level or spm", job.model);
  const bool spm = job.model == "spm";
  std::optional<PreTokenizer> pre = pre_tokenizer_from_gguf_name(job.pre);
  CATQ_CHECK(pre.has_value() || spm, Usage,
             "train-tokenizer: --pre \"{}\" is not one of gpt-2, llama-bpe, qwen2, smollm", job.pre);
  if (spm) pre = PreTokenizer::None;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> texts;
  for (const std::string& p : job.texts) {
    std::string t = read_file_text(p);
    if (job.max_bytes > 0 && static_cast<int64_t>(t.size()) > job.max_bytes) t.resize(job.max_bytes);
    texts.push_back(std::move(t));
  }
  BpeTrainOptions o;
  o.vocab_size = job.vocab;
  o.pre = *pre;
  o.special_tokens.clear();
  o.bos = o.eos = -1;
  if (!job.bos.empty()) o.bos = static_cast<int>(o.special_tokens.size()), o.special_tokens.push_back(job.bos);
  if (!job.eos.empty()) {
    if (job.eos == job.bos) o.eos = o.bos;  // GPT-2 style: one <|endoftext|> for both
    else o.eos = static_cast<int>(o.special_tokens.size()), o.special_tokens.push_back(job.eos);
  }
  for (const std::string& s : job.specials) o.special_tokens.push_back(s);
  CATQ_CHECK(job.reserved >= 0 && job.reserved < (int64_t{1} << 30), Usage, "train-tokenizer: --reserved {} is out of "
             "range", job.reserved);
  for (int64_t i = 0; i < job.reserved; ++i) o.special_tokens.push_back(fmt::format("<|reserved_special_token_{}|>", i));
  o.add_bos = job.add_bos && o.bos >= 0;
  o.add_eos = job.add_eos && o.eos >= 0;
  o.min_frequency = job.min_frequency;
  o.progress = job.progress;
  BpeTrainStats st;
  Tokenizer tok = spm ? train_spm_bpe(texts, o, &st) : train_byte_level_bpe(texts, o, &st);
  {
    // "-o tok/tokenizer.json": the folder is created (a Hugging Face tokenizer is a folder's worth of files).
    std::error_code ec;
    const std::filesystem::path dir = std::filesystem::path(job.out).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    CATQ_CHECK(!ec, Io, "{}: cannot create the folder: {}", dir.string(), ec.message());
  }
  write_hf_tokenizer(tok, job.out);

  TrainTokenizerResult r;
  r.vocab_size = tok.vocab_size();
  r.merges = st.merges;
  r.stopped_early = st.stopped_early;
  // Compression on the first MB (cut at a UTF-8 boundary).
  std::string sample = texts[0].substr(0, 1 << 20);
  while (!sample.empty() && sample.size() < texts[0].size() && (static_cast<uint8_t>(texts[0][sample.size()]) & 0xC0) == 0x80)
    sample.pop_back();
  if (!sample.empty())
    r.tokens_per_byte = static_cast<double>(tok.encode(sample, false, false, false).size()) / sample.size();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.report = {{"output", job.out},
              {"vocab_size", r.vocab_size},
              {"merges", r.merges},
              {"stopped_early", r.stopped_early},
              {"model", job.model},
              {"pre_tokenizer", spm ? nlohmann::json(nullptr) : nlohmann::json(pre_tokenizer_gguf_name(*pre))},
              {"bos_id", tok.bos_id()},
              {"eos_id", tok.eos_id()},
              {"add_bos", tok.add_bos()},
              {"add_eos", tok.add_eos()},
              {"text_bytes", st.bytes},
              {"words", st.words},
              {"unique_words", st.unique_words},
              {"tokens_per_byte", r.tokens_per_byte},
              {"seconds", r.seconds}};
  return r;
}

}  // namespace catq

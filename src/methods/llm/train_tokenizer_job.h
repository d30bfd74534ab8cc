// The `catq train-tokenizer` job, as data (training texts, model, vocabulary size, pre-tokenizer, special tokens,
// output file), and the function that runs it: trains a byte-level (or SentencePiece-style) BPE tokenizer
// (llm/train_tokenizer.h) and writes it as a Hugging Face tokenizer.json + tokenizer_config.json
// (io/hf_tokenizer.h). The CLI only fills the job and prints the result.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace catq {

struct TrainTokenizerJob {
  std::vector<std::string> texts;      // training text files (UTF-8), concatenated as separate documents
  std::string out;                     // tokenizer.json (tokenizer_config.json is written next to it)
  std::string model = "byte-level";    // byte-level | spm (SentencePiece-style BPE with byte fallback)
  int64_t vocab = 4096;                // total vocabulary: 256 bytes + merges + special tokens (spm: + <unk> + chars)
  std::string pre = "llama-bpe";       // byte-level: llama.cpp's names gpt-2 | llama-bpe | qwen2 | smollm
  std::string bos = "<|begin_of_text|>", eos = "<|end_of_text|>";  // "" = none (spm: set them to <s>, </s>)
  std::vector<std::string> specials;   // further special tokens (after BOS and EOS)
  int64_t reserved = 0;                // then <|reserved_special_token_0|>..: pads a small tokenizer to a model's
                                       // vocabulary (Llama 3 reserves 256 such tokens)
  bool add_bos = true, add_eos = false;  // what tokenizer_config.json / the post-processor ask for
  int64_t min_frequency = 2;           // stop early when the best pair occurs fewer times
  int64_t max_bytes = 0;               // read at most this many bytes of each text (0 = all)
  bool progress = true;                // progress bar on stderr
};

struct TrainTokenizerResult {
  nlohmann::json report;               // what `catq --json train-tokenizer` prints
  int64_t vocab_size = 0, merges = 0;
  bool stopped_early = false;
  double tokens_per_byte = 0;          // on the first MB of the training text (a compression check)
  double seconds = 0;
};

// Error(Usage) for no text / no -o / an unknown pre-tokenizer, Error(Config) for a vocabulary too small, Error(Io)
// for unreadable texts or an unwritable output.
TrainTokenizerResult run_train_tokenizer_job(const TrainTokenizerJob& job);

}  // namespace catq

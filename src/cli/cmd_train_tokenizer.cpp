// `catq train-tokenizer TEXT... --vocab N -o tokenizer.json`: trains a byte-level (or SentencePiece-style) BPE
// tokenizer and writes it as a Hugging Face tokenizer.json (+ tokenizer_config.json), which `--tokenizer`,
// llama.cpp (via `catq export`) and Hugging Face tokenizers read.
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/progress.h"
#include "methods/llm/train_tokenizer_job.h"

namespace catq::cli {

namespace {

// The command line fills the job; the method layer runs it.
TrainTokenizerJob args;

int run_train_tokenizer(const Common& common) {
  if (common.json || common.quiet) {
    Progress::set_enabled(false);
    args.progress = false;
  }
  const TrainTokenizerResult r = run_train_tokenizer_job(args);
  const std::string what = args.model == "spm" ? "SentencePiece-style" : "pre-tokenizer " + args.pre;
  if (common.json) std::cout << r.report.dump(2) << "\n";
  else
    std::cout << fmt::format("{} tokens ({} merges{}, {}), {:.3f} tokens/byte on the first MB, {:.1f} s -> wrote {}\n",
                             r.vocab_size, r.merges,
                             r.stopped_early ? ", stopped early: no pair left with --min-frequency" : "", what,
                             r.tokens_per_byte, r.seconds, args.out);
  return 0;
}

}  // namespace

void register_train_tokenizer(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("train-tokenizer", "Train a byte-level (or SentencePiece-style) BPE tokenizer on "
                                                    "texts (writes a Hugging Face tokenizer.json + tokenizer_config.json)");
  sub->footer(
      "Byte-level: the 256 byte tokens, then the merges, then the special tokens (BOS, EOS, --special ...).\n"
      "--model spm: <unk>, the special tokens, the 256 <0xXX> byte tokens, the characters, then the merges.\n"
      "Ties between equally frequent pairs go to the smallest token ids: the result is deterministic.\n\n"
      "Examples:\n"
      "  catq train-tokenizer tinystories_valid_head.txt --vocab 4096 -o tok/tokenizer.json\n"
      "  catq train-tokenizer a.txt b.txt --vocab 32000 --pre qwen2 --bos '' --eos '<|endoftext|>' -o t.json\n"
      "  catq train-tokenizer t.txt --model spm --vocab 8000 -o spm/tokenizer.json\n"
      "  catq train-tokenizer docs.txt --vocab 128256 --reserved 127744 -o t.json   # 512 learned, Llama-3 size\n"
      "  catq --json train-tokenizer t.txt --vocab 1024 --pre gpt-2 --bos '<|endoftext|>' --eos '<|endoftext|>' "
      "--no-add-bos -o t.json\n");
  sub->add_option("texts", args.texts, "Training text files (UTF-8)")->required();
  sub->add_option("-o,--output", args.out, "Output tokenizer.json (tokenizer_config.json goes next to it)")->required();
  sub->add_option("--model", args.model, "byte-level (GPT-2 / Llama-3 style) | spm (SentencePiece-style BPE with "
                  "byte fallback, Llama-2 style; BOS/EOS default to <s>, </s>)")->capture_default_str();
  sub->add_option("--vocab", args.vocab, "Vocabulary size (bytes + merges + special tokens)")->capture_default_str();
  sub->add_option("--pre", args.pre, "Pre-tokenizer (llama.cpp names): gpt-2 | llama-bpe | qwen2 | smollm")
      ->capture_default_str();
  auto* bos = sub->add_option("--bos", args.bos, "BOS token ('' = none)")->capture_default_str();
  auto* eos = sub->add_option("--eos", args.eos, "EOS token ('' = none; may equal --bos)")->capture_default_str();
  sub->add_option("--special", args.specials, "Further special tokens");
  sub->add_option("--reserved", args.reserved, "Then N special tokens <|reserved_special_token_i|> (pads the "
                  "vocabulary to a model's embedding rows)")->capture_default_str();
  sub->add_flag("--add-bos,!--no-add-bos", args.add_bos,
                "Ask for BOS at the start of each text (tokenizer_config.json; default: on)");
  sub->add_flag("--add-eos,!--no-add-eos", args.add_eos, "Ask for EOS at the end of each text (default: off)");
  sub->add_option("--min-frequency", args.min_frequency, "Stop when the best pair occurs fewer times")
      ->capture_default_str();
  sub->add_option("--max-bytes", args.max_bytes, "Train on at most this many bytes of each text (0 = all)")
      ->capture_default_str();
  sub->callback([&common, bos, eos] {
    if (args.model == "spm") {  // SentencePiece's own names unless given
      if (!bos->count()) args.bos = "<s>";
      if (!eos->count()) args.eos = "</s>";
    }
    run_train_tokenizer(common);
  });
}

}  // namespace catq::cli

// `catq train-llm --text FILE ...`: trains a small Llama model from scratch and writes a llama2.c checkpoint
// (the project's own "larger" model for the LLM benchmarks; see docs/llm_ptq.md for the documented run).
#include <cmath>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/progress.h"
#include "methods/qat/train_llm_job.h"

namespace catq::cli {

namespace {

// The command line fills the job; the method layer runs it.
TrainLlmJob args;

int run_train(const Common& common) {
  if (common.json || common.quiet) Progress::set_enabled(false);
  if (!common.json)
    args.on_eval = [](int64_t step, double nll) {
      std::cerr << fmt::format("step {}: validation NLL {:.4f} (PPL {:.3f})\n", step, nll, std::exp(nll));
    };
  const TrainLlmResult r = run_train_llm_job(args);
  if (common.json) std::cout << r.report.dump(2) << "\n";
  else if (r.qat)
    std::cout << fmt::format("{:.2f} M parameters ({}), {} steps: {} FP then {} QAT at {} bits ({}); validation NLL: "
                             "FP {:.4f}, RTN after FP {:.4f}, final quantized {:.4f} (PPL {:.3f}) -> wrote {}\n",
                             r.parameters / 1e6, r.config, args.steps, r.fp_steps, r.qat_steps, args.qat_bits,
                             args.qat_schedule, r.fp_val_nll, r.ptq_val_nll, r.val_nll, std::exp(r.val_nll), args.out);
  else
    std::cout << fmt::format("{}: {:.2f} M parameters ({}), {} training tokens, {} steps; best validation PPL {:.3f} "
                             "at step {} -> wrote {}\n", args.text, r.parameters / 1e6, r.config, r.train_tokens,
                             args.steps, std::exp(r.best_val_nll), r.best_step, args.out);
  return 0;
}

}  // namespace

void register_train_llm(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("train-llm", "Train a small Llama model from scratch on a text (writes a llama2.c "
                                              "checkpoint, keeping the best step on a validation slice)");
  sub->footer(
      "Text layout (characters): [0, val-skip) untouched (the perplexity reference), [val-skip, val-skip+val-chars)\n"
      "validation, [skip-chars, end) training.\n\n"
      "Examples:\n"
      "  catq train-llm --text tinystories_valid_head.txt --tokenizer tok512.bin -o tiny3m.bin\n"
      "  catq train-llm --text t.txt --tokenizer tok512.bin --dim 256 --layers 6 --hidden 768 --steps 3000 -o m.bin\n"
      "  catq train-llm --text t.txt --tokenizer tok512.bin --qat-bits 4 --qat-fraction 0.3 --qat-schedule fused \\\n"
      "       --steps 2000 -o m_w4.catq      # FP then weights-only QAT; writes a quantized .catq\n");
  sub->add_option("--text", args.text, "Training text (UTF-8)")->required();
  sub->add_option("--tokenizer", args.tokenizer, "llama2.c tokenizer, or a Hugging Face tokenizer.json (catq train-tokenizer)")->required();
  sub->add_option("-o,--output", args.out, "Output: a llama2.c checkpoint (*.bin), else a Hugging Face folder (config.json, model.safetensors, "
                  "tokenizer.json); with --qat-bits a .catq");
  sub->add_option("--skip-chars", args.skip_chars, "Train on the text after this many characters")->capture_default_str();
  sub->add_option("--val-skip", args.val_skip, "Validation slice start (characters)")->capture_default_str();
  sub->add_option("--val-chars", args.val_chars, "Validation slice length (characters)")->capture_default_str();
  sub->add_option("--dim", args.dim, "Model width")->capture_default_str();
  sub->add_option("--layers", args.layers, "Transformer blocks")->capture_default_str();
  sub->add_option("--heads", args.heads, "Attention heads")->capture_default_str();
  sub->add_option("--kv-heads", args.kv_heads, "Key/value heads (GQA)")->capture_default_str();
  sub->add_option("--hidden", args.hidden, "FFN width")->capture_default_str();
  sub->add_option("--seq-len", args.seq_len, "Model context length")->capture_default_str();
  sub->add_option("--steps", args.steps, "Optimizer steps")->capture_default_str();
  sub->add_option("--batch", args.batch, "Windows per step")->capture_default_str();
  sub->add_option("--seq", args.seq, "Tokens per training window")->capture_default_str();
  sub->add_option("--lr", args.lr, "Peak learning rate (AdamW)")->capture_default_str();
  sub->add_option("--schedule", args.schedule, "constant | cosine | wsd")->capture_default_str();
  sub->add_option("--warmup", args.warmup, "Warm-up fraction")->capture_default_str();
  sub->add_option("--weight-decay", args.weight_decay, "AdamW weight decay")->capture_default_str();
  sub->add_option("--eval-every", args.eval_every, "Validate every N steps")->capture_default_str();
  sub->add_option("--seed", args.seed, "Seed")->capture_default_str();
  auto* q = "FP then QAT (methods.md §5)";
  sub->add_option("--qat-bits", args.qat_bits, "Weights-only QAT at this many bits after the FP phase (1..8; 0 = "
                  "FP only). Output is then a quantized .catq")->group(q);
  sub->add_option("--qat-emb-bits", args.qat_emb_bits, "Token-embedding bits during QAT (0 = FP; per token row)")
      ->capture_default_str()->group(q);
  sub->add_option("--qat-head-bits", args.qat_head_bits, "LM head bits during QAT (0 = FP)")->capture_default_str()
      ->group(q);
  sub->add_option("--qat-fraction", args.qat_fraction, "Share of --steps spent in QAT")->capture_default_str()->group(q);
  sub->add_option("--qat-schedule", args.qat_schedule, "fused (QAT at peak LR, decay inside QAT) | classic (FP "
                  "cooldown, then QAT with its own warmup and decay); WSD")->capture_default_str()->group(q);
  sub->add_option("--decay", args.decay, "WSD decay fraction")->capture_default_str()->group(q);
  sub->add_flag("--qat-carry-optimizer", args.carry_optimizer, "Continue the AdamW moments across the FP -> QAT switch "
                "(default: the QAT phase starts them fresh)")->group(q);
  sub->add_option("--val-windows", args.val_windows, "Validation windows for the final NLL")->capture_default_str()->group(q);
  sub->callback([&common] { run_train(common); });
}

}  // namespace catq::cli

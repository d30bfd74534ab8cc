// `catq train-llm --text FILE ...`: trains a small Llama model from scratch and writes a llama2.c checkpoint
// (the project's own "larger" model for the LLM benchmarks; see docs/llm_ptq.md for the documented run).
#include <chrono>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/progress.h"
#include "eval/perplexity.h"
#include "io/llama2c.h"
#include "io/catq_file.h"
#include "llm/train_llm.h"
#include "methods/qat/llm_qat.h"

namespace catq::cli {

namespace {

struct TrainLlmArgs {
  std::string text, tokenizer, out, schedule = "cosine";
  int64_t skip_chars = 36000, val_skip = 12000, val_chars = 24000;
  int64_t dim = 192, layers = 4, heads = 6, kv_heads = 2, hidden = 512, seq_len = 512;
  int64_t steps = 1500, batch = 8, seq = 256, eval_every = 250;
  double lr = 2e-3, warmup = 0.05, weight_decay = 0.1;
  uint64_t seed = 0;
  // FP → QAT
  int qat_bits = 0, qat_head_bits = 0, qat_emb_bits = 0;
  double qat_fraction = 0.2, decay = 0.2;
  std::string qat_schedule = "fused";
  int64_t val_windows = 64;
};
TrainLlmArgs args;

std::string utf8_range(const std::string& text, int64_t skip, int64_t chars) {
  const size_t b = truncate_utf8(text, skip).size();
  std::string rest = text.substr(std::min(b, text.size()));
  return chars > 0 ? truncate_utf8(rest, chars) : rest;
}

// --qat-bits: FP phase, then weights-only QAT (methods/qat_llm.h); writes a quantized-LLM .catq.
int run_fp_qat(const Common& common, LlamaModel& m, const Tokenizer& tok, const at::Tensor& train, const at::Tensor& val) {
  FpQatOptions o;
  o.total_steps = args.steps;
  o.qat_fraction = args.qat_fraction;
  o.schedule = parse_qat_schedule(args.qat_schedule);
  o.bits = args.qat_bits;
  o.lr = args.lr;
  o.warmup_frac = args.warmup;
  o.decay_frac = args.decay;
  o.train.batch = args.batch;
  o.train.seq = args.seq;
  o.train.seed = args.seed;
  o.train.optim.weight_decay = args.weight_decay;
  SimQuant sq(weight_only_qat_config(args.qat_bits, args.qat_head_bits, args.qat_emb_bits));
  SmallModelThreadGuard threads(m);
  const auto start = std::chrono::steady_clock::now();
  FpQatRun run = train_fp_then_qat(m, train, val, tok.bos_id(), o, sq, args.val_windows);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json j = run.to_json();
  j["output"] = args.out;
  j["parameters"] = m.num_parameters();
  j["config"] = m.cfg.summary();
  j["bits"] = args.qat_bits;
  j["head_bits"] = args.qat_head_bits;
  j["embedding_bits"] = args.qat_emb_bits;
  j["qat_fraction"] = args.qat_fraction;
  j["schedule"] = args.qat_schedule;
  j["total_steps"] = args.steps;
  j["tokens_seen"] = args.steps * args.batch * args.seq;
  j["train_tokens"] = train.numel();
  j["seed"] = args.seed;
  j["seconds"] = seconds;
  write_catq_llm(args.out, m, sq, &tok, {{"source_model", "catq train-llm --qat-bits"}, {"training", j}});
  if (common.json) std::cout << j.dump(2) << "\n";
  else
    std::cout << fmt::format("{:.2f} M parameters ({}), {} steps: {} FP then {} QAT at {} bits ({}); validation NLL: "
                             "FP {:.4f}, RTN after FP {:.4f}, final quantized {:.4f} (PPL {:.3f}) -> wrote {}\n",
                             m.num_parameters() / 1e6, m.cfg.summary(), args.steps, run.fp.size(), run.qat.size(),
                             args.qat_bits, args.qat_schedule, run.fp_val_nll, run.ptq_val_nll, run.val_nll,
                             std::exp(run.val_nll), args.out);
  return 0;
}

int run_train(const Common& common) {
  if (common.json || common.quiet) Progress::set_enabled(false);
  CATQ_CHECK(!args.out.empty(), Usage, "train-llm: -o MODEL.bin is required");
  Tokenizer tok = read_llama2c_tokenizer(args.tokenizer);
  const std::string text = read_file_text(args.text);
  const std::string train_text = utf8_range(text, args.skip_chars, 0);
  const std::string val_text = utf8_range(text, args.val_skip, args.val_chars);
  at::Tensor train = encode_stream(tok, train_text), val = encode_stream(tok, val_text);
  CATQ_CHECK(train.numel() > args.seq, Data, "{}: {} training tokens after skipping {} characters; need more than {}",
             args.text, train.numel(), args.skip_chars, args.seq);

  LlamaConfig cfg;
  cfg.dim = args.dim;
  cfg.n_layers = args.layers;
  cfg.n_heads = args.heads;
  cfg.n_kv_heads = args.kv_heads;
  cfg.hidden_dim = args.hidden;
  cfg.vocab_size = tok.vocab_size();
  cfg.seq_len = args.seq_len;
  cfg.validate("train-llm");
  LlamaModel m = init_llama(cfg, args.seed);
  if (args.qat_bits > 0) return run_fp_qat(common, m, tok, train, val);
  LlmTrainOptions o;
  o.steps = args.steps;
  o.batch = args.batch;
  o.seq = args.seq;
  o.seed = args.seed;
  o.schedule.shape = parse_lr_shape(args.schedule);
  o.schedule.base_lr = args.lr;
  o.schedule.warmup_frac = args.warmup;
  o.optim.weight_decay = args.weight_decay;
  o.eval_every = args.eval_every;
  nlohmann::json evals = nlohmann::json::array();
  double best = INFINITY;
  int64_t best_step = 0;
  o.on_eval = [&](int64_t step) {
    const double nll = stream_nll(m, val, tok.bos_id(), args.seq, 64);
    evals.push_back({{"step", step}, {"val_nll", nll}, {"val_ppl", std::exp(nll)}});
    if (!common.json) std::cerr << fmt::format("step {}: validation NLL {:.4f} (PPL {:.3f})\n", step, nll, std::exp(nll));
    if (nll < best) {  // keep the best checkpoint on the validation text
      best = nll;
      best_step = step;
      write_llama2c(m, args.out);
    }
  };
  SmallModelThreadGuard threads(m);
  auto rec = train_llama(m, train, tok.bos_id(), o);
  nlohmann::json j = {{"output", args.out},
                      {"parameters", m.num_parameters()},
                      {"config", cfg.summary()},
                      {"train_tokens", train.numel()},
                      {"val_tokens", val.numel()},
                      {"steps", args.steps},
                      {"tokens_seen", args.steps * args.batch * args.seq},
                      {"evaluations", evals},
                      {"best_step", best_step},
                      {"best_val_ppl", std::exp(best)},
                      {"final_loss", rec.empty() ? 0.0 : rec.back().loss}};
  if (common.json) std::cout << j.dump(2) << "\n";
  else
    std::cout << fmt::format("{}: {:.2f} M parameters ({}), {} training tokens, {} steps; best validation PPL {:.3f} "
                             "at step {} -> wrote {}\n", args.text, m.num_parameters() / 1e6, cfg.summary(),
                             train.numel(), args.steps, std::exp(best), best_step, args.out);
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
  sub->add_option("--tokenizer", args.tokenizer, "llama2.c tokenizer")->required();
  sub->add_option("-o,--output", args.out, "Output llama2.c checkpoint");
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
  sub->add_option("--val-windows", args.val_windows, "Validation windows for the final NLL")->capture_default_str()->group(q);
  sub->callback([&common] { run_train(common); });
}

}  // namespace catq::cli

// The `catq train-llm` job, as data (text slices, tokenizer, architecture, training schedule, optional FP → QAT
// phase, output file), and the function that runs it: reads the tokenizer and the text, trains a small Llama from
// scratch and writes a llama2.c checkpoint (the best validation step), or with qat_bits > 0 trains FP then
// weights-only QAT (llm_qat.h) and writes a quantized-LLM .catq. The CLI only fills the job and prints the result.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace catq {

struct TrainLlmJob {
  std::string text;                  // training text (UTF-8)
  std::string tokenizer;             // llama2.c tokenizer file, or a Hugging Face tokenizer.json (catq train-tokenizer)
  std::string out;                   // FP: a llama2.c checkpoint (*.bin) or else a Hugging Face folder (config.json,
                                     // model.safetensors, tokenizer.json); qat_bits > 0: a quantized-LLM .catq
  // Text layout (characters): [val_skip, val_skip + val_chars) validation, [skip_chars, end) training.
  int64_t skip_chars = 36000, val_skip = 12000, val_chars = 24000;
  // Architecture (LlamaConfig; the vocabulary is the tokenizer's).
  int64_t dim = 192, layers = 4, heads = 6, kv_heads = 2, hidden = 512, seq_len = 512;
  int64_t steps = 1500;              // optimizer steps (FP → QAT: both phases together)
  int64_t batch = 8;                 // windows per step
  int64_t seq = 256;                 // tokens per training window
  int64_t eval_every = 250;          // FP only: validate (and keep the best checkpoint) every N steps
  std::string schedule = "cosine";   // FP only: constant | cosine | wsd
  double lr = 2e-3, warmup = 0.05, weight_decay = 0.1;  // peak LR (AdamW), warm-up fraction, weight decay
  uint64_t seed = 0;
  // FP → QAT (methods/qat/llm_qat.h); qat_bits = 0: FP only.
  int qat_bits = 0, qat_head_bits = 0, qat_emb_bits = 0;  // weights, LM head, token embedding (0 = FP)
  double qat_fraction = 0.2;         // share of `steps` spent in QAT
  double decay = 0.2;                // WSD decay fraction
  std::string qat_schedule = "fused";  // fused | classic
  bool carry_optimizer = false;        // AdamW moments continue across the FP → QAT switch
  int64_t val_windows = 64;          // validation windows for the final NLL
  // FP only: called after each validation with the step and the validation NLL (the CLI logs it); may be empty.
  std::function<void(int64_t step, double val_nll)> on_eval;
};

struct TrainLlmResult {
  nlohmann::json report;             // what `catq --json train-llm` prints (FP → QAT: also stored in the .catq)
  bool qat = false;                  // an FP → QAT run (qat_bits > 0)
  int64_t parameters = 0;            // model parameters
  std::string config;                // LlamaConfig::summary()
  int64_t train_tokens = 0;
  // FP run: the best validation step and its NLL (INFINITY when no validation ran).
  int64_t best_step = 0;
  double best_val_nll = 0;
  // FP → QAT run: steps per phase and validation NLLs (FpQatRun).
  int64_t fp_steps = 0, qat_steps = 0;
  double fp_val_nll = 0, ptq_val_nll = 0, val_nll = 0;
};

// Runs the job and writes job.out. Error(Usage) for a missing output, Error(Data) for too little training text,
// Error(Config) for a bad architecture or QAT setting.
TrainLlmResult run_train_llm_job(const TrainLlmJob& job);

}  // namespace catq

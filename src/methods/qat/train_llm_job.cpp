#include "methods/qat/train_llm_job.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "core/file_util.h"
#include "eval/perplexity.h"
#include "io/catq_file.h"
#include "io/hf_tokenizer.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "llm/train_llm.h"
#include "methods/qat/llm_qat.h"

namespace catq {

namespace {

std::string utf8_range(const std::string& text, int64_t skip, int64_t chars) {
  return truncate_utf8(utf8_skip(text, skip), chars);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The FP checkpoint: a llama2.c .bin (its tokenizer stays a separate file), or else a Hugging Face folder with
// config.json, model.safetensors (fp32) and the tokenizer as tokenizer.json + tokenizer_config.json.
void save_fp_checkpoint(const LlamaModel& m, const Tokenizer& tok, const std::string& out) {
  if (ends_with(out, ".bin")) {
    write_llama2c(m, out);
    return;
  }
  write_hf_llama(m, out, SafetensorsDtype::F32, 1, {tok.bos_id(), tok.eos_id()});
  write_hf_tokenizer(tok, out + "/tokenizer.json");
}

// qat_bits > 0: FP phase, then weights-only QAT (methods/qat/llm_qat.h); writes a quantized-LLM .catq.
TrainLlmResult run_fp_qat(const TrainLlmJob& job, LlamaModel& m, const Tokenizer& tok, const at::Tensor& train,
                          const at::Tensor& val) {
  FpQatOptions o;
  o.total_steps = job.steps;
  o.qat_fraction = job.qat_fraction;
  o.schedule = parse_qat_schedule(job.qat_schedule);
  o.carry_optimizer_state = job.carry_optimizer;
  o.bits = job.qat_bits;
  o.lr = job.lr;
  o.warmup_frac = job.warmup;
  o.decay_frac = job.decay;
  o.train.batch = job.batch;
  o.train.seq = job.seq;
  o.train.seed = job.seed;
  o.train.optim.weight_decay = job.weight_decay;
  SimQuant sq(weight_only_qat_config(job.qat_bits, job.qat_head_bits, job.qat_emb_bits));
  SmallModelThreadGuard threads(m);
  const auto start = std::chrono::steady_clock::now();
  FpQatRun run = train_fp_then_qat(m, train, val, tok.bos_id(), o, sq, job.val_windows);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json j = run.to_json();
  j["output"] = job.out;
  j["parameters"] = m.num_parameters();
  j["config"] = m.cfg.summary();
  j["bits"] = job.qat_bits;
  j["head_bits"] = job.qat_head_bits;
  j["embedding_bits"] = job.qat_emb_bits;
  j["qat_fraction"] = job.qat_fraction;
  j["schedule"] = job.qat_schedule;
  j["carry_optimizer_state"] = job.carry_optimizer;
  j["total_steps"] = job.steps;
  j["tokens_seen"] = job.steps * job.batch * job.seq;
  j["train_tokens"] = train.numel();
  j["seed"] = job.seed;
  j["seconds"] = seconds;
  write_catq_llm(job.out, m, sq, &tok, {{"source_model", "catq train-llm --qat-bits"}, {"training", j}});
  TrainLlmResult r;
  r.report = std::move(j);
  r.qat = true;
  r.parameters = m.num_parameters();
  r.config = m.cfg.summary();
  r.train_tokens = train.numel();
  r.fp_steps = static_cast<int64_t>(run.fp.size());
  r.qat_steps = static_cast<int64_t>(run.qat.size());
  r.fp_val_nll = run.fp_val_nll;
  r.ptq_val_nll = run.ptq_val_nll;
  r.val_nll = run.val_nll;
  return r;
}

}  // namespace

TrainLlmResult run_train_llm_job(const TrainLlmJob& job) {
  CATQ_CHECK(!job.out.empty(), Usage, "train-llm: -o MODEL.bin is required");
  Tokenizer tok = is_hf_tokenizer_path(job.tokenizer) ? read_hf_tokenizer(job.tokenizer)
                                                      : read_llama2c_tokenizer(job.tokenizer);
  const std::string text = read_file_text(job.text);
  const std::string train_text = utf8_range(text, job.skip_chars, 0);
  const std::string val_text = utf8_range(text, job.val_skip, job.val_chars);
  at::Tensor train = encode_stream(tok, train_text), val = encode_stream(tok, val_text);
  CATQ_CHECK(train.numel() > job.seq, Data, "{}: {} training tokens after skipping {} characters; need more than {}",
             job.text, train.numel(), job.skip_chars, job.seq);

  LlamaConfig cfg;
  cfg.dim = job.dim;
  cfg.n_layers = job.layers;
  cfg.n_heads = job.heads;
  cfg.n_kv_heads = job.kv_heads;
  cfg.hidden_dim = job.hidden;
  cfg.vocab_size = tok.vocab_size();
  cfg.seq_len = job.seq_len;
  cfg.validate("train-llm");
  LlamaModel m = init_llama(cfg, job.seed);
  if (job.qat_bits > 0) return run_fp_qat(job, m, tok, train, val);
  LlmTrainOptions o;
  o.steps = job.steps;
  o.batch = job.batch;
  o.seq = job.seq;
  o.seed = job.seed;
  o.schedule.shape = parse_lr_shape(job.schedule);
  o.schedule.base_lr = job.lr;
  o.schedule.warmup_frac = job.warmup;
  o.optim.weight_decay = job.weight_decay;
  o.eval_every = job.eval_every;
  nlohmann::json evals = nlohmann::json::array();
  double best = INFINITY;
  int64_t best_step = 0;
  o.on_eval = [&](int64_t step) {
    const double nll = stream_nll(m, val, tok.bos_id(), job.seq, 64);
    evals.push_back({{"step", step}, {"val_nll", nll}, {"val_ppl", std::exp(nll)}});
    if (job.on_eval) job.on_eval(step, nll);
    if (nll < best) {  // keep the best checkpoint on the validation text
      best = nll;
      best_step = step;
      save_fp_checkpoint(m, tok, job.out);
    }
  };
  SmallModelThreadGuard threads(m);
  auto rec = train_llama(m, train, tok.bos_id(), o);
  TrainLlmResult r;
  r.report = {{"output", job.out},
              {"parameters", m.num_parameters()},
              {"config", cfg.summary()},
              {"train_tokens", train.numel()},
              {"val_tokens", val.numel()},
              {"steps", job.steps},
              {"tokens_seen", job.steps * job.batch * job.seq},
              {"evaluations", evals},
              {"best_step", best_step},
              {"best_val_ppl", std::exp(best)},
              {"final_loss", rec.empty() ? 0.0 : rec.back().loss}};
  r.parameters = m.num_parameters();
  r.config = cfg.summary();
  r.train_tokens = train.numel();
  r.best_step = best_step;
  r.best_val_nll = best;
  return r;
}

}  // namespace catq

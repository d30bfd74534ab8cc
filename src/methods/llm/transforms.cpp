#include "methods/llm/transforms.h"

#include <algorithm>
#include <stdexcept>

#include "core/error.h"

namespace catq {

std::string LlmTransformOptions::str() const {
  if (method == "smoothquant") return fmt::format("smoothquant:alpha={}", alpha);
  if (method == "awq") return grid != 20 ? fmt::format("awq:grid={}", grid) : std::string("awq");
  if (method == "blockcat")
    return fmt::format("blockcat:k={}{}{}", block, damping != 0.01 ? fmt::format(":damp={}", damping) : "",
                       hadamard_after ? "" : ":nohad");
  return method;
}

LlmTransformOptions parse_llm_transform(const std::string& s) {
  LlmTransformOptions o;
  std::vector<std::string> parts;
  size_t p = 0;
  while (p <= s.size()) {
    size_t q = s.find(':', p);
    parts.push_back(s.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  o.method = parts[0];
  static const std::vector<std::string> known = {"none", "smoothquant", "rms", "quarot", "rotation", "blockcat", "awq"};
  CATQ_CHECK(std::find(known.begin(), known.end(), o.method) != known.end(), Config,
             "transform '{}': unknown method '{}', expected one of {}", s, o.method, fmt::join(known, ", "));
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& kv = parts[i];
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq), val = eq == std::string::npos ? "" : kv.substr(eq + 1);
    try {
      if (key == "alpha" && o.method == "smoothquant") o.alpha = std::stod(val);
      else if (key == "k" && o.method == "blockcat") o.block = std::stoll(val);
      else if (key == "damp" && o.method == "blockcat") o.damping = std::stod(val);
      else if (key == "nohad" && o.method == "blockcat") o.hadamard_after = false;
      else if (key == "grid" && o.method == "awq") o.grid = std::stoi(val);
      else if (key == "seed") o.seed = std::stoull(val);
      else fail(ErrorKind::Config, "transform '{}': unknown option '{}' for {}", s, key, o.method);
    } catch (const std::logic_error&) {
      fail(ErrorKind::Config, "transform '{}': option '{}' needs a number", s, kv);
    }
  }
  CATQ_CHECK(o.alpha >= 0 && o.alpha <= 1, Config, "transform '{}': alpha {} outside [0, 1]", s, o.alpha);
  CATQ_CHECK(o.block >= 1, Config, "transform '{}': block size {} < 1", s, o.block);
  CATQ_CHECK(o.damping >= 0, Config, "transform '{}': damping {} < 0", s, o.damping);
  CATQ_CHECK(o.grid >= 1 && o.grid <= 1000, Config, "transform '{}': grid {} outside 1..1000", s, o.grid);
  return o;
}

bool llm_transform_needs_stats(const LlmTransformOptions& o) {
  return o.method == "smoothquant" || o.method == "rms" || o.method == "blockcat" || o.method == "awq";
}

int64_t llm_transform_stats_block(const LlmTransformOptions& o) {
  if (o.method == "blockcat") return o.block;
  if (o.method == "awq") return kAwqStatsBlock;
  return o.method == "smoothquant" || o.method == "rms" ? 1 : 0;
}

LlmBlockTransformer::LlmBlockTransformer(LlamaModel& m, const LlmTransformOptions& o, WeightQuantizer q)
    : m_(m), o_(o), q_awq_(std::move(q)) {
  CATQ_CHECK(o.method != "awq" || q_awq_, Usage, "transform awq searches its scales under the weights' quantizer: it "
             "needs quantized weights (a --config with weight bits, or --gguf)");
  if (o.method == "blockcat") check_block_cat(m.cfg, o.block);
  if (o.method == "quarot" || o.method == "rotation") {
    kind_ = o.method == "quarot" ? RotationKind::Hadamard : RotationKind::RandomOrthogonal;
    q_ = quarot_residual_rotation(m.cfg, kind_, o.seed);
    apply_quarot_ends(m, q_);
  }
}

void LlmBlockTransformer::block(int64_t l, const BlockStats* stats) {
  const std::string& k = o_.method;
  CATQ_CHECK(!llm_transform_needs_stats(o_) || (stats && stats->attn.count > 0), Usage,
             "LLM transform {}: block {} has no calibration statistics", k, l);
  if (k == "quarot" || k == "rotation") apply_quarot_block(m_, l, q_, kind_, o_.seed);
  else if (k == "smoothquant") apply_smoothquant_block(m_, l, *stats, o_.alpha);
  else if (k == "rms") apply_rms_balance_block(m_, l, *stats);
  else if (k == "blockcat") apply_block_cat_block(m_, l, *stats, o_.block, o_.damping, o_.hadamard_after, o_.seed);
  else if (k == "awq") report_.push_back(apply_awq_block(m_, l, *stats, q_awq_, {o_.grid}));
}

nlohmann::json apply_llm_transform(LlamaModel& m, const std::vector<BlockStats>& stats, const LlmTransformOptions& o,
                                   const WeightQuantizer& q) {
  if (o.method == "none") return nlohmann::json::array();
  if (llm_transform_needs_stats(o)) check_llama_stats(stats, m);
  LlmBlockTransformer t(m, o, q);
  for (int64_t l = 0; l < m.cfg.n_layers; ++l) t.block(l, llm_transform_needs_stats(o) ? &stats[l] : nullptr);
  return t.report();
}

}  // namespace catq

#include "io/llama_config_json.h"

#include "core/error.h"
#include "core/json_read.h"
#include "llm/llama_tensors.h"

namespace catq {

using json = nlohmann::json;

json llama_config_to_json(const LlamaConfig& c) {
  json j = {{"arch", llama_arch_traits(c.arch).gguf},
            {"dim", c.dim},
            {"hidden_dim", c.hidden_dim},
            {"n_layers", c.n_layers},
            {"n_heads", c.n_heads},
            {"n_kv_heads", c.n_kv_heads},
            {"vocab_size", c.vocab_size},
            {"seq_len", c.seq_len},
            {"head_dim", c.head_dim},
            {"rope_theta", c.rope_theta},
            {"norm_eps", c.norm_eps},
            {"tied_head", c.tied_head},
            {"sliding_window", c.sliding_window}};
  const RopeScaling& r = c.rope_scaling;
  if (r.type != "none")
    j["rope_scaling"] = {{"type", r.type},
                         {"factor", r.factor},
                         {"low_freq_factor", r.low_freq_factor},
                         {"high_freq_factor", r.high_freq_factor},
                         {"original_max_position", r.original_max_position},
                         {"factors", r.factors}};
  return j;
}

LlamaConfig llama_config_from_json(const json& j, const std::string& source) {
  try {
    LlamaConfig c;
    const std::string arch = j.value("arch", std::string("llama"));
    const LlamaArchTraits* t = llama_arch_from_gguf(arch);
    CATQ_CHECK(t != nullptr, Format, "{}: model config arch \"{}\" is not one of {}", source, arch,
               llama_supported_archs(false));
    c.arch = t->arch;
    c.dim = json_int<int64_t>(j.at("dim"));
    c.hidden_dim = json_int<int64_t>(j.at("hidden_dim"));
    c.n_layers = json_int<int64_t>(j.at("n_layers"));
    c.n_heads = json_int<int64_t>(j.at("n_heads"));
    c.n_kv_heads = json_int<int64_t>(j.at("n_kv_heads"));
    c.vocab_size = json_int<int64_t>(j.at("vocab_size"));
    c.seq_len = json_int<int64_t>(j.at("seq_len"));
    c.head_dim = json_int<int64_t>(j.at("head_dim"));
    c.rope_theta = j.at("rope_theta").get<double>();
    c.norm_eps = j.at("norm_eps").get<double>();
    c.tied_head = j.at("tied_head").get<bool>();
    c.sliding_window = j.contains("sliding_window") ? json_int<int64_t>(j.at("sliding_window")) : 0;
    if (j.contains("rope_scaling")) {
      const json& r = j.at("rope_scaling");
      c.rope_scaling.type = r.at("type").get<std::string>();
      c.rope_scaling.factor = r.at("factor").get<double>();
      c.rope_scaling.low_freq_factor = r.at("low_freq_factor").get<double>();
      c.rope_scaling.high_freq_factor = r.at("high_freq_factor").get<double>();
      c.rope_scaling.original_max_position = json_int<int64_t>(r.at("original_max_position"));
      c.rope_scaling.factors = r.at("factors").get<std::vector<double>>();
    }
    return c;
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: model config: {}", source, e.what());
  }
}

}  // namespace catq

#include "io/llama_config_json.h"

#include "core/error.h"
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
    c.dim = j.at("dim").get<int64_t>();
    c.hidden_dim = j.at("hidden_dim").get<int64_t>();
    c.n_layers = j.at("n_layers").get<int64_t>();
    c.n_heads = j.at("n_heads").get<int64_t>();
    c.n_kv_heads = j.at("n_kv_heads").get<int64_t>();
    c.vocab_size = j.at("vocab_size").get<int64_t>();
    c.seq_len = j.at("seq_len").get<int64_t>();
    c.head_dim = j.at("head_dim").get<int64_t>();
    c.rope_theta = j.at("rope_theta").get<double>();
    c.norm_eps = j.at("norm_eps").get<double>();
    c.tied_head = j.at("tied_head").get<bool>();
    c.sliding_window = j.value("sliding_window", int64_t{0});
    if (j.contains("rope_scaling")) {
      const json& r = j.at("rope_scaling");
      c.rope_scaling.type = r.at("type").get<std::string>();
      c.rope_scaling.factor = r.at("factor").get<double>();
      c.rope_scaling.low_freq_factor = r.at("low_freq_factor").get<double>();
      c.rope_scaling.high_freq_factor = r.at("high_freq_factor").get<double>();
      c.rope_scaling.original_max_position = r.at("original_max_position").get<int64_t>();
      c.rope_scaling.factors = r.at("factors").get<std::vector<double>>();
    }
    return c;
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: model config: {}", source, e.what());
  }
}

}  // namespace catq

// Quantization configs are data: a JSON file or a compact string ("w4a4", "w8a8", "w4a16g128-mse-fl8") that
// say, per layer, which QuantSpec its weight and its input activation use. Format: docs/quant_config.md.
//
// Resolution for one layer: defaults → first_layer rule (if the layer is the first) → last_layer rule (if last)
// → every matching override, in file order. Each rule is a *patch*: the fields it names replace the current
// ones, the rest are kept; a null patch, {"enabled": false} or {"bits": 32} means floating point.
#pragma once
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quant/quantizer.h"
#include "quant/quant_context.h"

namespace catq {

// The weight and input specs of one layer.
struct LayerSpecs {
  QuantSpec weight = QuantSpec::fp();
  QuantSpec input = QuantSpec::fp();
};

// Academic defaults: weights per-output-channel (axis 0) symmetric signed min-max; activations per-tensor
// asymmetric unsigned (zero-point, so ReLU outputs use the whole range) min-max.
QuantSpec default_weight_spec(int bits);
QuantSpec default_input_spec(int bits);

// Applies a JSON patch (object, or null = floating point) to `spec`; `where` names the file and field path
// in errors ("cfg.json: overrides[2].weight"). Throws Error(Config) for unknown keys, wrong types, bad values.
QuantSpec apply_spec_patch(const QuantSpec& spec, const nlohmann::json& patch, const std::string& where);
// All fields of a spec as JSON (round-trips through apply_spec_patch).
nlohmann::json spec_to_json(const QuantSpec& spec);

struct QuantConfig {
  // A patch for a layer's weight and / or input. Absent (nullopt) = leave as is; JSON null = floating point.
  struct Rule {
    std::string pattern;  // overrides: glob (fnmatch, whole name) or, when is_regex, ECMAScript regex (search)
    bool is_regex = false;
    std::optional<nlohmann::json> weight, input;
    std::shared_ptr<std::regex> re;  // compiled pattern when is_regex
    bool matches(const std::string& layer_name) const;
  };

  std::string source = "<built-in>";  // file name or compact string, used in error messages
  LayerSpecs defaults;                 // floating point unless configured
  std::optional<Rule> first_layer, last_layer;
  std::vector<Rule> overrides;
  bool fold_bn = true;                 // fold BatchNorm into the preceding conv before quantizing (executor)
  // Llama KV cache: keys (after RoPE) and values, quantized dynamically per position and head over the head
  // dimension (granularity token); floating point unless configured ("kv_cache" in JSON, -kv<bits> compact).
  QuantSpec kv_cache = QuantSpec::fp();
  // Llama token-embedding table: the rows a forward gathers are fake-quantized row by row (granularity channel,
  // axis 0 = one scale per token row; or groups along the embedding dimension), so quantizing the gathered rows
  // equals quantizing the table. Floating point unless configured ("embedding" in JSON, -emb<bits> compact).
  QuantSpec embedding = QuantSpec::fp();
  uint64_t seed = 0;                   // stochastic rounding

  static QuantConfig fp();
  // Parses JSON text; `source` names it in errors. Error(Config) naming the source and the field.
  static QuantConfig from_json(const std::string& text, const std::string& source);
  static QuantConfig from_file(const std::string& path);  // Error(Io) when unreadable
  // Compact form: "fp" or w<B>a<B>[g<N>][-token...] (see docs/quant_config.md).
  static QuantConfig from_string(const std::string& compact);
  // A path to an existing file / a name ending in ".json" → from_file, else from_string.
  static QuantConfig load(const std::string& file_or_string);

  // The specs of one layer (not yet checked against its weight shape; SimQuant::bind does that).
  LayerSpecs resolve(const LayerInfo& layer) const;
  nlohmann::json to_json() const;
};

}  // namespace catq

#include "sim/quant_config.h"

#include <fnmatch.h>

#include <cctype>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_read.h"

namespace catq {

using nlohmann::json;

QuantSpec default_weight_spec(int bits) {
  QuantSpec s;
  s.bits = bits;
  s.is_signed = true;
  s.symmetric = true;
  s.granularity = Granularity::PerChannel;
  s.axis = 0;
  s.observer = ObserverKind::MinMax;
  return s;
}

QuantSpec default_input_spec(int bits) {
  QuantSpec s;
  s.bits = bits;
  s.is_signed = false;
  s.symmetric = false;
  s.granularity = Granularity::PerTensor;
  s.observer = ObserverKind::MinMax;
  return s;
}

// ---- Spec patches ----------------------------------------------------------------------------------------------

namespace {

const char* kSpecKeys =
    "enabled, bits, signed, symmetric, restricted, granularity, group_size, axis, observer, percentile, momentum, "
    "mse_p, mse_grid, kl_bins, max_samples, clip_ratio, rounding, scheme, kmeans_iters";

// "file.json: defaults.weight" + "bits" → "file.json: defaults.weight.bits"; "file.json:" + "seed" → "file.json: seed".
std::string field(const std::string& where, const std::string& key) {
  return where.empty() || where.back() == ':' ? where + " " + key : where + "." + key;
}

bool get_bool(const json& v, const std::string& where, const std::string& key) {
  CATQ_CHECK(v.is_boolean(), Config, "{}: expected true or false, got {}", field(where, key), v.dump());
  return v.get<bool>();
}
int64_t get_int(const json& v, const std::string& where, const std::string& key, int64_t lo, int64_t hi) {
  CATQ_CHECK(v.is_number_integer(), Config, "{}: expected an integer, got {}", field(where, key), v.dump());
  int64_t x = v.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v.get<uint64_t>(), INT64_MAX))
                                     : v.get<int64_t>();
  CATQ_CHECK(x >= lo && x <= hi, Config, "{}: {} is out of range, expected {}..{}", field(where, key), x, lo, hi);
  return x;
}
double get_num(const json& v, const std::string& where, const std::string& key) {
  CATQ_CHECK(v.is_number(), Config, "{}: expected a number, got {}", field(where, key), v.dump());
  return v.get<double>();
}
std::string get_str(const json& v, const std::string& where, const std::string& key) {
  CATQ_CHECK(v.is_string(), Config, "{}: expected a string, got {}", field(where, key), v.dump());
  return v.get<std::string>();
}

}  // namespace

QuantSpec apply_spec_patch(const QuantSpec& base, const json& patch, const std::string& where) {
  QuantSpec s = base;
  if (patch.is_null()) {
    s.enabled = false;
    return s;
  }
  CATQ_CHECK(patch.is_object(), Config, "{}: expected an object or null, got {}", where, patch.dump());
  bool disabled = false;
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k == "enabled") {
      disabled = disabled || !get_bool(v, where, k);
    } else if (k == "bits") {
      int64_t b = get_int(v, where, k, INT32_MIN, INT32_MAX);
      if (b == 32) disabled = true;
      else s.bits = static_cast<int>(b);
    } else if (k == "signed") {
      s.is_signed = get_bool(v, where, k);
    } else if (k == "symmetric") {
      s.symmetric = get_bool(v, where, k);
    } else if (k == "restricted") {
      s.restricted = get_bool(v, where, k);
    } else if (k == "granularity") {
      auto g = parse_granularity(get_str(v, where, k));
      CATQ_CHECK(g, Config, "{}.granularity: unknown value {}, expected \"tensor\", \"channel\", \"group\" or \"token\"",
                 where, v.dump());
      if (*g != s.granularity && !patch.contains("axis")) s.axis.reset();  // axis means something else now
      if (*g != Granularity::PerGroup && !patch.contains("group_size")) s.group_size = 0;
      s.granularity = *g;
    } else if (k == "group_size") {
      s.group_size = get_int(v, where, k, 0, INT32_MAX);
      if (s.group_size > 0 && !patch.contains("granularity")) {
        if (s.granularity != Granularity::PerGroup && !patch.contains("axis")) s.axis.reset();
        s.granularity = Granularity::PerGroup;
      }
    } else if (k == "axis") {
      if (v.is_null()) s.axis.reset();
      else s.axis = static_cast<int>(get_int(v, where, k, -8, 7));
    } else if (k == "observer") {
      auto o = parse_observer(get_str(v, where, k));
      CATQ_CHECK(o, Config, "{}.observer: unknown value {}, expected \"minmax\", \"ema\", \"percentile\", \"mse\" or \"kl\"",
                 where, v.dump());
      s.observer = *o;
    } else if (k == "percentile") {
      s.percentile = get_num(v, where, k);
    } else if (k == "momentum") {
      s.momentum = get_num(v, where, k);
    } else if (k == "mse_p") {
      s.mse_p = get_num(v, where, k);
    } else if (k == "mse_grid") {
      s.mse_grid = static_cast<int>(get_int(v, where, k, INT32_MIN, INT32_MAX));
    } else if (k == "kl_bins") {
      s.kl_bins = static_cast<int>(get_int(v, where, k, INT32_MIN, INT32_MAX));
    } else if (k == "max_samples") {
      s.max_samples = get_int(v, where, k, INT64_MIN, INT64_MAX);
    } else if (k == "clip_ratio") {
      s.clip_ratio = get_num(v, where, k);
    } else if (k == "rounding") {
      auto r = parse_rounding(get_str(v, where, k));
      CATQ_CHECK(r, Config, "{}.rounding: unknown value {}, expected \"nearest\" or \"stochastic\"", where, v.dump());
      s.rounding = *r;
    } else if (k == "scheme") {
      auto sc = parse_scheme(get_str(v, where, k));
      CATQ_CHECK(sc, Config, "{}.scheme: unknown value {}, expected \"uniform\", \"kmeans\", \"binary\" or \"ternary\"",
                 where, v.dump());
      s.scheme = *sc;
      if (!patch.contains("bits")) {  // binary / ternary imply their bit width
        if (*sc == Scheme::Binary) s.bits = 1;
        if (*sc == Scheme::Ternary) s.bits = 2;
      }
    } else if (k == "kmeans_iters") {
      s.kmeans_iters = static_cast<int>(get_int(v, where, k, INT32_MIN, INT32_MAX));
    } else {
      fail(ErrorKind::Config, "{}: unknown key \"{}\", expected one of: {}", where, k, kSpecKeys);
    }
  }
  s.enabled = !disabled;
  s.validate(where);
  return s;
}

json spec_to_json(const QuantSpec& s) {
  json j;
  j["enabled"] = s.enabled;
  j["bits"] = s.bits;
  j["signed"] = s.is_signed;
  j["symmetric"] = s.symmetric;
  j["restricted"] = s.restricted;
  j["granularity"] = to_string(s.granularity);
  j["group_size"] = s.group_size;
  j["axis"] = s.axis ? json(*s.axis) : json(nullptr);
  j["observer"] = to_string(s.observer);
  j["percentile"] = s.percentile;
  j["momentum"] = s.momentum;
  j["mse_p"] = s.mse_p;
  j["mse_grid"] = s.mse_grid;
  j["kl_bins"] = s.kl_bins;
  j["max_samples"] = s.max_samples;
  j["clip_ratio"] = s.clip_ratio;
  j["rounding"] = to_string(s.rounding);
  j["scheme"] = to_string(s.scheme);
  j["kmeans_iters"] = s.kmeans_iters;
  return j;
}

// ---- Rules -------------------------------------------------------------------------------------------------------

bool QuantConfig::Rule::matches(const std::string& name) const {
  if (is_regex) return re && std::regex_search(name, *re);
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

namespace {

// Parses {"weight": patch, "input": patch} (+ "pattern"/"regex" for overrides). Patches are checked by applying
// them to the defaults so a typo fails at load time, not at the first forward.
QuantConfig::Rule parse_rule(const json& j, const std::string& where, bool needs_pattern, const LayerSpecs& defaults) {
  CATQ_CHECK(j.is_object(), Config, "{}: expected an object, got {}", where, j.dump());
  QuantConfig::Rule r;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k == "weight") {
      r.weight = it.value();
      apply_spec_patch(defaults.weight, it.value(), where + ".weight");
    } else if (k == "input") {
      r.input = it.value();
      apply_spec_patch(defaults.input, it.value(), where + ".input");
    } else if (needs_pattern && (k == "pattern" || k == "regex")) {
      CATQ_CHECK(r.pattern.empty(), Config, "{}: give either \"pattern\" (glob) or \"regex\", not both", where);
      r.pattern = get_str(it.value(), where, k);
      CATQ_CHECK(!r.pattern.empty(), Config, "{}.{}: empty pattern", where, k);
      r.is_regex = k == "regex";
      if (r.is_regex) {
        try {
          r.re = std::make_shared<std::regex>(r.pattern, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          fail(ErrorKind::Config, "{}.regex: invalid regular expression \"{}\": {}", where, r.pattern, e.what());
        }
      }
    } else if (k == "comment") {
      // free text
    } else {
      fail(ErrorKind::Config, "{}: unknown key \"{}\", expected {}", where, k,
           needs_pattern ? "\"pattern\" or \"regex\", \"weight\", \"input\", \"comment\""
                         : "\"weight\", \"input\", \"comment\"");
    }
  }
  CATQ_CHECK(!needs_pattern || !r.pattern.empty(), Config,
             "{}: missing \"pattern\" (a glob on the layer name) or \"regex\"", where);
  return r;
}

json rule_to_json(const QuantConfig::Rule& r, bool with_pattern) {
  json j = json::object();
  if (with_pattern) j[r.is_regex ? "regex" : "pattern"] = r.pattern;
  if (r.weight) j["weight"] = *r.weight;
  if (r.input) j["input"] = *r.input;
  return j;
}

}  // namespace

// ---- Config -------------------------------------------------------------------------------------------------------

QuantConfig QuantConfig::fp() {
  QuantConfig c;
  c.source = "fp";
  c.defaults.weight = default_weight_spec(8);
  c.defaults.weight.enabled = false;
  c.defaults.input = default_input_spec(8);
  c.defaults.input.enabled = false;
  return c;
}

QuantConfig QuantConfig::from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = parse_json(text);
  } catch (const json::exception& e) {
    fail(ErrorKind::Config, "{}: invalid JSON: {}", source, e.what());
  }
  CATQ_CHECK(j.is_object(), Config, "{}: expected a JSON object at the top level", source);
  QuantConfig c = fp();
  c.source = source;
  // "defaults" first: rules are checked against it.
  if (j.contains("defaults")) {
    const json& d = j["defaults"];
    CATQ_CHECK(d.is_object(), Config, "{}: defaults: expected an object with \"weight\" and/or \"input\"", source);
    for (auto it = d.begin(); it != d.end(); ++it) {
      const std::string where = fmt::format("{}: defaults.{}", source, it.key());
      // A named spec starts from the academic default (enabled); absent means floating point.
      if (it.key() == "weight") c.defaults.weight = apply_spec_patch(default_weight_spec(8), it.value(), where);
      else if (it.key() == "input") c.defaults.input = apply_spec_patch(default_input_spec(8), it.value(), where);
      else if (it.key() != "comment")
        fail(ErrorKind::Config, "{}: defaults: unknown key \"{}\", expected \"weight\" or \"input\"", source, it.key());
    }
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k == "defaults" || k == "description" || k == "comment") continue;
    if (k == "first_layer" || k == "last_layer") {
      std::optional<Rule> r;
      if (!v.is_null()) r = parse_rule(v, fmt::format("{}: {}", source, k), false, c.defaults);
      (k == "first_layer" ? c.first_layer : c.last_layer) = r;
    } else if (k == "overrides") {
      CATQ_CHECK(v.is_array(), Config, "{}: overrides: expected an array of {{\"pattern\", \"weight\", \"input\"}}",
                 source);
      for (size_t i = 0; i < v.size(); ++i)
        c.overrides.push_back(parse_rule(v[i], fmt::format("{}: overrides[{}]", source, i), true, c.defaults));
    } else if (k == "fold_bn") {
      c.fold_bn = get_bool(v, source + ":", k);
    } else if (k == "kv_cache") {
      if (!v.is_null()) {
        QuantSpec kv = default_input_spec(8);
        kv.granularity = Granularity::PerToken;
        c.kv_cache = apply_spec_patch(kv, v, fmt::format("{}: kv_cache", source));
        CATQ_CHECK(!c.kv_cache.enabled || (c.kv_cache.granularity == Granularity::PerToken &&
                                           c.kv_cache.scheme == Scheme::Uniform),
                   Config, "{}: kv_cache: must be uniform with granularity \"token\" (per position and head)", source);
      }
    } else if (k == "embedding") {
      if (!v.is_null()) {
        c.embedding = apply_spec_patch(default_weight_spec(8), v, fmt::format("{}: embedding", source));
        const QuantSpec& e = c.embedding;
        CATQ_CHECK(!e.enabled || ((e.granularity == Granularity::PerChannel && e.resolved_axis(2) == 0) ||
                                  (e.granularity == Granularity::PerGroup && e.resolved_axis(2) == 1)),
                   Config, "{}: embedding: granularity must be \"channel\" (axis 0: one scale per token row) or "
                   "\"group\" (along the embedding dimension): a row's quantization may not depend on other rows",
                   source);
      }
    } else if (k == "seed") {
      c.seed = static_cast<uint64_t>(get_int(v, source + ":", k, 0, INT64_MAX));
    } else {
      fail(ErrorKind::Config,
           "{}: unknown key \"{}\", expected defaults, first_layer, last_layer, overrides, fold_bn, kv_cache, embedding, "
           "seed, "
           "description",
           source, k);
    }
  }
  return c;
}

QuantConfig QuantConfig::from_file(const std::string& path) { return from_json(read_file_text(path), path); }

QuantConfig QuantConfig::from_string(const std::string& compact) {
  std::string s;
  for (char ch : compact)
    if (!std::isspace(static_cast<unsigned char>(ch))) s += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  QuantConfig c = fp();
  c.source = compact;
  if (s == "fp" || s == "fp32" || s == "none") return c;
  const std::string usage =
      "expected w<bits>a<bits>[g<group>][-suffix...], e.g. w4a4, w8a8, w4a16g128, w2a2-mse-fl8 "
      "(see docs/quant_config.md)";
  static const std::regex re(R"(^w(\d{1,3})a(\d{1,3})(?:g(\d{1,6}))?((?:[-_:+][a-z0-9.]+)*)$)");
  std::smatch m;
  CATQ_CHECK(std::regex_match(s, m, re), Config, "quantization string '{}': not understood, {}", compact, usage);
  auto bits_of = [&](const std::string& t, const char* what) {
    // The regex bounds w / a to 3 digits; suffixes (kv, emb, fl) are bounded here, so std::stoi cannot overflow.
    const int b = t.size() <= 3 ? std::stoi(t) : -1;
    CATQ_CHECK((b >= 1 && b <= 8) || b == 16 || b == 32, Config,
               "quantization string '{}': {} bits {} not supported, expected 1..8, or 16/32 for floating point",
               compact, what, t);
    return b;
  };
  const int wb = bits_of(m[1].str(), "weight"), ab = bits_of(m[2].str(), "activation");
  if (wb <= 8) {
    c.defaults.weight = default_weight_spec(wb);
    if (wb == 1) c.defaults.weight.scheme = Scheme::Binary;  // 1-bit weights: α·sign(w)
  }
  if (ab <= 8) c.defaults.input = default_input_spec(ab);
  if (m[3].matched) {
    CATQ_CHECK(wb <= 8, Config, "quantization string '{}': a weight group size needs quantized weights", compact);
    int64_t g = std::stoll(m[3].str());
    CATQ_CHECK(g > 0, Config, "quantization string '{}': group size must be > 0", compact);
    c.defaults.weight.granularity = Granularity::PerGroup;
    c.defaults.weight.group_size = g;
    c.defaults.weight.axis.reset();
  }
  // Suffix tokens.
  std::string rest = m[4].str();
  std::vector<std::string> toks;
  std::string cur;
  for (char ch : rest) {
    if (ch == '-' || ch == '_' || ch == ':' || ch == '+') {
      if (!cur.empty()) toks.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) toks.push_back(cur);
  for (const std::string& t : toks) {
    QuantSpec& w = c.defaults.weight;
    QuantSpec& a = c.defaults.input;
    if (auto o = parse_observer(t)) {
      CATQ_CHECK(a.enabled, Config, "quantization string '{}': observer '{}' needs quantized activations", compact, t);
      a.observer = *o;
    } else if (t.size() > 1 && t[0] == 'w' && parse_observer(t.substr(1))) {
      CATQ_CHECK(w.enabled, Config, "quantization string '{}': '{}' needs quantized weights", compact, t);
      w.observer = *parse_observer(t.substr(1));
    } else if (t == "tok" || t == "token") {
      CATQ_CHECK(a.enabled, Config, "quantization string '{}': '{}' needs quantized activations", compact, t);
      a.granularity = Granularity::PerToken;
    } else if (t == "sym" || t == "asym") {
      CATQ_CHECK(a.enabled, Config, "quantization string '{}': '{}' needs quantized activations", compact, t);
      a.symmetric = t == "sym";
      a.is_signed = a.symmetric;  // symmetric activations use the signed range
    } else if (t == "wsym" || t == "wasym") {
      CATQ_CHECK(w.enabled && w.scheme == Scheme::Uniform, Config,
                 "quantization string '{}': '{}' needs uniform quantized weights", compact, t);
      w.symmetric = t == "wsym";  // asymmetric weights keep the signed range, with a zero-point
    } else if (auto sc = parse_scheme(t); sc && *sc != Scheme::Uniform) {
      CATQ_CHECK(w.enabled, Config, "quantization string '{}': '{}' needs quantized weights", compact, t);
      const int need = *sc == Scheme::Binary ? 1 : *sc == Scheme::Ternary ? 2 : wb;
      CATQ_CHECK(wb == need, Config, "quantization string '{}': scheme {} needs w{}", compact, t, need);
      w.scheme = *sc;
    } else if (t.size() > 2 && t.rfind("kv", 0) == 0 && std::all_of(t.begin() + 2, t.end(), ::isdigit)) {
      c.kv_cache = default_input_spec(bits_of(t.substr(2), "KV cache"));
      c.kv_cache.granularity = Granularity::PerToken;  // asymmetric per position and head, dynamic
    } else if (t.size() > 3 && t.rfind("emb", 0) == 0 && std::all_of(t.begin() + 3, t.end(), ::isdigit)) {
      c.embedding = default_weight_spec(bits_of(t.substr(3), "embedding"));  // per token row, symmetric
    } else if (t.size() > 2 && t.rfind("fl", 0) == 0 && std::all_of(t.begin() + 2, t.end(), ::isdigit)) {
      int b = bits_of(t.substr(2), "first/last layer");
      Rule r;
      r.weight = json{{"bits", b}};
      if (a.enabled) r.input = json{{"bits", b}};
      c.first_layer = r;
      c.last_layer = r;
    } else {
      fail(ErrorKind::Config,
           "quantization string '{}': unknown suffix '{}', expected an observer (minmax, ema, percentile, mse, kl), "
           "w<observer> (e.g. wmse), tok, sym, asym, wsym, wasym, kmeans, binary, ternary, kv<bits> or fl<bits>",
           compact, t);
    }
  }
  c.defaults.weight.validate(fmt::format("quantization string '{}': weight", compact));
  c.defaults.input.validate(fmt::format("quantization string '{}': input", compact));
  return c;
}

QuantConfig QuantConfig::load(const std::string& arg) {
  const bool looks_like_file = arg.size() > 5 && arg.compare(arg.size() - 5, 5, ".json") == 0;
  if (looks_like_file || file_exists(arg)) return from_file(arg);
  try {
    return from_string(arg);
  } catch (const Error& e) {
    if (arg.find('/') != std::string::npos || arg.find('.') != std::string::npos)
      fail(ErrorKind::Config, "'{}' is not an existing config file, and {}", arg, e.what());
    throw;
  }
}

LayerSpecs QuantConfig::resolve(const LayerInfo& layer) const {
  LayerSpecs r = defaults;
  auto apply = [&](const Rule& rule, const std::string& where) {
    if (rule.weight) r.weight = apply_spec_patch(r.weight, *rule.weight, where + ".weight");
    if (rule.input) r.input = apply_spec_patch(r.input, *rule.input, where + ".input");
  };
  if (layer.is_first && first_layer) apply(*first_layer, fmt::format("{}: first_layer", source));
  if (layer.is_last && last_layer) apply(*last_layer, fmt::format("{}: last_layer", source));
  for (size_t i = 0; i < overrides.size(); ++i)
    if (overrides[i].matches(layer.name)) apply(overrides[i], fmt::format("{}: overrides[{}]", source, i));
  return r;
}

json QuantConfig::to_json() const {
  json j;
  json d = json::object();
  d["weight"] = defaults.weight.enabled ? spec_to_json(defaults.weight) : json(nullptr);
  d["input"] = defaults.input.enabled ? spec_to_json(defaults.input) : json(nullptr);
  j["defaults"] = d;
  j["first_layer"] = first_layer ? rule_to_json(*first_layer, false) : json(nullptr);
  j["last_layer"] = last_layer ? rule_to_json(*last_layer, false) : json(nullptr);
  j["overrides"] = json::array();
  for (const Rule& r : overrides) j["overrides"].push_back(rule_to_json(r, true));
  j["fold_bn"] = fold_bn;
  if (kv_cache.enabled) j["kv_cache"] = spec_to_json(kv_cache);
  if (embedding.enabled) j["embedding"] = spec_to_json(embedding);
  j["seed"] = seed;
  return j;
}

}  // namespace catq

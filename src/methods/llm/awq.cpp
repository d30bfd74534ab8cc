#include "methods/llm/awq.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "llm/llama_tensors.h"
#include "methods/llm/transform_ops.h"

namespace catq {

namespace {

// tr(ΔW Σ ΔWᵀ) for ΔW [out, d] and Σ [d, d] or its diagonal blocks [d/k, k, k].
double output_error(const at::Tensor& dw, const at::Tensor& sigma) {
  if (sigma.dim() == 2) return (at::matmul(dw, sigma) * dw).sum(at::kDouble).item<double>();
  const int64_t nb = sigma.size(0), k = sigma.size(1);
  const at::Tensor d = dw.reshape({dw.size(0), nb, k}).transpose(0, 1);  // [nb, out, k]
  return (at::bmm(d, sigma) * d).sum(at::kDouble).item<double>();
}

// s = a^α normalised so that max(s)·min(s) = 1 (AWQ's normalisation: the scales stay centred around 1).
at::Tensor scales(const at::Tensor& a, double alpha) {
  at::Tensor s = a.pow(alpha);
  return s / (s.max() * s.min()).sqrt();
}

struct Consumer {
  int64_t linear;
  at::Tensor w;  // fp32 [out, in]
};

}  // namespace

WeightQuantizer simquant_weight_quantizer(const SimQuant& sq, const std::vector<LayerInfo>& layers) {
  std::vector<QuantSpec> specs;
  for (const LayerInfo& li : layers) specs.push_back(sq.layer(li.name).weight_spec);
  return [specs](int64_t linear, const at::Tensor& w) {
    const QuantSpec& s = specs.at(static_cast<size_t>(linear));
    return s.enabled ? fake_quantize(w, compute_params(s, w), s.rounding) : w;
  };
}

nlohmann::json apply_awq_block(LlamaModel& m, int64_t l, const BlockStats& stats, const WeightQuantizer& q,
                               const AwqOptions& o) {
  at::NoGradGuard ng;
  CATQ_CHECK(q, Usage, "AWQ: block {}: no weight quantizer (AWQ searches its scales under the weights' quantizer)", l);
  CATQ_CHECK(o.grid >= 1, Config, "AWQ: grid {} < 1", o.grid);
  LlamaBlock& b = m.blocks.at(l);
  const int64_t base = l * kLinearsPerBlock;
  auto f32 = [](const at::Tensor& t) { return t.to(at::kFloat).contiguous(); };
  nlohmann::json report = nlohmann::json::object();

  // One search: the consumers' weights with columns scaled by s, quantized, unscaled; error under err(ΔW).
  auto search = [&](const std::vector<Consumer>& cs, const at::Tensor& a, const std::function<double(int64_t, const at::Tensor&)>& err,
                    const char* name) {
    double best = -1, best_alpha = 0, first = 0;
    at::Tensor best_s;
    for (int i = 0; i <= o.grid; ++i) {
      const double alpha = static_cast<double>(i) / o.grid;
      const at::Tensor s = scales(a, alpha);
      double total = 0;
      for (const Consumer& c : cs) total += err(c.linear, q(c.linear, c.w * s.unsqueeze(0)) / s.unsqueeze(0) - c.w);
      if (i == 0) first = total;
      if (best < 0 || total < best) best = total, best_alpha = alpha, best_s = s;
    }
    report[name] = {{"alpha", best_alpha}, {"error_before", first}, {"error_after", best}};
    return best_alpha > 0 ? best_s : at::Tensor();
  };

  // attn (q, k, v), ffn (gate, up), down: one Σ for the position.
  struct Site {
    TransformPosition pos;
    const PositionStats* st;
    std::vector<int> linears;
  };
  const Site sites[] = {{TransformPosition::Attn, &stats.attn, {kLinQ, kLinK, kLinV}},
                        {TransformPosition::Ffn, &stats.ffn, {kLinGate, kLinUp}},
                        {TransformPosition::Down, &stats.down, {kLinDown}}};
  for (const Site& site : sites) {
    CATQ_CHECK(site.st->count > 0, Usage, "AWQ: block {} {}: no calibration statistics", l, to_string(site.pos));
    const at::Tensor sigma = site.st->sigma.to(at::kFloat);
    const at::Tensor a = sigma_diagonal(site.st->sigma).to(at::kFloat).clamp_min(1e-12).sqrt();
    std::vector<Consumer> cs;
    for (int j : site.linears) cs.push_back({base + j, f32(b.*llama_block_linear(j).member)});
    const at::Tensor s = search(cs, a, [&](int64_t, const at::Tensor& dw) { return output_error(dw, sigma); },
                                to_string(site.pos));
    if (s.defined()) apply_diagonal(m, l, site.pos, 1.0 / s);
  }

  // o: attn_output's columns per query head, each head reading its KV head's statistics; scaled through V per KV
  // head, one α for the block.
  const int64_t hd = m.cfg.hd(), kv = m.cfg.n_kv_heads, rep = m.cfg.n_heads / kv;
  CATQ_CHECK(static_cast<int64_t>(stats.o.size()) == kv, Usage, "AWQ: block {} o: {} KV-head statistics, expected {}", l,
             stats.o.size(), kv);
  std::vector<at::Tensor> sig(kv), ag(kv);
  for (int64_t g = 0; g < kv; ++g) {
    sig[g] = stats.o[g].sigma.to(at::kFloat);
    ag[g] = sigma_diagonal(stats.o[g].sigma).to(at::kFloat).clamp_min(1e-12).sqrt();
  }
  std::vector<at::Tensor> a_heads;
  for (int64_t h = 0; h < m.cfg.n_heads; ++h) a_heads.push_back(ag[h / rep]);
  const at::Tensor a_o = at::cat(a_heads);  // [Q]: each head's channels, its KV head's RMS
  auto o_error = [&](int64_t, const at::Tensor& dw) {
    double e = 0;
    for (int64_t h = 0; h < m.cfg.n_heads; ++h) e += output_error(dw.narrow(1, h * hd, hd).contiguous(), sig[h / rep]);
    return e;
  };
  // The normalisation of scales() over all heads at once keeps one α meaning one thing for every KV head.
  const at::Tensor s_o = search({{base + kLinO, f32(b.wo)}}, a_o, o_error, "o");
  if (s_o.defined())
    for (int64_t g = 0; g < kv; ++g) apply_diagonal(m, l, TransformPosition::O, 1.0 / s_o.narrow(0, g * rep * hd, hd), g);
  return report;
}

}  // namespace catq

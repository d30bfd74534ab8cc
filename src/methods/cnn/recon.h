// Reconstruction-based PTQ (methods.md §2) — one engine, four published methods as presets:
//
//   adaround  layer-wise: learn each weight's rounding (up / down) to reconstruct the layer's output
//             (after its activation) from the quantized model's input; activation steps stay at their
//             MSE initialisation.
//   brecq     block-wise (a residual block is a unit), as BRECQ's code: pass 1 learns rounding with FP
//             activations, pass 2 learns activation step sizes with the rounded weights fixed.
//   qdrop     block-wise, rounding and activation steps learned together; during reconstruction every
//             quantized activation element is replaced by its unquantized value with probability p = 0.5.
//   pdquant   qdrop + the prediction-difference loss: the unit's output runs on through the remaining FP
//             layers to the logits, and KL(softmax(z_FP/T) ‖ softmax(z_Q/T)) / λ_r is added (λ_r = 0.1, T = 4).
//   wca       seed 000's weight-cluster affine (methods.md §3, last paragraph): layer-wise, per-cluster (α, β) of
//             each weight tensor learned against the layer output error with a clipped STE (weight_param.h).
//
// Rounding (AdaRound): Ŵ = s·(clamp(⌊W/s⌋ + h(V) + z, qmin, qmax) − z), h(V) = clamp(σ(V)(ζ−γ) + γ, 0, 1),
// ζ = 1.1, γ = −0.1, V initialised so that h(V) = W/s − ⌊W/s⌋; loss = reconstruction + λ Σ (1 − |2h(V) − 1|^β),
// λ = 0.01, β annealed linearly 20 → 2 after a 20 % warm-up without the rounding term. Adam, lr 3e-3.
// The reconstruction loss is BRECQ's lp_loss: |ŷ − y|^p summed over channels (dim 1), averaged over the rest.
// Activation steps: LSQ-style gradient through round-STE (no gradient scaling, as BRECQ/QDrop), Adam lr 4e-5
// with a cosine decay to 0. Weight scales and zero-points stay at their (MSE) initialisation.
//
// Inputs of a unit come from the quantized model with every earlier unit already reconstructed; targets from
// the FP model on the same images. Both are cached for the whole calibration set and advanced unit by unit.
// Optionally (reinit_act, off by default), before a unit is optimised its layers' activation ranges are
// re-initialised (same observer as the config, MSE) on the quantized model's inputs of 256 calibration images,
// layer by layer, as the BRECQ / QDrop / PD-Quant code initialises activation quantizers on the quantized network;
// here it lowered accuracy (docs/results/cnn_ptq.md), so ranges stay at their FP calibration. QDrop's drop mixes a unit's
// input with the FP model's value of that input, inner activations with their own unquantized values (as the
// QDrop / PD-Quant code); PD-Quant computes its KL on a second forward without drop.
#pragma once
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "methods/cnn/partition.h"
#include "sim/executor.h"
#include "sim/sim_quant.h"

namespace catq {

struct ReconOptions {
  std::string method = "custom";  // name for reports
  ReconGranularity granularity = ReconGranularity::Block;
  int64_t iters = 1000;           // per unit and pass (published: 20,000)
  int64_t batch = 32;
  bool learn_rounding = true;     // learn the weight parameterisation (below); false = keep RTN / committed codes
  std::string weight_param = "adaround";  // "adaround" or "cluster_affine" (weight_param.h)
  int64_t clusters = 4;           // cluster_affine: K clusters per weight tensor
  bool learn_act_scale = true;    // activation step sizes
  bool two_stage = false;         // BRECQ: rounding pass with FP activations, then an activation-step pass
  int64_t act_iters = 0;          // iterations of the activation pass of two_stage (0 = iters / 4, BRECQ's ratio)
  double w_lr = 3e-3, a_lr = 4e-5;
  double round_weight = 0.01;     // λ
  double b_start = 20, b_end = 2, warmup = 0.2;
  double rec_p = 2.0;             // exponent of the reconstruction loss
  double drop_prob = 0.0;         // QDrop: probability an activation element is left unquantized (0.5)
  double pd_weight = 0.0;         // PD-Quant: 1/λ_r (10); 0 = off
  double pd_temperature = 4.0;    // PD-Quant: T
  double drift_weight = 0.0;      // λ_p·Σ(δ − δ0)² on activation steps (the CAT paper's drift regulariser)
  bool reinit_act = false;        // re-initialise each unit's activation ranges on the quantized model's inputs
  int64_t reinit_images = 256;    // ... from this many calibration images (as the PD-Quant code)
  bool keep_best = true;          // a unit whose loss on all calibration images ends above its start is reverted
  uint64_t seed = 0;              // batch sampling and drop masks

  // Error(Config) naming the field for impossible values.
  void validate() const;
};

// The preset of a method name ("adaround", "brecq", "qdrop", "pdquant", "wca"); Error(Config) listing them otherwise.
ReconOptions recon_preset(const std::string& method);
// ReconOptions as data: every field under its own name (granularity "layer" | "block").
NLOHMANN_JSON_SERIALIZE_ENUM(ReconGranularity, {{ReconGranularity::Layer, "layer"}, {ReconGranularity::Block, "block"}})

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(ReconOptions, method, granularity, iters, batch, learn_rounding, weight_param, clusters,
                                   learn_act_scale, two_stage, act_iters, w_lr, a_lr, round_weight, b_start, b_end,
                                   warmup, rec_p, drop_prob, pd_weight, pd_temperature, drift_weight, reinit_act,
                                   reinit_images, keep_best, seed)

// recon_preset(method) with the fields named in `overrides` replaced (e.g. {"iters": 500, "seed": 1}), validated.
// Error(Config) for an unknown field or a value of the wrong type.
ReconOptions recon_options(const std::string& method, const nlohmann::json& overrides);
const std::vector<std::string>& recon_methods();

struct ReconUnitReport {
  std::string name;
  std::string pass;             // "joint", "rounding" or "activations"
  int64_t iters = 0;
  double loss_before = 0;       // reconstruction loss over all calibration inputs with the initial (RTN) params
  double loss_after = 0;        // the same with the learned params (hard rounding)
  bool reverted = false;        // keep_best: the learned params were worse and the starting point was kept
  double seconds = 0;
};
struct ReconReport {
  std::vector<ReconUnitReport> units;
  double seconds = 0;
};

// Reconstructs the quantized model `sq` of `ex` (BN folded; `sq` calibrated by calibrate_rtn, which gives the
// initial weight and activation params). On return every quantized layer's weight in `sq` holds learned integer
// codes (set_quantized_weight) and static input params hold the learned step sizes. calib: float [N, C, H, W].
// Error(Data) when calib has fewer images than one batch; Error(Config) for bad options.
ReconReport reconstruct(const GraphExecutor& ex, SimQuant& sq, const at::Tensor& calib, const ReconOptions& o);

}  // namespace catq

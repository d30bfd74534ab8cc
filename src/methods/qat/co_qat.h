// Compute-optimal QAT planning (methods.md §5, seed 002, arXiv 2509.22935): how much of a training budget the
// quantization-aware phase should take.
//
//   S = D / (N · B/8)                    tokens per parameter-byte of the quantized model
//   f*(S) = exp(−6.7297 / ln S)          the paper's fit of the loss-optimal QAT fraction D_qat / D (MAE 0.09);
//                                        S = 10 → 0.05, 100 → 0.23, 1e3 → 0.38, 1e4 → 0.48, 1e5 → 0.56
//   loss law (constants fitted by the user — the paper's are not published in what we have):
//   L(N, D, B, f) = E + A/N^α + Bc/D^β + θ·2^(−κB) + φ·2^(−χB)/(N^ψ·S_qat^ω) + λ·2^(−μB)/(N^ν·S_fp^ξ·S_qat^ρ)
//   with S_qat = f·S and S_fp = (1 − f)·S (both per byte of the quantized model).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace catq {

// D / (N·bits/8). Error(Config) unless tokens > 0, params > 0 and 1 ≤ bits ≤ 32.
double tokens_per_param_byte(double tokens, double params, double bits);

// exp(−6.7297 / ln S). Error(Config) for S ≤ 1 (the fit is for more tokens than parameter bytes; its limit
// at S → 1⁺ is 0).
double optimal_qat_fraction(double s);

struct QatLossLaw {
  double E = 0, A = 0, alpha = 0, Bc = 0, beta = 0, theta = 0, kappa = 0, phi = 0, chi = 0, psi = 0, omega = 0,
         lambda = 0, mu = 0, nu = 0, xi = 0, rho = 0;

  // Keys E, A, alpha, B, beta, theta, kappa, phi, chi, psi, omega, lambda, mu, nu, xi, rho (all required,
  // finite numbers). Error(Config) naming `source` and the key otherwise.
  static QatLossLaw from_json(const nlohmann::json& j, const std::string& source);
  nlohmann::json to_json() const;

  // L for N parameters, D total tokens, `bits` weight bits and QAT fraction f ∈ (0, 1). Error(Config) outside.
  double predict(double params, double tokens, double bits, double qat_fraction) const;
  // The f minimising predict() (golden-section search on a log-spaced bracket, to 1e-4 in f).
  double best_fraction(double params, double tokens, double bits) const;
};

// The planner's answer for one (N, D, B), with the loss-law predictions when a law is given.
struct QatPlan {
  double params = 0, tokens = 0, bits = 0;
  double s = 0;                  // tokens per parameter-byte
  double fraction = 0;           // f*(S) from the published fit
  double qat_tokens = 0, fp_tokens = 0;
  bool has_law = false;
  double loss_at_fraction = 0;   // L at f*(S)
  double law_best_fraction = 0;  // argmin_f L
  double law_best_loss = 0;
  double loss_at_10pct = 0;      // the old "10 % QAT" rule
};
QatPlan plan_qat(double params, double tokens, double bits, const QatLossLaw* law = nullptr);
nlohmann::json to_json(const QatPlan& p);

// One training run of the scaling-law harness: N parameters, D tokens, weight bits, QAT fraction f ∈ (0, 1), and
// the final validation loss (nats per token) of the quantized model.
struct QatRun {
  double params = 0, tokens = 0, bits = 0, fraction = 0, loss = 0;
};

struct QatFitOptions {
  int restarts = 64;      // random initialisations (seeded), each refined by L-BFGS
  int iters = 300;        // L-BFGS iterations per restart
  double delta = 1e-3;    // Huber threshold on log L (Chinchilla's choice)
  uint64_t seed = 0;
};

struct QatFit {
  QatLossLaw law;
  double objective = 0;   // mean Huber loss of log L̂ − log L over the runs
  double mean_abs_rel = 0;  // mean |L̂ − L| / L
  int runs = 0;
};

// Fits every constant of the loss law to the runs by minimising Σ Huber_δ(log L̂ − log L) (coefficients as
// exponentials and exponents as softplus, so all stay ≥ 0), best of `restarts` seeded L-BFGS runs. Error(Data) for
// fewer than 4 runs or a run with f outside (0, 1), a non-positive N, D, bits or loss.
QatFit fit_qat_law(const std::vector<QatRun>& runs, const QatFitOptions& o = {});

}  // namespace catq

// Online transforms: linear maps applied to the activations entering some linear layers, x ← T x, before they
// are quantized; the consumers' weights hold W·T⁻¹ so the model's function is unchanged in FP (methods.md §4:
// y = (W T⁻¹)(T x)). Used by QuaRot (a Hadamard before ffn_down) and block CAT (T = H·M̂ at the q/k/v, gate/up and
// down inputs).
//
// T is kept structured, as the product of its factors, never multiplied out (a dense 8192² transform is 256 MB
// per block and costs 4× ffn_down's own multiply per token):
//
//   factor      stored tensors                   x ← F x for x of size d                       cost per vector
//   dense       t [d, d]                         x·tᵀ                                          d²
//   blockdiag   t [d/k, k, k]                    block i of x (x[i·k … i·k+k−1]) ← t_i · block  d·k
//   hadamard    t = Q [m, m], signs [d] (±1)     (H_{2^a} ⊗ Q)·diag(signs) · x, d = 2^a·m,     d·(log₂ 2^a + m)
//                                                H_{2^a} the orthonormal Sylvester matrix
//                                                (fast Walsh–Hadamard), m odd (Q = [[1]] for m = 1)
//
// T = F_n ··· F_1: factors apply first to last. Row vectors in code: apply(x) = x·Tᵀ on the last dimension.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace catq {

// In-place fast Walsh–Hadamard transform along the last dim (size a power of two), unnormalised.
void fwht_(at::Tensor& x);

struct OnlineFactor {
  enum class Kind { Dense, BlockDiag, Hadamard };
  Kind kind = Kind::Dense;
  at::Tensor t;      // shape by kind (table above); float32 in models and files, double while methods build it
  at::Tensor signs;  // hadamard: [d] of ±1

  int64_t dim() const;
  at::Tensor apply(const at::Tensor& x) const;          // x [..., d] -> F x (row vectors: x·Fᵀ), in x's dtype
  at::Tensor right_inverse(const at::Tensor& w) const;  // w [rows, d] -> w·F⁻¹ (the consumers' fold), w's dtype
  at::Tensor matrix() const;                            // F as a [d, d] double matrix
  OnlineFactor to(at::ScalarType dtype) const;
  static OnlineFactor dense(const at::Tensor& t);
  static OnlineFactor block_diagonal(const at::Tensor& blocks);  // [d/k, k, k]
  static OnlineFactor hadamard(const at::Tensor& q, const at::Tensor& signs);
};
const char* to_string(OnlineFactor::Kind k);  // "dense", "blockdiag", "hadamard"
// Error(Format) naming `what` unless f is well formed (float32, shapes by kind, finite, signs ±1, m odd and d / m a
// power of two, dim == d).
void check_online_factor(const OnlineFactor& f, int64_t d, const std::string& what);

struct OnlineTransform {
  std::vector<OnlineFactor> factors;  // T = factors.back() ··· factors.front(); empty = identity

  bool defined() const { return !factors.empty(); }
  int64_t dim() const { return factors.empty() ? 0 : factors.front().dim(); }
  at::Tensor apply(const at::Tensor& x) const;  // x [..., d] -> T x
  at::Tensor matrix() const;                     // T as a [d, d] double matrix
  // T ← F T (F stored in float32). A dense factor following a dense one is merged into it (no bigger).
  void then(const OnlineFactor& f);
  int64_t stored_values() const;                // floats stored (the .catq size of the transform / 4)
  std::string str() const;                      // e.g. "hadamard(8192) · blockdiag(512×16)"
  void to(const at::Device& device);
};

}  // namespace catq

// Next-token sampling: greedy (temperature 0), temperature, and nucleus (top-p), with a seeded RNG so a
// given seed reproduces the same text on every machine.
#pragma once
#include <cstdint>

#include <ATen/ATen.h>

namespace catq {

// xorshift64* (Vigna): tiny, fast, and fully specified, unlike std:: distributions.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 0x9E3779B97F4A7C15ull) {}
  uint32_t next_u32() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return static_cast<uint32_t>((s_ * 0x2545F4914F6CDD1Dull) >> 32);
  }
  double next_double() { return (next_u32() >> 8) / 16777216.0; }  // [0, 1), 24 random bits

 private:
  uint64_t s_;
};

struct SamplerOptions {
  double temperature = 1.0;  // 0 = greedy (argmax; ties -> lowest id)
  double top_p = 0.9;        // nucleus mass in (0, 1); >= 1 or <= 0 disables it
  uint64_t seed = 42;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o) : opt_(o), rng_(o.seed) {}
  // logits: [vocab] (any float dtype/device).
  int32_t sample(const at::Tensor& logits);

 private:
  SamplerOptions opt_;
  Rng rng_;
};

// Index of the first maximum (llama2.c's argmax semantics).
int32_t argmax_first(const at::Tensor& logits);

}  // namespace catq

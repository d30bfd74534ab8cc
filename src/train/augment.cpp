#include "train/augment.h"

#include <memory>

#include "core/error.h"

namespace catq {

std::function<at::Tensor(const at::Tensor&)> random_crop_flip(int64_t pad, bool flip, uint64_t seed) {
  CATQ_CHECK(pad >= 0 && pad <= 64, Config, "random crop padding {} must be in [0, 64]", pad);
  auto state = std::make_shared<uint64_t>(seed);
  return [pad, flip, state](const at::Tensor& x) {
    CATQ_CHECK(x.dim() == 4, Data, "random crop / flip expects images [B, C, H, W], got {} dimensions", x.dim());
    auto next = [&state]() {
      uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      return z ^ (z >> 31);
    };
    const int64_t b = x.size(0), h = x.size(2), w = x.size(3);
    at::Tensor padded = pad > 0 ? at::constant_pad_nd(x, {pad, pad, pad, pad}, 0.0) : x;
    at::Tensor out = at::empty_like(x);
    for (int64_t i = 0; i < b; ++i) {
      int64_t dy = static_cast<int64_t>(next() % static_cast<uint64_t>(2 * pad + 1));
      int64_t dx = static_cast<int64_t>(next() % static_cast<uint64_t>(2 * pad + 1));
      at::Tensor crop = padded[i].narrow(1, dy, h).narrow(2, dx, w);
      if (flip && (next() & 1)) crop = crop.flip({2});
      out[i].copy_(crop);
    }
    return out;
  };
}

}  // namespace catq

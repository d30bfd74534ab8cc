// Data augmentation for TrainOptions::augment.
#pragma once
#include <cstdint>
#include <functional>

#include <ATen/ATen.h>

namespace catq {

// The standard CIFAR recipe: pad each image by `pad` pixels on every side with zeros (in normalised space,
// i.e. the mean colour), crop a random H x W window, and mirror it horizontally with probability 1/2 when
// `flip`. Works on any batch [B, C, H, W]. Deterministic: the draws come from a splitmix64 stream started at
// `seed` and advanced by every call, so one training run with a fixed seed always sees the same crops.
std::function<at::Tensor(const at::Tensor&)> random_crop_flip(int64_t pad = 4, bool flip = true, uint64_t seed = 0);

}  // namespace catq

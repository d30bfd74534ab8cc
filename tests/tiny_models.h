// Small synthetic networks shared by the tests.
#pragma once
#include <torch/torch.h>

#include <string>

#include "ir/builder.h"

namespace catq::test_models {

// stem conv(3->W)+relu, one residual block (conv-relu-conv + identity, relu), GAP, flatten, linear(W->5); W = 8
// unless given. Weights from torch's global generator, seeded here.
inline Graph tiny_resnet(uint64_t seed = 0, const std::string& name = "tiny_resnet", int64_t width = 8) {
  torch::manual_seed(seed);
  GraphBuilder b(name);
  std::string x = b.input("image", {-1, 3, 8, 8});
  std::string s = b.relu(b.conv(x, 3, width, 3, 1, 1, "stem"));
  std::string h = b.relu(b.conv(s, width, width, 3, 1, 1, "block.conv1"));
  h = b.conv(h, width, width, 3, 1, 1, "block.conv2");
  std::string y = b.relu(b.op("Add", {h, s}));
  y = b.flatten(b.op("GlobalAveragePool", {y}));
  b.output(b.linear(y, width, 5, "fc"));
  return b.build();
}

// A CIFAR-style ResNet in miniature: stem conv(3->W)+relu, an identity block at W channels, a downsampling block
// (conv stride 2 to 2W channels) with the option-A shortcut of the CIFAR ResNets (Slice [::2, ::2], Pad the
// channels with zeros), an identity block at 2W, GAP, flatten, linear(2W->5). Input [N, 3, 8, 8].
inline Graph tiny_resnet_a(uint64_t seed = 0, int64_t width = 16) {
  torch::manual_seed(seed);
  GraphBuilder b("tiny_resnet_a");
  std::string x = b.input("image", {-1, 3, 8, 8});
  std::string s = b.relu(b.conv(x, 3, width, 3, 1, 1, "stem"));
  std::string h = b.relu(b.conv(s, width, width, 3, 1, 1, "block1.conv1"));
  h = b.conv(h, width, width, 3, 1, 1, "block1.conv2");
  s = b.relu(b.op("Add", {h, s}));
  h = b.relu(b.conv(s, width, 2 * width, 3, 2, 1, "block2.conv1"));
  h = b.conv(h, 2 * width, 2 * width, 3, 1, 1, "block2.conv2");
  auto i64 = [](std::vector<int64_t> v) { return torch::tensor(v, at::TensorOptions().dtype(at::kLong)); };
  std::string sc = b.op("Slice", {s, b.constant("sl_starts", i64({0, 0})),
                                  b.constant("sl_ends", i64({1000, 1000})),
                                  b.constant("sl_axes", i64({2, 3})),
                                  b.constant("sl_steps", i64({2, 2}))});
  const int64_t p = width / 2;
  sc = b.op("Pad", {sc, b.constant("pad_pads", i64({0, p, 0, 0, 0, p, 0, 0})),
                    b.constant("pad_value", torch::zeros({}, at::kFloat))});
  s = b.relu(b.op("Add", {h, sc}));
  h = b.relu(b.conv(s, 2 * width, 2 * width, 3, 1, 1, "block3.conv1"));
  h = b.conv(h, 2 * width, 2 * width, 3, 1, 1, "block3.conv2");
  std::string y = b.relu(b.op("Add", {h, s}));
  y = b.flatten(b.op("GlobalAveragePool", {y}));
  b.output(b.linear(y, 2 * width, 5, "fc"));
  return b.build();
}

}  // namespace catq::test_models

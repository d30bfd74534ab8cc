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

}  // namespace catq::test_models

// Units of reconstruction: contiguous node ranges of a (BN-folded) graph that AdaRound / BRECQ / QDrop /
// PD-Quant optimise one after another.
//
// Block granularity: the graph is cut at every position where a single value carries all the state (every
// later node reads only that value and constants) — in a ResNet, each residual block's output. The ranges
// between cuts are the blocks; a range without a quantized layer joins the previous block when it holds only
// elementwise activations (the ReLU after a residual Add: a block hands on its post-ReLU output) and the next
// one otherwise (pooling, flatten before the classifier). A unit's targets are the values it hands on: the live
// value at its end cut, or the graph outputs for the last unit.
// Layer granularity: one unit per layer, from its node up to the next layer's node (glue such as a residual
// Add rides along so the state advances). The target is the layer's output, followed through a chain of
// elementwise activations it alone feeds (Relu, Clip, ...), so the loss sees what the next layer sees.
#pragma once
#include <string>
#include <vector>

#include "sim/executor.h"

namespace catq {

enum class ReconGranularity { Layer, Block };
const char* to_string(ReconGranularity g);

struct ReconUnit {
  std::string name;                  // e.g. "block 3: Conv_7, Conv_9" or "layer Conv_7"
  size_t begin = 0, end = 0;         // node range [begin, end) of the graph
  std::vector<int> layers;           // indices into GraphExecutor::layers()
  std::vector<std::string> inputs;   // values live at `begin` (what the unit starts from)
  std::vector<std::string> targets;  // values compared with the FP model (see above)
};

// Error(Unsupported) when the graph has no quantizable layer.
std::vector<ReconUnit> partition(const GraphExecutor& ex, ReconGranularity g);

}  // namespace catq

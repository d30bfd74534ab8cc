// Graph passes that need no execution: dead-node removal, BN folding (constant folding, which evaluates nodes, is
// sim/fold_constants.h).
#pragma once
#include "ir/graph.h"

namespace catq {

// Removes nodes that do not contribute to any graph output, and unused initializers.
int remove_dead_nodes(Graph& g);

// Folds BatchNormalization into a preceding Conv (weights and bias), when the Conv's output feeds
// only that BN and all parameters are constant. Returns the number of BN nodes folded.
int fold_batchnorm(Graph& g);

}  // namespace catq

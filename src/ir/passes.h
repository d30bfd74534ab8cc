// Graph passes: constant folding (including shape sub-graphs), dead-node removal, BN folding.
#pragma once
#include "ir/graph.h"

namespace catq {

struct FoldStats {
  int constant_nodes = 0;  // nodes whose inputs were all constant
  int shape_nodes = 0;     // nodes computing shapes of activations, folded using static input shapes
  int dead_nodes = 0;
  int bn_folded = 0;
};

// Evaluates every node whose inputs are all constants and replaces it by an initializer. Then
// folds shape sub-graphs (Shape -> Gather/Slice/Concat/... -> Reshape/Pad inputs): a value that
// depends on activations only through Shape nodes is evaluated with two probe batch sizes; when both
// agree it cannot depend on the (dynamic) batch dimension and becomes a constant. Only graphs whose
// inputs have static shapes apart from dimension 0 are shape-folded. Ends with dead-node removal.
FoldStats fold_constants(Graph& g);

// Removes nodes that do not contribute to any graph output, and unused initializers.
int remove_dead_nodes(Graph& g);

// Folds BatchNormalization into a preceding Conv (weights and bias), when the Conv's output feeds
// only that BN and all parameters are constant. Returns the number of BN nodes folded.
int fold_batchnorm(Graph& g);

}  // namespace catq

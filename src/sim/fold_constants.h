// Constant folding of a graph, including shape sub-graphs: it evaluates nodes with the executor, so it lives
// above ir/ (ir/passes.h holds the passes that need no execution).
#pragma once
#include "ir/graph.h"

namespace catq {

struct FoldStats {
  int constant_nodes = 0;  // nodes whose inputs were all constant
  int shape_nodes = 0;     // nodes computing shapes of activations, folded using static input shapes
  int dead_nodes = 0;
};

// Evaluates every node whose inputs are all constants and replaces it by an initializer. Then
// folds shape sub-graphs (Shape -> Gather/Slice/Concat/... -> Reshape/Pad inputs): a value that
// depends on activations only through Shape nodes is evaluated with two probe batch sizes; when both
// agree it cannot depend on the (dynamic) batch dimension and becomes a constant. Only graphs whose
// inputs have static shapes apart from dimension 0 are shape-folded. Ends with dead-node removal.
FoldStats fold_constants(Graph& g);

}  // namespace catq

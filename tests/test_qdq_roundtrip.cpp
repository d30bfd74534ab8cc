// catq reads its own QDQ export: the ONNX file that `catq export` writes for ONNX Runtime, loaded back and run by
// catq's executor in float (QuantizeLinear / DequantizeLinear are ops of the executor), gives the simulation's
// logits — both export forms: Clip → Q → DQ at a layer's input, and Conv → Q → DQ → Clip where a Relu folds into the
// quantizer (symmetric weights).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>

#include "io/catq_file.h"
#include "io/onnx_reader.h"
#include "io/onnx_writer.h"
#include "ir/passes.h"
#include "sim/fold_constants.h"
#include "methods/cnn/pipeline.h"
#include "sim/executor.h"
#include "tiny_models.h"

using namespace catq;

TEST(QdqRoundTrip, ExportedModelRunsInCatqAndMatchesTheSimulation) {
  for (const char* bits : {"w8a8", "w4a4", "w8a8-wsym", "w4a4-wsym"}) {
    torch::manual_seed(5);
    ImageDataset calib{torch::randn({64, 3, 8, 8}), torch::randint(0, 5, {64}, at::TensorOptions().dtype(at::kLong)),
                       "synthetic"};
    CnnPtqOptions o;
    o.bits = bits;
    QuantizedCnn q = quantize_cnn(test_models::tiny_resnet_a(4, 16), calib, o);
    const Graph qdq = qdq_graph(*q.ex, *q.sq);
    int relus = 0;
    for (const Node& n : qdq.nodes) relus += n.op_type == "Relu";
    // tiny_resnet_a has 7 Relus; with symmetric weights the stem's and the two blocks' first convs fold theirs.
    EXPECT_EQ(relus, std::string(bits).find("wsym") != std::string::npos ? 3 : 7) << bits;
    const std::string path = ::testing::TempDir() + "catq_qdq_roundtrip.onnx";
    write_onnx(qdq, path, 13);
    Graph g = load_onnx(path);
    std::remove(path.c_str());
    fold_constants(g);
    GraphExecutor ex(std::move(g));
    const at::Tensor x = torch::randn({16, 3, 8, 8});
    at::NoGradGuard ng;
    const at::Tensor ref = q.ex->forward(x, q.sq.get()), out = ex.forward(x);
    const double rel = (out - ref).abs().max().item<double>() / ref.abs().max().item<double>();
    EXPECT_LT(rel, 1e-4) << bits;
    EXPECT_TRUE(out.argmax(1).equal(ref.argmax(1))) << bits;
  }
}

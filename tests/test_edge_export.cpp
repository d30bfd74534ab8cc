// Files out for quantized CNNs (issue 20): QDQ ONNX with the CAT head as ONNX ops (checked by catq's own executor and,
// where onnxruntime-node is installed, by ONNX Runtime), and full-integer int8 TFLite files of W8A8 models (read back
// by catq's TFLite integer executor).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/file_util.h"
#include "core/process.h"
#include "io/catq_file.h"
#include "io/onnx_writer.h"
#include "methods/cnn/pipeline.h"
#include "sim/executor.h"
#include "tiny_models.h"

using namespace catq;

namespace {

namespace fs = std::filesystem;

std::string peers_dir() {
  const char* e = std::getenv("CATQ_PEERS");
  return e && *e ? e : std::string(CATQ_SOURCE_DIR) + "/.cache/peers";
}
bool have_ort() {
  return file_exists(peers_dir() + "/node_modules/onnxruntime-node/dist/index.js") &&
         std::system("node --version > /dev/null 2>&1") == 0;
}

std::string temp_dir() {
  static int counter = 0;
  fs::path d = fs::temp_directory_path() / fmt::format("catq_test_edge_export_{}_{}", getpid(), counter++);
  fs::create_directories(d);
  return d.string();
}

struct Headed {
  QuantizedCnn q;
  at::Tensor x;
};

// tiny_resnet quantized with RTN at W4A4 and a CAT head (K = 4, α = 0.6, optionally on 3 PCA dimensions) fitted on
// 256 synthetic images.
Headed headed_model(int64_t k, int64_t pca) {
  torch::manual_seed(9);
  ImageDataset calib{torch::randn({256, 3, 8, 8}), torch::randint(0, 5, {256}, at::TensorOptions().dtype(at::kLong)),
                     "synthetic"};
  CnnPtqOptions o;
  o.bits = "w4a4";
  Headed h{quantize_cnn(test_models::tiny_resnet(3), calib, o), torch::randn({200, 3, 8, 8})};
  GraphExecutor fp(test_models::tiny_resnet(3));
  HeadOptions ho;
  ho.kind = k == 1 ? "affine" : "cat";
  ho.select = false;
  ho.fit.k = k;
  ho.fit.alpha = 0.6;
  ho.fit.pca_dims = pca;
  fit_head(h.q, fp, calib, ho);
  EXPECT_TRUE(h.q.head.has_value());
  return h;
}

TEST(EdgeExport, CatHeadAsOnnxOpsMatchesTheHead) {
  for (auto [k, pca] : {std::pair<int64_t, int64_t>{4, 0}, {4, 3}, {1, 0}}) {
    Headed h = headed_model(k, pca);
    Graph g = qdq_graph(*h.q.ex, *h.q.sq);
    append_cat_head(g, *h.q.head);
    int argmins = 0;
    for (const Node& n : g.nodes) argmins += n.op_type == "ArgMin";
    EXPECT_EQ(argmins, k > 1 ? 1 : 0);
    GraphExecutor ex(std::move(g));
    at::NoGradGuard ng;
    const at::Tensor ref = h.q.forward(h.x), out = ex.forward(h.x);
    ASSERT_EQ(ref.sizes(), out.sizes());
    const double agree = ref.argmax(1).eq(out.argmax(1)).to(at::kDouble).mean().item<double>();
    EXPECT_GE(agree, 0.995) << k << " " << pca;
    EXPECT_LT((ref - out).abs().mean().item<double>(), 1e-3 * ref.abs().mean().item<double>() + 1e-5) << k << " " << pca;
    // The head changes the logits: without it the graph gives the base model.
    EXPECT_GT((out - h.q.base_logits(h.x)).abs().max().item<double>(), 1e-3);
  }
}

TEST(PeerOnnxRuntime, CatHeadOnnxRunsInOnnxRuntime) {
  if (!have_ort())
    GTEST_SKIP() << "needs node and onnxruntime-node in " << peers_dir() << "/node_modules (scripts/setup.sh installs it)";
  Headed h = headed_model(4, 0);
  Graph g = qdq_graph(*h.q.ex, *h.q.sq);
  append_cat_head(g, *h.q.head);
  const std::string d = temp_dir(), onnx = d + "/headed.onnx", in = d + "/x.f32", out = d + "/y.f32";
  write_onnx(g, onnx, 13);
  const at::Tensor x = h.x.contiguous();
  write_file_atomic(in, x.data_ptr(), x.numel() * sizeof(float));
  int code = -1;
  const std::string res = run_capture("CATQ_PEERS='" + peers_dir() + "' node '" + CATQ_SOURCE_DIR +
                                      "/tests/peers/ort_check.mjs' '" + onnx + "' '" + in + "' " +
                                      fmt::format("{} 3 8 8 '{}'", x.size(0), out) + " 2>&1", &code);
  ASSERT_EQ(code, 0) << res;
  at::NoGradGuard ng;
  const at::Tensor ref = h.q.forward(x);
  std::vector<uint8_t> bytes = read_file_bytes(out);
  ASSERT_EQ(bytes.size(), static_cast<size_t>(ref.numel()) * 4);
  const at::Tensor ort = at::from_blob(bytes.data(), ref.sizes(), at::kFloat).clone();
  const double agree = ref.argmax(1).eq(ort.argmax(1)).to(at::kDouble).mean().item<double>();
  EXPECT_GE(agree, 0.995);
  fs::remove_all(d);
}

}  // namespace

// ---- int8 TFLite files ----

#include "io/tflite_export.h"
#include "runtime/tflite_int8.h"
#include "tflite_models.h"

namespace {

// A float TFLite model (pad, conv + ReLU6, depthwise + ReLU, pooling, pointwise conv, residual add, reshape or mean,
// fully connected) imported, quantized at W8A8 with symmetric weights, exported as int8 TFLite, read back and run on
// catq's TFLite integer executor: its decisions follow the simulation's.
TEST(EdgeExport, Int8TfliteOfAW8A8ModelRunsLikeTheSimulation) {
  for (bool use_mean : {false, true}) {
    const TfliteModel fm = test_tflite::tiny_float(21, use_mean);
    torch::manual_seed(22);
    ImageDataset calib{torch::rand({128, 3, 7, 7}) * 3 - 1, torch::randint(0, 5, {128}, at::TensorOptions().dtype(at::kLong)),
                       "synthetic"};
    CnnPtqOptions o;
    o.bits = "w8a8-wsym";
    QuantizedCnn q = quantize_cnn(tflite_to_graph(fm), calib, o);
    TfliteExportReport rep;
    const TfliteModel tm = tflite_int8_model(*q.ex, *q.sq, calib.images, &rep);
    const auto ops = tm.op_histogram();
    EXPECT_EQ(ops.at("DEPTHWISE_CONV_2D"), 1);
    EXPECT_EQ(ops.at("CONV_2D"), 2);
    EXPECT_EQ(ops.at("PAD"), 1);
    EXPECT_EQ(ops.at("SOFTMAX"), 1);
    EXPECT_EQ(ops.count(use_mean ? "MEAN" : "RESHAPE"), 1u);
    EXPECT_GE(rep.calibrated_tensors, 2);  // the pointwise conv's output before the add, the add, the logits, ...
    const std::string d = temp_dir(), path = d + "/tiny_w8a8.tflite";
    write_tflite(path, tm);
    TfliteInt8Executor back(read_tflite(path));
    const at::Tensor x = torch::rand({64, 3, 7, 7}) * 3 - 1;
    at::NoGradGuard ng;
    const at::Tensor sim = q.base_logits(x), file = back.forward(x);
    const double agree = sim.argmax(1).eq(file.argmax(1)).to(at::kDouble).mean().item<double>();
    EXPECT_GE(agree, 0.95) << use_mean;
    EXPECT_LT((sim - file).abs().mean().item<double>(), 0.1 * sim.abs().mean().item<double>()) << use_mean;
    fs::remove_all(d);
  }
}

TEST(BadInputEdgeExport, Int8TfliteRefusesWhatItCannotExpress) {
  const TfliteModel fm = test_tflite::tiny_float(23);
  torch::manual_seed(24);
  ImageDataset calib{torch::rand({64, 3, 7, 7}), torch::randint(0, 5, {64}, at::TensorOptions().dtype(at::kLong)),
                     "synthetic"};
  for (const char* bits : {"w8a8", "w4a4"}) {  // 8-bit asymmetric weights; 4-bit activations
    CnnPtqOptions o;
    o.bits = bits;
    QuantizedCnn q = quantize_cnn(tflite_to_graph(fm), calib, o);
    try {
      tflite_int8_model(*q.ex, *q.sq, calib.images);
      ADD_FAILURE() << bits << ": no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Unsupported) << e.what();
      EXPECT_NE(std::string(e.what()).find("w8a8-wsym"), std::string::npos) << e.what();
    }
  }
}

}  // namespace

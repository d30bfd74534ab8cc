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
    EXPECT_GE(agree, 0.9) << use_mean;  // a random 5-class model: many decisions are near-ties
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

// ---- a real TFLite runtime: LiteRT.js (npm @litertjs/core, WebAssembly, XNNPACK) under Node ----

#include "io/image_data.h"

namespace {

bool have_litert() {
  return file_exists(peers_dir() + "/node_modules/@litertjs/core/package.json") &&
         std::system("node --version > /dev/null 2>&1") == 0;
}
#define NEED_LITERT()                                                                                       \
  if (!have_litert())                                                                                       \
  GTEST_SKIP() << "needs node and @litertjs/core in " << peers_dir() << "/node_modules (scripts/setup.sh installs it)"

// The model (int8, given float input / output here) run by LiteRT on images x (NCHW as the data sets hold them):
// float outputs [N, K] — the logits, or with `upto` ≥ 0 the output of operator `upto` (the model cut after it).
at::Tensor litert(const TfliteModel& m0, const at::Tensor& x, int upto = -1) {
  TfliteModel m = m0;
  if (upto >= 0) {
    m.ops.resize(static_cast<size_t>(upto) + 1);
    m.outputs = {m.ops.back().outputs[0]};
  }
  const TfliteModel fio = tflite_with_float_io(m, upto < 0);
  const std::string d = temp_dir(), model = d + "/m.tflite", in = d + "/x.f32", out = d + "/y.f32";
  write_tflite(model, fio);
  const at::Tensor xn = (x.dim() == 4 ? x.permute({0, 2, 3, 1}) : x).contiguous().to(at::kFloat);
  write_file_atomic(in, xn.data_ptr(), xn.numel() * sizeof(float));
  int code = -1;
  const std::string res = run_capture(fmt::format("CATQ_PEERS='{}' node '{}/tests/peers/litert_run.mjs' '{}' '{}' {} '{}' "
                                                  "2>/dev/null", peers_dir(), CATQ_SOURCE_DIR, model, in, x.size(0), out),
                                      &code);
  EXPECT_EQ(code, 0) << res;
  if (code != 0) return at::Tensor();
  std::vector<uint8_t> bytes = read_file_bytes(out);
  const int64_t n = static_cast<int64_t>(bytes.size() / 4);
  at::Tensor y = at::from_blob(bytes.data(), {x.size(0), n / x.size(0)}, at::kFloat).clone();
  fs::remove_all(d);
  return y;
}

// Logits of two runs of one int8 model in output steps: the share of equal codes and the largest difference.
struct CodeAgreement {
  double equal = 0, max_steps = 0, decisions = 0;
};
CodeAgreement codes(const at::Tensor& a, const at::Tensor& b, float scale) {
  const at::Tensor d = ((a - b) / scale).abs().round();
  return {d.eq(0).to(at::kDouble).mean().item<double>(), d.max().item<double>(),
          a.argmax(1).eq(b.argmax(1)).to(at::kDouble).mean().item<double>()};
}

// The first operator's output codes on catq's executor (trace) and in LiteRT (the model cut after it).
CodeAgreement first_layer(const TfliteModel& m, const at::Tensor& x, int op_index) {
  const int32_t out = m.ops[static_cast<size_t>(op_index)].outputs[0];
  const at::Tensor theirs = litert(m, x, op_index);
  const TfliteTensor& in = m.tensor(m.inputs[0]);
  const at::Tensor xn = (x.dim() == 4 ? x.permute({0, 2, 3, 1}) : x).contiguous();
  TfliteInt8Executor ex(m, false);
  std::vector<at::Tensor> ours;
  for (int64_t n = 0; n < xn.size(0); ++n) {
    const at::Tensor q = (at::round(xn[n].reshape({-1}) / in.quant.scale[0]) + in.quant.zero_point[0]).clamp(-128, 127);
    std::vector<int8_t> codes(static_cast<size_t>(q.numel()));
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<int8_t>(q[static_cast<int64_t>(i)].item<float>());
    const std::vector<int8_t> y = ex.trace(codes).at(out);
    ours.push_back(at::tensor(std::vector<float>(y.begin(), y.end())));
  }
  const TfliteQuant& q = m.tensor(out).quant;
  const at::Tensor a = (at::stack(ours) - q.zero_point[0]) * q.scale[0];
  return codes(a, theirs.reshape(a.sizes()), q.scale[0]);
}

// catq's TFLite integer executor against a real TFLite runtime on the same int8 file. LiteRT runs XNNPACK's int8
// kernels, whose requantization rounds in fp32 where TFLite's reference kernels (and catq) multiply in fixed point:
// the first layer's codes agree but for an occasional step on a near-tie, and such steps compound through the layers,
// so the logits are compared by decisions and largest difference.
TEST(PeerLiteRt, Int8ExecutorMatchesLiteRtOnATinyModel) {
  NEED_LITERT();
  for (bool use_mean : {true}) {  // pad, conv, depthwise, pooling, pointwise, add, mean, fully connected
    const TfliteModel fm = test_tflite::tiny_float(31, use_mean);
    torch::manual_seed(32);
    const TfliteModel qm = test_tflite::quantize_int8(fm, torch::rand({16, 7, 7, 3}) * 3 - 1);
    const at::Tensor x = torch::rand({64, 3, 7, 7}) * 3 - 1;
    const at::Tensor ours = TfliteInt8Executor(qm).forward(x), theirs = litert(qm, x);
    ASSERT_TRUE(theirs.defined());
    ASSERT_EQ(ours.sizes(), theirs.sizes());
    const CodeAgreement a = codes(ours, theirs, qm.tensor(qm.ops.back().inputs[0]).quant.scale[0]);
    const CodeAgreement f = first_layer(qm, x, 1);  // op 0 is the PAD, op 1 the first convolution
    std::printf("[ peer ] LiteRT vs catq's executor, tiny int8 model%s: first convolution %.2f %% of codes equal (max "
                "%.0f step); logits %.2f %% equal, max %.0f steps, decisions equal %.2f %%\n", use_mean ? " (MEAN)" : "",
                100 * f.equal, f.max_steps, 100 * a.equal, a.max_steps, 100 * a.decisions);
    EXPECT_GE(f.equal, 0.99) << use_mean;
    EXPECT_LE(f.max_steps, 1.0) << use_mean;
    EXPECT_LE(a.max_steps, 4.0) << use_mean;
    EXPECT_GE(a.decisions, 0.9) << use_mean;
  }
}

TEST(PeerLiteRt, OfficialKwsInt8FileMatchesCatqsExecutor) {
  NEED_LITERT();
  const std::string model = default_mlperf_tiny_dir() + "/kws_dscnn_int8.tflite",
                    data = default_mlperf_tiny_dir() + "/kws_eval1000_mfcc_s8.bin";
  if (!file_exists(model)) GTEST_SKIP() << "../shared/assets/mlperf-tiny not found: MLPerf Tiny peer test skipped";
  const TfliteModel m = read_tflite(model);
  const at::Tensor x = load_image_data(data, "calib").images;  // 200 records
  const at::Tensor ours = TfliteInt8Executor(m).forward(x), theirs = litert(m, x);
  ASSERT_TRUE(theirs.defined());
  const CodeAgreement a = codes(ours, theirs, m.tensor(m.ops.back().inputs[0]).quant.scale[0]);
  const CodeAgreement f = first_layer(m, x.slice(0, 0, 20), 0);
  std::printf("[ peer ] LiteRT vs catq's executor, kws_dscnn_int8.tflite on %lld records: first convolution %.2f %% of "
              "codes equal (max %.0f step); logits %.2f %% equal, max %.0f steps, decisions equal %.2f %%\n",
              static_cast<long long>(x.size(0)), 100 * f.equal, f.max_steps, 100 * a.equal, a.max_steps, 100 * a.decisions);
  EXPECT_GE(f.equal, 0.99);
  EXPECT_LE(f.max_steps, 1.0);
  EXPECT_LE(a.max_steps, 4.0);
  EXPECT_GE(a.decisions, 0.99);
}

// catq's int8 TFLite file of a W8A8 model loads and runs in LiteRT as it runs on catq's executor.
TEST(PeerLiteRt, ExportedW8A8TfliteRunsInLiteRt) {
  NEED_LITERT();
  const TfliteModel fm = test_tflite::tiny_float(33);
  torch::manual_seed(34);
  ImageDataset calib{torch::rand({128, 3, 7, 7}) * 3 - 1, torch::randint(0, 5, {128}, at::TensorOptions().dtype(at::kLong)),
                     "synthetic"};
  CnnPtqOptions o;
  o.bits = "w8a8-wsym";
  QuantizedCnn q = quantize_cnn(tflite_to_graph(fm), calib, o);
  const TfliteModel tm = tflite_int8_model(*q.ex, *q.sq, calib.images);
  const at::Tensor x = torch::rand({64, 3, 7, 7}) * 3 - 1;
  const at::Tensor ours = TfliteInt8Executor(tm).forward(x), theirs = litert(tm, x);
  ASSERT_TRUE(theirs.defined());
  const CodeAgreement a = codes(ours, theirs, tm.tensor(tm.ops.back().inputs[0]).quant.scale[0]);
  std::printf("[ peer ] LiteRT vs catq's executor, catq's int8 export: %.2f %% of logit codes equal, max %.0f steps, "
              "decisions equal %.2f %%\n", 100 * a.equal, a.max_steps, 100 * a.decisions);
  EXPECT_LE(a.max_steps, 4.0);
  EXPECT_GE(a.decisions, 0.95);
}

}  // namespace

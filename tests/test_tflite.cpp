// TFLite: FlatBuffers reading / writing, import into the graph IR (NHWC → NCHW), the integer executor, the EEMBC
// data sets, and bad input. Tests on the MLPerf Tiny files skip when ../shared is absent.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/file_util.h"
#include "io/cnn_model.h"
#include "io/flatbuf.h"
#include "io/image_data.h"
#include "io/tflite.h"
#include "quant/requant.h"
#include "runtime/tflite_int8.h"
#include "sim/executor.h"
#include "tflite_models.h"

namespace {

using namespace catq;
using namespace catq::test_tflite;
namespace fs = std::filesystem;

std::string temp_path(const std::string& name) {
  static int counter = 0;
  fs::path d = fs::temp_directory_path() / fmt::format("catq_test_tflite_{}_{}", getpid(), counter++);
  fs::create_directories(d);
  return (d / name).string();
}

// Random NHWC images [N, H, W, C] in [-1, 2].
at::Tensor images_nhwc(int64_t n, std::vector<int64_t> hwc, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<int64_t> s = {n};
  s.insert(s.end(), hwc.begin(), hwc.end());
  return torch::rand(s) * 3 - 1;
}

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  return ErrorKind::Internal;  // "did not throw"
}

TEST(FlatBuffer, BuilderAndReaderAgree) {
  auto inner = fb_table();
  inner->scalar<int64_t>(0, -5).scalar<uint8_t>(2, 7);
  auto root = fb_table();
  root->scalar<int32_t>(1, 123456).scalar<float>(3, 2.5f);
  root->ref(0, fb_string("hello")).ref(2, fb_vector(std::vector<int16_t>{1, -2, 3}, 16)).ref(4, fb_refs({inner, inner}));
  const std::vector<uint8_t> buf = fb_finish(root, "TEST");
  const FbBuffer b{buf.data(), buf.size(), "mem"};
  const FbTable t = FbTable::root(b, "TEST", "test");
  EXPECT_EQ(t.string(0, "s"), "hello");
  EXPECT_EQ(t.scalar<int32_t>(1, 0), 123456);
  EXPECT_EQ(t.scalar<float>(3, 0), 2.5f);
  EXPECT_EQ(t.scalar<int32_t>(7, 42), 42);  // absent: the default
  auto v = t.vector(2, 2, "v");
  ASSERT_TRUE(v);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v->bytes()) % 16, reinterpret_cast<uintptr_t>(buf.data()) % 16);
  EXPECT_EQ(t.scalars<int16_t>(2, "v"), (std::vector<int16_t>{1, -2, 3}));
  auto tv = t.vector(4, 4, "tables");
  ASSERT_TRUE(tv && tv->size() == 2);
  EXPECT_EQ(tv->table(1, "inner").scalar<int64_t>(0, 0), -5);
  EXPECT_EQ(tv->table(1, "inner").scalar<uint8_t>(2, 0), 7);
  EXPECT_EQ(kind_of([&] { FbTable::root(b, "TFL3", "TFLite"); }), ErrorKind::Format);
}

TEST(Requant, TfliteMultiplierRoundsAsTflite) {
  // M = 0.5: TFLite's SaturatingRoundingDoublingHighMul rounds ties toward +infinity (1.5 → 2, −1.5 → −1).
  const FixedPointMultiplier half = FixedPointMultiplier::from_real(0.5);
  EXPECT_EQ(half.apply_tflite(3), 2);
  EXPECT_EQ(half.apply_tflite(-3), -1);
  // M = 0.25: the second rounding (RoundingDivideByPOT) is away from zero: 0.75·... ties: 6·0.25 = 1.5 → 2, −1.5 → −2.
  const FixedPointMultiplier quarter = FixedPointMultiplier::from_real(0.25);
  EXPECT_EQ(quarter.apply_tflite(6), 2);
  EXPECT_EQ(quarter.apply_tflite(-6), -2);
  // Within one of the exact product for arbitrary multipliers, including > 1.
  std::mt19937 rng(3);
  for (int i = 0; i < 2000; ++i) {
    const double m = std::ldexp(std::uniform_real_distribution<double>(0.5, 1.0)(rng),
                                std::uniform_int_distribution<int>(-20, 3)(rng));
    const int32_t x = std::uniform_int_distribution<int32_t>(-(1 << 20), 1 << 20)(rng);
    const FixedPointMultiplier f = FixedPointMultiplier::from_real(m);
    EXPECT_LE(std::abs(f.apply_tflite(x) - static_cast<double>(x) * m), 1.0) << m << " " << x;
  }
  EXPECT_EQ(FixedPointMultiplier::from_real(1e-12).apply_tflite(1 << 30), 0);
}

TEST(Tflite, SerializeAndParseRoundTrip) {
  const TfliteModel m = tiny_float(1);
  const std::vector<uint8_t> bytes = serialize_tflite(m);
  const TfliteModel r = parse_tflite(bytes.data(), bytes.size(), "mem.tflite");
  ASSERT_EQ(r.tensors.size(), m.tensors.size());
  ASSERT_EQ(r.ops.size(), m.ops.size());
  EXPECT_EQ(r.inputs, m.inputs);
  EXPECT_EQ(r.outputs, m.outputs);
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    EXPECT_EQ(r.tensors[i].name, m.tensors[i].name);
    EXPECT_EQ(r.tensors[i].shape, m.tensors[i].shape);
    EXPECT_EQ(r.tensors[i].type, m.tensors[i].type);
    EXPECT_EQ(r.tensors[i].data, m.tensors[i].data);
  }
  for (size_t k = 0; k < m.ops.size(); ++k) {
    EXPECT_EQ(r.ops[k].code, m.ops[k].code);
    EXPECT_EQ(r.ops[k].inputs, m.ops[k].inputs);
    EXPECT_EQ(r.ops[k].options.stride_h, m.ops[k].options.stride_h);
    EXPECT_EQ(r.ops[k].options.activation, m.ops[k].options.activation);
    EXPECT_EQ(r.ops[k].options.depth_multiplier, m.ops[k].options.depth_multiplier);
  }
  EXPECT_EQ(r.op_histogram().at("CONV_2D"), 2);
}

// The imported graph (NCHW, ONNX-style nodes) computes what the operators define in NHWC.
TEST(Tflite, ImportMatchesTheNhwcReference) {
  for (bool use_mean : {false, true}) {
    const TfliteModel m = tiny_float(2, use_mean);
    Graph g = tflite_to_graph(m);
    ASSERT_EQ(g.inputs.size(), 1u);
    EXPECT_EQ(g.inputs[0].shape, (std::vector<int64_t>{-1, 3, 7, 7}));
    GraphExecutor ex(std::move(g));
    EXPECT_EQ(ex.layers().size(), 4u);  // conv, depthwise (group 4), pointwise, fully connected
    const at::Tensor x = images_nhwc(3, {7, 7, 3}, 5);
    const at::Tensor y = ex.forward(x.permute({0, 3, 1, 2}).contiguous());
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{3, 5}));
    for (int64_t n = 0; n < 3; ++n) {
      const auto ref = reference_run(m, x[n]);
      const at::Tensor logits = ref.at(m.ops.back().inputs[0]);  // the final SOFTMAX is dropped: logits
      EXPECT_TRUE(torch::allclose(y[n], logits, 1e-4, 1e-4)) << use_mean << "\n" << y[n] << "\n" << logits;
    }
    TfliteImportOptions keep;
    keep.drop_final_softmax = false;
    GraphExecutor ex2(tflite_to_graph(m, keep));
    const at::Tensor p = ex2.forward(x.permute({0, 3, 1, 2}).contiguous());
    EXPECT_TRUE(torch::allclose(p[0], reference_run(m, x[0]).at(m.outputs[0]), 1e-5, 1e-5));
  }
}

// The integer executor against the float simulation of the same int8 model (the import's Q/DQ graph): the same
// arithmetic up to requantization rounding, so the logits agree within a few output steps. The serialised file
// runs to the same codes.
TEST(Tflite, Int8ExecutorAgreesWithItsQdqSimulation) {
  for (bool use_mean : {false, true}) {
    const TfliteModel fm = tiny_float(3, use_mean);
    const TfliteModel qm = quantize_int8(fm, images_nhwc(16, {7, 7, 3}, 7));
    ASSERT_TRUE(qm.is_integer());
    TfliteInt8Executor net(qm);
    GraphExecutor sim(tflite_to_graph(qm));
    const at::Tensor x = images_nhwc(64, {7, 7, 3}, 8).permute({0, 3, 1, 2}).contiguous();
    const at::Tensor yi = net.forward(x), ys = sim.forward(x);
    ASSERT_EQ(yi.sizes(), ys.sizes());
    // Rounding differences (ties, TFLite's two-step requantization) grow through the layers: a few steps at the end.
    const float step = qm.tensor(qm.ops.back().inputs[0]).quant.scale[0];
    const at::Tensor diff = (yi - ys).abs() / step;
    EXPECT_LE(diff.max().item<float>(), 6.f) << use_mean;
    EXPECT_LE(diff.mean().item<float>(), 1.f) << use_mean;
    // The first convolution sees identical inputs in both: its codes differ by at most one step, rarely.
    {
      const at::Tensor x0 = x.slice(0, 0, 1);
      const TfliteTensor& it = qm.tensor(qm.inputs[0]);
      const at::Tensor xn = x0.permute({0, 2, 3, 1}).contiguous();
      std::vector<int8_t> codes(static_cast<size_t>(xn.numel()));
      for (size_t i = 0; i < codes.size(); ++i)
        codes[i] = static_cast<int8_t>(std::clamp<int64_t>(
            static_cast<int64_t>(std::round(xn.data_ptr<float>()[i] / it.quant.scale[0])) + it.quant.zero_point[0], -128, 127));
      const auto tr = net.trace(codes);
      const int32_t conv1 = qm.ops[1].outputs[0];
      ValueMap rec;
      sim.run({x0}, nullptr, &rec);
      const at::Tensor ref = rec.at("conv1:DequantizeLinear").permute({0, 2, 3, 1}).contiguous().reshape({-1});
      const TfliteQuant& q = qm.tensor(conv1).quant;
      int64_t off = 0;
      for (size_t i = 0; i < tr.at(conv1).size(); ++i) {
        const double d = std::abs((tr.at(conv1)[i] - q.zero_point[0]) * q.scale[0] - ref[i].item<float>()) / q.scale[0];
        EXPECT_LE(d, 1.0 + 1e-3);
        off += d > 0.5;
      }
      EXPECT_LE(off, static_cast<int64_t>(tr.at(conv1).size() / 50));
    }
    EXPECT_GE(yi.argmax(1).eq(ys.argmax(1)).to(at::kFloat).mean().item<float>(), 0.9f);
    // Close to the float model too (8-bit everything).
    GraphExecutor fp(tflite_to_graph(fm));
    EXPECT_GE(yi.argmax(1).eq(fp.forward(x).argmax(1)).to(at::kFloat).mean().item<float>(), 0.85f);

    const std::string path = temp_path("tiny_int8.tflite");
    write_tflite(path, qm);
    TfliteInt8Executor back(read_tflite(path));
    std::vector<int8_t> codes(7 * 7 * 3);
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<int8_t>((i * 37) % 256 - 128);
    EXPECT_EQ(back.run_codes(codes), net.run_codes(codes));
  }
}

// ---- data ----

std::string write_bytes(const std::string& name, const std::string& bytes) {
  const std::string p = temp_path(name);
  write_file_atomic(p, bytes);
  return p;
}

TEST(EdgeData, VwwAndKwsLayoutsAndSplit) {
  std::string vww;
  for (int i = 0; i < 10; ++i) {
    vww.push_back(static_cast<char>(i % 2));
    for (int p = 0; p < 96 * 96 * 3; ++p) vww.push_back(static_cast<char>((i + p) % 256));
  }
  const std::string vp = write_bytes("vww_test.bin", vww);
  const ImageDataset all = load_image_data(vp, "all");
  ASSERT_EQ(all.images.sizes(), (std::vector<int64_t>{10, 3, 96, 96}));
  // HWC → CHW: pixel (y, x) channel c is byte 1 + (y·96 + x)·3 + c of the record.
  EXPECT_FLOAT_EQ(all.images[3][2][1][5].item<float>(), ((3 + (96 + 5) * 3 + 2) % 256) / 255.f);
  EXPECT_EQ(all.labels[3].item<int64_t>(), 1);
  EXPECT_EQ(load_image_data(vp, "calib").size(), 2);  // records 0 and 5
  EXPECT_EQ(load_image_data(vp, "eval").size(), 8);
  DataOptions raw;
  raw.pixels = "raw";
  EXPECT_FLOAT_EQ(load_image_data(vp, "all", raw).images[3][2][1][5].item<float>(), (3 + (96 + 5) * 3 + 2) % 256);

  std::string kws;
  for (int i = 0; i < 5; ++i) {
    kws.push_back(static_cast<char>(11 - i));
    for (int p = 0; p < 490; ++p) kws.push_back(static_cast<char>(p % 256 - 128));
  }
  const std::string kp = write_bytes("kws_mfcc_test.bin", kws);
  const ImageDataset k = load_image_data(kp, "all");
  ASSERT_EQ(k.images.sizes(), (std::vector<int64_t>{5, 1, 49, 10}));
  EXPECT_FLOAT_EQ(k.images[1][0][3][7].item<float>(), ((37 % 256 - 128) - kKwsFeatureZeroPoint) * kKwsFeatureScale);
  EXPECT_EQ(k.labels[1].item<int64_t>(), 10);
}

TEST(BadInputEdgeData, WrongSizesLabelsAndAudio) {
  EXPECT_EQ(kind_of([&] { load_image_data(write_bytes("vww_short.bin", std::string(27649 * 2 + 5, '\0')), "all"); }),
            ErrorKind::Format);
  EXPECT_EQ(kind_of([&] { load_image_data(write_bytes("kws_mfcc_empty.bin", ""), "all"); }), ErrorKind::Format);
  std::string bad(491 * 3, '\0');
  bad[491] = 12;  // label 12 of 12 classes
  try {
    load_image_data(write_bytes("kws_mfcc_label.bin", bad), "all");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Format);
    EXPECT_NE(std::string(e.what()).find("record 1"), std::string::npos) << e.what();
  }
  EXPECT_EQ(kind_of([&] { load_image_data(write_bytes("kws_audio.bin", std::string(32001, '\0')), "all"); }),
            ErrorKind::Unsupported);
  EXPECT_EQ(kind_of([&] { load_image_data("/nonexistent/vww.bin", "all"); }), ErrorKind::Io);
  EXPECT_EQ(kind_of([&] { load_image_data(write_bytes("vww_one.bin", std::string(27649, '\0')), "bogus"); }),
            ErrorKind::Usage);
}

// ---- bad model files ----

std::vector<uint8_t> tiny_bytes() { return serialize_tflite(tiny_float(4)); }

// Every truncation and a few hundred random byte corruptions are either read (and imported / executed) or refused
// with a catq::Error — never a crash (the ASan build runs this test).
TEST(BadInputTflite, TruncatedAndCorruptedFilesAreRefusedCleanly) {
  const std::vector<uint8_t> good = tiny_bytes();
  int refused = 0;
  for (size_t cut = 0; cut < good.size(); cut += (cut < 64 ? 1 : 7)) {
    std::vector<uint8_t> b(good.begin(), good.begin() + static_cast<long>(cut));
    try {
      Graph g = tflite_to_graph(parse_tflite(b.data(), b.size(), "cut.tflite"));
    } catch (const Error& e) {
      ++refused;
      EXPECT_NE(std::string(e.what()).find("cut.tflite"), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(refused, 50);
  EXPECT_EQ(kind_of([&] { parse_tflite(good.data(), 7, "seven.tflite"); }), ErrorKind::Format);
  std::mt19937 rng(11);
  const at::Tensor x = images_nhwc(1, {7, 7, 3}, 1).permute({0, 3, 1, 2}).contiguous();
  for (int i = 0; i < 300; ++i) {
    std::vector<uint8_t> b = good;
    for (int k = 0; k < 4; ++k) b[rng() % b.size()] = static_cast<uint8_t>(rng());
    try {
      TfliteModel m = parse_tflite(b.data(), b.size(), "flip.tflite");
      GraphExecutor ex(tflite_to_graph(m));
      ex.forward(x);
    } catch (const Error&) {
    } catch (const c10::Error&) {
      // a corrupted but well-formed file can describe a graph libtorch refuses at run time (e.g. mutated strides)
    }
  }
}

TEST(BadInputTflite, UnknownOperatorsAndTypesAreNamed) {
  TfliteModel m = tiny_float(5);
  m.ops[4].code = 47;  // EXP
  try {
    tflite_to_graph(m);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("EXP"), std::string::npos) << e.what();
  }
  EXPECT_EQ(kind_of([&] { TfliteInt8Executor ex(m); }), ErrorKind::Unsupported);

  TfliteModel t = tiny_float(5);
  t.tensors[0].type = static_cast<TfliteType>(11);  // COMPLEX128
  const std::vector<uint8_t> b = serialize_tflite(t);
  try {
    parse_tflite(b.data(), b.size(), "complex.tflite");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("COMPLEX128"), std::string::npos) << e.what();
  }
}

TEST(BadInputTflite, ShapeMismatchesAreFormatOrDataErrors) {
  TfliteModel m = tiny_float(6);
  m.tensors[3].shape = {4, 3, 3, 2};  // conv1/w: data for [4,3,3,3]
  const std::vector<uint8_t> b = serialize_tflite(m);
  EXPECT_EQ(kind_of([&] { parse_tflite(b.data(), b.size(), "w.tflite"); }), ErrorKind::Format);
  TfliteModel o = tiny_float(6);
  o.tensors[5].shape = {1, 8, 9, 4};  // the conv's declared output does not match its geometry
  EXPECT_EQ(kind_of([&] { tflite_to_graph(o); }), ErrorKind::Data);
  TfliteModel r = tiny_float(6);
  r.ops[0].inputs[0] = 999;  // a tensor index out of range
  const std::vector<uint8_t> rb = serialize_tflite(r);
  EXPECT_EQ(kind_of([&] { parse_tflite(rb.data(), rb.size(), "idx.tflite"); }), ErrorKind::Format);
}

int run_cli(const std::string& args, std::string* out = nullptr) {
  const std::string cmd = std::string(CATQ_CLI_PATH) + " -q " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string o;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) o.append(buf, n);
  const int st = pclose(p);
  if (out) *out = o;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(BadInputTflite, CliExitCodes) {
  const std::vector<uint8_t> good = tiny_bytes();
  const std::string cut = temp_path("cut.tflite");
  write_file_atomic(cut, good.data(), good.size() / 2);
  std::string out;
  EXPECT_EQ(run_cli("info " + cut, &out), 4) << out;
  TfliteModel m = tiny_float(5);
  m.ops[4].code = 47;
  const std::string exp = temp_path("exp.tflite");
  write_tflite(exp, m);
  EXPECT_EQ(run_cli("info " + exp, &out), 5) << out;
  EXPECT_NE(out.find("EXP"), std::string::npos) << out;
  const std::string ok = temp_path("ok.tflite");
  write_tflite(ok, tiny_float(5));
  EXPECT_EQ(run_cli("info " + ok, &out), 0) << out;
  const std::string data = write_bytes("vww_bad.bin", std::string(100, '\0'));
  EXPECT_EQ(run_cli("eval " + ok + " --data " + data, &out), 4) << out;
}

// ---- the MLPerf Tiny files (../shared) ----

std::string asset(const std::string& name) { return default_mlperf_tiny_dir() + "/" + name; }
bool have_assets() { return fs::exists(asset("ic_resnet8_float.tflite")); }
#define NEED_ASSETS() \
  if (!have_assets()) GTEST_SKIP() << "../shared/assets/mlperf-tiny not found: MLPerf Tiny model tests skipped"

TEST(EdgeData, KwsFeaturesUseTheInt8ModelsInputParams) {
  NEED_ASSETS();
  const TfliteModel m = read_tflite(asset("kws_dscnn_int8.tflite"));
  const TfliteTensor& in = m.tensor(m.inputs[0]);
  ASSERT_TRUE(in.quant.present());
  EXPECT_EQ(in.quant.scale[0], kKwsFeatureScale);
  EXPECT_EQ(in.quant.zero_point[0], kKwsFeatureZeroPoint);
}

// The three float models import and score on a slice of their evaluation split; their int8 files run on the integer
// executor and agree with the float models on most decisions. (Full-set accuracies: bench/edge_ptq.sh.)
TEST(EdgeModels, FloatAndInt8ModelsScore) {
  NEED_ASSETS();
  struct Case {
    const char* model;
    std::string data;
    double min_fp, min_agree;
  };
  const std::string cifar = default_mlperf_tiny_dir() + "/../cifar10/test.bin";
  // Accuracy on 100 images spread over each file (the whole files: IC 87.2 %, VWW 85.3 %, KWS 90.1 %).
  const std::vector<Case> cases = {{"ic_resnet8", cifar, 0.8, 0.9},
                                   {"vww_mobilenetv1", asset("vww_eval1000_u8hwc.bin"), 0.75, 0.9},
                                   {"kws_dscnn", asset("kws_eval1000_mfcc_s8.bin"), 0.82, 0.9}};
  for (const Case& c : cases) {
    const std::string fm = asset(std::string(c.model) + "_float.tflite");
    const std::string im = asset(std::string(c.model) + "_int8.tflite");
    ImageDataset d = load_image_data(c.data, "all", data_options_for(fm, c.data, {}));
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < d.size(); i += std::max<int64_t>(1, d.size() / 100)) idx.push_back(i);
    const at::Tensor sel = at::tensor(idx, at::kLong);
    const at::Tensor x = d.images.index_select(0, sel), y = d.labels.index_select(0, sel);
    GraphExecutor fp(load_cnn_graph(fm));
    const at::Tensor zf = fp.forward(x);
    const double acc = zf.argmax(1).eq(y).to(at::kDouble).mean().item<double>();
    EXPECT_GE(acc, c.min_fp) << c.model;
    TfliteInt8Executor q(read_tflite(im));
    const at::Tensor zq = q.forward(x);
    const double agree = zq.argmax(1).eq(zf.argmax(1)).to(at::kDouble).mean().item<double>();
    EXPECT_GE(agree, c.min_agree) << c.model;
  }
}

}  // namespace

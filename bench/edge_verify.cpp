// The files catq writes for quantized CNNs, checked by their runtimes on the evaluation split (bench/edge_export.sh):
//   .onnx    QDQ ONNX with the CAT / plain-affine head as ONNX ops (what `catq export` writes), run by ONNX Runtime
//            (npm onnxruntime-node, tests/peers/ort_check.mjs): decisions equal to catq's simulation with its head;
//   .tflite  the int8 TFLite file of a W8A8 model (`catq export --format tflite`), read back and run by catq's TFLite
//            integer executor and by LiteRT (npm @litertjs/core: Google's TFLite runtime in WebAssembly, XNNPACK int8
//            kernels; tests/peers/litert_run.mjs): top-1, decisions equal to the simulation;
//   --official FILE.tflite   an int8 TFLite file (the MLPerf Tiny one) on catq's executor and in LiteRT.
// Prints one markdown row per model and runtime.
//   catq_bench_edge_verify --data FILE [--official FILE.tflite] [--tflite-calib-size N] MODEL.catq...
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

#include "core/file_util.h"
#include "core/process.h"
#include "core/source_dir.h"
#include "eval/classification.h"
#include "io/catq_file.h"
#include "io/cnn_model.h"
#include "io/onnx_writer.h"
#include "methods/cnn/tflite_export_job.h"
#include "runtime/tflite_int8.h"

using namespace catq;

int main(int argc, char** argv) {
  std::string data, official;
  int64_t calib_size = 500;
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--data" && i + 1 < argc) data = argv[++i];
    else if (a == "--tflite-calib-size" && i + 1 < argc) calib_size = std::atoll(argv[++i]);
    else if (a == "--official" && i + 1 < argc) official = argv[++i];
    else if (!a.empty() && a[0] != '-') models.push_back(a);
    else {
      std::fprintf(stderr, "usage: %s --data FILE [--tflite-calib-size N] MODEL.catq...\n", argv[0]);
      return 2;
    }
  }
  if (data.empty() || models.empty()) {
    std::fprintf(stderr, "usage: %s --data FILE [--tflite-calib-size N] MODEL.catq...\n", argv[0]);
    return 2;
  }
  const char* pe = std::getenv("CATQ_PEERS");
  const std::string peers = pe && *pe ? pe : std::string(CATQ_SOURCE_DIR) + "/.cache/peers";
  const bool ort = file_exists(peers + "/node_modules/onnxruntime-node/dist/index.js");
  const bool litert = file_exists(peers + "/node_modules/@litertjs/core/package.json");
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / fmt::format("catq_edge_verify_{}", getpid());
  std::filesystem::create_directories(dir);
  std::printf("| model | head | top-1 sim (+head) | file | top-1 file | decisions equal to the simulation |\n"
              "|---|---|---:|---|---:|---:|\n");
  // An int8 TFLite model in LiteRT (float input / output added) on images NCHW: the logits.
  auto run_litert = [&](const TfliteModel& m, const at::Tensor& images) {
    const std::string model = (dir / "lrt.tflite").string(), in = (dir / "lrt_x.f32").string(),
                      out = (dir / "lrt_y.f32").string();
    write_tflite(model, tflite_with_float_io(m));
    const at::Tensor xn = (images.dim() == 4 ? images.permute({0, 2, 3, 1}) : images).contiguous();
    write_file_atomic(in, xn.data_ptr(), xn.numel() * sizeof(float));
    int code = -1;
    const std::string res = run_capture(fmt::format("CATQ_PEERS='{}' node '{}/tests/peers/litert_run.mjs' '{}' '{}' {} "
                                                    "'{}' 2>/dev/null", peers, CATQ_SOURCE_DIR, model, in, images.size(0), out),
                                        &code);
    if (code != 0) fail(ErrorKind::Internal, "LiteRT failed: {}", res);
    std::vector<uint8_t> bytes = read_file_bytes(out);
    const int64_t n = static_cast<int64_t>(bytes.size() / 4);
    return at::from_blob(bytes.data(), {images.size(0), n / images.size(0)}, at::kFloat).clone();
  };
  try {
    if (!official.empty()) {
      const TfliteModel m = read_tflite(official);
      const ImageDataset eval = load_image_data(data, "eval", data_options_for(official, data, {}));
      const at::Tensor ours = TfliteInt8Executor(m).forward(eval.images);
      const std::string name = std::filesystem::path(official).stem().string();
      auto top1 = [&](const at::Tensor& z) { return 100.0 * topk_correct(z, eval.labels, 1) / eval.size(); };
      std::printf("| %s (official) | – | – | int8 TFLite, catq's TFLite integer executor | %.2f | – |\n", name.c_str(),
                  top1(ours));
      if (litert) {
        const at::Tensor theirs = run_litert(m, eval.images);
        std::printf("| %s (official) | – | – | int8 TFLite, LiteRT (XNNPACK) | %.2f | %.2f %% equal to catq's executor |\n",
                    name.c_str(), top1(theirs), 100.0 * top1_agreement(ours, theirs));
      }
      std::fflush(stdout);
    }
    for (const std::string& path : models) {
      QuantizedCnn q = read_catq(path);
      const ImageDataset eval = load_image_data(data, "eval", data_options_for_catq(q.metadata, "", data, {}));
      const at::Tensor images = eval.images.contiguous();
      at::Tensor sim;
      {
        at::NoGradGuard ng;
        std::vector<at::Tensor> parts;
        for (int64_t i = 0; i < eval.size(); i += 200) parts.push_back(q.forward(images.slice(0, i, i + 200)));
        sim = at::cat(parts);
      }
      const double top1_sim = 100.0 * topk_correct(sim, eval.labels, 1) / eval.size();
      const std::string name = std::filesystem::path(path).stem().string();
      const std::string head = q.head ? fmt::format("K={} α={}", q.head->k, q.head->alpha) : "–";
      auto row = [&](const char* file, const at::Tensor& logits) {
        std::printf("| %s | %s | %.2f | %s | %.2f | %.2f %% |\n", name.c_str(), head.c_str(), top1_sim, file,
                    100.0 * topk_correct(logits, eval.labels, 1) / eval.size(), 100.0 * top1_agreement(sim, logits));
        std::fflush(stdout);
      };
      if (ort) {
        Graph g = qdq_graph(*q.ex, *q.sq);
        if (q.head) append_cat_head(g, *q.head);
        const std::string onnx = (dir / "m.onnx").string(), in = (dir / "x.f32").string(), out = (dir / "y.f32").string();
        write_onnx(g, onnx, 13);
        write_file_atomic(in, images.data_ptr(), images.numel() * sizeof(float));
        int code = -1;
        const std::string res = run_capture(
            fmt::format("CATQ_PEERS='{}' node '{}/tests/peers/ort_check.mjs' '{}' '{}' {} {} {} {} '{}' 2>&1", peers,
                        CATQ_SOURCE_DIR, onnx, in, images.size(0), images.size(1), images.size(2), images.size(3), out),
            &code);
        if (code != 0) {
          std::fprintf(stderr, "edge_verify: ONNX Runtime failed on %s:\n%s\n", path.c_str(), res.c_str());
          return 1;
        }
        std::vector<uint8_t> bytes = read_file_bytes(out);
        if (bytes.size() != static_cast<size_t>(sim.numel()) * 4) {
          std::fprintf(stderr, "edge_verify: ORT wrote %zu bytes for %s\n", bytes.size(), path.c_str());
          return 1;
        }
        row("QDQ ONNX, ONNX Runtime", at::from_blob(bytes.data(), sim.sizes(), at::kFloat).clone());
      }
      const std::string bits = q.metadata.value("bits", "");
      if (bits.rfind("w8a8-wsym", 0) == 0 && !q.head) {
        TfliteExportJob job;
        job.model = path;
        job.out = (dir / "m.tflite").string();
        job.calib = {data, "calib", calib_size, {}};
        run_tflite_export_job(job);
        const TfliteModel tm = read_tflite(job.out);
        TfliteInt8Executor net(tm);
        row("int8 TFLite, catq's TFLite integer executor", net.forward(images));
        if (litert) row("int8 TFLite, LiteRT (XNNPACK)", run_litert(tm, images));
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "edge_verify: %s\n", e.what());
    return e.exit_code();
  }
  std::filesystem::remove_all(dir);
  return 0;
}

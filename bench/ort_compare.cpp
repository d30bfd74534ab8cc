// catq's integer CNN executor against ONNX Runtime on the same quantized model (issue 5): each .catq file is
// exported as QDQ ONNX (what `catq export` writes), run by ONNX Runtime (bench/peers/ort_speed.mjs, --threads
// intra-op threads, all graph optimisations: ORT fuses the QDQ pairs into its own int8 kernels) and by IntegerCnn
// (the same number of threads), on
// the evaluation split of the data file (CIFAR-10, or an EEMBC set: io/image_data.h, scaled as the model was
// calibrated). Prints a markdown row per model: top-1 of the simulation, catq's integer runtime and ORT, decisions
// equal between catq and ORT, and images/s of both — and, as the FP32 baseline, of the model's float graph (the
// dequantized weights) in catq's graph executor (libtorch / oneDNN fp32) and in ORT. Built on demand
// (bench/cnn_ort.sh, bench/edge_runtime.sh).
//   catq_bench_ort --data FILE [--limit N] [--batch B] [--threads T] MODEL.catq...
#include <ATen/Parallel.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "core/source_dir.h"
#include "core/process.h"
#include "io/catq_file.h"
#include "io/cifar.h"
#include "io/cnn_model.h"
#include "io/image_data.h"
#include "io/onnx_writer.h"
#include "runtime/int_cnn.h"

using namespace catq;

namespace {

double top1(const at::Tensor& logits, const at::Tensor& labels) {
  return 100.0 * logits.argmax(1).eq(labels).to(at::kDouble).mean().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  std::string data;
  int64_t limit = 0, batch = 200;
  int threads = 1;
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--data" && i + 1 < argc) data = argv[++i];
    else if (a == "--limit" && i + 1 < argc) limit = std::atoll(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) batch = std::atoll(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
    else if (!a.empty() && a[0] != '-') models.push_back(a);
    else {
      std::fprintf(stderr, "usage: %s --data test.bin [--limit N] [--batch B] [--threads T] MODEL.catq...\n", argv[0]);
      return 2;
    }
  }
  if (data.empty() || models.empty()) {
    std::fprintf(stderr, "usage: %s --data test.bin [--limit N] [--batch B] [--threads T] MODEL.catq...\n", argv[0]);
    return 2;
  }
  // catq's executor (oneDNN and the elementwise passes) and ORT's intra-op pool get the same thread count.
  at::set_num_threads(threads);
  const char* pe = std::getenv("CATQ_PEERS");
  const std::string peers = pe && *pe ? pe : std::string(CATQ_SOURCE_DIR) + "/.cache/peers";
  if (!file_exists(peers + "/node_modules/onnxruntime-node/dist/index.js")) {
    std::fprintf(stderr, "ort_compare: onnxruntime-node not found in %s/node_modules (scripts/setup.sh installs it)\n",
                 peers.c_str());
    return 1;
  }
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / fmt::format("catq_ort_{}", getpid());
  std::filesystem::create_directories(dir);
  std::printf("| model | top-1 sim | top-1 catq int | top-1 ORT | equal decisions catq / ORT | catq int img/s | ORT QDQ img/s "
              "| catq / ORT | catq FP32 img/s | ORT FP32 img/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  // ORT on an ONNX file over all images: images/s, logits into `out`.
  auto ort_run = [&](const std::string& onnx, const at::Tensor& images, const std::string& out, double* ips) {
    int code = -1;
    const std::string cmd = fmt::format(
        "CATQ_PEERS='{}' node '{}/bench/peers/ort_speed.mjs' '{}' '{}' {} {} {} {} {} '{}' {} 2>&1", peers,
        CATQ_SOURCE_DIR, onnx, (dir / "images.f32").string(), images.size(0), images.size(1), images.size(2),
        images.size(3), batch, out, threads);
    const std::string res = run_capture(cmd, &code);
    if (code != 0) {
      std::fprintf(stderr, "ort_compare: ONNX Runtime failed on %s:\n%s\n", onnx.c_str(), res.c_str());
      return false;
    }
    *ips = std::stod(res.substr(res.find("\"images_per_s\":") + 15));
    return true;
  };
  for (const std::string& path : models) {
    QuantizedCnn q = read_catq(path);
    ImageDataset eval = load_image_data(data, "eval", data_options_for_catq(q.metadata, "", data, {}));
    if (limit > 0 && limit < eval.size()) eval = eval.slice(0, limit);
    const at::Tensor images = eval.images.contiguous();
    write_file_atomic((dir / "images.f32").string(), images.data_ptr(), images.numel() * sizeof(float));
    const std::string onnx = (dir / "model.onnx").string(), out = (dir / "ort.f32").string();
    write_onnx(qdq_graph(*q.ex, *q.sq), onnx, 13);
    at::Tensor sim;
    {
      at::NoGradGuard ng;
      std::vector<at::Tensor> parts;
      for (int64_t i = 0; i < eval.size(); i += batch) parts.push_back(q.base_logits(images.slice(0, i, i + batch)));
      sim = at::cat(parts);
    }
    IntegerCnn net(*q.ex, *q.sq);
    net.forward(images.slice(0, 0, batch));  // warm-up: primitives created for the batch shape
    std::vector<at::Tensor> parts;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < eval.size(); i += batch) parts.push_back(net.forward(images.slice(0, i, i + batch)));
    const double catq_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const at::Tensor catq_logits = at::cat(parts);
    double ort_ips = 0, ort_fp_ips = 0;
    if (!ort_run(onnx, images, out, &ort_ips)) return 1;
    std::vector<uint8_t> bytes = read_file_bytes(out);
    if (bytes.size() != static_cast<size_t>(catq_logits.numel()) * 4) {
      std::fprintf(stderr, "ort_compare: ORT wrote %zu bytes, expected %lld\n", bytes.size(),
                   static_cast<long long>(catq_logits.numel() * 4));
      return 1;
    }
    const at::Tensor ort = at::from_blob(bytes.data(), catq_logits.sizes(), at::kFloat).clone();
    const double catq_ips = eval.size() / catq_s;
    const double agree = 100.0 * catq_logits.argmax(1).eq(ort.argmax(1)).to(at::kDouble).mean().item<double>();
    // FP32 baselines: the float graph (dequantized weights, no quantizers) in catq's executor and in ORT.
    double fp_s = 0;
    {
      at::NoGradGuard ng;
      q.ex->forward(images.slice(0, 0, batch));
      const auto f0 = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < eval.size(); i += batch) q.ex->forward(images.slice(0, i, i + batch));
      fp_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - f0).count();
    }
    write_onnx(q.ex->graph(), onnx, 13);
    if (!ort_run(onnx, images, out, &ort_fp_ips)) return 1;
    std::printf("| %s | %.2f | %.2f | %.2f | %.2f %% | %.0f | %.0f | %.2f | %.0f | %.0f |\n",
                std::filesystem::path(path).stem().string().c_str(), top1(sim, eval.labels),
                top1(catq_logits, eval.labels), top1(ort, eval.labels), agree, catq_ips, ort_ips, catq_ips / ort_ips,
                eval.size() / fp_s, ort_fp_ips);
    std::fflush(stdout);
  }
  std::filesystem::remove_all(dir);
  return 0;
}

// `catq eval MODEL --data ...`: accuracy of a CNN on CIFAR-10 / MNIST (FP32, or quantized with --quant,
// reporting agreement with FP32), or perplexity of a Llama model on text.
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "eval/classification.h"
#include "io/cifar.h"
#include "io/model_format.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"
#include "sim/executor.h"

namespace catq::cli {

namespace {
struct EvalArgs {
  std::string model, data, split = "eval", quant, calib_data, calib_split = "calib";
  int64_t batch = 250, limit = 0;
  bool no_fold_bn = false;
};
EvalArgs args;

int onnx_eval(const Common& common) {
  CATQ_CHECK(!args.data.empty(), Usage, "eval: --data is required for an ONNX model (a CIFAR-10 .bin file)");
  Graph g = load_onnx(args.model);
  fold_constants(g);
  if (!args.no_fold_bn) fold_batchnorm(g);
  GraphExecutor ex(std::move(g));
  ImageDataset data = load_cifar10(args.data, parse_cifar_split(args.split));
  ClassifyOptions o;
  o.batch_size = args.batch;
  o.limit = args.limit;
  o.label = "fp32";
  ClassifyResult fp = evaluate_classifier(data, [&](const at::Tensor& x) { return ex.forward(x); }, o);
  nlohmann::json j;
  j["model"] = args.model;
  j["data"] = data.name;
  j["n"] = fp.n;
  j["fp32"] = {{"top1", fp.top1 * 100}, {"top5", fp.top5 * 100}, {"seconds", fp.seconds}};
  if (common.json) std::cout << j.dump(2) << "\n";
  else
    std::cout << fmt::format("{} on {} ({} images): FP32 top-1 {:.2f} %  top-5 {:.2f} %  ({:.1f} s)\n", args.model,
                             data.name, fp.n, fp.top1 * 100, fp.top5 * 100, fp.seconds);
  return 0;
}
}  // namespace

void register_eval(CLI::App& app, Common& common) {
  auto* sub = app.add_subcommand("eval", "Evaluate a model: top-1/top-5 for CNNs, perplexity for LLMs");
  sub->footer(
      "Examples:\n"
      "  catq eval resnet20.onnx --data ../shared/assets/cifar10/test.bin --split eval\n"
      "  catq eval resnet20.onnx --data test.bin --quant w4a4          (calibrates on --split calib of the same file)\n"
      "  catq eval resnet20.onnx --data test.bin --quant config.json --calib-data test.bin --calib-split calib\n");
  sub->add_option("model", args.model, "Model file")->required();
  sub->add_option("--data", args.data, "Evaluation data: CIFAR-10 binary file");
  sub->add_option("--split", args.split, "all | calib | eval (project split of test.bin)")->capture_default_str();
  sub->add_option("--quant", args.quant, "Quantization config: JSON file or short form like w8a8, w4a4, w4a16g32");
  sub->add_option("--calib-data", args.calib_data, "Calibration data (default: --data)");
  sub->add_option("--calib-split", args.calib_split, "Split of the calibration file")->capture_default_str();
  sub->add_option("--batch", args.batch, "Batch size")->capture_default_str();
  sub->add_option("--limit", args.limit, "Evaluate only the first N samples (0 = all)")->capture_default_str();
  sub->add_flag("--no-fold-bn", args.no_fold_bn, "Keep BatchNormalization separate (default: fold into conv)");
  sub->callback([&common] {
    ModelFormat f = detect_model_format(args.model);
    switch (f) {
      case ModelFormat::Onnx: onnx_eval(common); break;
      default: fail(ErrorKind::Unsupported, "{}: format '{}' is not supported by 'eval' yet", args.model, model_format_name(f));
    }
  });
}

}  // namespace catq::cli

#include "methods/cnn/tflite_export_job.h"

#include "core/error.h"
#include "core/file_util.h"
#include "eval/classification.h"
#include "io/catq_file.h"
#include "io/cnn_model.h"
#include "io/tflite_export.h"
#include "runtime/tflite_int8.h"

namespace catq {

nlohmann::json run_tflite_export_job(TfliteExportJob job) {
  CATQ_CHECK(!job.out.empty(), Usage, "export: -o OUT.tflite is required");
  CATQ_CHECK(!job.calib.path.empty(), Usage, "export --format tflite: --calib DATA is required (the images whose "
             "ranges fix the activations the simulation keeps in float)");
  CATQ_CHECK(job.calib.split != "eval", Usage, "export: calibrating on the evaluation split is not allowed");
  QuantizedCnn q = read_catq(job.model);
  job.calib.data = data_options_for_catq(q.metadata, "", job.calib.path, job.calib.data);
  const ImageDataset calib = load_image_source(job.calib, job.seed);
  TfliteExportReport rep;
  TfliteModel tm = tflite_int8_model(*q.ex, *q.sq, calib.images, &rep);
  write_tflite(job.out, tm);
  // Read the file back and run it on catq's TFLite integer executor.
  TfliteInt8Executor back(read_tflite(job.out));
  at::Tensor sim;
  {
    at::NoGradGuard ng;
    sim = q.base_logits(calib.images);
  }
  const at::Tensor file = back.forward(calib.images);
  nlohmann::json j;
  j["model"] = job.model;
  j["output"] = job.out;
  j["format"] = "tflite-int8";
  j["bytes"] = static_cast<int64_t>(file_size(job.out));
  j["operators"] = tm.op_histogram();
  j["calibration"] = {{"data", calib.name}, {"images", calib.size()}};
  j["tensors_with_measured_ranges"] = rep.calibrated_tensors;
  j["quantize_ops"] = rep.requantize_ops;
  j["pad_ops"] = rep.pad_ops;
  j["rescaled_weight_channels"] = rep.rescaled_channels;
  j["readback"] = {{"runtime", "catq TFLite integer executor (LiteRT runs the files in bench/edge_export.sh and the "
                              "PeerLiteRt tests)"},
                   {"images", calib.size()},
                   {"decisions_equal_to_simulation", top1_agreement(sim, file) * 100},
                   {"kl_vs_simulation", kl_divergence(sim, file)}};
  j["head_exported"] = false;
  j["has_head"] = q.head.has_value();
  return j;
}

}  // namespace catq

// The `catq quantize` job for a CNN, as data: what the user asked for (method, bits or config, calibration images,
// reconstruction overrides, mixed-precision budget, logit head, output file) and the one function that runs it —
// load, (allocate bits,) calibrate / reconstruct, fit the head, write the .catq file. The CLI only fills the struct.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "io/image_data.h"
#include "io/catq_file.h"
#include "methods/cnn/pipeline.h"

namespace catq {

// Images from a data file (CIFAR-10 binary, or an EEMBC set: io/image_data.h): a split of it ("all" | "calib" |
// "eval"), optionally a seeded random subset.
struct ImageSource {
  std::string path;
  std::string split = "calib";
  int64_t limit = 0;  // 0 = all images of the split
  DataOptions data;   // format and pixel scaling ("auto": chosen for the model, io/cnn_model.h)
};
// A seeded random subset of `limit` images (the split is sorted by class: a prefix would hold one class only).
ImageDataset load_image_source(const ImageSource& s, uint64_t seed);

// The head as a user states it: 0 / negative = not given.
struct HeadRequest {
  std::string kind;                  // "cat" | "affine"; empty = no head
  int64_t k = 0;                     // K (cat); with alpha: no selection
  double alpha = -1;                 // α; with k (or for affine): no selection
  std::vector<int64_t> ks;           // K candidates for cross-validation (default CatSelectOptions)
  std::vector<double> alphas;        // α candidates
  int64_t pca = 0, folds = 5, augment = 0;
  std::string metric = "accuracy";   // selection metric: accuracy | kl
  ImageSource fit{"", "all", 0, {}};   // fitting images; empty path = the calibration images
};
// The HeadOptions a request means: selection unless both K and α are fixed, candidate grids narrowed to the given
// values.
HeadOptions head_options(const HeadRequest& r, uint64_t seed);

// Per-layer bits under a budget (mixed_precision.h); inactive when neither budget is given.
struct BudgetRequest {
  std::string bops, bytes;           // a number (k/M/G suffixes) or "wN" = what uniform N-bit costs
  std::string alloc = "knapsack";    // knapsack | gumbel
  int64_t iters = 300;               // gumbel search iterations
  std::vector<int> bits = {2, 4, 8};
  std::vector<std::string> pairs;    // decoupled candidates "wWaA" instead of `bits` (when given)
  bool active() const { return !bops.empty() || !bytes.empty(); }
};

struct CnnQuantizeJob {
  std::string model;                 // FP classifier: ONNX or float TFLite
  std::string method = "rtn";        // rtn | adaround | brecq | qdrop | pdquant | wca, optionally "+cat" / "+affine"
  std::string bits = "w4a4";         // the academic setting (academic_config)
  std::string config;                // a quant config (file or compact string) instead of bits
  std::string from;                  // start from this .catq quantization of `model` and only fit the head
  std::string out;                   // the .catq file written
  ImageSource calib;
  nlohmann::json recon = nlohmann::json::object();  // ReconOptions fields changed from the method's preset
  HeadRequest head;
  BudgetRequest budget;
  uint64_t seed = 0;
};

// Splits "method+head" into method and head.kind ("none" = no head). Error(Usage) when both name a head or the
// head is unknown.
void split_method_head(CnnQuantizeJob& job);
// Runs the job (options checked before anything is loaded: Error(Usage / Config / Unsupported) naming the option)
// and writes job.out atomically. Returns the quantized model with its metadata.
QuantizedCnn run_cnn_quantize_job(CnnQuantizeJob job);

}  // namespace catq

// `catq quantize` for CNNs: the academic PTQ setting (methods.md §2), a base method, and an optional logit head
// (CAT or plain affine, methods.md §3). Also used by tests and benchmarks.
//
//   rtn        calibration only (MSE-searched ranges): the starting point of every other method
//   adaround / brecq / qdrop / pdquant / wca    reconstruction (recon.h) from the RTN state
//   head cat     CAT fitted on the fitting images; K and α chosen by cross-validation on them (or given)
//   head affine  plain affine = CAT with K = 1
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "io/catq_file.h"
#include "data/dataset.h"
#include "methods/cnn/cat.h"
#include "methods/cnn/recon.h"
#include "sim/quant_config.h"

namespace catq {

// The academic CNN setting for "wWaA" (e.g. "w2a2"): weights per output channel, asymmetric (as BRECQ/QDrop code),
// activations per tensor asymmetric unsigned; both ranges by MSE search with p = 2.4; first conv and last linear
// at 8 bits (weights and inputs); logits not quantized. "wWaA-wsym" (e.g. "w8a8-wsym") makes the weights symmetric, as
// int8 deployment runtimes expect. Error(Config) for a malformed string or bits outside 2..8.
QuantConfig academic_config(const std::string& bits);

const std::vector<std::string>& cnn_ptq_methods();

// Error(Unsupported) unless g has one input; Error(Data) naming data, its role ("calibration", "training") and the
// shapes when its images do not fit that input.
void check_image_model(const Graph& g, const ImageDataset& data, const std::string& what, const std::string& role);  // rtn + recon_methods()

struct CnnPtqOptions {
  std::string method = "rtn";
  std::string bits = "w4a4";
  std::string config;            // a quant config (file or compact string) replacing academic_config(bits)
  std::optional<QuantConfig> config_value;  // a config built in code (e.g. a mixed-precision allocation): wins
  ReconOptions recon;            // used for reconstruction methods (start from recon_preset(method))
  int64_t calib_batch = 250;
};

// Calibrates (and for reconstruction methods reconstructs) the FP graph `g` (constants folded; BN is folded here)
// on `calib`. Every quantized layer ends with installed integer codes, so the result is self-contained; its
// executor keeps the FP weights in the graph (forward without a context = the FP model). metadata records the
// method, bits, config, options, calibration set, per-unit reconstruction losses and wall time.
QuantizedCnn quantize_cnn(Graph g, const ImageDataset& calib, const CnnPtqOptions& o);

// Installs integer codes, from the executor's current weights, for every quantized layer that has none yet (RTN
// layers, layers a QAT left to the STE quantizer). `probe` (e.g. one image) is run once first in Quantize mode so
// that params of new or changed weights are computed. Leaves sq in Quantize mode.
void install_weight_codes(const GraphExecutor& ex, SimQuant& sq, const at::Tensor& probe);

struct HeadOptions {
  std::string kind = "cat";      // "cat" or "affine" (K = 1)
  bool select = true;            // choose K (cat) and α by cross-validation on the fitting points
  CatFitOptions fit;             // K, α, PCA dims, seed (K and α are overwritten by the selection)
  CatSelectOptions grid;         // candidate K and α, folds, metric
  int64_t augment = 0;           // extra random crop + flip copies of every fitting image
  uint64_t seed = 0;
  int64_t batch = 250;
};

// Fits the head on `fit` images: LQ logits from the quantized model m (without its head), FP logits from `fp`
// (the FP model). Sets m.head (none when the selection picks α = 0) and records the fit in m.metadata["head"].
void fit_head(QuantizedCnn& m, const GraphExecutor& fp, const ImageDataset& fit, const HeadOptions& o);

// Logits of a classifier over images in batches, no autograd (float [N, K]).
at::Tensor logits_of(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& images, int64_t batch);

}  // namespace catq

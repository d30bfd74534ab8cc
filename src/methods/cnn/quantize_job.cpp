#include "methods/cnn/quantize_job.h"

#include <algorithm>
#include <memory>
#include <optional>

#include "core/error.h"
#include "io/cifar.h"
#include "io/cnn_model.h"
#include "io/model_format.h"
#include "io/onnx_reader.h"
#include "ir/passes.h"
#include "methods/cnn/mixed_precision.h"
#include "sim/fold_constants.h"

namespace catq {

ImageDataset load_image_source(const ImageSource& s, uint64_t seed) {
  ImageDataset d = load_image_data(s.path, s.split, s.data);
  if (s.limit > 0 && s.limit < d.size()) {
    std::vector<int64_t> perm = seeded_permutation(d.size(), seed + 3);
    perm.resize(s.limit);
    at::Tensor idx = at::tensor(perm, at::kLong);
    d = {d.images.index_select(0, idx), d.labels.index_select(0, idx), fmt::format("{}[{} random]", d.name, s.limit)};
  }
  return d;
}

HeadOptions head_options(const HeadRequest& r, uint64_t seed) {
  HeadOptions ho;
  ho.kind = r.kind;
  ho.seed = seed;
  ho.augment = r.augment;
  ho.fit.pca_dims = r.pca;
  if (r.k > 0) ho.fit.k = r.k;
  if (r.alpha >= 0) ho.fit.alpha = r.alpha;
  ho.select = !(r.alpha >= 0 && (r.k > 0 || r.kind == "affine"));
  if (!r.ks.empty()) ho.grid.ks = r.ks;
  else if (r.k > 0) ho.grid.ks = {r.k};
  if (!r.alphas.empty()) ho.grid.alphas = r.alphas;
  else if (r.alpha >= 0) ho.grid.alphas = {r.alpha};
  ho.grid.folds = static_cast<int>(r.folds);
  ho.grid.metric = r.metric;
  return ho;
}

void split_method_head(CnnQuantizeJob& job) {
  std::string& head = job.head.kind;
  if (auto plus = job.method.find('+'); plus != std::string::npos) {
    CATQ_CHECK(head.empty(), Usage, "--method '{}' already names a head; drop --head", job.method);
    head = job.method.substr(plus + 1);
    job.method = job.method.substr(0, plus);
  }
  if (head == "none") head.clear();
  CATQ_CHECK(head.empty() || head == "cat" || head == "affine", Usage, "--head '{}': expected cat, affine or none", head);
}

namespace {

// Every option is checked before anything is loaded (a missing model then fails with these checks done first).
void check_job(const CnnQuantizeJob& job) {
  if (job.from.empty()) {
    const auto& methods = cnn_ptq_methods();
    CATQ_CHECK(std::find(methods.begin(), methods.end(), job.method) != methods.end(), Config,
               "--method '{}': expected one of {} (optionally +cat or +affine)", job.method, fmt::join(methods, ", "));
    if (job.config.empty()) academic_config(job.bits);
    if (job.method != "rtn") recon_options(job.method, job.recon);
  }
  const BudgetRequest& b = job.budget;
  CATQ_CHECK(b.bops.empty() || b.bytes.empty(), Usage, "give --budget-bops or --budget-bytes, not both");
  CATQ_CHECK(b.alloc == "knapsack" || b.alloc == "gumbel", Usage, "--alloc '{}': expected knapsack or gumbel", b.alloc);
  CATQ_CHECK(!b.active() || (job.from.empty() && job.config.empty()), Usage,
             "--budget-bops / --budget-bytes choose the bits themselves: drop --config / --from");
  ModelFormat f = detect_model_format(job.model);
  CATQ_CHECK(f == ModelFormat::Onnx || f == ModelFormat::Tflite, Unsupported,
             "{}: quantize handles ONNX / TFLite CNNs and Llama models (this is {})", job.model, model_format_name(f));
  CATQ_CHECK(!job.calib.path.empty(), Usage, "quantize: --calib FILE is required (CIFAR-10 binary or an EEMBC set)");
  if (job.calib.split == "eval" || job.head.fit.split == "eval")
    fail(ErrorKind::Usage, "quantize: calibrating or fitting on the evaluation split is not allowed");
}

// `from` must quantize the same graph: same layers, same weight shapes.
void check_same_model(const GraphExecutor& fp, const QuantizedCnn& m, const CnnQuantizeJob& job) {
  CATQ_CHECK(fp.layers().size() == m.ex->layers().size(), Data, "--from {}: it has {} layers but {} has {} (not a "
             "quantization of this model?)", job.from, m.ex->layers().size(), job.model, fp.layers().size());
  for (size_t i = 0; i < fp.layers().size(); ++i)
    CATQ_CHECK(fp.layers()[i].name == m.ex->layers()[i].name &&
                   fp.layers()[i].weight_shape == m.ex->layers()[i].weight_shape,
               Data, "--from {}: layer {} is '{}' there but '{}' in {}", job.from, i, m.ex->layers()[i].name,
               fp.layers()[i].name, job.model);
}

// Bit widths per layer under the budget, measured on the calibration images.
MixedPrecisionResult allocate(const Graph& g, const ImageDataset& calib, const BudgetRequest& b, uint64_t seed) {
  Graph fg = g;
  fold_batchnorm(fg);
  GraphExecutor fex(std::move(fg));
  MixedPrecisionOptions mo;
  mo.allocator = b.alloc;
  mo.candidates = b.bits;
  for (const std::string& pair : b.pairs) mo.pairs.push_back(parse_bit_pair(pair, "--alloc-pairs"));
  mo.kind = b.bops.empty() ? BudgetKind::Bytes : BudgetKind::Bops;
  const auto layers = mp_layers(fex, calib.images);
  mo.budget = b.bops.empty() ? parse_budget(b.bytes, layers, mo.kind, "--budget-bytes")
                             : parse_budget(b.bops, layers, mo.kind, "--budget-bops");
  mo.iters = b.iters;
  mo.seed = seed;
  return allocate_bits(fex, calib.images, mo);
}

}  // namespace

QuantizedCnn run_cnn_quantize_job(CnnQuantizeJob job) {
  split_method_head(job);
  check_job(job);
  Graph g = load_cnn_graph(job.model);
  if (job.head.fit.data.pixels == "auto") job.head.fit.data.pixels = job.calib.data.pixels;  // the user's choice
  job.calib.data = data_options_for(job.model, job.calib.path, job.calib.data);
  if (!job.head.fit.path.empty()) job.head.fit.data = data_options_for(job.model, job.head.fit.path, job.head.fit.data);
  ImageDataset calib = load_image_source(job.calib, job.seed);

  QuantizedCnn m;
  std::unique_ptr<GraphExecutor> fp;  // the FP model for the head (when starting from a .catq)
  if (!job.from.empty()) {
    m = read_catq(job.from);
    Graph fg = std::move(g);
    fold_batchnorm(fg);
    fp = std::make_unique<GraphExecutor>(std::move(fg));
    check_same_model(*fp, m, job);
    CATQ_CHECK(!job.head.kind.empty(), Usage, "--from only adds a head: give --head cat|affine");
  } else {
    CnnPtqOptions o;
    o.method = job.method;
    o.bits = job.bits;
    o.config = job.config;
    std::optional<MixedPrecisionResult> mixed;
    if (job.budget.active()) {
      mixed = allocate(g, calib, job.budget, job.seed);
      o.config_value = mixed->config;
    }
    if (job.method != "rtn") {
      nlohmann::json r = job.recon;
      r["seed"] = job.seed;
      o.recon = recon_options(job.method, r);
    }
    m = quantize_cnn(std::move(g), calib, o);
    if (mixed) m.metadata["mixed_precision"] = mixed->report;
  }
  // How the images were scaled: `catq eval` of the file uses the same.
  m.metadata["data_options"] = {{"pixels", job.calib.data.pixels}, {"feature_scale", job.calib.data.feature_scale},
                                {"feature_zero_point", job.calib.data.feature_zero_point}};
  if (!job.head.kind.empty()) {
    ImageDataset fit = job.head.fit.path.empty() ? calib : load_image_source(job.head.fit, job.seed);
    fit_head(m, fp ? *fp : *m.ex, fit, head_options(job.head, job.seed));
  }
  write_catq(job.out, *m.ex, *m.sq, m.head ? &*m.head : nullptr, m.metadata);
  return m;
}

}  // namespace catq

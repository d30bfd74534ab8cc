#include "methods/cnn/pipeline.h"

#include <chrono>
#include <regex>

#include "core/error.h"
#include "core/progress.h"
#include "eval/classification.h"
#include "ir/passes.h"
#include "methods/cnn/rtn.h"
#include "train/augment.h"

namespace catq {

using nlohmann::json;

QuantConfig academic_config(const std::string& bits) {
  std::smatch m;
  static const std::regex re("^w([0-9]+)a([0-9]+)(-wsym)?$", std::regex::icase);
  CATQ_CHECK(std::regex_match(bits, m, re), Config,
             "--bits '{}': expected wWaA (e.g. w4a4 or w2a2), optionally -wsym for symmetric weights (w8a8-wsym)", bits);
  const int wb = std::stoi(m[1]), ab = std::stoi(m[2]);
  const bool wsym = m[3].matched;
  CATQ_CHECK(wb >= 2 && wb <= 8 && ab >= 2 && ab <= 8, Config,
             "--bits '{}': weight and activation bits must be 2..8 for the CNN PTQ methods", bits);
  QuantConfig c = QuantConfig::from_string(fmt::format("w{}a{}-mse-wmse-{}-fl8", wb, ab, wsym ? "wsym" : "wasym"));
  c.defaults.weight.mse_p = 2.4;
  c.defaults.input.mse_p = 2.4;
  c.source = bits + fmt::format(" (academic: per-channel {} weights, per-tensor activations, MSE p=2.4, first/last 8-bit)",
                                wsym ? "symmetric" : "asymmetric");
  return c;
}

const std::vector<std::string>& cnn_ptq_methods() {
  static const std::vector<std::string> m = [] {
    std::vector<std::string> v = {"rtn"};
    for (const auto& r : recon_methods()) v.push_back(r);
    return v;
  }();
  return m;
}

at::Tensor logits_of(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& images, int64_t batch) {
  at::NoGradGuard ng;
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < images.size(0); i += batch) parts.push_back(f(images.slice(0, i, i + batch)).to(at::kFloat));
  return at::cat(parts, 0);
}

void check_image_model(const Graph& g, const ImageDataset& data, const std::string& what, const std::string& role) {
  CATQ_CHECK(g.inputs.size() == 1, Unsupported, "{}: {} needs a model with one image input, it has {}", g.source, what,
             g.inputs.size());
  const ValueInfo& in = g.inputs[0];
  if (in.has_shape && in.shape.size() == 4) {
    bool ok = data.images.dim() == 4;
    for (int d = 1; ok && d < 4; ++d) ok = in.shape[d] < 0 || in.shape[d] == data.images.size(d);
    CATQ_CHECK(ok, Data, "{}: {} images are [{}] per image but the model '{}' expects [{}]", data.name, role,
               fmt::join(data.images.sizes().slice(1), ","), g.source,
               fmt::join(std::vector<int64_t>(in.shape.begin() + 1, in.shape.end()), ","));
  }
}

void install_weight_codes(const GraphExecutor& ex, SimQuant& sq, const at::Tensor& probe) {
  std::vector<const LayerInfo*> todo;
  for (const LayerInfo& l : ex.layers()) {
    const SimQuant::Layer& sl = sq.layer(l.name);
    if (sl.weight_spec.enabled && !sl.weight_codes.defined()) todo.push_back(&l);
  }
  if (todo.empty()) return;
  {
    // One quantized forward (re)computes the params of weights that are new or were changed in place.
    at::NoGradGuard ng;
    sq.set_mode(SimQuant::Mode::Quantize);
    ex.forward(probe, &sq);
  }
  for (const LayerInfo* l : todo) {
    const QuantParams* wp = sq.weight_params(l->name);
    CATQ_CHECK(wp != nullptr, Internal, "layer '{}' has no weight params", l->name);
    sq.set_quantized_weight(l->name, quantize(ex.layer_weight(*l).detach(), *wp), *wp);
  }
}

QuantizedCnn quantize_cnn(Graph g, const ImageDataset& calib, const CnnPtqOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const auto& methods = cnn_ptq_methods();
  CATQ_CHECK(std::find(methods.begin(), methods.end(), o.method) != methods.end(), Config,
             "unknown method '{}', expected one of: {}", o.method, fmt::join(methods, ", "));
  QuantConfig cfg = o.config_value ? *o.config_value
                    : o.config.empty() ? academic_config(o.bits) : QuantConfig::load(o.config);
  CATQ_CHECK(calib.size() > 0, Data, "calibration data {} is empty", calib.name);
  check_image_model(g, calib, "quantize", "calibration");
  int bn = cfg.fold_bn ? fold_batchnorm(g) : 0;
  auto ex = std::make_unique<GraphExecutor>(std::move(g));
  auto sq = std::make_unique<SimQuant>(cfg);
  calibrate_rtn(*ex, *sq, calib.images, o.calib_batch);

  json meta;
  meta["method"] = o.method;
  meta["bits"] = o.config_value ? o.config_value->source : o.config.empty() ? o.bits : o.config;
  meta["source_model"] = ex->graph().source;
  meta["bn_folded"] = bn;
  meta["calibration"] = {{"data", calib.name}, {"images", calib.size()}};
  if (o.method != "rtn") {
    ReconOptions ro = o.recon;
    ro.method = o.method;
    ReconReport rep = reconstruct(*ex, *sq, calib.images, ro);
    json units = json::array();
    for (const auto& u : rep.units)
      units.push_back({{"unit", u.name}, {"pass", u.pass}, {"iters", u.iters}, {"loss_before", u.loss_before},
                       {"loss_after", u.loss_after}, {"reverted", u.reverted}, {"seconds", u.seconds}});
    json rj = ro;  // every option the run used
    rj["units"] = units;
    rj["seconds"] = rep.seconds;
    meta["reconstruction"] = rj;
  }
  install_weight_codes(*ex, *sq, calib.images.slice(0, 0, 1));
  meta["weight_bytes"] = sq->total_weight_bytes();
  meta["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  QuantizedCnn m;
  m.ex = std::move(ex);
  m.sq = std::move(sq);
  m.metadata = meta;
  return m;
}

void fit_head(QuantizedCnn& m, const GraphExecutor& fp, const ImageDataset& fit, const HeadOptions& o) {
  CATQ_CHECK(o.kind == "cat" || o.kind == "affine", Config, "--head '{}': expected cat or affine", o.kind);
  CATQ_CHECK(fit.size() > 0, Data, "head fitting data {} is empty", fit.name);
  CATQ_CHECK(o.augment >= 0 && o.augment <= 64, Config, "--fit-augment {} outside 0..64", o.augment);
  const auto start = std::chrono::steady_clock::now();
  // Fitting points: every image, plus `augment` random crop + flip copies of it (same group id).
  std::vector<at::Tensor> imgs = {fit.images};
  std::vector<at::Tensor> groups = {at::arange(fit.size(), at::kLong)};
  auto aug = random_crop_flip(4, true, o.seed + 101);
  for (int64_t a = 0; a < o.augment; ++a) {
    imgs.push_back(aug(fit.images));
    groups.push_back(at::arange(fit.size(), at::kLong));
  }
  at::Tensor images = at::cat(imgs, 0), group = at::cat(groups, 0);
  at::Tensor labels = fit.labels.repeat({o.augment + 1});
  Progress bar("head: logits", 2);
  at::Tensor z_fp = logits_of([&](const at::Tensor& x) { return fp.forward(x); }, images, o.batch);
  bar.step();
  at::Tensor z_lq = logits_of([&](const at::Tensor& x) { return m.base_logits(x); }, images, o.batch);
  bar.step();
  bar.finish();

  CatFitOptions fo = o.fit;
  fo.seed = o.seed;
  json hj = {{"kind", o.kind}, {"fit_data", fit.name}, {"fit_images", fit.size()}, {"augment", o.augment},
             {"points", images.size(0)}, {"pca_dims", fo.pca_dims}};
  if (o.kind == "affine") fo.k = 1;
  if (o.select) {
    CatSelectOptions so = o.grid;
    so.pca_dims = fo.pca_dims;
    so.seed = o.seed;
    if (o.kind == "affine") so.ks = {1};
    CatSelection sel = select_cat(z_lq, z_fp, labels, group, so);
    fo.k = sel.k;
    fo.alpha = sel.alpha;
    json table = json::array();
    for (const auto& c : sel.table) table.push_back({{"k", c.k}, {"alpha", c.alpha}, {"cv_accuracy", c.accuracy}, {"cv_kl", c.kl}});
    hj["selection"] = {{"metric", so.metric}, {"folds", so.folds}, {"table", table}};
  }
  hj["k"] = fo.k;
  hj["alpha"] = fo.alpha;
  if (fo.alpha == 0) {
    m.head.reset();
    hj["declined"] = true;  // cross-validation preferred no correction
  } else {
    m.head = fit_cat(z_lq, z_fp, fo);
    hj["extra_params"] = m.head->extra_params();
    hj["macs_per_image"] = m.head->macs_per_image();
    hj["fit_accuracy_before"] = static_cast<double>(topk_correct(z_lq, labels, 1)) / labels.size(0);
    hj["fit_accuracy_after"] = static_cast<double>(topk_correct(m.head->apply(z_lq), labels, 1)) / labels.size(0);
  }
  hj["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  m.metadata["head"] = hj;
}

}  // namespace catq

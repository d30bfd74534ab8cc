// Quantization configs (sim/quant_config.h): the input is a JSON config when it starts with '{' (after blanks), else
// a compact string ("w4a4-mse-fl8"). The config is resolved for a first conv, a middle and a last linear layer, bound
// to them by a SimQuant (specs checked against the weight shapes) and used once: weights and inputs fake-quantized
// (observers, rounding, codebooks as the specs say), and written back as JSON.
#include "fuzz_common.h"
#include "sim/quant_config.h"
#include "sim/sim_quant.h"

CATQ_FUZZ_INIT()

namespace {
std::vector<catq::LayerInfo> layers() {
  std::vector<catq::LayerInfo> v(3);
  v[0].name = "conv1";
  v[0].kind = catq::LayerKind::Conv;
  v[0].weight_shape = {4, 3, 3, 3};
  v[0].is_first = true;
  v[1].name = "blk.0.attn_q";
  v[1].weight_shape = {8, 64};
  v[1].index = 1;
  v[2].name = "fc";
  v[2].weight_shape = {5, 8};
  v[2].index = 2;
  v[2].is_last = true;
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<catq::LayerInfo> ls = layers();
  static const std::vector<at::Tensor> ws = [] {
    auto g = at::make_generator<at::CPUGeneratorImpl>(1);
    std::vector<at::Tensor> w;
    for (const auto& l : layers()) w.push_back(at::randn(l.weight_shape, g));
    return w;
  }();
  static const std::vector<at::Tensor> xs = [] {
    auto g = at::make_generator<at::CPUGeneratorImpl>(2);
    return std::vector<at::Tensor>{at::randn({2, 3, 5, 5}, g), at::randn({3, 64}, g), at::randn({3, 8}, g)};
  }();
  std::string text(reinterpret_cast<const char*>(data), size);
  size_t k = text.find_first_not_of(" \t\r\n");
  const bool json = k != std::string::npos && text[k] == '{';
  catq::QuantConfig c;
  if (!catq::fuzz::expect_clean([&] {
        c = json ? catq::QuantConfig::from_json(text, "fuzz.json") : catq::QuantConfig::from_string(text);
        for (const auto& l : ls) (void)c.resolve(l);
        (void)c.to_json().dump();
      }))
    return 0;
  catq::fuzz::expect_clean([&] {
    catq::SimQuant sq(c, catq::SimQuant::Mode::Calibrate);
    sq.bind(ls);
    for (size_t i = 0; i < ls.size(); ++i) (void)sq.input(ls[i], xs[i]);
    sq.finalize_calibration();
    sq.set_mode(catq::SimQuant::Mode::Quantize);
    for (size_t i = 0; i < ls.size(); ++i) {
      (void)sq.weight(ls[i], ws[i]);
      (void)sq.input(ls[i], xs[i]);
    }
  });
  return 0;
}

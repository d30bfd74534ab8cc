// SimQuant: the simulation quantizer. A QuantContext built from a QuantConfig that fake-quantizes every
// conv/linear weight and input activation the model announces.
//
// Typical PTQ use:
//   SimQuant sq(QuantConfig::load("w4a4"));
//   model.forward(x, &sq)                   // bind() happens on the first forward
//   sq.set_mode(SimQuant::Mode::Calibrate); for (batch : calib) model.forward(batch, &sq);
//   sq.finalize_calibration();
//   sq.set_mode(SimQuant::Mode::Quantize);  model.forward(x, &sq);   // fake-quantized
//
// Modes:
//   Off       — everything passes through (FP).
//   Calibrate — input activations are observed with their spec's observer; weights and inputs pass through
//               unchanged (activations are calibrated against the FP model).
//   Quantize  — weights and inputs are fake-quantized with a clipped straight-through estimator, so autograd
//               reaches the FP weights (QAT). Weight params are computed from the weight tensor itself and
//               cached per layer; they are recomputed when the tensor changes (another tensor, or an in-place
//               update that bumps its version counter), unless frozen with set_weight_params(). Per-token
//               inputs are quantized dynamically (no calibration). Static inputs need calibration: params come
//               from finalize_calibration(), or are computed on first use from the layer's observer.
// Not thread-safe: one forward at a time.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "quant/observer.h"
#include "quant/quantized_weight.h"
#include "quant/quantizer.h"
#include "sim/quant_config.h"
#include "quant/quant_context.h"

namespace catq {

class SimQuant : public QuantContext {
 public:
  enum class Mode { Off, Calibrate, Quantize };


  // One bound layer. Specs are fully resolved (axis defaults filled in for the layer's kind).
  struct Layer {
    LayerInfo info;
    QuantSpec weight_spec, input_spec;
    std::optional<QuantParams> weight_params;  // set on first quantized use (or by set_weight_params)
    std::optional<QuantParams> input_params;   // set by finalize_calibration / set_input_params; unused per-token
    bool weight_frozen = false;                // true: never recompute weight_params
    std::shared_ptr<Observer> input_observer;  // static input quantization only
    // Integer weights installed by set_quantized_weight (a reconstruction result, a loaded model): codes q
    // (int32, the weight's shape) and x̂ = dequantize(q, weight_params), used instead of fake-quantizing w.
    at::Tensor weight_codes, fixed_weight;

   private:
    friend class SimQuant;
    // Cache key of the weight tensor the params were computed from (SimQuant's own bookkeeping). w_adopt: params
    // were installed by set_weight_params(freeze=false); the next weight tensor seen becomes the key without
    // recomputing.
    bool w_adopt = false;
    const void* w_data = nullptr;
    int64_t w_version = 0;
    std::vector<int64_t> w_shape;
  };

  // Per-layer summary. Bits are 32 for floating point; bytes count codes plus scale / zero-point / codebook
  // overhead (quant/quantizer.h storage_bits), weights only (biases are not seen by a QuantContext).
  struct LayerReport {
    std::string name;
    std::string weight, input;  // QuantSpec::str()
    int weight_bits = 32, input_bits = 32;
    int64_t weight_numel = 0;
    uint64_t weight_bytes = 0;
    std::string weight_observer, input_observer;  // "-" when not applicable
  };

  explicit SimQuant(QuantConfig config, Mode mode = Mode::Quantize);

  // Resolves every layer's specs (defaults → first/last → overrides) and checks them against the weight shape:
  // Error(Config) naming the config, the layer and the field. Keeps the state of layers already bound with the
  // same name and specs.
  void bind(const std::vector<LayerInfo>& layers) override;
  at::Tensor weight(const LayerInfo& layer, const at::Tensor& w) override;
  at::Tensor input(const LayerInfo& layer, const at::Tensor& x) override;
  // Fake-quantizes with the config's kv_cache spec (dynamic, per position and head) in Quantize mode.
  at::Tensor kv_cache(int64_t block, bool is_value, const at::Tensor& t) override;
  // Fake-quantizes gathered embedding rows with the config's embedding spec (per row) in Quantize mode, with a
  // straight-through gradient to the table.
  at::Tensor embedding(const at::Tensor& rows) override;

  void set_mode(Mode m) { mode_ = m; }
  Mode mode() const { return mode_; }
  // Computes every static input's params from its observer. Error(Data) naming the layers that saw no data.
  void finalize_calibration();
  // Drops observers' statistics and input params (weights too unless frozen) to calibrate again.
  void reset_calibration();

  const QuantConfig& config() const { return config_; }
  const std::vector<Layer>& layers() const { return layers_; }
  const Layer& layer(const std::string& name) const;  // Error(Usage) for an unknown name
  // nullptr when the layer's weight / input is floating point or params are not computed yet.
  const QuantParams* weight_params(const std::string& name) const;
  const QuantParams* input_params(const std::string& name) const;
  // Install params computed elsewhere (loaded from a file, learned by a reconstruction method). freeze = false:
  // they are used until the weight tensor changes after the next forward (then recomputed from the weight).
  void set_weight_params(const std::string& name, QuantParams p, bool freeze = true);
  void set_input_params(const std::string& name, QuantParams p);
  // Install integer weights: q (integer codes in p's range, the layer's weight shape) with their params. In
  // Quantize mode the layer's weight is then dequantize(q, p) whatever tensor the model passes (no gradient
  // reaches the model's weight). Error(Data) for a shape or range mismatch.
  void set_quantized_weight(const std::string& name, const at::Tensor& q, QuantParams p);
  void set_quantized_weight(const std::string& name, const QuantizedWeight& w);  // catq's formats
  // The layer's weight as a QuantizedWeight: its installed codes, else `w` (the model's weight tensor) quantized with
  // the layer's current params. Error(Usage) for a floating-point layer, Error(Internal) when no params are computed
  // yet or neither codes nor `w` are there.
  QuantizedWeight quantized_weight(const std::string& name, const at::Tensor& w = {}) const;
  // Codes of installed integer weights, or undefined.
  at::Tensor quantized_weight_codes(const std::string& name) const { return layer(name).weight_codes; }

  std::vector<LayerReport> report() const;
  std::string report_table() const;  // fixed-width text table with a total line
  uint64_t total_weight_bytes() const;

 private:
  Layer& find(const LayerInfo& info);
  Layer& find(const std::string& name);
  Layer make_layer(const LayerInfo& info) const;
  const QuantParams& weight_params_for(Layer& l, const at::Tensor& w);

  QuantConfig config_;
  Mode mode_;
  std::vector<Layer> layers_;
  std::unordered_map<std::string, size_t> index_;
  at::Generator gen_;
};

}  // namespace catq

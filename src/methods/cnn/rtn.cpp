#include "methods/cnn/rtn.h"

#include "core/error.h"
#include "core/progress.h"

namespace catq {

void calibrate_rtn(const GraphExecutor& ex, SimQuant& sq, const at::Tensor& images, int64_t batch) {
  CATQ_CHECK(images.defined() && images.size(0) > 0, Data, "calibration: no images");
  CATQ_CHECK(batch > 0, Config, "calibration: batch size must be positive, got {}", batch);
  at::NoGradGuard ng;
  sq.set_mode(SimQuant::Mode::Calibrate);
  Progress bar("calibrate", images.size(0));
  for (int64_t i = 0; i < images.size(0); i += batch) {
    at::Tensor b = images.slice(0, i, i + batch);
    ex.forward(b, &sq);
    bar.step(b.size(0));
  }
  bar.finish();
  sq.finalize_calibration();
  sq.set_mode(SimQuant::Mode::Quantize);
  ex.forward(images.slice(0, 0, 1), &sq);  // materialises every weight's params
}

}  // namespace catq

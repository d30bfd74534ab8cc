#include "quant/fake_quant.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>

#include <cmath>
#include <functional>

#include "core/error.h"

namespace catq {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct SteArgs {
  const QuantParams* p;
  Rounding rounding;
  std::optional<at::Generator> gen;
};

// The clipped-STE mask x/s + z ∈ [qmin, qmax] (uniform scheme). On the CPU one fused pass (TensorIterator over x and
// the broadcast s, z; the same float arithmetic as the tensor expression below, so the same bits), else that
// expression (5 tensor passes).
at::Tensor ste_mask(const at::Tensor& x, const QuantParams& p) {
  at::Tensor s = p.scale.to(x.device()), z = p.zero_point.to(x.device()).to(at::kFloat);
  at::Tensor xv = group_view(x.to(at::kFloat), p);
  if (!x.device().is_cpu() || s.scalar_type() != at::kFloat) {
    at::Tensor v = xv / s + z;
    return ((v >= static_cast<double>(p.qmin)) & (v <= static_cast<double>(p.qmax))).reshape(x.sizes());
  }
  at::Tensor mask = at::empty(xv.sizes(), xv.options().dtype(at::kBool));
  auto iter = at::TensorIteratorConfig()
                  .check_all_same_dtype(false)
                  .add_output(mask)
                  .add_input(xv)
                  .add_input(s)
                  .add_input(z)
                  .build();
  const float lo = static_cast<float>(p.qmin), hi = static_cast<float>(p.qmax);
  iter.for_each([&](char** data, const int64_t* st, int64_t n) {
    bool* o = reinterpret_cast<bool*>(data[0]);
    const char *xp = data[1], *sp = data[2], *zp = data[3];
    if (st[0] == 1 && st[1] == 4 && st[2] == 0 && st[3] == 0) {  // contiguous run with one scale
      const float* xf = reinterpret_cast<const float*>(xp);
      const float sv = *reinterpret_cast<const float*>(sp), zv = *reinterpret_cast<const float*>(zp);
      for (int64_t i = 0; i < n; ++i) {
        const float v = xf[i] / sv + zv;
        o[i] = v >= lo && v <= hi;
      }
      return;
    }
    for (int64_t i = 0; i < n; ++i) {
      const float v = *reinterpret_cast<const float*>(xp + i * st[1]) / *reinterpret_cast<const float*>(sp + i * st[2]) +
                      *reinterpret_cast<const float*>(zp + i * st[3]);
      *reinterpret_cast<bool*>(data[0] + i * st[0]) = v >= lo && v <= hi;
    }
  });
  return mask.reshape(x.sizes());
}

class SteFn : public torch::autograd::Function<SteFn> {
 public:
  // Only called when x needs a gradient (fake_quant_ste skips autograd otherwise).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const SteArgs* a) {
    const QuantParams& p = *a->p;
    at::Tensor out = fake_quantize(x, p, a->rounding, a->gen);
    at::Tensor mask;
    if (p.scheme == Scheme::Uniform) mask = ste_mask(x, p);
    ctx->save_for_backward({mask});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    at::Tensor mask = ctx->get_saved_variables()[0];
    at::Tensor g = grad[0];
    if (mask.defined()) g = g * mask;  // bool promotes to g's type: the same values as g * mask.to(g's type)
    return {g, at::Tensor()};
  }
};

// LSQ forward values on x in the group view (s and z broadcast against it): (clamp(round(x/s) + z) − z)·s, in place
// on the one temporary (same ops and dtypes as the out-of-place expression: the quotient's type already includes x's,
// s's and z's).
at::Tensor lsq_values(const at::Tensor& x, const at::Tensor& s, const at::Tensor& z, int64_t qmin, int64_t qmax) {
  at::Tensor q = at::div(x, s);
  q.round_().add_(z).clamp_(qmin, qmax).sub_(z).mul_(s);
  return q;
}

class LsqFn : public torch::autograd::Function<LsqFn> {
 public:
  // x already in the group view; s and z broadcast against it.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& s, const at::Tensor& z,
                            int64_t qmin, int64_t qmax, double g) {
    ctx->save_for_backward({x, s, z});
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["g"] = g;
    return lsq_values(x, s, z, qmin, qmax);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    at::Tensor x = saved[0], s = saved[1], z = saved[2];
    const double qmin = static_cast<double>(ctx->saved_data["qmin"].toInt());
    const double qmax = static_cast<double>(ctx->saved_data["qmax"].toInt());
    const double g = ctx->saved_data["g"].toDouble();
    at::Tensor go = grad[0];
    const bool f32 = x.scalar_type() == at::kFloat && s.scalar_type() == at::kFloat &&
                     z.scalar_type() == at::kFloat && go.scalar_type() == at::kFloat;
    if (f32 && x.device().is_cpu() && s.device().is_cpu() && z.device().is_cpu() && go.device().is_cpu() &&
        go.sizes() == x.sizes()) {
      // One fused pass for ∂x and grad·∂x̂/∂s, element by element the float arithmetic of the tensor expression
      // below (so the same bits; the scale's sum_to is unchanged).
      at::Tensor gx = at::empty_like(go), gds = at::empty_like(go);
      auto iter = at::TensorIteratorConfig()
                      .check_all_same_dtype(false)
                      .add_output(gx)
                      .add_output(gds)
                      .add_input(x)
                      .add_input(s)
                      .add_input(z)
                      .add_input(go)
                      .build();
      const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
      iter.for_each([&](char** data, const int64_t* st, int64_t n) {
        for (int64_t i = 0; i < n; ++i) {
          auto in = [&](int k) { return *reinterpret_cast<const float*>(data[k] + i * st[k]); };
          const float xv = in(2), sv = in(3), zv = in(4), gv = in(5);
          const float v = xv / sv, vz = v + zv;
          const bool below = vz < lo, above = vz > hi;
          const float ds = below ? lo - zv : (above ? hi - zv : std::nearbyint(v) - v);
          *reinterpret_cast<float*>(data[0] + i * st[0]) = gv * ((below || above) ? 0.f : 1.f);
          *reinterpret_cast<float*>(data[1] + i * st[1]) = gv * ds;
        }
      });
      at::Tensor gs = at::sum_to(gds, s.sizes()) * g;
      return {gx, gs, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    at::Tensor v = x / s;
    at::Tensor vz = v + z;
    at::Tensor below = vz < qmin, above = vz > qmax;
    at::Tensor inside = ~(below | above);
    at::Tensor gx = go * inside.to(go.scalar_type());
    at::Tensor ds = at::where(below, qmin - z, at::where(above, qmax - z, at::round(v) - v));
    at::Tensor gs = at::sum_to(go * ds, s.sizes()) * g;
    return {gx, gs, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Round half to even without a libm call, so the loops vectorise: adding and subtracting 1.5·2^23 leaves the
// nearest integer under the default rounding mode (compilers may not fold it away without -ffast-math).
// Valid for |v| < 2^22; callers clamp v into the code range first.
inline float round_even_small(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}

// Fused per-tensor LSQ with an optional keep-mask; see fake_quant.h.
template <bool kMasked>
void lsq_tensor_forward(const float* x, const bool* keep, float* out, int64_t b, int64_t e, float s, float zf, float lo,
                        float hi) {
  const float inv = 1.f / s, vlo = lo - zf - 1.f, vhi = hi - zf + 1.f;
  for (int64_t i = b; i < e; ++i) {
    const float v = std::min(std::max(x[i] * inv, vlo), vhi);
    const float q = std::min(std::max(round_even_small(v) + zf, lo), hi);
    const float y = (q - zf) * s;
    out[i] = kMasked && keep[i] ? x[i] : y;
  }
}

// Returns Σ grad·∂x̂/∂s over [b, e) (float partial sums per 1024 elements, double across them).
template <bool kMasked>
double lsq_tensor_backward(const float* x, const bool* keep, const float* g, float* gx, int64_t b, int64_t e, float s,
                           float zf, float lo, float hi) {
  const float inv = 1.f / s, dlo = lo - zf, dhi = hi - zf, vlo = lo - zf - 1.f, vhi = hi - zf + 1.f;
  double total = 0;
  for (int64_t c = b; c < e; c += 1024) {
    const int64_t ce = std::min(e, c + 1024);
    float acc = 0;
    for (int64_t i = c; i < ce; ++i) {
      const float v = std::min(std::max(x[i] * inv, vlo), vhi), vz = v + zf;
      const bool below = vz < lo, above = vz > hi;
      const float ds = below ? dlo : (above ? dhi : round_even_small(v) - v);
      const bool kept = kMasked && keep[i];
      gx[i] = (kept || !(below || above)) ? g[i] : 0.f;
      acc += kept ? 0.f : g[i] * ds;
    }
    total += acc;
  }
  return total;
}

// Fused per-tensor LSQ with an optional keep-mask; see fake_quant.h.
class LsqTensorFn : public torch::autograd::Function<LsqTensorFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& s_in, double z, int64_t qmin,
                            int64_t qmax, double g, const at::Tensor& keep_in) {
    // Elementwise with one scale: any dense layout works as is (a conv output is channels-last); the output,
    // the mask and the gradient share x's strides.
    at::Tensor x = x_in.is_non_overlapping_and_dense() ? x_in : x_in.contiguous(), keep = keep_in;  // empty = no mask
    const float s = s_in.item<float>(), zf = static_cast<float>(z);
    const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
    at::Tensor out = at::empty_like(x);
    const float* xp = x.data_ptr<float>();
    float* op = out.data_ptr<float>();
    const bool* kp = keep.numel() ? keep.data_ptr<bool>() : nullptr;
    at::parallel_for(0, x.numel(), 16384, [&](int64_t b, int64_t e) {
      if (kp) lsq_tensor_forward<true>(xp, kp, op, b, e, s, zf, lo, hi);
      else lsq_tensor_forward<false>(xp, kp, op, b, e, s, zf, lo, hi);
    });
    ctx->save_for_backward({x, s_in, keep});
    ctx->saved_data["z"] = z;
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["g"] = g;
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    at::Tensor x = saved[0], s_t = saved[1], keep = saved[2];
    const float s = s_t.item<float>();
    const float zf = static_cast<float>(ctx->saved_data["z"].toDouble());
    const float lo = static_cast<float>(ctx->saved_data["qmin"].toInt()), hi = static_cast<float>(ctx->saved_data["qmax"].toInt());
    const double g = ctx->saved_data["g"].toDouble();
    at::Tensor go = grad[0];
    if (go.strides() != x.strides()) go = at::empty_like(x).copy_(go);
    at::Tensor gx = at::empty_like(x);
    const float* xp = x.data_ptr<float>();
    const float* gp = go.data_ptr<float>();
    float* gxp = gx.data_ptr<float>();
    const bool* kp = keep.numel() ? keep.data_ptr<bool>() : nullptr;
    const double gs = at::parallel_reduce(0, x.numel(), 16384, 0.0, [&](int64_t b, int64_t e, double) {
      return kp ? lsq_tensor_backward<true>(xp, kp, gp, gxp, b, e, s, zf, lo, hi)
                : lsq_tensor_backward<false>(xp, kp, gp, gxp, b, e, s, zf, lo, hi);
    }, std::plus<double>());
    at::Tensor gs_t = at::full_like(s_t, gs * g);
    return {gx, gs_t, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor fake_quant_lsq_per_tensor(const at::Tensor& x, const at::Tensor& scale, double zero_point, int64_t qmin,
                                     int64_t qmax, double grad_scale, const at::Tensor& keep) {
  CATQ_CHECK(x.scalar_type() == at::kFloat && x.device().is_cpu(), Internal, "fused LSQ: x must be float32 on the CPU");
  CATQ_CHECK(scale.numel() == 1, Internal, "fused LSQ: per-tensor scale expected");
  CATQ_CHECK(!keep.defined() || (keep.sizes() == x.sizes() && keep.strides() == x.strides() &&
                                  keep.scalar_type() == at::kBool && x.is_non_overlapping_and_dense()),
             Internal, "fused LSQ: keep-mask must be bool with x's shape and strides");
  const double g = grad_scale > 0 ? grad_scale : lsq_grad_scale(x.numel(), qmax);
  // Autograd functions cannot take undefined tensors: an empty mask means none.
  return LsqTensorFn::apply(x, scale.reshape({}), zero_point, qmin, qmax, g,
                            keep.defined() ? keep : at::empty({0}, at::TensorOptions().dtype(at::kBool)));
}

at::Tensor fake_quant_ste(const at::Tensor& x, const QuantParams& p, Rounding r, std::optional<at::Generator> gen) {
  // No gradient wanted (inference, calibration, a frozen weight): the forward alone, no STE mask, no autograd node.
  // (Checked here: inside Function::forward grad mode is always off.)
  if (!(at::GradMode::is_enabled() && x.requires_grad())) return fake_quantize(x, p, r, gen);
  SteArgs a{&p, r, gen};
  return SteFn::apply(x, &a);
}

double lsq_grad_scale(int64_t numel, int64_t qmax) {
  return 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(numel, 1)) * static_cast<double>(std::max<int64_t>(qmax, 1)));
}

at::Tensor fake_quant_lsq(const at::Tensor& x, const at::Tensor& scale, const QuantParams& p, double grad_scale) {
  CATQ_CHECK(p.scheme == Scheme::Uniform, Config, "LSQ: only the uniform scheme has a learnable step size");
  CATQ_CHECK(scale.defined() && p.zero_point.defined(), Internal, "LSQ: scale / zero-point not set");
  auto want = param_shape(x.sizes(), p.granularity, p.axis, p.group_size);
  CATQ_CHECK(scale.numel() == 1 || scale.sizes().vec() == want, Data,
             "LSQ: scale of shape [{}] does not fit a tensor of shape [{}]", fmt::join(scale.sizes(), ","),
             fmt::join(x.sizes(), ","));
  const double g = grad_scale > 0 ? grad_scale : lsq_grad_scale(x.numel(), p.qmax);
  at::Tensor z = p.zero_point.to(x.device()).to(x.scalar_type());
  if (p.granularity == Granularity::PerTensor) z = z.reshape({});
  at::Tensor xv = group_view(x, p);
  // Nothing needs a gradient (evaluation): the values alone, no autograd node.
  const bool grad = at::GradMode::is_enabled() && (x.requires_grad() || scale.requires_grad());
  at::Tensor out = grad ? LsqFn::apply(xv, scale, z, p.qmin, p.qmax, g) : lsq_values(xv, scale, z, p.qmin, p.qmax);
  return out.reshape(x.sizes());
}

}  // namespace catq

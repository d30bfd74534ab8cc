#include "quant/fake_quant.h"

#include <torch/torch.h>

#include <cmath>

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

class SteFn : public torch::autograd::Function<SteFn> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const SteArgs* a) {
    const QuantParams& p = *a->p;
    at::Tensor out = fake_quantize(x, p, a->rounding, a->gen);
    at::Tensor mask;
    if (p.scheme == Scheme::Uniform) {
      at::Tensor s = p.scale.to(x.device()), z = p.zero_point.to(x.device()).to(at::kFloat);
      at::Tensor v = group_view(x.to(at::kFloat), p) / s + z;
      mask = ((v >= static_cast<double>(p.qmin)) & (v <= static_cast<double>(p.qmax))).reshape(x.sizes());
    }
    ctx->save_for_backward({mask});
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    at::Tensor mask = ctx->get_saved_variables()[0];
    at::Tensor g = grad[0];
    if (mask.defined()) g = g * mask.to(g.scalar_type());
    return {g, at::Tensor()};
  }
};

class LsqFn : public torch::autograd::Function<LsqFn> {
 public:
  // x already in the group view; s and z broadcast against it.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& s, const at::Tensor& z,
                            int64_t qmin, int64_t qmax, double g) {
    at::Tensor q = (at::round(x / s) + z).clamp(qmin, qmax);
    ctx->save_for_backward({x, s, z});
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["g"] = g;
    return (q - z) * s;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    auto saved = ctx->get_saved_variables();
    at::Tensor x = saved[0], s = saved[1], z = saved[2];
    const double qmin = static_cast<double>(ctx->saved_data["qmin"].toInt());
    const double qmax = static_cast<double>(ctx->saved_data["qmax"].toInt());
    const double g = ctx->saved_data["g"].toDouble();
    at::Tensor v = x / s;
    at::Tensor vz = v + z;
    at::Tensor below = vz < qmin, above = vz > qmax;
    at::Tensor inside = ~(below | above);
    at::Tensor go = grad[0];
    at::Tensor gx = go * inside.to(go.scalar_type());
    at::Tensor ds = at::where(below, qmin - z, at::where(above, qmax - z, at::round(v) - v));
    at::Tensor gs = at::sum_to(go * ds, s.sizes()) * g;
    return {gx, gs, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor fake_quant_ste(const at::Tensor& x, const QuantParams& p, Rounding r, std::optional<at::Generator> gen) {
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
  at::Tensor out = LsqFn::apply(xv, scale, z, p.qmin, p.qmax, g);
  return out.reshape(x.sizes());
}

}  // namespace catq

// Adam and AdamW in torch.optim's single-tensor order of operations: the first moment is
// updated as a lerp (m += (1-b1)(g-m), PyTorch's form of b1 m + (1-b1) g), the bias corrections
// are double scalars, and the denominator is sqrt(v)/sqrt(1-b2^t) + eps.
#include <cmath>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/optim/optim.hpp"

namespace diffusion {
namespace {

struct AdamCoefficients {
  float one_minus_b1, b1_as_lerp, b2, one_minus_b2, eps, wd, bias2_sqrt, step_size;
};

template <bool L2, bool LerpFromM>
void adam_loop(float* __restrict w, const float* __restrict g, float* __restrict m,
               float* __restrict v, std::size_t n, const AdamCoefficients& c) {
  for (std::size_t j = 0; j < n; ++j) {
    const float gj = L2 ? g[j] + c.wd * w[j] : g[j];
    m[j] = LerpFromM ? m[j] + c.one_minus_b1 * (gj - m[j]) : gj - (gj - m[j]) * c.b1_as_lerp;
    v[j] = v[j] * c.b2 + c.one_minus_b2 * gj * gj;
    const float denom = std::sqrt(v[j]) / c.bias2_sqrt + c.eps;
    w[j] -= c.step_size * (m[j] / denom);
  }
}

}  // namespace

Adam::Adam(std::vector<Var> params, const AdamOptions& options)
    : Adam(std::move(params), options, false) {}

Adam::Adam(std::vector<Var> params, const AdamOptions& options, bool decoupled)
    : Optimizer(std::move(params), options.lr), opt_(options), decoupled_(decoupled) {
  const char* who = decoupled ? "AdamW" : "Adam";
  if (!(opt_.beta1 >= 0.0 && opt_.beta1 < 1.0) || !(opt_.beta2 >= 0.0 && opt_.beta2 < 1.0))
    throw Error(std::string(who) + ": betas must lie in [0, 1), got (" +
                std::to_string(opt_.beta1) + ", " + std::to_string(opt_.beta2) + ")");
  if (!(opt_.eps >= 0.0)) throw Error(std::string(who) + ": eps must be >= 0");
  if (!(opt_.weight_decay >= 0.0)) throw Error(std::string(who) + ": weight_decay must be >= 0");
  m_slot_ = add_state("exp_avg");
  v_slot_ = add_state("exp_avg_sq");
}

AdamW::AdamW(std::vector<Var> params, const AdamWOptions& options)
    : Adam(std::move(params), options, true) {}

void Adam::update(std::size_t i, std::int64_t t) {
  Var& p = param(i);
  float* w = p.value().data();
  const float* g = p.grad().data();
  float* m = state(m_slot_, i);
  float* v = state(v_slot_, i);
  const std::size_t n = p.size();

  const double lr = this->lr();
  const double bias1 = 1.0 - std::pow(opt_.beta1, static_cast<double>(t));
  const double bias2 = 1.0 - std::pow(opt_.beta2, static_cast<double>(t));
  const float step_size = static_cast<float>(lr / bias1);
  const float bias2_sqrt = static_cast<float>(std::sqrt(bias2));
  const float one_minus_b1 = static_cast<float>(1.0 - opt_.beta1);
  const bool lerp_from_m = one_minus_b1 < 0.5f;  // PyTorch's lerp picks the stabler end
  const float b1_as_lerp = 1.0f - one_minus_b1;
  const float b2 = static_cast<float>(opt_.beta2);
  const float one_minus_b2 = static_cast<float>(1.0 - opt_.beta2);
  const float eps = static_cast<float>(opt_.eps);
  const float wd = static_cast<float>(opt_.weight_decay);
  const bool l2 = !decoupled_ && opt_.weight_decay != 0.0;

  if (decoupled_ && opt_.weight_decay != 0.0) {
    // Decoupled decay shrinks the weights independently of the adaptive scaling
    // (Loshchilov & Hutter 2019), which is why it differs from Adam's L2 term.
    const float shrink = static_cast<float>(1.0 - lr * opt_.weight_decay);
    for (std::size_t j = 0; j < n; ++j) w[j] *= shrink;
  }
  // The branches are hoisted into template arguments so the loop vectorises.
  const AdamCoefficients c{one_minus_b1, b1_as_lerp, b2, one_minus_b2, eps, wd, bias2_sqrt, step_size};
  if (l2)
    lerp_from_m ? adam_loop<true, true>(w, g, m, v, n, c) : adam_loop<true, false>(w, g, m, v, n, c);
  else
    lerp_from_m ? adam_loop<false, true>(w, g, m, v, n, c) : adam_loop<false, false>(w, g, m, v, n, c);
}

void Adam::write_hyperparameters(const H5::Group& g) const {
  write_attribute(g, "beta1", opt_.beta1);
  write_attribute(g, "beta2", opt_.beta2);
  write_attribute(g, "eps", opt_.eps);
  write_attribute(g, "weight_decay", opt_.weight_decay);
}

}  // namespace diffusion

// Adam and AdamW in torch.optim's single-tensor order of operations: the first moment is
// updated as a lerp (m += (1-b1)(g-m), PyTorch's form of b1 m + (1-b1) g), the bias corrections
// are double scalars, and the denominator is sqrt(v)/sqrt(1-b2^t) + eps.
#include <cmath>

#include "diffusion/hdf5_io.hpp"
#include "diffusion/optim.hpp"

namespace diffusion {

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
  for (std::size_t j = 0; j < n; ++j) {
    const float gj = l2 ? g[j] + wd * w[j] : g[j];
    m[j] = lerp_from_m ? m[j] + one_minus_b1 * (gj - m[j]) : gj - (gj - m[j]) * b1_as_lerp;
    v[j] = v[j] * b2 + one_minus_b2 * gj * gj;
    const float denom = std::sqrt(v[j]) / bias2_sqrt + eps;
    w[j] -= step_size * (m[j] / denom);
  }
}

void Adam::write_hyperparameters(const H5::Group& g) const {
  write_attribute(g, "beta1", opt_.beta1);
  write_attribute(g, "beta2", opt_.beta2);
  write_attribute(g, "eps", opt_.eps);
  write_attribute(g, "weight_decay", opt_.weight_decay);
}

}  // namespace diffusion

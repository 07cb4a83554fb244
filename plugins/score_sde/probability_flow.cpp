// The probability-flow ODE's velocity (Song et al. 2021, eq. 13): probability_flow.hpp derives
// v = alpha' x0_hat + sigma' eps_hat from f x - 1/2 g^2 score.
#include "probability_flow.hpp"

namespace diffusion::score_sde {

void probability_flow_velocity(const Denoiser& model, const Tensor& x, double t, const Condition& condition,
                               Prediction& scratch, Tensor& v) {
  const Path& path = model.path();
  model.predict(x, t, condition, scratch);
  const double da = path.alpha_deriv(t), ds = path.sigma_deriv(t);
  if (v.shape() != x.shape()) v = Tensor::from_shape(shape_of(x));
  const float* x0 = scratch.x0.data();
  const float* eps = scratch.eps.data();
  float* out = v.data();
  for (std::size_t j = 0, n = x.size(); j < n; ++j) out[j] = static_cast<float>(da * x0[j] + ds * eps[j]);
}

VectorField probability_flow_field(const Denoiser& model, const Condition& condition) {
  // The prediction is kept between calls so a warm integration allocates nothing for it.
  return [&model, &condition, scratch = Prediction{}](double t, const Tensor& y, Tensor& dy) mutable {
    probability_flow_velocity(model, y, t, condition, scratch, dy);
  };
}

Var probability_flow_velocity_var(const Denoiser& model, const Var& x, double t, const Condition& condition) {
  const Path& path = model.path();
  const PredictionVar p = model.predict_var(x, same_time(x.value().shape()[0], t), condition);
  return p.x0 * static_cast<float>(path.alpha_deriv(t)) + p.eps * static_cast<float>(path.sigma_deriv(t));
}

}  // namespace diffusion::score_sde

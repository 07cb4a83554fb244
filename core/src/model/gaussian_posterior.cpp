#include "diffusion/model/gaussian_posterior.hpp"

namespace diffusion {

GaussianPosterior gaussian_posterior(const Path& sde, double t, double s, bool to_data) {
  if (to_data) return {1.0, 0.0, 0.0, 1.0, 0.0, 0.0};
  const double at = sde.alpha(t), st = sde.sigma(t);
  const double as = sde.alpha(s), ss = sde.sigma(s);
  const double a_ts = at / as;                               // alpha_{t|s}
  const double var_ts = st * st - a_ts * a_ts * ss * ss;     // sigma_{t|s}^2
  GaussianPosterior p;
  p.alpha_s = as;
  p.sigma_s = ss;
  p.c_xt = a_ts * ss * ss / (st * st);
  p.c_x0 = as * var_ts / (st * st);
  p.variance = var_ts * ss * ss / (st * st);
  p.transition_variance = var_ts;
  return p;
}

}  // namespace diffusion

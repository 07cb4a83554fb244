#pragma once
// The posterior q(x_s | x_t, x0) of a Gaussian path between two times s < t, for any
// alpha/sigma (Kingma et al. 2021, VDM eq. 30-32; DDPM's beta-tilde is the VP case).
#include "diffusion/model/path.hpp"

namespace diffusion {

/// Coefficients of q(x_s | x_t, x0) = N(c_xt x_t + c_x0 x0, variance I).
struct GaussianPosterior {
  double alpha_s, sigma_s;    ///< the path at the earlier time s
  double c_xt, c_x0;          ///< mean coefficients
  double variance;            ///< posterior variance (DDPM's beta-tilde)
  double transition_variance; ///< sigma_{t|s}^2 = sigma_t^2 - (alpha_t/alpha_s)^2 sigma_s^2 (DDPM's beta)
};

/// Posterior between t and s < t. When `to_data` is set, s is the clean data (alpha 1,
/// sigma 0): the mean is x0 and both variances are 0.
GaussianPosterior gaussian_posterior(const Path& path, double t, double s, bool to_data);

}  // namespace diffusion

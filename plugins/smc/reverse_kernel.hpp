#pragma once
// The reverse kernel that moves the particles from t to s < t: the Gaussian posterior of the
// path at the denoiser's estimate, p(x_s | x_t) = N(c_xt x_t + c_x0 x0_hat(x_t), v I) (DDPM's
// ancestral step, Ho et al. 2020 eq. 7, on any path; the last step to the data is x0_hat itself).
// Its mean is c_xt x + c_x0 (x + sigma_t^2 score) / alpha_t, so h = c_x0 sigma_t^2 / alpha_t is
// the step's coefficient of the score (g^2 dtau of the reverse SDE, to first order).
//
// TDS's twisted proposal (Wu et al. 2023, eq. 8) replaces the score by score + grad log p~_t,
// i.e. shifts the mean by h grad log p~_t(x_t), with the same variance. The proposal's density
// ratio to the kernel, which the weight needs, is that of two Gaussians of one variance.
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/model/gaussian_posterior.hpp>

namespace diffusion::smc {

struct ReverseKernel {
  GaussianPosterior q;
  double score_coef;  ///< h = c_x0 sigma_t^2 / alpha_t
  bool to_data;       ///< the last step: deterministic, x_s = x0_hat

  ReverseKernel(const Path& path, double t, double s, bool to_data);

  /// Moves x (N, ...) to time s in place: x = mean + shift_scale h grad + sqrt(v) z. With a
  /// shift (grad non-null, not the last step) `log_ratio[i]` gets
  /// log p(x_s | x_t) - log q(x_s | x_t) of each row; otherwise it is left alone.
  void move(Tensor& x, const Tensor& x0_hat, const Tensor* grad, double shift_scale, Rng& rng,
            std::vector<double>* log_ratio) const;
};

}  // namespace diffusion::smc

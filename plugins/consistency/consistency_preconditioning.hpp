#pragma once
// The consistency function's parameterisation (CM paper, eq. 7 and appendix C):
//
//   f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)),
//   c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2),
//   c_out  = (sigma - sigma_min) sigma_data / sqrt(sigma^2 + sigma_data^2),
//   c_in   = 1 / sqrt(sigma^2 + sigma_data^2)   (EDM's),
//
// so c_skip(sigma_min) = 1 and c_out(sigma_min) = 0: the boundary condition f(x, sigma_min) = x
// holds by construction, exactly (sigma_min is the path's sigma at t_min). As a Preconditioning
// the consistency function is the denoiser's x0 prediction, so the run's samplers, EMA and
// metrics read a consistency model like any other.
//
// c_noise: `path` (default) the path's network time, as the built-in predictions; `log_sigma`
// c_noise_scale ln(sigma) / 4 (EDM's, and the CM code's with scale 1000).
#include <string>

#include <diffusion/model/preconditioning.hpp>

namespace diffusion::consistency {

class ConsistencyPreconditioning : public Preconditioning {
 public:
  enum class NoiseInput { path, log_sigma };
  ConsistencyPreconditioning(double sigma_data, NoiseInput noise, double noise_scale)
      : sigma_data_(sigma_data), noise_(noise), noise_scale_(noise_scale) {}
  std::string name() const override { return "consistency"; }
  Scalings scalings(const Path& path, double t) const override;
  /// A consistency model is not trained by regression on a target: Error.
  Target target(const Path& path, double t) const override;
  double sigma_data() const { return sigma_data_; }

 private:
  double sigma_data_;
  NoiseInput noise_;
  double noise_scale_;
};

}  // namespace diffusion::consistency

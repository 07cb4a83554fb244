#pragma once
// EDM's path (Karras et al. 2022, section 2 and Table 1, "Ours"): s(t) = 1, sigma(t) = t, so
// x_t = x0 + t z and the time is the noise level itself, on [sigma_min, sigma_max] (defaults
// 0.002 and 80, the paper's). The probability-flow ODE is dx/dt = (x - D(x; t)) / t (eq. 4 with
// sigma'(t) = 1), the SDE has f = 0 and g^2 = 2 t.
//
// The network's default time input is c_noise = ln(t) / 4 (Table 1), the same as the `edm`
// preconditioning gives, so any other preconditioning on this path feeds the network alike.
// Training times by default (for losses that draw from the path) are EDM's log-normal,
// ln t ~ N(-1.2, 1.2^2), truncated to [sigma_min, sigma_max] (it loses 2e-5 of its mass there);
// the `edm` loss draws its own, with its own p_mean and p_std.
#include <diffusion/components.hpp>

namespace diffusion::edm {

class EdmPath : public Path {
 public:
  EdmPath(double sigma_min, double sigma_max) : sigma_min_(sigma_min), sigma_max_(sigma_max) {}
  double alpha(double) const override { return 1.0; }
  double sigma(double t) const override { return t; }
  double alpha_deriv(double) const override { return 0.0; }
  double sigma_deriv(double) const override { return 1.0; }
  double t_min() const override { return sigma_min_; }
  double t_max() const override { return sigma_max_; }
  float network_time(double t) const override;
  double time_at_quantile(double u) const override;
  double drift_coef(double) const override { return 0.0; }
  double diffusion_squared(double t) const override { return 2.0 * t; }
  /// log SNR = -2 ln t: t = exp(-lambda / 2), clamped to the range.
  double time_at_log_snr(double lambda) const override;

  /// The default training distribution's ln t ~ N(kPMean, kPStd^2) (Table 1, "Training").
  static constexpr double kPMean = -1.2, kPStd = 1.2;

 private:
  double sigma_min_, sigma_max_;
};

}  // namespace diffusion::edm

#pragma once
#include <vector>

#include <diffusion/components.hpp>

namespace diffusion::ddpm {

/// The discrete-time VP process of DDPM: q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I),
/// abar_t = prod_{s<=t} (1 - beta_s), t = 0..T-1 (0-based, as the network's time input).
/// Between whole steps log abar is linear, so on [i, i+1] d log abar / dt = log(1 - beta_{i+1}):
/// the path's derivatives, and with them the SDE's drift f = log(1 - beta_{i+1}) / 2 and
/// diffusion g^2 = -log(1 - beta_{i+1}) (about beta), follow from the same abar as alpha and sigma.
class DdpmPath : public Path {
 public:
  /// Betas from a linear schedule (Ho et al. 2020) or the cosine schedule of Nichol &
  /// Dhariwal 2021, eq. 17 (offset s = 0.008, betas clipped at max_beta).
  explicit DdpmPath(std::vector<double> betas);
  static std::vector<double> linear_betas(std::size_t T, double beta_start, double beta_end);
  static std::vector<double> cosine_betas(std::size_t T, double s = 0.008, double max_beta = 0.999);

  double alpha(double t) const override;
  double sigma(double t) const override;
  double alpha_deriv(double t) const override;
  double sigma_deriv(double t) const override;
  double t_min() const override { return 0.0; }
  double t_max() const override { return static_cast<double>(betas_.size() - 1); }
  std::size_t num_steps() const override { return betas_.size(); }
  /// Uniform over the T steps.
  Tensor sample_times(std::size_t n, Rng& rng) const override;
  /// Step floor(u T).
  double time_at_quantile(double u) const override;
  /// Closed forms of the derived coefficients (path.hpp), exact on each interval.
  double drift_coef(double t) const override;
  double diffusion_squared(double t) const override;
  const std::vector<double>& alpha_bar() const { return alpha_bar_; }

 private:
  double alpha_bar_at(double t) const;
  /// d log abar / dt at t: log(1 - beta_{i+1}) on [i, i+1) (the last interval at t_max).
  double log_alpha_bar_slope(double t) const;
  std::vector<double> betas_, alpha_bar_;
};

}  // namespace diffusion::ddpm

#pragma once
#include <vector>

#include <diffusion/model/components.hpp>
#include <diffusion/io/config.hpp>

namespace diffusion::ddpm {

/// The discrete-time VP process of DDPM: q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I),
/// abar_t = prod_{s<=t} (1 - beta_s), t = 0..T-1 (0-based, as the network's time input).
class DdpmSde : public Sde {
 public:
  /// Betas from a linear schedule (Ho et al. 2020) or the cosine schedule of Nichol &
  /// Dhariwal 2021, eq. 17 (offset s = 0.008, betas clipped at max_beta).
  DdpmSde(std::vector<double> betas);
  static std::vector<double> linear_betas(std::size_t T, double beta_start, double beta_end);
  static std::vector<double> cosine_betas(std::size_t T, double s = 0.008, double max_beta = 0.999);

  double alpha(double t) const override;
  double sigma(double t) const override;
  double drift_coef(double t) const override;
  double diffusion(double t) const override;
  double t_min() const override { return 0.0; }
  double t_max() const override { return static_cast<double>(betas_.size() - 1); }
  std::size_t num_steps() const override { return betas_.size(); }
  Tensor sample_times(std::size_t n, Rng& rng) const override;
  /// Step floor(u T): the uniform distribution over the T steps.
  double time_at_quantile(double u) const override;
  /// Distinct integer steps from T-1 down to 0: linear is floor(linspace(T-1, 0, steps)) (DDIM's
  /// uniform skip); quadratic is (T-1)(1 - i/(steps-1))^2 rounded, nudged apart where rounding
  /// would repeat a step.
  std::vector<double> time_grid(std::size_t steps, TimeSpacing spacing) const override;
  const std::vector<double>& alpha_bar() const { return alpha_bar_; }

 private:
  double alpha_bar_at(double t) const;
  std::vector<double> betas_, alpha_bar_;
};

}  // namespace diffusion::ddpm

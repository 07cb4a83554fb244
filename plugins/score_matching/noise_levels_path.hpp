#pragma once
// NCSN's perturbation (Song & Ermon 2019, section 4.1; NCSNv2, Song & Ermon 2020, technique 2):
// x~ = x + sigma_i z with geometric noise levels sigma_1 > ... > sigma_L. As a discrete path
// like DDPM's: the whole steps t = 0..L-1 are the levels, t = 0 the smallest sigma (sigma_L, the
// data end) and t = L-1 the largest (sigma_1), so the paper's level i is the time t = L - i.
#include <cstddef>

#include <diffusion/components.hpp>

namespace diffusion::score_matching {

class NoiseLevelsPath : public Path {
 public:
  /// sigma_min (the paper's sigma_L) <= sigma_max (sigma_1), both > 0; levels >= 1, and one
  /// level exactly when sigma_min == sigma_max.
  NoiseLevelsPath(double sigma_min, double sigma_max, std::size_t levels);

  /// alpha = 1: the data is not scaled (the variance-exploding process).
  double alpha(double) const override { return 1.0; }
  /// sigma_min (sigma_max / sigma_min)^(t / (L - 1)): geometric at the whole steps, and log sigma
  /// linear in between, so the derivatives below exist everywhere.
  double sigma(double t) const override;
  double alpha_deriv(double) const override { return 0.0; }
  /// sigma' = sigma d log sigma / dt.
  double sigma_deriv(double t) const override;
  double t_min() const override { return 0.0; }
  double t_max() const override { return static_cast<double>(levels_ - 1); }
  std::size_t num_steps() const override { return levels_; }
  /// log sigma(t). NCSN conditions on the level index; log sigma (NCSNv2's noise-scaled output
  /// makes the network's job nearly level-free, EDM's c_noise = log(sigma) / 4) is a smooth,
  /// O(1) input that means the same noise whatever L is, which an MLP's time embedding reads
  /// far better than an index in 0..L-1.
  float network_time(double t) const override;
  /// Uniform over the L levels (NCSN's training distribution of i).
  Tensor sample_times(std::size_t n, Rng& rng) const override;
  /// Level floor(u L).
  double time_at_quantile(double u) const override;

  std::size_t levels() const { return levels_; }

 private:
  double log_sigma(double t) const;
  double log_sigma_min_, log_slope_;  ///< log sigma(t) = log_sigma_min_ + log_slope_ t
  std::size_t levels_;
};

}  // namespace diffusion::score_matching

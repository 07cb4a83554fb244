#pragma once
// The forward process as a Gaussian path x_t = alpha(t) x0 + sigma(t) z (z from the Source),
// given by four functions: alpha, sigma and their time derivatives (EDM's s, sigma, s_deriv,
// sigma_deriv). Everything else is derived once, here: the drift f and diffusion g of the SDE
// dx = f(t) x dt + g(t) dW with these marginals, the log-SNR, and the probability-flow
// velocity. DDPM, VP, sub-VP, VE, EDM and the flow-matching paths differ only in the four.
// Time runs from t_min (data) to t_max (the source).
#include <cstddef>

#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

class Path {
 public:
  virtual ~Path() = default;
  virtual double alpha(double t) const = 0;
  virtual double sigma(double t) const = 0;
  /// d alpha / dt and d sigma / dt.
  virtual double alpha_deriv(double t) const = 0;
  virtual double sigma_deriv(double t) const = 0;
  virtual double t_min() const = 0;
  virtual double t_max() const = 0;
  /// Number of discrete time steps (DDPM's T: times are the whole steps 0..T-1), or 0 for a
  /// continuous-time path.
  virtual std::size_t num_steps() const { return 0; }
  /// The network's default time input c_noise(t) (DDPM: the step index; default: t itself).
  virtual float network_time(double t) const { return static_cast<float>(t); }

  /// n training times from the path's default training distribution (default: uniform on
  /// [t_min, t_max]; DDPM: uniform over its steps).
  virtual Tensor sample_times(std::size_t n, Rng& rng) const;
  /// The training time at quantile u in [0, 1) of that distribution, for low-discrepancy
  /// batches (low_discrepancy_times).
  virtual double time_at_quantile(double u) const;

  // ---- derived; a path may override with a closed form ----
  /// Drift coefficient f(t) = alpha'(t) / alpha(t) of the linear SDE (drift = f(t) x).
  virtual double drift_coef(double t) const;
  /// g(t)^2 = 2 sigma sigma' - 2 f sigma^2, the diffusion that makes the SDE's marginals the
  /// path's (Kingma et al. 2021, VDM appendix; Karras et al. 2022, eq. 6 with s = alpha).
  virtual double diffusion_squared(double t) const;
  /// g(t) = sqrt(max(0, g^2)).
  double diffusion(double t) const;
  /// log SNR lambda(t) = 2 log(alpha / sigma): decreasing in t.
  double log_snr(double t) const;
  /// The time in [t_min, t_max] at which log_snr equals lambda (clamped to the ends); default
  /// by bisection, to double precision.
  virtual double time_at_log_snr(double lambda) const;
};

/// n training times for one batch from VDM's low-discrepancy sampler (Kingma et al. 2021,
/// appendix: u_i = (u_0 + i / n) mod 1 with one uniform u_0): each time is distributed exactly as
/// a single draw, and the batch covers the training distribution evenly, which lowers the
/// variance of the loss and its gradient.
Tensor low_discrepancy_times(const Path& path, std::size_t n, Rng& rng);

}  // namespace diffusion

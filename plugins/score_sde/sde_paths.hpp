#pragma once
// The three SDEs of Song et al. 2021 ("Score-Based Generative Modeling through Stochastic
// Differential Equations", section 3.4 and appendix B) as Gaussian paths x_t = alpha(t) x0 +
// sigma(t) z on continuous time [eps, 1]:
//
//   vp     dx = -beta(t)/2 x dt + sqrt(beta(t)) dW                       (eq. 11)
//   subvp  dx = -beta(t)/2 x dt + sqrt(beta(t) (1 - exp(-2 B(t)))) dW     (eq. 12)
//   ve     dx = sqrt(d sigma^2(t) / dt) dW                                 (eq. 9)
//
// with beta(t) = beta_min + t (beta_max - beta_min) and B(t) = int_0^t beta. Each path has its
// closed-form drift f, diffusion g^2 and inverse log-SNR; the Path base derives the same f and
// g^2 from alpha and sigma (tests/plugins/test_score_sde_paths.cpp checks they agree).
//
// The network's time input is 999 t on every path (Song's VP and sub-VP models take 999 t). The
// mlp's sinusoidal embedding has frequencies from 1 down to 1/10000, designed for DDPM's step
// indices 0..999, so 999 t keeps it in its designed range; Song's VE models take log sigma(t),
// which spans only about 8.5 here and would leave most of the embedding's frequencies constant.
#include <cmath>

#include <diffusion/components.hpp>

namespace diffusion::score_sde {

/// beta(t) = beta_min + t (beta_max - beta_min) and its integral B(t), shared by vp and subvp.
struct LinearBeta {
  double beta_min, beta_max;
  double beta(double t) const { return beta_min + t * (beta_max - beta_min); }
  double integral(double t) const { return beta_min * t + 0.5 * (beta_max - beta_min) * t * t; }
  /// The t >= 0 with integral(t) = b: the positive root of the quadratic, in a form that is
  /// exact also when beta_max = beta_min.
  double time_at_integral(double b) const;
};

/// Shared by the three: the time range [eps, 1] and the network time 999 t.
class ScoreSdePath : public Path {
 public:
  explicit ScoreSdePath(double eps) : eps_(eps) {}
  double t_min() const override { return eps_; }
  double t_max() const override { return 1.0; }
  float network_time(double t) const override { return static_cast<float>(999.0 * t); }

 private:
  double eps_;
};

/// VP: alpha = exp(-B/2), sigma = sqrt(1 - exp(-B)); f = -beta/2, g^2 = beta.
class VpPath : public ScoreSdePath {
 public:
  VpPath(LinearBeta beta, double eps) : ScoreSdePath(eps), beta_(beta) {}
  double alpha(double t) const override;
  double sigma(double t) const override;
  double alpha_deriv(double t) const override;
  double sigma_deriv(double t) const override;
  double drift_coef(double t) const override;
  double diffusion_squared(double t) const override;
  /// log SNR = -log(exp(B) - 1), so B = log(1 + exp(-lambda)).
  double time_at_log_snr(double lambda) const override;

 protected:
  LinearBeta beta_;
};

/// sub-VP: VP's alpha and drift with sigma = 1 - exp(-B), whose variance (1 - exp(-B))^2 lies
/// below VP's 1 - exp(-B) at every t (hence the name); g^2 = beta (1 - exp(-2B)). Only what
/// differs from VP is overridden.
class SubVpPath : public VpPath {
 public:
  using VpPath::VpPath;
  double sigma(double t) const override;
  double sigma_deriv(double t) const override;
  double diffusion_squared(double t) const override;
  /// exp(lambda) = u / (1 - u)^2 with u = exp(-B): a quadratic in u.
  double time_at_log_snr(double lambda) const override;
};

/// VE: alpha = 1, sigma = sigma_min (sigma_max / sigma_min)^t; f = 0,
/// g^2 = d sigma^2 / dt = 2 sigma^2 log(sigma_max / sigma_min). sigma(t) is the perturbation
/// std itself, as in Song's code and NCSN++ (the exact SDE started at t = 0 would give
/// sqrt(sigma(t)^2 - sigma_min^2); the two differ by sigma_min^2 in variance).
class VePath : public ScoreSdePath {
 public:
  VePath(double sigma_min, double sigma_max, double eps)
      : ScoreSdePath(eps), sigma_min_(sigma_min), log_ratio_(std::log(sigma_max / sigma_min)) {}
  double alpha(double) const override { return 1.0; }
  double sigma(double t) const override;
  double alpha_deriv(double) const override { return 0.0; }
  double sigma_deriv(double t) const override;
  double drift_coef(double) const override { return 0.0; }
  double diffusion_squared(double t) const override;
  /// log SNR = -2 log sigma(t), linear in t.
  double time_at_log_snr(double lambda) const override;

 private:
  double sigma_min_, log_ratio_;
};

}  // namespace diffusion::score_sde

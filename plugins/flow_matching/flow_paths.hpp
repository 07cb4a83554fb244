#pragma once
// The conditional probability paths of flow matching as Gaussian paths x_t = alpha(t) x0 +
// sigma(t) z, in the toolkit's time (data x0 at t = 0, the source draw z at t = 1; the papers
// run time the other way, t_paper = 1 - t):
//
//   linear  alpha = 1 - t, sigma = sigma_min + (1 - sigma_min) t.
//           Lipman et al. 2023, eqs. 20-23 (the "OT" conditional path, mu_t = t x1,
//           sigma_t = 1 - (1 - sigma_min) t in their time); sigma_min = 0 (the default) is
//           rectified flow (Liu et al. 2023, eq. 1) and Tong et al. 2024's I-CFM with sigma = 0,
//           the straight line x_t = (1 - t) x0 + t z between any two endpoints, so it also serves
//           a data-set source. Conditional velocity u = alpha' x0 + sigma' z = (1 - sigma_min) z - x0.
//   cosine  alpha = cos(pi t / 2), sigma = sin(pi t / 2): the variance-preserving path
//           (alpha^2 + sigma^2 = 1; Lipman et al. 2023 section 4.1 family, the cosine schedule of
//           Nichol & Dhariwal 2021 without its offset); u = (pi / 2)(cos(pi t / 2) z - sin(pi t / 2) x0).
//
// Both live on [0, 1] (the velocity readout divides by alpha sigma' - sigma alpha', which is 1
// for linear and pi / 2 for cosine, never by alpha or sigma). The network's time input is 999 t,
// the range the mlp's sinusoidal embedding was designed for (as the score SDE paths).
#include <diffusion/components.hpp>

namespace diffusion::flow_matching {

constexpr double kPi = 3.14159265358979323846;

class FlowPath : public Path {
 public:
  double t_min() const override { return 0.0; }
  double t_max() const override { return 1.0; }
  float network_time(double t) const override { return static_cast<float>(999.0 * t); }
};

class LinearFlowPath : public FlowPath {
 public:
  explicit LinearFlowPath(double sigma_min = 0.0) : sigma_min_(sigma_min) {}
  double alpha(double t) const override { return 1.0 - t; }
  double sigma(double t) const override { return sigma_min_ + (1.0 - sigma_min_) * t; }
  double alpha_deriv(double) const override { return -1.0; }
  double sigma_deriv(double) const override { return 1.0 - sigma_min_; }
  double sigma_min() const { return sigma_min_; }

 private:
  double sigma_min_;
};

class CosineFlowPath : public FlowPath {
 public:
  double alpha(double t) const override;
  double sigma(double t) const override;
  double alpha_deriv(double t) const override;
  double sigma_deriv(double t) const override;
  /// log SNR = -2 log tan(pi t / 2): t = (2 / pi) atan(exp(-lambda / 2)).
  double time_at_log_snr(double lambda) const override;
};

}  // namespace diffusion::flow_matching

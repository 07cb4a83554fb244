#pragma once
// Paths with closed forms that tests share: what the interfaces are checked on besides DDPM.
#include <cmath>

#include <diffusion/model/path.hpp>

namespace diffusion::testing {

constexpr double kPi = 3.14159265358979323846;

/// alpha = cos(pi t / 2), sigma = sin(pi t / 2) on [1e-3, 1 - 1e-3]: sigma / alpha = tan(pi t / 2).
struct CosineVp : Path {
  double alpha(double t) const override { return std::cos(kPi * t / 2); }
  double sigma(double t) const override { return std::sin(kPi * t / 2); }
  double alpha_deriv(double t) const override { return -kPi / 2 * std::sin(kPi * t / 2); }
  double sigma_deriv(double t) const override { return kPi / 2 * std::cos(kPi * t / 2); }
  double t_min() const override { return 1e-3; }
  double t_max() const override { return 1 - 1e-3; }
};

/// VE-like, EDM's own setting: alpha = 1, sigma = t on [0.002, 80].
struct VeLinear : Path {
  double alpha(double) const override { return 1.0; }
  double sigma(double t) const override { return t; }
  double alpha_deriv(double) const override { return 0.0; }
  double sigma_deriv(double) const override { return 1.0; }
  double t_min() const override { return 0.002; }
  double t_max() const override { return 80.0; }
};

/// Linear flow matching (rectified flow): alpha = 1 - t, sigma = t on [1e-3, 1 - 1e-3].
struct LinearFlow : Path {
  double alpha(double t) const override { return 1 - t; }
  double sigma(double t) const override { return t; }
  double alpha_deriv(double) const override { return -1.0; }
  double sigma_deriv(double) const override { return 1.0; }
  double t_min() const override { return 1e-3; }
  double t_max() const override { return 1 - 1e-3; }
};

}  // namespace diffusion::testing

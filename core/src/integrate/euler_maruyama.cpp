// Euler-Maruyama for dy = f(t, y) dt + g(t) dW (Kloeden & Platen, Numerical Solution of SDEs,
// section 9.1, eq. 1.1): y_{n+1} = y_n + f(t_n, y_n) h + g(t_n) sqrt(|h|) z, z ~ N(0, I), strong
// order 1/2, weak order 1. Time may run backwards (h < 0): the increment of W over the step
// still has variance |h|.
#include <cmath>

#include "diffusion/integrate/sde.hpp"

namespace diffusion {

void euler_maruyama_step(const VectorField& f, const Diffusion& g, double t, double h, Tensor& y, Tensor& drift,
                         Tensor& noise, Rng& rng) {
  // Scratch of another shape is reshaped once (no allocation when the caller reuses it).
  if (drift.shape() != y.shape()) drift.resize(y.shape());
  if (noise.shape() != y.shape()) noise.resize(y.shape());
  f(t, y, drift);
  rng.fill_normal(noise);
  const double scale = g(t) * std::sqrt(std::fabs(h));
  float* yp = y.data();
  const float *dp = drift.data(), *zp = noise.data();
  for (std::size_t i = 0, n = y.size(); i < n; ++i) yp[i] = static_cast<float>(yp[i] + h * dp[i] + scale * zp[i]);
}

OdeStats integrate_euler_maruyama(const VectorField& f, const Diffusion& g, const std::vector<double>& times, Tensor& y,
                                  Rng& rng, const StepObserver& observe) {
  const std::string name = "euler_maruyama";
  check_time_grid(times, name);
  Tensor drift = Tensor::from_shape(y.shape()), noise = Tensor::from_shape(y.shape());
  OdeStats stats;
  for (std::size_t i = 0; i + 1 < times.size(); ++i) {
    euler_maruyama_step(f, g, times[i], times[i + 1] - times[i], y, drift, noise, rng);
    ++stats.nfe;
    ++stats.accepted;
    check_state_finite(y, name, times[i], times[i + 1]);
    if (observe) observe(times[i + 1], y);
  }
  return stats;
}

}  // namespace diffusion

// What follows from a path's four functions.
#include "diffusion/model/path.hpp"

#include <algorithm>
#include <cmath>

namespace diffusion {

Tensor Path::sample_times(std::size_t n, Rng& rng) const {
  Tensor t = Tensor::from_shape({n});
  for (std::size_t i = 0; i < n; ++i) t(i) = static_cast<float>(time_at_quantile(rng.uniform_double()));
  return t;
}

double Path::time_at_quantile(double u) const { return t_min() + u * (t_max() - t_min()); }

double Path::drift_coef(double t) const { return alpha_deriv(t) / alpha(t); }

double Path::diffusion_squared(double t) const {
  const double s = sigma(t);
  return 2.0 * s * sigma_deriv(t) - 2.0 * drift_coef(t) * s * s;
}

double Path::diffusion(double t) const { return std::sqrt(std::max(0.0, diffusion_squared(t))); }

double Path::log_snr(double t) const { return 2.0 * (std::log(alpha(t)) - std::log(sigma(t))); }

double Path::time_at_log_snr(double lambda) const {
  double lo = t_min(), hi = t_max();  // log_snr(lo) >= lambda >= log_snr(hi)
  if (lambda >= log_snr(lo)) return lo;
  if (lambda <= log_snr(hi)) return hi;
  for (int i = 0; i < 200 && lo < hi; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;
    (log_snr(mid) > lambda ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

Tensor low_discrepancy_times(const Path& path, std::size_t n, Rng& rng) {
  Tensor t = Tensor::from_shape({n});
  const double u0 = rng.uniform_double();
  for (std::size_t i = 0; i < n; ++i) {
    double u = u0 + double(i) / double(n);
    if (u >= 1.0) u -= 1.0;
    t(i) = static_cast<float>(path.time_at_quantile(u));
  }
  return t;
}

}  // namespace diffusion

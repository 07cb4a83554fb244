#include "resampling.hpp"

namespace diffusion::smc {

std::vector<std::size_t> systematic_resampling(const std::vector<double>& weights, std::size_t n, Rng& rng) {
  const double u0 = rng.uniform_double();
  std::vector<double> u(n);
  for (std::size_t k = 0; k < n; ++k) u[k] = (double(k) + u0) / double(n);
  return invert_cdf(weights, u);
}

}  // namespace diffusion::smc

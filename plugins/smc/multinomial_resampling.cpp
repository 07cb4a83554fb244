#include <cmath>

#include "resampling.hpp"

namespace diffusion::smc {

std::vector<std::size_t> multinomial_resampling(const std::vector<double>& weights, std::size_t n, Rng& rng) {
  // n sorted uniforms in O(n): normalised partial sums of n + 1 standard exponentials are the
  // order statistics of n uniforms (Devroye 1986, section V.3).
  std::vector<double> u(n);
  double total = 0;
  for (std::size_t k = 0; k < n; ++k) u[k] = (total += -std::log1p(-rng.uniform_double()));
  total += -std::log1p(-rng.uniform_double());
  for (double& v : u) v /= total;
  return invert_cdf(weights, u);
}

}  // namespace diffusion::smc

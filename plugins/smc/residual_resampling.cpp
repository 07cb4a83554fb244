#include <cmath>

#include "resampling.hpp"

namespace diffusion::smc {

std::vector<std::size_t> residual_resampling(const std::vector<double>& weights, std::size_t n, Rng& rng) {
  std::vector<std::size_t> out;
  out.reserve(n);
  std::vector<double> residual(weights.size());
  double residual_total = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const double expected = double(n) * weights[i];
    const double copies = std::floor(expected);
    out.insert(out.end(), std::size_t(copies), i);
    residual_total += (residual[i] = expected - copies);
  }
  // Rounding can give one copy too many when n W_i sums a hair above n.
  if (out.size() > n) out.resize(n);
  const std::size_t rest = n - out.size();
  if (rest == 0) return out;
  for (double& r : residual) r /= residual_total;
  for (const std::size_t i : multinomial_resampling(residual, rest, rng)) out.push_back(i);
  return out;
}

}  // namespace diffusion::smc

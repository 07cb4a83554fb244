#include "resampling.hpp"

namespace diffusion::smc {

ResamplingScheme read_resampling(const ConfigNode& node, const std::string& def) {
  const std::string s = node.get_choice("resampling", def, {"multinomial", "systematic", "residual"});
  if (s == "multinomial") return ResamplingScheme::multinomial;
  if (s == "residual") return ResamplingScheme::residual;
  return ResamplingScheme::systematic;
}

std::vector<std::size_t> resample(ResamplingScheme scheme, const std::vector<double>& weights, std::size_t n, Rng& rng) {
  switch (scheme) {
    case ResamplingScheme::multinomial: return multinomial_resampling(weights, n, rng);
    case ResamplingScheme::residual: return residual_resampling(weights, n, rng);
    case ResamplingScheme::systematic: break;
  }
  return systematic_resampling(weights, n, rng);
}

std::vector<std::size_t> invert_cdf(const std::vector<double>& weights, const std::vector<double>& sorted_u) {
  std::size_t last = 0;
  for (std::size_t i = 0; i < weights.size(); ++i)
    if (weights[i] > 0) last = i;
  std::vector<std::size_t> out(sorted_u.size());
  std::size_t i = 0;
  double cdf = weights.empty() ? 0.0 : weights[0];
  for (std::size_t k = 0; k < sorted_u.size(); ++k) {
    while (sorted_u[k] >= cdf && i < last) cdf += weights[++i];
    out[k] = i;
  }
  return out;
}

}  // namespace diffusion::smc

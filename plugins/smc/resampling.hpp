#pragma once
// Resampling a particle system: N ancestor indices drawn so that particle i is expected N W_i
// times (each scheme is unbiased, so the normalising-constant estimate stays unbiased). Lower
// variance from multinomial to residual to systematic (Douc, Cappe & Moulines 2005).
#include <cstddef>
#include <string>
#include <vector>

#include <diffusion/io/config.hpp>
#include <diffusion/tensor/random.hpp>

namespace diffusion::smc {

enum class ResamplingScheme { multinomial, systematic, residual };

/// `resampling: multinomial | systematic | residual` of a sampler's node.
ResamplingScheme read_resampling(const ConfigNode& node, const std::string& def);

/// Ancestor indices in [0, W.size()), n of them, for normalised weights W (sum 1).
std::vector<std::size_t> resample(ResamplingScheme scheme, const std::vector<double>& weights, std::size_t n, Rng& rng);

/// n independent draws from the categorical W, by inverting its CDF at n sorted uniforms.
std::vector<std::size_t> multinomial_resampling(const std::vector<double>& weights, std::size_t n, Rng& rng);
/// One uniform u in [0, 1/n): the CDF inverted at u + k / n, k = 0..n-1 (Kitagawa 1996).
std::vector<std::size_t> systematic_resampling(const std::vector<double>& weights, std::size_t n, Rng& rng);
/// floor(n W_i) copies of each particle, the remaining R drawn multinomially from the residuals
/// n W_i - floor(n W_i) (Liu & Chen 1998).
std::vector<std::size_t> residual_resampling(const std::vector<double>& weights, std::size_t n, Rng& rng);

/// The CDF of W inverted at sorted points u_0 <= ... <= u_{n-1} in [0, 1): the shared last step of
/// the schemes. Rounding can leave the CDF's end below 1; points past it take the last particle
/// of positive weight.
std::vector<std::size_t> invert_cdf(const std::vector<double>& weights, const std::vector<double>& sorted_u);

}  // namespace diffusion::smc

#pragma once
// The noise levels consistency models are trained on (header-only: pure functions the tests
// check against the papers' formulas).
//
//   Karras discretisation (CM paper, section 5 / appendix C; Karras et al. 2022, eq. 5): N levels
//     sigma_i = (sigma_min^(1/rho) + i/(N-1) (sigma_max^(1/rho) - sigma_min^(1/rho)))^rho,
//     i = 0..N-1 (the paper's t_{i+1}), ascending, exactly sigma_min and sigma_max at the ends.
//   iCT curriculum (Song & Dhariwal 2023, eq. 10): at training step k of K,
//     N(k) = min(s0 2^floor(k / K'), s1) + 1,  K' = floor(K / (log2 floor(s1 / s0) + 1)).
//   iCT noise-level distribution (Song & Dhariwal 2023, section 3.5): the pair (sigma_i,
//     sigma_{i+1}) is drawn with probability proportional to
//     erf((log sigma_{i+1} - P_mean) / (sqrt 2 P_std)) - erf((log sigma_i - P_mean) / (sqrt 2 P_std)),
//     the log-normal mass of [sigma_i, sigma_{i+1}].
//
// All are in sigma; on a path with alpha = 1, time_at_sigma gives the path's time of a level.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <diffusion/model/path.hpp>
#include <diffusion/tensor/random.hpp>
#include <diffusion/tensor/tensor.hpp>

namespace diffusion::consistency {

/// Level i of n (0 = sigma_min, n - 1 = sigma_max, both exact) of the Karras discretisation.
inline double karras_level(std::size_t i, std::size_t n, double sigma_min, double sigma_max, double rho) {
  if (i == 0) return sigma_min;
  if (i + 1 >= n) return sigma_max;
  const double lo = std::pow(sigma_min, 1.0 / rho), hi = std::pow(sigma_max, 1.0 / rho);
  return std::pow(lo + double(i) / double(n - 1) * (hi - lo), rho);
}

/// All n levels, ascending.
inline std::vector<double> karras_levels(std::size_t n, double sigma_min, double sigma_max, double rho) {
  std::vector<double> s(n);
  for (std::size_t i = 0; i < n; ++i) s[i] = karras_level(i, n, sigma_min, sigma_max, rho);
  return s;
}

/// K' = floor(K / (log2 floor(s1 / s0) + 1)), at least 1 (a run shorter than the number of
/// doublings doubles every step).
inline std::int64_t curriculum_stage_length(std::int64_t total_steps, std::int64_t s0, std::int64_t s1) {
  const double doublings = std::log2(std::floor(double(s1) / double(s0)));
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(double(total_steps) / (doublings + 1.0))));
}

/// N(k) = min(s0 2^floor(k / K'), s1) + 1: the number of levels at step k of total_steps.
inline std::size_t curriculum_levels(std::int64_t step, std::int64_t total_steps, std::int64_t s0, std::int64_t s1) {
  const std::int64_t stage = step / curriculum_stage_length(total_steps, s0, s1);
  // s0 2^stage, without overflowing once it passes s1.
  std::int64_t n = s0;
  for (std::int64_t j = 0; j < stage && n < s1; ++j) n *= 2;
  return static_cast<std::size_t>(std::min(n, s1) + 1);
}

/// The iCT probabilities of the n - 1 pairs (sigma_i, sigma_{i+1}) of ascending levels.
inline std::vector<double> lognormal_pair_probabilities(const std::vector<double>& levels, double p_mean, double p_std) {
  std::vector<double> p(levels.size() - 1);
  double total = 0;
  const double scale = 1.0 / (std::sqrt(2.0) * p_std);
  for (std::size_t i = 0; i + 1 < levels.size(); ++i) {
    p[i] = std::erf((std::log(levels[i + 1]) - p_mean) * scale) - std::erf((std::log(levels[i]) - p_mean) * scale);
    total += p[i];
  }
  for (double& v : p) v /= total;
  return p;
}

/// Draws pair indices from a probability table by inversion of its cumulative sums.
class PairSampler {
 public:
  explicit PairSampler(const std::vector<double>& p) : cdf_(p.size()) {
    double acc = 0;
    for (std::size_t i = 0; i < p.size(); ++i) cdf_[i] = (acc += p[i]);
    cdf_.back() = 1.0;
  }
  std::size_t draw(Rng& rng) const {
    const double u = rng.uniform_double();
    return std::min<std::size_t>(std::upper_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin(), cdf_.size() - 1);
  }

 private:
  std::vector<double> cdf_;
};

/// Consistency models live on paths x = x0 + sigma z: Error naming `who` otherwise.
inline void require_unit_alpha(const Path& path, const std::string& who) {
  const double mid = 0.5 * (path.t_min() + path.t_max());
  for (const double t : {path.t_min(), mid, path.t_max()})
    if (path.alpha(t) != 1.0)
      throw Error(who + ": consistency models are defined on a path x = x0 + sigma z (alpha = 1, e.g. sde: edm); "
                  "this path has alpha(" + std::to_string(t) + ") = " + std::to_string(path.alpha(t)));
}

/// The path's time at noise level sigma (alpha = 1): exactly t_min and t_max at the ends, so the
/// boundary condition f(x, sigma_min) = x holds exactly.
inline double time_at_sigma(const Path& path, double sigma) {
  if (sigma == path.sigma(path.t_min())) return path.t_min();
  if (sigma == path.sigma(path.t_max())) return path.t_max();
  return path.time_at_log_snr(-2.0 * std::log(sigma));
}

}  // namespace diffusion::consistency

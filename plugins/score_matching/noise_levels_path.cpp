// NCSN's geometric noise levels as a discrete path (noise_levels_path.hpp).
//
//   sde: {type: noise_levels, sigma_min: 0.01, sigma_max: 1.0, levels: 10}   NCSN's defaults
//   sde: {type: noise_levels, sigma: 0.1}                                     one level (plain DSM)
//
// `sigma:` alone is the single-level path of Vincent 2011's denoising score matching, shorthand
// for sigma_min = sigma_max = sigma, levels: 1 (and exclusive with those keys). One level needs
// equal ends and several need sigma_min < sigma_max, so a typo cannot silently collapse the levels.
#include "noise_levels_path.hpp"

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include <diffusion/io/text.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::score_matching {

NoiseLevelsPath::NoiseLevelsPath(double sigma_min, double sigma_max, std::size_t levels)
    : log_sigma_min_(std::log(sigma_min)), log_slope_(0.0), levels_(levels) {
  if (!(sigma_min > 0.0) || !(sigma_max >= sigma_min))
    throw Error("noise_levels: need 0 < sigma_min <= sigma_max");
  if (levels == 0) throw Error("noise_levels: at least one level is needed");
  if ((levels == 1) != (sigma_min == sigma_max))
    throw Error("noise_levels: one level exactly when sigma_min == sigma_max");
  if (levels > 1) log_slope_ = (std::log(sigma_max) - log_sigma_min_) / double(levels - 1);
}

double NoiseLevelsPath::log_sigma(double t) const {
  return log_sigma_min_ + log_slope_ * std::clamp(t, t_min(), t_max());
}

double NoiseLevelsPath::sigma(double t) const { return std::exp(log_sigma(t)); }

double NoiseLevelsPath::sigma_deriv(double t) const { return sigma(t) * log_slope_; }

float NoiseLevelsPath::network_time(double t) const { return static_cast<float>(log_sigma(t)); }

Tensor NoiseLevelsPath::sample_times(std::size_t n, Rng& rng) const { return rng.integer({n}, levels_); }

double NoiseLevelsPath::time_at_quantile(double u) const {
  const double l = double(levels_);
  return std::min(std::floor(u * l), l - 1.0);  // u L can round up to L for u just below 1
}

namespace {

/// The first of `keys` the node has, else the node itself: where an error about them points.
ConfigNode first_present(const ConfigNode& c, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (c.has(k)) return c.at(k);
  return c;
}

std::shared_ptr<Path> make_noise_levels(const ConfigNode& c, const BuildContext&) {
  if (c.has("sigma")) {
    for (const char* key : {"sigma_min", "sigma_max", "levels"})
      if (c.has(key)) c.at(key).error("give either `sigma` (one level) or sigma_min, sigma_max and levels, not both");
    const double s = c.require_double("sigma", Interval::greater_than(0.0));
    return std::make_shared<NoiseLevelsPath>(s, s, 1);
  }
  const double lo = c.get_double("sigma_min", 0.01, Interval::greater_than(0.0));
  const double hi = c.get_double("sigma_max", 1.0, Interval::greater_than(0.0));
  const auto levels = static_cast<std::size_t>(c.get_int("levels", 10, 1, 1000000));
  if (lo > hi)
    first_present(c, {"sigma_min", "sigma_max"})
        .error("expected sigma_min <= sigma_max, got sigma_min " + format_number(lo) + " and sigma_max " +
               format_number(hi));
  if (levels == 1 && lo != hi)
    first_present(c, {"levels"}).error("one level needs sigma_min == sigma_max (or write `sigma:` alone)");
  if (levels > 1 && lo == hi)
    first_present(c, {"sigma_min", "sigma_max"})
        .error("expected sigma_min < sigma_max for " + std::to_string(levels) +
               " geometric levels (for one noise level write `sigma:` alone)");
  return std::make_shared<NoiseLevelsPath>(lo, hi, levels);
}

}  // namespace

DIFFUSION_REGISTER(paths, "noise_levels", make_noise_levels);

}  // namespace diffusion::score_matching

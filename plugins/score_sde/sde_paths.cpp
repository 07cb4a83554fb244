// The VP, sub-VP and VE SDEs of Song et al. 2021 (eqs. 9, 11, 12) as paths; see sde_paths.hpp.
#include "sde_paths.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include <diffusion/io/text.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::score_sde {

double LinearBeta::time_at_integral(double b) const {
  // beta_min t + (d/2) t^2 = b  =>  t = 2b / (beta_min + sqrt(beta_min^2 + 2 d b)).
  const double d = beta_max - beta_min;
  return 2.0 * b / (beta_min + std::sqrt(beta_min * beta_min + 2.0 * d * b));
}

namespace {
/// log(1 + exp(x)) without overflow.
double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }

/// The path's end whose log SNR lambda reaches or passes, if any (the inverse is clamped there).
std::optional<double> end_at_log_snr(const Path& p, double lambda) {
  if (lambda >= p.log_snr(p.t_min())) return p.t_min();
  if (lambda <= p.log_snr(p.t_max())) return p.t_max();
  return std::nullopt;
}
}  // namespace

// ---- VP ----
double VpPath::alpha(double t) const { return std::exp(-0.5 * beta_.integral(t)); }
double VpPath::sigma(double t) const { return std::sqrt(-std::expm1(-beta_.integral(t))); }
double VpPath::alpha_deriv(double t) const { return -0.5 * beta_.beta(t) * alpha(t); }
// sigma^2 = 1 - exp(-B): 2 sigma sigma' = beta exp(-B).
double VpPath::sigma_deriv(double t) const {
  return 0.5 * beta_.beta(t) * std::exp(-beta_.integral(t)) / sigma(t);
}
double VpPath::drift_coef(double t) const { return -0.5 * beta_.beta(t); }
double VpPath::diffusion_squared(double t) const { return beta_.beta(t); }
double VpPath::time_at_log_snr(double lambda) const {
  if (const auto end = end_at_log_snr(*this, lambda)) return *end;
  return std::clamp(beta_.time_at_integral(softplus(-lambda)), t_min(), t_max());
}

// ---- sub-VP ----
double SubVpPath::sigma(double t) const { return -std::expm1(-beta_.integral(t)); }
double SubVpPath::sigma_deriv(double t) const { return beta_.beta(t) * std::exp(-beta_.integral(t)); }
double SubVpPath::diffusion_squared(double t) const {
  return beta_.beta(t) * -std::expm1(-2.0 * beta_.integral(t));
}
double SubVpPath::time_at_log_snr(double lambda) const {
  // exp(lambda) (1 - u)^2 = u has the root u < 1 with, for w = exp(-lambda),
  // 1 - u = (w + sqrt(4w + w^2)) / (2 + w + sqrt(4w + w^2)): no cancellation near u = 1.
  if (const auto end = end_at_log_snr(*this, lambda)) return *end;
  const double w = std::exp(-lambda), r = std::sqrt(4.0 * w + w * w);
  const double one_minus_u = (w + r) / (2.0 + w + r);
  return std::clamp(beta_.time_at_integral(-std::log1p(-one_minus_u)), t_min(), t_max());
}

// ---- VE ----
double VePath::sigma(double t) const { return sigma_min_ * std::exp(t * log_ratio_); }
double VePath::sigma_deriv(double t) const { return sigma(t) * log_ratio_; }
double VePath::diffusion_squared(double t) const {
  const double s = sigma(t);
  return 2.0 * s * s * log_ratio_;
}
double VePath::time_at_log_snr(double lambda) const {
  if (const auto end = end_at_log_snr(*this, lambda)) return *end;
  return std::clamp((-0.5 * lambda - std::log(sigma_min_)) / log_ratio_, t_min(), t_max());
}

namespace {

LinearBeta read_betas(const ConfigNode& c) {
  const double lo = c.get_double("beta_min", 0.1, Interval::at_least(0.0));
  const double hi = c.get_double("beta_max", 20.0, Interval::greater_than(0.0));
  if (lo > hi)
    c.at("beta_min").error("beta_min (" + format_number(lo) + ") exceeds beta_max (" + format_number(hi) +
                           "): beta(t) must not decrease");
  return {lo, hi};
}

double read_eps(const ConfigNode& c, double def) { return c.get_double("eps", def, Interval::open(0.0, 1.0)); }

std::shared_ptr<Path> make_vp(const ConfigNode& c, const BuildContext&) {
  const LinearBeta b = read_betas(c);
  return std::make_shared<VpPath>(b, read_eps(c, 1e-3));
}

std::shared_ptr<Path> make_subvp(const ConfigNode& c, const BuildContext&) {
  const LinearBeta b = read_betas(c);
  return std::make_shared<SubVpPath>(b, read_eps(c, 1e-3));
}

std::shared_ptr<Path> make_ve(const ConfigNode& c, const BuildContext&) {
  const double lo = c.get_double("sigma_min", 0.01, Interval::greater_than(0.0));
  const double hi = c.get_double("sigma_max", 50.0, Interval::greater_than(0.0));
  if (lo >= hi)
    c.at("sigma_min").error("sigma_min (" + format_number(lo) + ") must be below sigma_max (" + format_number(hi) +
                            ")");
  return std::make_shared<VePath>(lo, hi, read_eps(c, 1e-5));
}

}  // namespace

DIFFUSION_REGISTER(paths, "vp", make_vp);
DIFFUSION_REGISTER(paths, "subvp", make_subvp);
DIFFUSION_REGISTER(paths, "ve", make_ve);

}  // namespace diffusion::score_sde

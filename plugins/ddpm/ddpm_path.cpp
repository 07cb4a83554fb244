#include "ddpm_path.hpp"

#include <algorithm>
#include <cmath>

#include <diffusion/plugin.hpp>

namespace diffusion::ddpm {

std::vector<double> DdpmPath::linear_betas(std::size_t T, double beta_start, double beta_end) {
  std::vector<double> b(T);
  for (std::size_t i = 0; i < T; ++i)
    b[i] = T == 1 ? beta_start : beta_start + (beta_end - beta_start) * double(i) / double(T - 1);
  return b;
}

std::vector<double> DdpmPath::cosine_betas(std::size_t T, double s, double max_beta) {
  auto f = [&](double u) {
    const double c = std::cos((u + s) / (1.0 + s) * M_PI / 2.0);
    return c * c;
  };
  std::vector<double> b(T);
  for (std::size_t i = 0; i < T; ++i) b[i] = std::min(1.0 - f(double(i + 1) / T) / f(double(i) / T), max_beta);
  return b;
}

DdpmPath::DdpmPath(std::vector<double> betas) : betas_(std::move(betas)) {
  if (betas_.empty()) throw Error("ddpm: at least one time step is needed");
  alpha_bar_.resize(betas_.size());
  double prod = 1.0;
  for (std::size_t i = 0; i < betas_.size(); ++i) alpha_bar_[i] = prod *= 1.0 - betas_[i];
}

double DdpmPath::alpha_bar_at(double t) const {
  // Exact at whole steps; log-linear in between so continuous-time samplers still work.
  const double c = std::clamp(t, t_min(), t_max());
  const auto i = static_cast<std::size_t>(std::floor(c));
  if (i + 1 >= alpha_bar_.size() || c == double(i)) return alpha_bar_[i];
  const double w = c - double(i);
  return std::exp((1 - w) * std::log(alpha_bar_[i]) + w * std::log(alpha_bar_[i + 1]));
}

double DdpmPath::log_alpha_bar_slope(double t) const {
  const std::size_t T = betas_.size();
  if (T == 1) return std::log1p(-betas_[0]);
  const auto i = std::min(static_cast<std::size_t>(std::floor(std::clamp(t, t_min(), t_max()))), T - 2);
  return std::log1p(-betas_[i + 1]);
}

double DdpmPath::alpha(double t) const { return std::sqrt(alpha_bar_at(t)); }
double DdpmPath::sigma(double t) const { return std::sqrt(1.0 - alpha_bar_at(t)); }

// alpha = abar^(1/2), so alpha' = alpha L / 2 with L = d log abar / dt.
double DdpmPath::alpha_deriv(double t) const { return 0.5 * log_alpha_bar_slope(t) * alpha(t); }

// sigma = (1 - abar)^(1/2), so sigma' = -abar L / (2 sigma).
double DdpmPath::sigma_deriv(double t) const {
  return -0.5 * log_alpha_bar_slope(t) * alpha_bar_at(t) / sigma(t);
}

double DdpmPath::drift_coef(double t) const { return 0.5 * log_alpha_bar_slope(t); }

// 2 sigma sigma' - 2 f sigma^2 = -L abar - L (1 - abar) = -L.
double DdpmPath::diffusion_squared(double t) const { return -log_alpha_bar_slope(t); }

Tensor DdpmPath::sample_times(std::size_t n, Rng& rng) const { return rng.integer({n}, betas_.size()); }

double DdpmPath::time_at_quantile(double u) const {
  const double T = double(betas_.size());
  return std::min(std::floor(u * T), T - 1.0);  // u * T can round up to T for u just below 1
}

namespace {
std::shared_ptr<Path> make_ddpm(const ConfigNode& c, const BuildContext&) {
  const auto T = static_cast<std::size_t>(c.get_int("timesteps", 1000, 1, 100000));
  const std::string schedule = c.get_choice("schedule", "linear", {"linear", "cosine"});
  if (schedule == "linear") {
    const double b0 = c.get_double("beta_start", 1e-4, 0.0, 1.0);
    const double b1 = c.get_double("beta_end", 0.02, 0.0, 1.0);
    return std::make_shared<DdpmPath>(DdpmPath::linear_betas(T, b0, b1));
  }
  const double s = c.get_double("cosine_s", 0.008, 0.0, 1.0);
  const double max_beta = c.get_double("max_beta", 0.999, 0.0, 1.0);
  return std::make_shared<DdpmPath>(DdpmPath::cosine_betas(T, s, max_beta));
}
}  // namespace

DIFFUSION_REGISTER(paths, "ddpm", make_ddpm);

}  // namespace diffusion::ddpm

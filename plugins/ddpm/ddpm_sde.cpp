#include "ddpm_sde.hpp"

#include <algorithm>
#include <cmath>

#include <diffusion/plugin.hpp>

namespace diffusion::ddpm {

std::vector<double> DdpmSde::linear_betas(std::size_t T, double beta_start, double beta_end) {
  std::vector<double> b(T);
  for (std::size_t i = 0; i < T; ++i)
    b[i] = T == 1 ? beta_start : beta_start + (beta_end - beta_start) * double(i) / double(T - 1);
  return b;
}

std::vector<double> DdpmSde::cosine_betas(std::size_t T, double s, double max_beta) {
  auto f = [&](double u) {
    const double c = std::cos((u + s) / (1.0 + s) * M_PI / 2.0);
    return c * c;
  };
  std::vector<double> b(T);
  for (std::size_t i = 0; i < T; ++i)
    b[i] = std::min(1.0 - f(double(i + 1) / T) / f(double(i) / T), max_beta);
  return b;
}

DdpmSde::DdpmSde(std::vector<double> betas) : betas_(std::move(betas)) {
  if (betas_.empty()) throw Error("ddpm: at least one time step is needed");
  alpha_bar_.resize(betas_.size());
  double prod = 1.0;
  for (std::size_t i = 0; i < betas_.size(); ++i) alpha_bar_[i] = prod *= 1.0 - betas_[i];
}

double DdpmSde::alpha_bar_at(double t) const {
  // Exact at integer steps; log-linear in between so continuous-time samplers still work.
  const double c = std::clamp(t, t_min(), t_max());
  const auto i = static_cast<std::size_t>(std::floor(c));
  if (i + 1 >= alpha_bar_.size() || c == double(i)) return alpha_bar_[i];
  const double w = c - double(i);
  return std::exp((1 - w) * std::log(alpha_bar_[i]) + w * std::log(alpha_bar_[i + 1]));
}

double DdpmSde::alpha(double t) const { return std::sqrt(alpha_bar_at(t)); }
double DdpmSde::sigma(double t) const { return std::sqrt(1.0 - alpha_bar_at(t)); }

double DdpmSde::drift_coef(double t) const {
  // The VP SDE dx = -beta(t)/2 x dt + sqrt(beta(t)) dW in step units, beta = -d log abar / dt.
  const auto i = static_cast<std::size_t>(std::clamp(std::floor(t), t_min(), t_max()));
  return -0.5 * -std::log1p(-betas_[i]);
}

double DdpmSde::diffusion(double t) const { return std::sqrt(-2.0 * drift_coef(t)); }

Tensor DdpmSde::sample_times(std::size_t n, Rng& rng) const {
  return rng.integer({n}, betas_.size());
}

double DdpmSde::time_at_quantile(double u) const {
  const double T = double(betas_.size());
  return std::min(std::floor(u * T), T - 1.0);  // u * T can round up to T for u just below 1
}

std::vector<double> DdpmSde::time_grid(std::size_t steps, TimeSpacing spacing) const {
  if (steps == 0 || steps > betas_.size())
    throw Error("ddpm: sampler steps must be in [1, " + std::to_string(betas_.size()) + "], got " +
                std::to_string(steps));
  std::vector<double> grid(steps);
  const double top = t_max();
  for (std::size_t i = 0; i < steps; ++i) {
    const double u = steps == 1 ? 0.0 : double(i) / double(steps - 1);
    grid[i] = spacing == TimeSpacing::linear ? std::floor(top * (1.0 - u))
                                             : std::round(top * (1.0 - u) * (1.0 - u));
  }
  // Quadratic rounding can repeat small steps: keep the grid strictly decreasing, ending at 0.
  for (std::size_t i = steps - 1; i-- > 0;) grid[i] = std::max(grid[i], grid[i + 1] + 1);
  return grid;
}

namespace {
std::shared_ptr<Sde> make_ddpm(const ConfigNode& c, const BuildContext&) {
  const auto T = static_cast<std::size_t>(c.get_int("timesteps", 1000, 1, 100000));
  const std::string schedule = c.get_choice("schedule", "linear", {"linear", "cosine"});
  if (schedule == "linear") {
    const double b0 = c.get_double("beta_start", 1e-4, 0.0, 1.0);
    const double b1 = c.get_double("beta_end", 0.02, 0.0, 1.0);
    return std::make_shared<DdpmSde>(DdpmSde::linear_betas(T, b0, b1));
  }
  const double s = c.get_double("cosine_s", 0.008, 0.0, 1.0);
  const double max_beta = c.get_double("max_beta", 0.999, 0.0, 1.0);
  return std::make_shared<DdpmSde>(DdpmSde::cosine_betas(T, s, max_beta));
}
}  // namespace

DIFFUSION_REGISTER(sdes, "ddpm", make_ddpm);

}  // namespace diffusion::ddpm

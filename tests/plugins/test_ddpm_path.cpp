// The DDPM path (plugins/ddpm/ddpm_path.cpp) as a Path: between whole steps log abar is linear,
// so on [i, i+1) its derivatives, the SDE's drift f = log(1 - beta_{i+1}) / 2 and diffusion
// g^2 = -log(1 - beta_{i+1}) are constants that jump at whole steps. Checked against finite
// differences inside the intervals, against the betas of the schedules written out here, and
// (statistically) by simulating the SDE from t = 0 to t = T - 1.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

using namespace diffusion;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

constexpr std::size_t kT = 1000;

std::shared_ptr<Path> ddpm(const std::string& schedule) {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_ddpm.so");
  const Config c = Config::load_string("{type: ddpm, timesteps: 1000, schedule: " + schedule + "}");
  return registries().paths.create(c.root(), BuildContext{});
}

/// Ho et al. 2020: beta_i = 1e-4 + (0.02 - 1e-4) i / (T - 1), i = 0..T-1.
std::vector<double> linear_betas() {
  std::vector<double> b(kT);
  for (std::size_t i = 0; i < kT; ++i) b[i] = 1e-4 + (0.02 - 1e-4) * double(i) / double(kT - 1);
  return b;
}

/// Nichol & Dhariwal 2021, eq. 17: beta_i = min(1 - f((i+1)/T) / f(i/T), 0.999),
/// f(u) = cos^2((u + s) / (1 + s) pi / 2), s = 0.008.
std::vector<double> cosine_betas() {
  const auto f = [](double u) {
    const double c = std::cos((u + 0.008) / 1.008 * M_PI / 2);
    return c * c;
  };
  std::vector<double> b(kT);
  for (std::size_t i = 0; i < kT; ++i) b[i] = std::min(1 - f(double(i + 1) / kT) / f(double(i) / kT), 0.999);
  return b;
}

std::vector<double> betas_of(const std::string& schedule) {
  return schedule == "linear" ? linear_betas() : cosine_betas();
}

/// Central difference (F(t + h) - F(t - h)) / 2h of F on one interval.
template <class F>
double central(F f, double t, double h) {
  return (f(t + h) - f(t - h)) / (2 * h);
}

/// Whole steps spread over the path, the first and the last intervals included.
const std::vector<std::size_t> kSteps = {0, 1, 2, 17, 100, 250, 499, 500, 750, 900, 990, 997, 998};

}  // namespace

TEST_CASE("ddpm path: the schedules' betas give abar, alpha and sigma at whole steps", "[path][ddpm]") {
  const std::string schedule = GENERATE(as<std::string>{}, "linear", "cosine");
  CAPTURE(schedule);
  const auto p = ddpm(schedule);
  const std::vector<double> beta = betas_of(schedule);
  REQUIRE(p->num_steps() == kT);
  REQUIRE(p->t_min() == 0.0);
  REQUIRE(p->t_max() == double(kT - 1));
  double abar = 1;
  for (std::size_t i = 0; i < kT; ++i) {
    abar *= 1 - beta[i];
    CAPTURE(i);
    REQUIRE_THAT(p->alpha(double(i)), WithinRel(std::sqrt(abar), 1e-12));
    REQUIRE_THAT(p->sigma(double(i)), WithinRel(std::sqrt(1 - abar), 1e-12));
    REQUIRE(p->network_time(double(i)) == float(i));
  }
  // In between, log abar is linear: abar(i + 1/2) is the geometric mean of its neighbours.
  for (const std::size_t i : kSteps) {
    const double a0 = p->alpha(double(i)), a1 = p->alpha(double(i + 1));
    CAPTURE(i);
    REQUIRE_THAT(p->alpha(i + 0.5), WithinRel(std::sqrt(a0 * a1), 1e-12));
    REQUIRE_THAT(p->alpha(i + 0.5) * p->alpha(i + 0.5) + p->sigma(i + 0.5) * p->sigma(i + 0.5), WithinAbs(1.0, 1e-14));
  }
}

TEST_CASE("ddpm path: alpha' and sigma' match central differences inside each step interval", "[path][ddpm]") {
  // The path is smooth inside [i, i+1) and its derivatives jump at whole steps, so the
  // differences are taken at i + w with w in (0, 1) and h = 1e-4 < min(w, 1 - w). Inside an
  // interval alpha = C exp(L t / 2), so the central difference's truncation error is
  // (L h / 2)^2 / 6 relative: below 2e-8 even at the cosine schedule's last interval
  // (L = log(1 - 0.999)). Rounding adds a few ulps of F over h: 2e-15 |F| / h in absolute terms
  // (it matters for sigma' near t_max, where sigma ~ 1 and sigma' ~ 1e-6).
  const std::string schedule = GENERATE(as<std::string>{}, "linear", "cosine");
  CAPTURE(schedule);
  const auto p = ddpm(schedule);
  const double h = 1e-4;
  const auto near = [&](double analytic, double numeric, double value) {
    CAPTURE(analytic, numeric);
    REQUIRE(std::abs(analytic - numeric) <= 1e-7 * std::abs(numeric) + 2e-15 * std::abs(value) / h);
  };
  const auto alpha = [&](double s) { return p->alpha(s); };
  const auto sigma = [&](double s) { return p->sigma(s); };
  for (const std::size_t i : kSteps)
    for (const double w : {0.001 + 2 * h, 0.25, 0.5, 0.9}) {
      const double t = double(i) + w;
      CAPTURE(i, w);
      near(p->alpha_deriv(t), central(alpha, t, h), p->alpha(t));
      near(p->sigma_deriv(t), central(sigma, t, h), p->sigma(t));
      REQUIRE(p->alpha_deriv(t) < 0.0);
      REQUIRE(p->sigma_deriv(t) > 0.0);
    }
  // At a whole step the derivatives are the right-hand ones (of [i, i+1)): a one-sided,
  // second-order difference (-3 F(i) + 4 F(i + h) - F(i + 2h)) / 2h (truncation (L h)^2 / 12).
  const auto forward = [&](auto f, double t) { return (-3 * f(t) + 4 * f(t + h) - f(t + 2 * h)) / (2 * h); };
  for (const std::size_t i : kSteps) {
    CAPTURE(i);
    const double t = double(i);
    near(p->alpha_deriv(t), forward(alpha, t), p->alpha(t));
    near(p->sigma_deriv(t), forward(sigma, t), p->sigma(t));
  }
  // At t_max (no interval to its right) they are the last interval's, approached from the left.
  const double t = p->t_max();
  const auto backward = [&](auto f) { return (3 * f(t) - 4 * f(t - h) + f(t - 2 * h)) / (2 * h); };
  near(p->alpha_deriv(t), backward(alpha), p->alpha(t));
  near(p->sigma_deriv(t), backward(sigma), p->sigma(t));
}

TEST_CASE("ddpm path: drift_coef and diffusion_squared are the general formulas of path.hpp", "[path][ddpm]") {
  // The plugin overrides both with closed forms; they must equal f = alpha' / alpha and
  // g^2 = 2 sigma sigma' - 2 f sigma^2 computed from its own four functions.
  const std::string schedule = GENERATE(as<std::string>{}, "linear", "cosine");
  CAPTURE(schedule);
  const auto p = ddpm(schedule);
  for (const std::size_t i : kSteps)
    for (const double w : {0.0, 0.3, 0.5, 0.999}) {
      const double t = double(i) + w;
      CAPTURE(i, w);
      const double a = p->alpha(t), s = p->sigma(t);
      const double f = p->alpha_deriv(t) / a;
      REQUIRE_THAT(p->drift_coef(t), WithinRel(f, 1e-12));
      REQUIRE_THAT(p->diffusion_squared(t), WithinRel(2 * s * p->sigma_deriv(t) - 2 * f * s * s, 1e-10));
      REQUIRE_THAT(p->diffusion(t), WithinRel(std::sqrt(p->diffusion_squared(t)), 1e-15));
    }
}

TEST_CASE("ddpm path: the drift between steps i and i+1 is log(1 - beta_{i+1}) / 2, from the schedule's own betas",
          "[path][ddpm]") {
  // The fixed bug: the interval [i, i+1) goes from abar_i to abar_{i+1} = abar_i (1 - beta_{i+1}),
  // so its slope of log abar is log(1 - beta_{i+1}), not log(1 - beta_i). The linear schedule's
  // betas differ by 2e-5 from one step to the next, far above the 1e-12 tolerance.
  const std::string schedule = GENERATE(as<std::string>{}, "linear", "cosine");
  CAPTURE(schedule);
  const auto p = ddpm(schedule);
  const std::vector<double> beta = betas_of(schedule);
  for (std::size_t i = 0; i + 1 < kT; ++i)
    for (const double w : {0.0, 0.5, 0.999}) {
      const double t = double(i) + w;
      CAPTURE(i, w, beta[i], beta[i + 1]);
      const double slope = std::log1p(-beta[i + 1]);
      REQUIRE_THAT(p->drift_coef(t), WithinRel(slope / 2, 1e-12));
      REQUIRE_THAT(p->diffusion_squared(t), WithinRel(-slope, 1e-12));
      // alpha' / alpha = (1/2) d log abar / dt, with the interval's log abar difference.
      const double a0 = p->alpha(double(i)), a1 = p->alpha(double(i + 1));
      REQUIRE_THAT(p->alpha_deriv(t) / p->alpha(t), WithinRel(std::log(a1 / a0), 1e-9));
    }
  // The last interval [T-2, T-1] is used at t_max itself.
  REQUIRE_THAT(p->drift_coef(p->t_max()), WithinRel(std::log1p(-beta[kT - 1]) / 2, 1e-12));
  // The coefficient jumps at a whole step: just below i it is the previous interval's.
  if (schedule == "linear")
    for (const std::size_t i : {1, 10, 500, 998}) {
      CAPTURE(i);
      REQUIRE_THAT(p->drift_coef(double(i) - 1e-6), WithinRel(std::log1p(-beta[i]) / 2, 1e-12));
      REQUIRE_THAT(p->drift_coef(double(i)), WithinRel(std::log1p(-beta[i + 1]) / 2, 1e-12));
      REQUIRE(std::abs(p->drift_coef(double(i)) - p->drift_coef(double(i) - 1e-6)) > 5e-6);
    }
}

TEST_CASE("ddpm path: dx = f x dt + g dW from t = 0 to T - 1 has the path's marginals", "[path][ddpm][stat]") {
  // 10^4 independent 1-D chains start at x_0 ~ N(alpha_0 x0, sigma_0^2) and follow the SDE by
  // Euler-Maruyama, each step interval [i, i+1) cut into equal sub-steps (f and g are constant
  // there). At whole steps along the way the chains' mean and variance must be alpha_t x0 and
  // sigma_t^2 within 4 standard errors plus the discretisation error.
  //
  // Discretisation: each sub-step multiplies the mean by 1 + f h instead of exp(f h), an
  // O((f h)^2) error per sub-step. Sub-steps with |f| h <= 2e-3 (6 per interval at the linear
  // schedule's end, where f = -0.01; ~1700 in the cosine schedule's last interval, beta = 0.999)
  // keep the scheme's exact moments (computed by its recursion, for a linear SDE exact) within
  // 0.1 standard error of the path's at every checked time; the test asserts that too.
  const std::string schedule = GENERATE(as<std::string>{}, "linear", "cosine");
  CAPTURE(schedule);
  const auto p = ddpm(schedule);
  const std::size_t chains = 10000;
  const double x0 = 3.0;
  Rng rng(77);
  Tensor z = Tensor::from_shape({chains});
  rng.fill_normal(z);
  std::vector<double> x(chains);
  double m = p->alpha(0) * x0, v = p->sigma(0) * p->sigma(0);
  for (std::size_t i = 0; i < chains; ++i) x[i] = m + p->sigma(0) * z(i);
  const std::vector<std::size_t> checked = {1, 10, 100, 300, 600, 900, 999};
  std::size_t next = 0, total_substeps = 0;
  for (std::size_t i = 0; i + 1 < kT; ++i) {
    const double f = p->drift_coef(double(i)), g = p->diffusion(double(i));
    const auto sub = static_cast<std::size_t>(std::max(1.0, std::ceil(std::abs(f) / 2e-3)));
    const double h = 1.0 / double(sub);
    total_substeps += sub;
    for (std::size_t j = 0; j < sub; ++j) {
      const double t = double(i) + double(j) * h;
      // Coefficients at the left end of the sub-step (Euler), here constant on the interval.
      const double decay = 1 + p->drift_coef(t) * h, noise = p->diffusion(t) * std::sqrt(h);
      REQUIRE(decay == 1 + f * h);
      REQUIRE(noise == g * std::sqrt(h));
      rng.fill_normal(z);
      const float* pz = z.data();
      for (std::size_t k = 0; k < chains; ++k) x[k] = decay * x[k] + noise * pz[k];
      m *= decay;
      v = decay * decay * v + noise * noise;
    }
    if (next < checked.size() && i + 1 == checked[next]) {
      ++next;
      const double t = double(i + 1);
      double mc_mean = 0, mc_var = 0;
      for (const double xi : x) mc_mean += xi / double(chains);
      for (const double xi : x) mc_var += (xi - mc_mean) * (xi - mc_mean) / double(chains - 1);
      const double mean = p->alpha(t) * x0, var = p->sigma(t) * p->sigma(t);
      const double se_mean = std::sqrt(var / chains), se_var = var * std::sqrt(2.0 / (chains - 1));
      const double bias_mean = std::abs(m - mean), bias_var = std::abs(v - var);
      CAPTURE(t, mean, mc_mean, m, se_mean, var, mc_var, v, se_var);
      REQUIRE(bias_mean < 0.1 * se_mean);
      REQUIRE(bias_var < 0.1 * se_var);
      REQUIRE_THAT(mc_mean, WithinAbs(mean, 4 * se_mean + bias_mean));
      REQUIRE_THAT(mc_var, WithinAbs(var, 4 * se_var + bias_var));
    }
  }
  REQUIRE(next == checked.size());
  CAPTURE(total_substeps);
  REQUIRE(total_substeps < 8000);
}

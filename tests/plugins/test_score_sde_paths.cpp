// The score SDE paths (Song et al. 2021, eqs. 9, 11, 12) against their closed forms: alpha and
// sigma, their derivatives (finite differences), the closed-form drift and diffusion against the
// Path base's derived ones, the inverse log-SNR, the prior, and the forward SDE simulated with
// Euler-Maruyama against the path's marginal.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

using namespace diffusion;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

void load_score_sde() { load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_score_sde.so"); }

std::shared_ptr<Path> make_path(const std::string& yaml) {
  load_score_sde();
  return registries().paths.create(Config::load_string(yaml).root(), BuildContext{});
}

// The closed forms with the default parameters, written out here independently of the plugin.
constexpr double kBetaMin = 0.1, kBetaMax = 20.0, kSigmaMin = 0.01, kSigmaMax = 50.0;
double integral_beta(double t) { return kBetaMin * t + 0.5 * (kBetaMax - kBetaMin) * t * t; }
double beta(double t) { return kBetaMin + t * (kBetaMax - kBetaMin); }

struct Expected {
  double alpha, sigma, g2;
};

Expected expected(const std::string& type, double t) {
  const double b = integral_beta(t);
  if (type == "vp") return {std::exp(-b / 2), std::sqrt(1 - std::exp(-b)), beta(t)};
  if (type == "subvp") return {std::exp(-b / 2), 1 - std::exp(-b), beta(t) * (1 - std::exp(-2 * b))};
  const double s = kSigmaMin * std::pow(kSigmaMax / kSigmaMin, t);
  return {1.0, s, 2 * s * s * std::log(kSigmaMax / kSigmaMin)};
}

const double kTimes[] = {1e-3, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0};

}  // namespace

TEST_CASE("score SDE paths follow their closed forms", "[score_sde][sde]") {
  const std::string type = GENERATE(std::string("vp"), std::string("subvp"), std::string("ve"));
  CAPTURE(type);
  const auto path = make_path("{type: " + type + "}");
  REQUIRE_THAT(path->t_min(), WithinRel(type == "ve" ? 1e-5 : 1e-3, 1e-10));
  REQUIRE(path->t_max() == 1.0);
  REQUIRE(path->num_steps() == 0);
  for (const double t : kTimes) {
    CAPTURE(t);
    const Expected e = expected(type, t);
    REQUIRE_THAT(path->alpha(t), WithinRel(e.alpha, 1e-12));
    REQUIRE_THAT(path->sigma(t), WithinRel(e.sigma, 1e-10));
    // Derivatives against a central difference (error O(h^2) ~ 1e-10 relative).
    const double h = 1e-5 * t;
    REQUIRE_THAT(path->alpha_deriv(t), WithinAbs((path->alpha(t + h) - path->alpha(t - h)) / (2 * h),
                                                 1e-6 * std::max(1.0, std::abs(path->alpha_deriv(t)))));
    REQUIRE_THAT(path->sigma_deriv(t), WithinRel((path->sigma(t + h) - path->sigma(t - h)) / (2 * h), 1e-6));
    // The closed-form f and g^2 agree with what the Path base derives from alpha and sigma.
    REQUIRE_THAT(path->drift_coef(t), WithinAbs(path->Path::drift_coef(t), 1e-12));
    REQUIRE_THAT(path->diffusion_squared(t), WithinRel(path->Path::diffusion_squared(t), 1e-9));
    REQUIRE_THAT(path->diffusion_squared(t), WithinRel(e.g2, 1e-10));
    REQUIRE_THAT(path->drift_coef(t), WithinAbs(type == "ve" ? 0.0 : -beta(t) / 2, 1e-12));
    // Network time 999 t: the mlp's sinusoidal embedding sees DDPM's range of step indices.
    REQUIRE(path->network_time(t) == static_cast<float>(999.0 * t));
  }
}

TEST_CASE("score SDE paths invert their log-SNR in closed form", "[score_sde][sde]") {
  const std::string type = GENERATE(std::string("vp"), std::string("subvp"), std::string("ve"));
  CAPTURE(type);
  const auto path = make_path("{type: " + type + "}");
  for (const double t : {path->t_min(), 2e-3, 0.01, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0}) {
    CAPTURE(t);
    REQUIRE_THAT(path->time_at_log_snr(path->log_snr(t)), WithinAbs(t, 1e-9));
  }
  // Uniformly in log SNR, including the base class's bisection as a second opinion.
  const double hi = path->log_snr(path->t_min()), lo = path->log_snr(path->t_max());
  for (int k = 0; k <= 20; ++k) {
    const double lambda = lo + (hi - lo) * k / 20.0;
    CAPTURE(lambda);
    REQUIRE_THAT(path->log_snr(path->time_at_log_snr(lambda)), WithinAbs(lambda, 1e-8));
    REQUIRE_THAT(path->time_at_log_snr(lambda), WithinAbs(path->Path::time_at_log_snr(lambda), 1e-9));
  }
  // Clamped to the ends outside.
  REQUIRE(path->time_at_log_snr(hi + 5) == path->t_min());
  REQUIRE(path->time_at_log_snr(lo - 5) == path->t_max());
}

TEST_CASE("sub-VP's sigma lies below VP's and both VP priors are the unit Gaussian", "[score_sde][sde]") {
  const auto vp = make_path("{type: vp}");
  const auto subvp = make_path("{type: subvp}");
  const auto ve = make_path("{type: ve}");
  for (double t = 1e-3; t <= 1.0; t += 0.01) {
    CAPTURE(t);
    REQUIRE(subvp->sigma(t) <= vp->sigma(t));
    REQUIRE_THAT(vp->alpha(t) * vp->alpha(t) + vp->sigma(t) * vp->sigma(t), WithinAbs(1.0, 1e-14));
  }
  // The prior: N(0, (alpha^2 + sigma^2)(1) I): 1 for VP, about 1 for sub-VP (its variance at
  // t = 1 is exp(-B) + (1 - exp(-B))^2 = 1 - exp(-B) + exp(-2B)), 1 + sigma_max^2 for VE (Song's
  // N(0, sigma_max^2 I) plus the unit-variance data's own variance).
  const double b1 = integral_beta(1.0);
  const std::pair<const Path*, double> priors[] = {
      {vp.get(), 1.0}, {subvp.get(), 1 - std::exp(-b1) + std::exp(-2 * b1)}, {ve.get(), 1 + kSigmaMax * kSigmaMax}};
  for (const auto& [path, var] : priors) {
    CAPTURE(var);
    const std::size_t n = 20000;
    Rng rng(11);
    const Tensor x = standard_normal_source().start(*path, {n, 2}, rng);
    double sq = 0;
    for (const float v : x) sq += double(v) * v;
    const double sample_var = sq / double(x.size());
    REQUIRE_THAT(sample_var, WithinAbs(var, 4 * var * std::sqrt(2.0 / double(x.size()))));
    // The log density: -log(2 pi var) - |x|^2 / (2 var) in 2-D.
    const Tensor lp = standard_normal_source().start_log_density(*path, x);
    for (std::size_t i = 0; i < 5; ++i) {
      const double r2 = double(x(i, 0)) * x(i, 0) + double(x(i, 1)) * x(i, 1);
      REQUIRE_THAT(lp(i), WithinRel(-std::log(2 * M_PI * var) - r2 / (2 * var), 1e-5));
    }
  }
}

TEST_CASE("the forward SDE simulated with Euler-Maruyama has the path's marginal", "[score_sde][sde][stat]") {
  // From x at t_min ~ N(alpha x0, sigma^2) (exact), dx = f x dt + g dW to t = 0.5 must give
  // N(alpha(0.5) x0, sigma(0.5)^2): this checks g^2 (a wrong g changes the variance). 1000 steps
  // put Euler-Maruyama's bias (O(h) relative: h = 5e-4 times beta / 2 <= 5) near 0.25% of the
  // variance, well under the 4 standard errors (5.7%) of 10000 paths.
  const std::string type = GENERATE(std::string("vp"), std::string("subvp"), std::string("ve"));
  CAPTURE(type);
  const auto path = make_path("{type: " + type + "}");
  const double x0 = 1.5, t0 = path->t_min(), t1 = 0.5;
  const std::size_t n = 10000, steps = 1000;
  const double h = (t1 - t0) / steps;
  Rng rng(3);
  double sum = 0, sum_sq = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double x = path->alpha(t0) * x0 + path->sigma(t0) * rng.normal();
    for (std::size_t k = 0; k < steps; ++k) {
      const double t = t0 + k * h;
      x += path->drift_coef(t) * x * h + path->diffusion(t) * std::sqrt(h) * rng.normal();
    }
    sum += x, sum_sq += x * x;
  }
  const double mean = sum / n, var = (sum_sq - n * mean * mean) / (n - 1);
  const double s = path->sigma(t1);
  CAPTURE(mean, var, path->alpha(t1) * x0, s * s);
  REQUIRE_THAT(mean, WithinAbs(path->alpha(t1) * x0, 4 * s / std::sqrt(double(n))));
  REQUIRE_THAT(var, WithinAbs(s * s, 4 * s * s * std::sqrt(2.0 / (n - 1))));
}

TEST_CASE("score SDE paths refuse bad parameters, naming the key", "[score_sde][sde][config]") {
  load_score_sde();
  const auto fails = [](const std::string& yaml) {
    return registries().paths.create(Config::load_string(yaml).root(), BuildContext{});
  };
  REQUIRE_THROWS_WITH(fails("{type: vp, beta_min: 5, beta_max: 1}"),
                      Catch::Contains("beta_min") && Catch::Contains("exceeds beta_max"));
  REQUIRE_THROWS_WITH(fails("{type: subvp, beta_min: 30}"), Catch::Contains("beta_min (30) exceeds beta_max (20)"));
  REQUIRE_THROWS_WITH(fails("{type: vp, beta_max: 0}"), Catch::Contains("beta_max"));
  REQUIRE_THROWS_WITH(fails("{type: ve, sigma_min: 50, sigma_max: 50}"),
                      Catch::Contains("sigma_min") && Catch::Contains("below sigma_max"));
  REQUIRE_THROWS_WITH(fails("{type: ve, sigma_min: 60}"), Catch::Contains("sigma_min (60) must be below sigma_max (50)"));
  REQUIRE_THROWS_WITH(fails("{type: ve, sigma_min: 0}"), Catch::Contains("sigma_min"));
  REQUIRE_THROWS_WITH(fails("{type: vp, eps: 0}"), Catch::Contains("eps"));
  REQUIRE_THROWS_WITH(fails("{type: vp, beta: 3}"), Catch::Contains("beta"));
  // Equal betas are a constant schedule: allowed, and its inverse log-SNR is still exact.
  const auto flat = fails("{type: vp, beta_min: 4, beta_max: 4, eps: 0.01}");
  REQUIRE_THAT(flat->time_at_log_snr(flat->log_snr(0.3)), WithinAbs(0.3, 1e-9));
}

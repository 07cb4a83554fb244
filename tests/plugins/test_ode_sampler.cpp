// The probability-flow ODE sampler (Song et al. 2021, section 4.3) with the exact denoiser of a
// Gaussian mixture (tests/core/gaussian_mixture_oracle.hpp): no training, so what is measured is
// the sampler and the integrator alone.
//
// 1. A single Gaussian N(mu, s^2 I): the marginal at t is N(alpha mu, v I), v = alpha^2 s^2 +
//    sigma^2, and the flow keeps u = (x_t - alpha_t mu) / sqrt(v_t) constant (d/dt of
//    alpha mu + sqrt(v) u is alpha' mu + v' / (2 sqrt v) u, which is alpha' x0_hat + sigma' eps_hat
//    for x0_hat = mu + alpha s^2 (x - alpha mu) / v and eps_hat = sigma (x - alpha mu) / v), so
//    x(t_min) = alpha_min mu + sqrt(v_min / v_max) (x(t_max) - alpha_max mu) exactly: each
//    method's endpoint is checked against it, and its error falls with the method's order.
// 2. A two-component mixture with weights 0.3 / 0.7: every method's samples put each
//    component's share, mean and variance within 4 standard errors of the truth.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include <diffusion/components.hpp>
#include <diffusion/integrate/ode.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/plugin/registries.hpp>

#include "core/analytic_paths.hpp"
#include "core/gaussian_mixture_oracle.hpp"

using namespace diffusion;
using namespace diffusion::testing;

namespace {

void load_score_sde() { load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_score_sde.so"); }

std::shared_ptr<Sampler> make_sampler(const std::string& yaml) {
  const Config c = Config::load_string(yaml);
  BuildContext ctx;
  ctx.data_shape = {2};
  return registries().samplers.create(c.root(), ctx);
}

/// The sampler's yaml for a method: fixed-step methods on the given grid.
std::string ode_yaml(const std::string& method, std::size_t steps, const std::string& spacing) {
  if (method == "dopri5") return "{type: ode, method: dopri5}";
  return "{type: ode, method: " + method + ", steps: " + std::to_string(steps) + ", spacing: " + spacing + "}";
}

struct Run {
  Tensor start, end;
  SampleOutput out;
  std::size_t nfe = 0;
};

/// n samples through the sampler, with the starting draw (the trajectory's first frame).
Run run(const Sampler& sampler, const Denoiser& model, std::size_t n, std::uint64_t seed) {
  CountingDenoiser counted(std::shared_ptr<const Denoiser>(&model, [](const Denoiser*) {}));
  Trajectory traj;
  traj.max_frames = 2;
  SampleRequest req;
  req.shape = {n, 2};
  req.trajectory = &traj;
  Rng rng(seed);
  sampler.check(model.path(), standard_normal_source());
  Run r;
  r.out = sampler.sample(counted, req, rng);
  REQUIRE(traj.frames.size() == 2);
  r.start = traj.frames.front();
  r.end = r.out.x;
  r.nfe = counted.nfe();
  return r;
}

double extra(const SampleOutput& out, const std::string& name) {
  for (const auto& [key, value] : out.extras)
    if (key == name) return value.data()[0];
  FAIL("no extra " << name);
  return 0;
}

/// The largest error of the endpoints against the closed-form flow of N(mu, s^2 I) data, relative
/// to the data's scale s.
double gaussian_flow_error(const Path& path, const Run& r, const double* mu, double s) {
  const double t0 = path.t_min(), t1 = path.t_max();
  const double a0 = path.alpha(t0), a1 = path.alpha(t1);
  const double v0 = a0 * a0 * s * s + path.sigma(t0) * path.sigma(t0);
  const double v1 = a1 * a1 * s * s + path.sigma(t1) * path.sigma(t1);
  double worst = 0;
  for (std::size_t i = 0; i < r.end.shape()[0]; ++i)
    for (std::size_t j = 0; j < 2; ++j) {
      const double expected = a0 * mu[j] + std::sqrt(v0 / v1) * (r.start(i, j) - a1 * mu[j]);
      worst = std::max(worst, std::abs(r.end(i, j) - expected) / s);
    }
  return worst;
}

}  // namespace

TEST_CASE("ode sampler: endpoints of the probability-flow map of Gaussian data", "[score_sde][sampler][ode]") {
  load_score_sde();
  const double mu[2] = {1.0, -2.0}, s = 0.5;
  const GaussianMixture gauss({{1.0, {mu[0], mu[1]}, {s, s}}});
  // Each fixed-step method at S and 2S grid times: the error at 2S is below the method's bound
  // and falls by at least 2^order / 1.5 from S to 2S while it is above float32's rounding of
  // a few hundred steps (1e-5). The VE path steps on the Karras grid, dense near the data.
  struct Method {
    std::string name;
    std::size_t steps;
    int order;
    double bound;  ///< on the largest endpoint error at 2 * steps, in units of s
  };
  const std::vector<Method> methods = {
      {"euler", 50, 1, 0.1}, {"midpoint", 25, 2, 2e-3}, {"heun", 25, 2, 2e-2}, {"rk4", 25, 4, 1e-4}};
  struct Case {
    std::string name, spacing;
    std::shared_ptr<const Path> path;
  };
  for (const Case& c : {Case{"cosine_vp", "linear", std::make_shared<CosineVp>()},
                        Case{"ve_linear", "karras", std::make_shared<VeLinear>()}}) {
    const MixtureOracleDenoiser model(gauss, c.path);
    for (const Method& m : methods) {
      const Run coarse = run(*make_sampler(ode_yaml(m.name, m.steps, c.spacing)), model, 64, 7);
      const Run fine = run(*make_sampler(ode_yaml(m.name, 2 * m.steps, c.spacing)), model, 64, 7);
      const double e1 = gaussian_flow_error(*c.path, coarse, mu, s), e2 = gaussian_flow_error(*c.path, fine, mu, s);
      CAPTURE(c.name, m.name, e1, e2);
      // The grid ends at t_min: steps - 1 steps of the method, ode_method_stages evaluations each.
      REQUIRE(fine.nfe == (2 * m.steps - 1) * ode_method_stages(parse_ode_method(m.name)));
      REQUIRE(extra(fine.out, "accepted_steps") == double(2 * m.steps - 1));
      REQUIRE(extra(fine.out, "rejected_steps") == 0.0);
      CHECK(e2 < m.bound);
      if (e2 > 1e-5) CHECK(e1 / e2 > std::pow(2.0, m.order) / 1.5);
    }
    // dopri5 with rtol = atol = 1e-5.
    const Run r = run(*make_sampler(ode_yaml("dopri5", 0, "")), model, 64, 7);
    const double err = gaussian_flow_error(*c.path, r, mu, s);
    CAPTURE(c.name, err, r.nfe, extra(r.out, "accepted_steps"), extra(r.out, "rejected_steps"));
    CHECK(err < 1e-4);
    CHECK(r.nfe < 400);
    CHECK(extra(r.out, "accepted_steps") >= 1.0);
  }
}

TEST_CASE("ode sampler: the probability-flow ODE runs in continuous time on DDPM's discrete path",
          "[score_sde][sampler][ode][ddpm]") {
  // DDPM's path is log-linear in abar between whole steps, with its derivatives per interval,
  // so the flow is still the closed form above. But d log abar / dt = log(1 - beta_(i+1)) is
  // constant per interval and jumps at every whole step (by 20% near t = 0 with linear betas):
  // the field is discontinuous in t there, and every integrator drops to first order across
  // the jumps (a stage at a whole step sees the neighbouring interval's slope). Measured: an
  // endpoint error of 1.9e-3 s for dopri5 (1.1e-3 s at rtol 1e-7) and 3.8e-3 s for rk4 on all
  // 1000 steps, 1.1e-2 s on 500 (first order). The bounds below are 2.5 times those.
  load_score_sde();
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_ddpm.so");
  const std::shared_ptr<const Path> ddpm =
      registries().paths.create(Config::load_string("{type: ddpm, timesteps: 1000}").root(), BuildContext{});
  const double mu[2] = {1.0, -2.0}, s = 0.5;
  const MixtureOracleDenoiser model(GaussianMixture({{1.0, {mu[0], mu[1]}, {s, s}}}), ddpm);
  const Run r = run(*make_sampler("{type: ode}"), model, 64, 3);
  CAPTURE(r.nfe);
  CHECK(gaussian_flow_error(*ddpm, r, mu, s) < 5e-3);
  const Run rk4 = run(*make_sampler("{type: ode, method: rk4, steps: 1000}"), model, 64, 3);
  CHECK(gaussian_flow_error(*ddpm, rk4, mu, s) < 1e-2);
}

TEST_CASE("ode sampler: every method recovers a two-component mixture", "[score_sde][sampler][ode][stat]") {
  load_score_sde();
  const GaussianMixture mix({{0.3, {-2.0, 0.0}, {0.4, 0.4}}, {0.7, {2.0, 1.0}, {0.6, 0.6}}});
  const std::size_t n = 2000;
  struct Case {
    std::string name, spacing;
    std::shared_ptr<const Path> path;
  };
  for (const Case& c : {Case{"cosine_vp", "linear", std::make_shared<CosineVp>()},
                        Case{"ve_linear", "karras", std::make_shared<VeLinear>()}}) {
    const MixtureOracleDenoiser model(mix, c.path);
    for (const auto& [method, steps] : std::vector<std::pair<std::string, std::size_t>>{
             {"euler", 200}, {"midpoint", 100}, {"heun", 100}, {"rk4", 50}, {"dopri5", 0}}) {
      CAPTURE(c.name, method);
      const Tensor x = run(*make_sampler(ode_yaml(method, steps, c.spacing)), model, n, 11).end;
      // Misassignment to the nearest mean at the components' separation is below 1e-3.
      require_mixture_recovered(x, mix, true);
    }
  }
}

TEST_CASE("ode sampler: options are checked against the method", "[score_sde][sampler][ode]") {
  load_score_sde();
  REQUIRE_THROWS_WITH(make_sampler("{type: ode, steps: 10}"), Catch::Contains("dopri5 chooses its own steps"));
  REQUIRE_THROWS_WITH(make_sampler("{type: ode, method: euler, rtol: 1e-3}"), Catch::Contains("takes `steps`"));
  REQUIRE_THROWS_WITH(make_sampler("{type: ode, method: rk5}"), Catch::Contains("method"));
  REQUIRE_NOTHROW(make_sampler("{type: ode, method: rk4, steps: 20, spacing: quadratic, denoise: true, prior: rqmc}"));
}

TEST_CASE("ode sampler: denoise ends with Tweedie's step and trajectories keep first and last",
          "[score_sde][sampler][ode]") {
  load_score_sde();
  const std::shared_ptr<const Path> path = std::make_shared<CosineVp>();
  const MixtureOracleDenoiser model(GaussianMixture({{1.0, {1.0, -2.0}, {0.5, 0.5}}}), path);
  for (const std::string yaml : {"{type: ode, denoise: true}", "{type: ode, method: heun, steps: 30, denoise: true}"}) {
    CAPTURE(yaml);
    const auto plain = make_sampler(yaml.substr(0, yaml.size() - 15) + "}");
    const Run a = run(*plain, model, 16, 5), b = run(*make_sampler(yaml), model, 16, 5);
    // One more evaluation, and the result is x0_hat at t_min of the undenoised endpoint.
    REQUIRE(b.nfe == a.nfe + 1);
    const Prediction p = model.predict(a.end, path->t_min());
    for (std::size_t j = 0; j < p.x0.size(); ++j) REQUIRE(b.end.data()[j] == p.x0.data()[j]);
  }
  // Many frames of an adaptive run: the starting draw first, the result last, times decreasing.
  Trajectory traj;
  traj.max_frames = 5;
  SampleRequest req;
  req.shape = {8, 2};
  req.trajectory = &traj;
  Rng rng(9);
  const SampleOutput out = make_sampler("{type: ode}")->sample(model, req, rng);
  REQUIRE(traj.frames.size() == 5);
  REQUIRE(traj.times.front() == path->t_max());
  REQUIRE(traj.times.back() == path->t_min());
  for (std::size_t k = 1; k < traj.times.size(); ++k) REQUIRE(traj.times[k] < traj.times[k - 1]);
  for (std::size_t j = 0; j < out.x.size(); ++j) REQUIRE(traj.frames.back().data()[j] == out.x.data()[j]);
}

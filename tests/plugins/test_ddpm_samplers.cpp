// Samplers against a Gaussian data set N(mu, Sigma), where the optimal eps-predictor is known
// in closed form: x_t = a x0 + s eps  =>  E[eps | x_t] = s (a^2 Sigma + s^2 I)^{-1} (x_t - a mu).
// Sampling with it must recover mu and Sigma (within 4 standard errors).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include <diffusion/components.hpp>
#include <diffusion/model/predictions.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

using namespace diffusion;
using Catch::Matchers::WithinAbs;

namespace {

const double kMu[2] = {1.0, -2.0};
const double kSigma[2][2] = {{1.0, 0.6}, {0.6, 0.5}};

/// The exact eps-predictor for N(mu, Sigma) data under a given SDE.
class GaussianEps : public Network {
 public:
  explicit GaussianEps(std::shared_ptr<const Path> sde) : sde_(std::move(sde)) {}
  Var forward(const Var& xv, const Tensor& t, const Condition&) override {
    const Tensor& x = xv.value();
    const std::size_t n = x.shape()[0];
    Tensor out = Tensor::from_shape({n, 2});
    for (std::size_t i = 0; i < n; ++i) {
      // Network time equals SDE time for DDPM (the step index).
      const double a = sde_->alpha(t(i)), s = sde_->sigma(t(i));
      const double c00 = a * a * kSigma[0][0] + s * s, c01 = a * a * kSigma[0][1];
      const double c11 = a * a * kSigma[1][1] + s * s, det = c00 * c11 - c01 * c01;
      const double d0 = x(i, 0) - a * kMu[0], d1 = x(i, 1) - a * kMu[1];
      out(i, 0) = float(s * (c11 * d0 - c01 * d1) / det);
      out(i, 1) = float(s * (-c01 * d0 + c00 * d1) / det);
    }
    return Var(out);
  }

 private:
  std::shared_ptr<const Path> sde_;
};

/// The exact eps-predictor for N(0, I) data on a VP path: eps_hat = sigma_t x.
class StandardNormalEps : public Network {
 public:
  explicit StandardNormalEps(std::shared_ptr<const Path> sde) : sde_(std::move(sde)) {}
  Var forward(const Var& x, const Tensor& t, const Condition&) override {
    Tensor out = x.value();
    for (std::size_t i = 0; i < out.shape()[0]; ++i)
      for (std::size_t j = 0; j < 2; ++j) out(i, j) *= float(sde_->sigma(t(i)));
    return Var(out);
  }

 private:
  std::shared_ptr<const Path> sde_;
};

void load_ddpm() { load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_ddpm.so"); }

std::shared_ptr<Path> make_sde(const std::string& yaml) {
  const Config c = Config::load_string(yaml);
  return registries().paths.create(c.root(), BuildContext{});
}

std::shared_ptr<Sampler> make_sampler(const std::string& yaml) {
  const Config c = Config::load_string(yaml);
  return registries().samplers.create(c.root(), BuildContext{});
}

/// An eps-predicting network read on its path, counting evaluations.
std::shared_ptr<CountingDenoiser> eps_model(std::shared_ptr<Network> net, std::shared_ptr<const Path> path) {
  return std::make_shared<CountingDenoiser>(std::make_shared<NetworkDenoiser>(net, path, make_prediction("eps")));
}

Tensor sample(const Sampler& s, const Denoiser& model, const Shape& shape, Rng& rng, Trajectory* traj = nullptr) {
  SampleRequest req;
  req.shape = shape;
  req.trajectory = traj;
  return s.sample(model, req, rng).x;
}

/// The sampler's first draw from the standard Gaussian source.
Tensor prior_sample(const Path& path, const Shape& shape, Rng& rng) {
  return standard_normal_source().start(path, shape, rng);
}

std::vector<double> time_grid(const Path& path, std::size_t steps, const std::string& spacing = "linear") {
  return registries().time_grids.create(Config::load_string("type: " + spacing).root(), BuildContext{})->times(path, steps);
}

void require_gaussian_moments(const Tensor& x) {
  const std::size_t n = x.shape()[0];
  double m[2] = {0, 0}, c[2][2] = {{0, 0}, {0, 0}};
  for (std::size_t i = 0; i < n; ++i)
    for (int j = 0; j < 2; ++j) m[j] += x(i, j) / double(n);
  for (std::size_t i = 0; i < n; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 2; ++k) c[j][k] += (x(i, j) - m[j]) * (x(i, k) - m[k]) / double(n - 1);
  for (int j = 0; j < 2; ++j) {
    CAPTURE(j, m[j]);
    REQUIRE_THAT(m[j], WithinAbs(kMu[j], 4 * std::sqrt(kSigma[j][j] / n)));
    for (int k = 0; k < 2; ++k) {
      // Var of a sample covariance entry of a Gaussian: (S_jj S_kk + S_jk^2) / n.
      const double se = std::sqrt((kSigma[j][j] * kSigma[k][k] + kSigma[j][k] * kSigma[j][k]) / n);
      CAPTURE(j, k, c[j][k]);
      REQUIRE_THAT(c[j][k], WithinAbs(kSigma[j][k], 4 * se));
    }
  }
}

/// For N(0, I) data (StandardNormalEps), DDIM with eta = 0 multiplies the prior draw by
/// prod_i (alpha_{t_i+1} alpha_{t_i} + sigma_{t_i+1} sigma_{t_i}) over the grid, times the last
/// time's alpha (its step goes to the data).
void require_ddim_factor(const Path& sde, const std::vector<double>& grid, const Tensor& x,
                         const Tensor& prior) {
  double factor = 1;
  for (std::size_t i = 0; i + 1 < grid.size(); ++i)
    factor *= sde.alpha(grid[i + 1]) * sde.alpha(grid[i]) + sde.sigma(grid[i + 1]) * sde.sigma(grid[i]);
  factor *= sde.alpha(grid.back());
  // x0_hat = (x - sigma eps) / alpha cancels ~ -log10(alpha^2) digits of float32 at t = T - 1,
  // so compare to 0.5% (a wrong coefficient is off by far more).
  for (std::size_t i = 0; i < x.size(); ++i)
    REQUIRE_THAT(x.data()[i], Catch::Matchers::WithinRel(factor * prior.data()[i], 5e-3));
}

}  // namespace

TEST_CASE("DDPM samplers recover a Gaussian with the exact eps-predictor", "[sampler][ddpm][ddim][stat]") {
  load_ddpm();
  const std::string schedule = GENERATE(std::string("linear"), std::string("cosine"));
  // Every step of the T = 1000 grid: with fewer steps both samplers shrink the variance by a
  // known discretisation error (tested exactly below), larger than 4 standard errors here.
  const std::string sampler_yaml = GENERATE(
      std::string("{type: ancestral}"), std::string("{type: ancestral, variance: beta}"),
      std::string("{type: ddim, steps: 1000, eta: 0}"), std::string("{type: ddim, steps: 1000, eta: 0.5}"),
      std::string("{type: ddim, steps: 1000, eta: 1}"));
  CAPTURE(schedule, sampler_yaml);
  auto sde = make_sde("{type: ddpm, timesteps: 1000, schedule: " + schedule + "}");
  auto sampler = make_sampler(sampler_yaml);
  const auto model = eps_model(std::make_shared<GaussianEps>(sde), sde);
  Rng rng(1234);
  const Tensor x = sample(*sampler, *model, {20000, 2}, rng);
  require_gaussian_moments(x);
}

TEST_CASE("DDIM from rqmc prior draws recovers a Gaussian with far smaller error", "[sampler][ddim][stat][qmc]") {
  // With eta = 0 the sampler is a deterministic map, so evenly spread prior draws give evenly
  // spread samples: the moments are right (4 standard errors), and the sample means of
  // independently randomised runs scatter by a small fraction of an iid run's standard error.
  // (Their common offset, about 0.4 standard errors here, is the sampler's own: the prior
  // N(0, I) ignores x_T's mean alpha_T mu = 0.0064 mu, and the flow carries that to t = 0.)
  load_ddpm();
  auto sde = make_sde("{type: ddpm, timesteps: 1000}");
  auto sampler = make_sampler("{type: ddim, steps: 1000, prior: rqmc}");
  const auto model = eps_model(std::make_shared<GaussianEps>(sde), sde);
  const std::size_t n = 4000;
  const int runs = 6;
  double sum[2] = {0, 0}, sum_sq[2] = {0, 0};
  for (int seed = 1; seed <= runs; ++seed) {
    Rng rng(static_cast<std::uint64_t>(seed));
    const Tensor x = sample(*sampler, *model, {n, 2}, rng);
    require_gaussian_moments(x);
    for (int j = 0; j < 2; ++j) {
      double m = 0;
      for (std::size_t i = 0; i < n; ++i) m += x(i, j) / double(n);
      const double z = m / std::sqrt(kSigma[j][j] / n);  // in iid standard errors
      sum[j] += z, sum_sq[j] += z * z;
    }
  }
  for (int j = 0; j < 2; ++j) {
    const double spread = std::sqrt((sum_sq[j] - sum[j] * sum[j] / runs) / (runs - 1));
    CAPTURE(j, spread);
    // iid runs: spread about 1, and below 0.2 with probability 6e-4 (chi-squared, 5 dof).
    REQUIRE(spread < 0.2);
  }
}

TEST_CASE("DDIM refuses rqmc prior draws for high-dimensional data before sampling", "[sampler][ddim][qmc]") {
  load_ddpm();
  BuildContext ctx;
  ctx.data_shape = {3, 4, 4};  // 48 values per sample
  const Config c = Config::load_string("{type: ddim, prior: rqmc}");
  REQUIRE_THROWS_WITH(registries().samplers.create(c.root(), ctx),
                      Catch::Contains("prior") && Catch::Contains("at most 32") && Catch::Contains("48"));
  ctx.data_shape = {32};
  REQUIRE_NOTHROW(registries().samplers.create(c.root(), ctx));
}

TEST_CASE("DDIM with eta = 1 is ancestral sampling on the same grid", "[sampler][ddim]") {
  load_ddpm();
  auto sde = make_sde("{type: ddpm, timesteps: 1000}");
  const auto model = eps_model(std::make_shared<GaussianEps>(sde), sde);
  // Same grid, same noise draws: the two update rules are algebraically the same step.
  Rng r1(7), r2(7);
  const Tensor a = sample(*make_sampler("{type: ancestral, steps: 20}"), *model, {500, 2}, r1);
  const Tensor b = sample(*make_sampler("{type: ddim, steps: 20, eta: 1}"), *model, {500, 2}, r2);
  double max_diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    max_diff = std::max(max_diff, double(std::abs(a.data()[i] - b.data()[i])));
  REQUIRE(max_diff < 1e-3);
  // And eta = 0 is a different (deterministic) sampler.
  Rng r3(7);
  const Tensor c = sample(*make_sampler("{type: ddim, steps: 20, eta: 0}"), *model, {500, 2}, r3);
  double diff0 = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff0 = std::max(diff0, double(std::abs(a.data()[i] - c.data()[i])));
  REQUIRE(diff0 > 0.1);
}

TEST_CASE("DDIM with eta = 0 follows its update rule exactly on a few steps", "[sampler][ddim]") {
  // For N(0, I) data on a VP path, eps_hat = sigma_t x and x0_hat = alpha_t x, so one DDIM step
  // t -> s multiplies x by alpha_s alpha_t + sigma_s sigma_t, and the last step (to data) by alpha_t.
  load_ddpm();
  // Linear schedule: the cosine one ends at alpha ~ 1e-4, where float32 rounding in
  // x0_hat = (x - sigma eps) / alpha dominates a one-step check.
  auto sde = make_sde("{type: ddpm, timesteps: 1000, schedule: linear}");
  const auto model = eps_model(std::make_shared<StandardNormalEps>(sde), sde);
  const std::size_t steps = GENERATE(1, 2, 5, 50);
  CAPTURE(steps);
  Rng r1(3), r2(3);
  const Tensor x = sample(*make_sampler("{type: ddim, steps: " + std::to_string(steps) + "}"), *model, {4, 2}, r1);
  const Tensor prior = prior_sample(*sde, {4, 2}, r2);  // the same first draw
  require_ddim_factor(*sde, time_grid(*sde, steps), x, prior);
}

TEST_CASE("DDIM with explicit timesteps steps through exactly those times", "[sampler][ddim]") {
  load_ddpm();
  auto sde = make_sde("{type: ddpm, timesteps: 1000, schedule: linear}");
  const auto model = eps_model(std::make_shared<StandardNormalEps>(sde), sde);
  SECTION("an irregular grid") {
    const std::vector<double> grid = {999, 900, 400, 130, 7, 0};
    Rng r1(3), r2(3);
    const Tensor x = sample(*make_sampler("{type: ddim, timesteps: [999, 900, 400, 130, 7, 0]}"), *model, {4, 2}, r1);
    REQUIRE(model->nfe() == grid.size());
    require_ddim_factor(*sde, grid, x, prior_sample(*sde, {4, 2}, r2));
  }
  SECTION("the linear spacing's grid written out gives the same samples") {
    std::string list;
    for (const double t : time_grid(*sde, 20)) list += (list.empty() ? "" : ", ") + std::to_string(int(t));
    Rng r1(5), r2(5);
    const Tensor a = sample(*make_sampler("{type: ddim, steps: 20}"), *model, {50, 2}, r1);
    const Tensor b = sample(*make_sampler("{type: ddim, timesteps: [" + list + "]}"), *model, {50, 2}, r2);
    REQUIRE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  }
  SECTION("bad grids are refused, naming the key") {
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, timesteps: [500, 600, 0]}"),
                        Catch::Contains("timesteps") && Catch::Contains("entry 2 (600) follows 500"));
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, timesteps: []}"), Catch::Contains("non-empty"));
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, steps: 3, timesteps: [9, 5]}"),
                        Catch::Contains("steps is 3 but timesteps lists 2 times"));
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, spacing: quadratic, timesteps: [9, 5]}"),
                        Catch::Contains("exclude each other"));
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, timesteps: [1000, 5]}")->check(*sde, standard_normal_source()),
                        Catch::Contains("1000 lies outside the path's times [0, 999]"));
  }
}

TEST_CASE("DDIM with a piecewise spacing spreads its steps by the shares", "[sampler][ddim]") {
  load_ddpm();
  auto sde = make_sde("{type: ddpm, timesteps: 1000, schedule: linear}");
  const auto model = eps_model(std::make_shared<StandardNormalEps>(sde), sde);
  const std::string spacing = "spacing: {type: piecewise, times: [999, 600, 300, 100, 0], shares: [12, 12, 16, 9]}";
  // The grid, read back from a trajectory that keeps every step (its last time is the data's).
  const auto grid_of = [&](std::size_t steps, Tensor* x = nullptr, Tensor* prior = nullptr) {
    Trajectory traj;
    traj.max_frames = steps + 1;
    Rng r1(3), r2(3);
    const Tensor out =
        sample(*make_sampler("{type: ddim, steps: " + std::to_string(steps) + ", " + spacing + "}"), *model, {4, 2}, r1, &traj);
    if (x) *x = out, *prior = prior_sample(*sde, {4, 2}, r2);
    traj.times.pop_back();
    return traj.times;
  };
  Tensor x, prior;
  const std::vector<double> grid = grid_of(50, &x, &prior);
  REQUIRE(grid.size() == 50);
  // 12 + 12 + 16 + 9 steps of 49: the knots fall on steps 0, 12, 24, 40 and 49 ...
  const std::size_t at[] = {0, 12, 24, 40, 49};
  const double times[] = {999, 600, 300, 100, 0};
  for (int k = 0; k < 5; ++k) REQUIRE(grid[at[k]] == times[k]);
  // ... and in between the steps are even, to a whole DDPM step.
  for (int k = 0; k < 4; ++k) {
    const double even = (times[k] - times[k + 1]) / double(at[k + 1] - at[k]);
    for (std::size_t i = at[k]; i < at[k + 1]; ++i) {
      CAPTURE(i);
      REQUIRE(grid[i] == std::round(grid[i]));
      REQUIRE(std::abs((grid[i] - grid[i + 1]) - even) <= 1.0);
    }
  }
  require_ddim_factor(*sde, grid, x, prior);
  // The same shape at another step count.
  const std::vector<double> ten = grid_of(10);
  REQUIRE(ten.size() == 10);
  REQUIRE(ten.front() == 999);
  REQUIRE(ten.back() == 0);
  for (std::size_t i = 0; i + 1 < ten.size(); ++i) REQUIRE(ten[i] > ten[i + 1]);
  SECTION("bad spacings are refused, naming the key") {
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, spacing: {type: piecewise, times: [999, 0], shares: [1, 2]}}"),
                        Catch::Contains("spacing.shares") && Catch::Contains("one share per interval"));
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, spacing: {type: piecewise, times: [0, 999], shares: [1]}}"),
                        Catch::Contains("spacing.times") && Catch::Contains("strictly decreasing"));
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, spacing: {type: piecewise, times: [999, 0], shares: [0]}}"),
                        Catch::Contains("positive shares"));
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, spacing: {type: cubic}}"),
                        Catch::Contains("unknown time grid 'cubic'"));
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, spacing: {type: piecewise, times: [1500, 0], shares: [1]}}")->check(*sde, standard_normal_source()),
                        Catch::Contains("1500 lies outside"));
  }
}

TEST_CASE("DDIM counts one network evaluation per step and rejects too many steps", "[sampler][ddim]") {
  load_ddpm();
  auto sde = make_sde("{type: ddpm, timesteps: 100}");
  const auto model = eps_model(std::make_shared<GaussianEps>(sde), sde);
  Rng rng(1);
  sample(*make_sampler("{type: ddim, steps: 25}"), *model, {10, 2}, rng);
  REQUIRE(model->nfe() == 25);
  REQUIRE_THROWS_WITH(make_sampler("{type: ddim, steps: 101}")->check(*sde, standard_normal_source()),
                      Catch::Contains("101 steps, but the path has only 100"));
}

TEST_CASE("DDPM schedules match their definitions", "[sde][ddpm]") {
  load_ddpm();
  auto lin = make_sde("{type: ddpm, timesteps: 1000, beta_start: 1.0e-4, beta_end: 0.02}");
  // abar_0 = 1 - beta_0; abar_t = prod (1 - beta_s).
  REQUIRE_THAT(lin->alpha(0) * lin->alpha(0), WithinAbs(1 - 1e-4, 1e-12));
  double prod = 1;
  for (int i = 0; i < 1000; ++i) prod *= 1 - (1e-4 + (0.02 - 1e-4) * i / 999.0);
  REQUIRE_THAT(lin->alpha(999) * lin->alpha(999), WithinAbs(prod, 1e-12));
  REQUIRE_THAT(lin->alpha(500) * lin->alpha(500) + lin->sigma(500) * lin->sigma(500), WithinAbs(1.0, 1e-12));
  // Cosine (Nichol & Dhariwal 2021, eq. 17): abar_t = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2),
  // here with 0-based steps so step i has abar = f((i+1)/T)/f(0) (until the beta clip binds).
  auto cos = make_sde("{type: ddpm, timesteps: 1000, schedule: cosine}");
  auto f = [](double u) { const double c = std::cos((u + 0.008) / 1.008 * M_PI / 2); return c * c; };
  for (int i : {0, 100, 500, 900}) {
    CAPTURE(i);
    REQUIRE_THAT(cos->alpha(i) * cos->alpha(i), WithinAbs(f((i + 1) / 1000.0) / f(0), 1e-9));
  }
  for (const std::string spacing : {"linear", "quadratic"})
    for (std::size_t steps : {1, 2, 7, 50, 333, 999, 1000}) {
      CAPTURE(spacing, steps);
      const auto grid = time_grid(*lin, steps, spacing);
      REQUIRE(grid.size() == steps);
      REQUIRE(grid.front() == (steps == 1 ? 999 : 999));
      REQUIRE(grid.back() == (steps == 1 ? 999 : 0));
      for (std::size_t i = 0; i + 1 < steps; ++i) REQUIRE(grid[i] > grid[i + 1]);
    }
  // Quadratic spacing takes small steps near the data: (T-1) (1 - u)^2.
  const auto q = time_grid(*lin, 50, "quadratic");
  REQUIRE(q[48] < 5);
  REQUIRE(q[1] == std::round(999 * (48.0 / 49) * (48.0 / 49)));
}

TEST_CASE("clip_x0 clips x0_hat to the data range and reads eps_hat from the clipped x0", "[sampler][ddpm][ddim]") {
  load_ddpm();
  // N(mu, Sigma) data with mu = (1, -2): x0_hat lies far outside [-1, 1] in the second coordinate.
  auto sde = make_sde("{type: ddpm, timesteps: 1000, schedule: linear}");
  const auto model = eps_model(std::make_shared<GaussianEps>(sde), sde);
  auto outside = [](const Tensor& x) {
    return std::count_if(x.begin(), x.end(), [](float v) { return v < -1.0f || v > 1.0f; });
  };
  SECTION("without it the samples leave the range, with it no sample does") {
    for (const std::string s : {"{type: ancestral, steps: 50", "{type: ddim, steps: 20", "{type: ddim, steps: 20, eta: 1"}) {
      CAPTURE(s);
      Rng r1(11), r2(11);
      REQUIRE(outside(sample(*make_sampler(s + "}"), *model, {500, 2}, r1)) > 300);
      REQUIRE(outside(sample(*make_sampler(s + ", clip_x0: 1.0}"), *model, {500, 2}, r2)) == 0);
    }
  }
  SECTION("DDIM with eta = 0 takes each step from the clipped pair (x0_hat, eps_hat)") {
    // By hand on the grid [999, 500]: x0 = clip(x0_hat(x_999)), eps = (x_999 - a x0) / s,
    // x_500 = a_500 x0 + s_500 eps, and the last step returns clip(x0_hat(x_500)).
    Rng r1(5), r2(5);
    const Tensor x = sample(*make_sampler("{type: ddim, timesteps: [999, 500], clip_x0: 1.0}"), *model, {8, 2}, r1);
    Tensor y = prior_sample(*sde, {8, 2}, r2);
    for (const double t : {999.0, 500.0}) {
      Prediction p;
      model->predict(y, t, Condition{}, p);
      for (std::size_t j = 0; j < y.size(); ++j) {
        const double x0 = std::clamp(double(p.x0.data()[j]), -1.0, 1.0);
        const double eps = (y.data()[j] - sde->alpha(t) * x0) / sde->sigma(t);
        y.data()[j] = float(t == 999.0 ? sde->alpha(500) * x0 + sde->sigma(500) * eps : x0);
      }
    }
    for (std::size_t j = 0; j < x.size(); ++j) REQUIRE_THAT(x.data()[j], WithinAbs(y.data()[j], 1e-5));
    REQUIRE(outside(x) == 0);
  }
  SECTION("a bound that is not positive is refused naming the key") {
    REQUIRE_THROWS_WITH(make_sampler("{type: ddim, clip_x0: 0}"), Catch::Contains("clip_x0"));
    REQUIRE_THROWS_WITH(make_sampler("{type: ancestral, clip_x0: -1}"), Catch::Contains("clip_x0"));
  }
}

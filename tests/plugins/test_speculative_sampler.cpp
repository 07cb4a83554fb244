// Speculative sampling (De Bortoli, Galashov, Gretton & Doucet 2025; plugins/speculative/) with
// exact denoisers, so only the sampler can be wrong:
//  - Gaussian data: the target chain (ancestral or Euler-Maruyama kernel with the exact x0_hat,
//    which is linear in x) is linear-Gaussian, so its output law after S steps is a closed form
//    N(m_S, v_S) computed here by the recursion m <- A m + B, v <- A^2 v + sd^2. Speculative
//    sampling must reproduce it exactly, for either frozen draft, a random draft network, and
//    any lookahead (mean and variance within 4 SE, KS at the 0.1% level), on few large steps
//    where its drafts are often rejected (the frozen draft's own chain is far from it: the test
//    says by how much).
//  - A Gaussian mixture: speculative and plain sampling (plugins/ddpm's ancestral, score_sde's
//    pc with Euler-Maruyama) give the same component weights and means (two-sample, 4 SE),
//    while the target is called in at most 60% of the plain sampler's calls.
//  - Bookkeeping: with a draft that is exact (a point mass, whose x0_hat is constant), every
//    stochastic proposal is kept and a window of L costs one call: S steps take 1 + ceil((S-1)/L)
//    calls, the extras say so, and nfe of the counting wrapper agrees.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/model/gaussian_posterior.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

#include "core/gaussian_mixture_oracle.hpp"

using namespace diffusion;
using diffusion::testing::GaussianMixture;
using diffusion::testing::MixtureOracleDenoiser;
using diffusion::testing::NearestGroups;

namespace {

void load(const std::string& name) {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_" + name + ".so");
}
/// Every plugin these tests use (each test may run alone, in its own process).
void load_plugins() {
  for (const char* p : {"speculative", "score_sde", "ddpm", "mlp"}) load(p);
}

std::shared_ptr<Path> make_path(const std::string& yaml) {
  load_plugins();
  return registries().paths.create(Config::load_string(yaml).root(), BuildContext{});
}

std::shared_ptr<Sampler> make_sampler(const std::string& yaml) {
  load_plugins();
  return registries().samplers.create(Config::load_string(yaml).root(), BuildContext{});
}

const Tensor& extra(const SampleOutput& out, const std::string& name) {
  for (const auto& [n, v] : out.extras)
    if (n == name) return v;
  FAIL("no extra " << name);
  throw;
}
double scalar_extra(const SampleOutput& out, const std::string& name) { return extra(out, name)(); }

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

/// Kolmogorov-Smirnov distance between column j of x and N(mean, var).
double ks_normal(const Tensor& x, std::size_t j, double mean, double var) {
  const std::size_t n = x.shape()[0];
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = (x(i, j) - mean) / std::sqrt(var);
  std::sort(v.begin(), v.end());
  double d = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double f = normal_cdf(v[i]);
    d = std::max({d, double(i + 1) / double(n) - f, f - double(i) / double(n)});
  }
  return d;
}

/// Gaussian data, independent coordinates N(mu_j, s_j^2).
const double kMu[2] = {1.5, -0.5}, kStd[2] = {0.3, 0.8};
GaussianMixture gaussian_data() { return GaussianMixture({{1.0, {kMu[0], kMu[1]}, {kStd[0], kStd[1]}}}); }

/// The law N(m, v) of coordinate j after the target chain's S steps (grid t_0 > ... > t_{S-1},
/// the last step to x0_hat at t_{S-1}), from the prior N(0, alpha^2 + sigma^2 at t_0). With
/// exact Gaussian data x0_hat = mu + g (x - alpha mu), g = alpha s^2 / (alpha^2 s^2 + sigma^2),
/// and eps_hat = (x - alpha x0_hat) / sigma: every step is x <- A x + B + sd z.
std::pair<double, double> exact_chain_law(const Path& path, const std::vector<double>& grid, bool euler_maruyama,
                                          std::size_t j) {
  const double mu = kMu[j], s2 = kStd[j] * kStd[j];
  double m = 0, v = path.alpha(grid[0]) * path.alpha(grid[0]) + path.sigma(grid[0]) * path.sigma(grid[0]);
  for (std::size_t k = 0; k < grid.size(); ++k) {
    const double t = grid[k], a = path.alpha(t), sg = path.sigma(t), g = a * s2 / (a * a * s2 + sg * sg);
    const double x0_a = g, x0_b = mu - g * a * mu;  // x0_hat = x0_a x + x0_b
    double A, B, var;
    if (k + 1 == grid.size()) {
      A = x0_a, B = x0_b, var = 0;
    } else if (!euler_maruyama) {
      const GaussianPosterior q = gaussian_posterior(path, t, grid[k + 1], false);
      A = q.c_xt + q.c_x0 * x0_a, B = q.c_x0 * x0_b, var = q.variance;
    } else {
      const double s = grid[k + 1], dt = s - t, f = path.drift_coef(t), g2 = path.diffusion_squared(t);
      const double e_a = (1 - a * x0_a) / sg, e_b = -a * x0_b / sg;  // eps_hat = e_a x + e_b
      A = 1 + f * dt + g2 * dt / sg * e_a, B = g2 * dt / sg * e_b, var = g2 * (t - s);
    }
    m = A * m + B, v = A * A * v + var;
  }
  return {m, v};
}

/// x (N, 2) is N(law_j) in each coordinate: mean and variance within 4 SE, KS below its 0.1%
/// critical value 1.949 / sqrt(n).
void require_law(const Tensor& x, const Path& path, const std::vector<double>& grid, bool euler_maruyama) {
  const std::size_t n = x.shape()[0];
  for (std::size_t j = 0; j < 2; ++j) {
    const auto [m, v] = exact_chain_law(path, grid, euler_maruyama, j);
    double mean = 0, var = 0;
    for (std::size_t i = 0; i < n; ++i) mean += x(i, j);
    mean /= double(n);
    for (std::size_t i = 0; i < n; ++i) var += (x(i, j) - mean) * (x(i, j) - mean);
    var /= double(n - 1);
    const double ks = ks_normal(x, j, m, v);
    CAPTURE(j, m, v, mean, var, ks);
    REQUIRE(std::abs(mean - m) <= 4 * std::sqrt(v / double(n)));
    REQUIRE(std::abs(var - v) <= 4 * v * std::sqrt(2.0 / double(n - 1)));
    REQUIRE(ks <= 1.949 / std::sqrt(double(n)));
  }
}

SampleOutput run(const Sampler& s, const Denoiser& model, std::size_t n, Rng& rng, const Models* models = nullptr) {
  SampleRequest req;
  req.shape = {n, 2};
  req.models = models;
  return s.sample(model, req, rng);
}

/// The mean and variance distance, in standard errors, between a coordinate's two samples.
void require_same_mixture(const Tensor& a, const Tensor& b, const GaussianMixture& mix) {
  const NearestGroups ga(a, mix), gb(b, mix);
  const double na = double(a.shape()[0]), nb = double(b.shape()[0]);
  for (std::size_t k = 0; k < mix.components().size(); ++k) {
    const double w = mix.components()[k].weight;
    CAPTURE(k, ga.fraction[k], gb.fraction[k]);
    REQUIRE(std::abs(ga.fraction[k] - gb.fraction[k]) <= 4 * std::sqrt(w * (1 - w) * (1 / na + 1 / nb)));
    for (std::size_t j = 0; j < 2; ++j) {
      const double se = std::sqrt(ga.var[k * 2 + j] / double(ga.count[k]) + gb.var[k * 2 + j] / double(gb.count[k]));
      CAPTURE(j, ga.mean[k * 2 + j], gb.mean[k * 2 + j], se);
      REQUIRE(std::abs(ga.mean[k * 2 + j] - gb.mean[k * 2 + j]) <= 4 * se);
    }
  }
}

/// As test_pc_sampler.cpp: three well separated components of unequal weights.
GaussianMixture three_blobs() {
  return GaussianMixture({{0.5, {-2.0, 0.5}, {0.3, 0.35}}, {0.3, {2.0, 1.5}, {0.35, 0.3}}, {0.2, {0.0, -2.0}, {0.3, 0.3}}});
}

}  // namespace

TEST_CASE("Speculative sampling reproduces the target chain's exact law on Gaussian data", "[speculative][sampler][stat]") {
  const std::string kernel = GENERATE(std::string("ancestral"), std::string("euler_maruyama"));
  const std::string freeze = GENERATE(std::string("x0"), std::string("eps"));
  const int lookahead = GENERATE(2, 8);
  CAPTURE(kernel, freeze, lookahead);
  const auto vp = make_path("{type: vp}");
  const MixtureOracleDenoiser model(gaussian_data(), vp);
  const std::size_t steps = 12;
  const auto s = make_sampler("{type: speculative, steps: 12, kernel: " + kernel + ", lookahead: " +
                              std::to_string(lookahead) + ", draft: {type: frozen_target, freeze: " + freeze + "}}");
  Rng rng(11);
  const SampleOutput out = run(*s, model, 20000, rng);
  const std::vector<double> grid = registries().time_grids.create(Config::load_string("{type: linear}").root(), BuildContext{})
                                       ->times(*vp, steps);
  require_law(out.x, *vp, grid, kernel == "euler_maruyama");
  // The drafts were rejected often enough to matter: on 12 steps at least 5% of proposals.
  CAPTURE(scalar_extra(out, "acceptance_mean"));
  REQUIRE(scalar_extra(out, "acceptance_mean") < 0.95);
}

TEST_CASE("Speculative sampling with a random draft network still reproduces the target chain's law",
          "[speculative][sampler][stat]") {
  const auto vp = make_path("{type: vp}");
  const MixtureOracleDenoiser model(gaussian_data(), vp);
  Rng init(5);
  Models models;
  models.add({"draft", registries().networks.create(Config::load_string("{type: mlp, hidden: [16]}").root(),
                                                    BuildContext{{2}, 0, &init}),
              true, ""});
  const auto s = make_sampler("{type: speculative, steps: 12, lookahead: 3, draft: {type: network, model: draft}}");
  REQUIRE(s->required_models() == std::vector<std::string>{"draft"});
  Rng rng(12);
  const SampleOutput out = run(*s, model, 20000, rng, &models);
  const std::vector<double> grid = registries().time_grids.create(Config::load_string("{type: linear}").root(), BuildContext{})
                                       ->times(*vp, 12);
  require_law(out.x, *vp, grid, false);
  // Each round drafts up to 3 steps, one network call each, and the draft's count is reported.
  const double calls = scalar_extra(out, "target_calls"), draft = scalar_extra(out, "draft_nfe");
  REQUIRE(out.nfe.at("draft") == std::size_t(draft));
  REQUIRE(draft >= calls);
  REQUIRE(draft <= 3 * calls);
}

TEST_CASE("Speculative and plain ancestral sampling give the same Gaussian mixture with fewer target calls",
          "[speculative][sampler][stat]") {
  const auto ddpm = make_path("{type: ddpm, timesteps: 1000, schedule: linear}");
  const auto oracle = std::make_shared<MixtureOracleDenoiser>(three_blobs(), ddpm);
  const GaussianMixture& mix = oracle->mixture();
  CountingDenoiser model(oracle);
  Rng rng_plain(21), rng_spec(22);
  const Tensor plain = run(*make_sampler("{type: ancestral, steps: 100}"), model, 5000, rng_plain).x;
  model.reset();
  const SampleOutput spec = run(*make_sampler("{type: speculative, steps: 100, lookahead: 4}"), model, 5000, rng_spec);
  require_same_mixture(spec.x, plain, mix);
  const double calls = scalar_extra(spec, "target_calls");
  CAPTURE(calls, scalar_extra(spec, "acceptance_mean"), scalar_extra(spec, "target_nfe_mean"));
  REQUIRE(std::size_t(calls) == model.nfe());
  REQUIRE(calls <= 60);
}

TEST_CASE("Speculative and plain Euler-Maruyama sampling give the same Gaussian mixture with fewer target calls",
          "[speculative][sampler][stat]") {
  const auto vp = make_path("{type: vp}");
  const MixtureOracleDenoiser model(three_blobs(), vp);
  Rng rng_plain(31), rng_spec(32);
  const Tensor plain =
      run(*make_sampler("{type: pc, steps: 200, predictor: euler_maruyama, corrector: none}"), model, 5000, rng_plain).x;
  const SampleOutput spec =
      run(*make_sampler("{type: speculative, steps: 200, lookahead: 4, kernel: euler_maruyama}"), model, 5000, rng_spec);
  require_same_mixture(spec.x, plain, model.mixture());
  const double calls = scalar_extra(spec, "target_calls");
  CAPTURE(calls, scalar_extra(spec, "acceptance_mean"));
  REQUIRE(calls <= 120);
}

TEST_CASE("With an exact frozen draft every window of L steps costs one target call", "[speculative][sampler]") {
  // A point mass: x0_hat is the point at every noise level, so freezing it is exact.
  const auto vp = make_path("{type: vp}");
  CountingDenoiser model(std::make_shared<MixtureOracleDenoiser>(GaussianMixture({{1.0, {0.5, -1.0}, {0.0, 0.0}}}), vp));
  const std::size_t steps = 50;
  const int lookahead = GENERATE(1, 4, 7);
  CAPTURE(lookahead);
  const auto s = make_sampler("{type: speculative, steps: 50, lookahead: " + std::to_string(lookahead) + "}");
  Rng rng(41);
  const std::size_t n = 300;
  const SampleOutput out = run(*s, model, n, rng);
  const std::size_t expected = 1 + (steps - 1 + lookahead - 1) / lookahead;
  REQUIRE(scalar_extra(out, "target_calls") == double(expected));
  REQUIRE(model.nfe() == expected);
  REQUIRE(scalar_extra(out, "target_nfe_mean") == double(expected));
  REQUIRE(scalar_extra(out, "target_rows_per_sample") == double(steps));  // the first step, then S - 1 window rows
  REQUIRE(scalar_extra(out, "acceptance_mean") == 1.0);
  REQUIRE(scalar_extra(out, "draft_nfe") == 0.0);
  const Tensor& rate = extra(out, "acceptance_rate");
  const Tensor& proposals = extra(out, "proposals");
  REQUIRE(rate.size() == steps);
  REQUIRE(std::isnan(rate(0)));  // step 0 is the target's own
  REQUIRE(proposals(0) == 0.0f);
  for (std::size_t k = 1; k + 1 < steps; ++k) REQUIRE(proposals(k) == float(n));
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE_THAT(out.x(i, 0), Catch::Matchers::WithinAbs(0.5, 1e-4));
    REQUIRE_THAT(out.x(i, 1), Catch::Matchers::WithinAbs(-1.0, 1e-4));
  }
}

namespace {

/// A class-conditional exact denoiser: label c's rows see the data N(mu_c, 0.2^2 I), mu_0 = (-2, 0)
/// and mu_1 = (2, 0), so a sample's side tells which label its chain was evaluated with.
class LabelledGaussians : public Denoiser {
 public:
  explicit LabelledGaussians(std::shared_ptr<const Path> path)
      : path_(path),
        class_{MixtureOracleDenoiser(GaussianMixture({{1.0, {-2.0, 0.0}, {0.2, 0.2}}}), path),
               MixtureOracleDenoiser(GaussianMixture({{1.0, {2.0, 0.0}, {0.2, 0.2}}}), path)} {}
  const Path& path() const override { return *path_; }
  void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const override {
    const std::size_t n = x.shape()[0];
    REQUIRE(c.rows() == n);
    out.x0 = Tensor::from_shape(shape_of(x));
    out.eps = Tensor::from_shape(shape_of(x));
    Prediction row;
    for (std::size_t i = 0; i < n; ++i) {
      Tensor xi = Tensor::from_shape({1, 2});
      xi(0, 0) = x(i, 0), xi(0, 1) = x(i, 1);
      class_[c.labels()[i]].predict(xi, Times(1, t[i]), Condition{}, row);
      for (std::size_t j = 0; j < 2; ++j) out.x0(i, j) = row.x0(0, j), out.eps(i, j) = row.eps(0, j);
    }
  }
  PredictionVar predict_var(const Var&, const Times&, const Condition&) const override {
    throw Error("LabelledGaussians: predict only");
  }
  using Denoiser::predict;

 private:
  std::shared_ptr<const Path> path_;
  MixtureOracleDenoiser class_[2];
};

}  // namespace

TEST_CASE("Speculative sampling keeps each chain's condition rows through its windows", "[speculative][sampler]") {
  const auto vp = make_path("{type: vp}");
  const LabelledGaussians model(vp);
  const std::size_t n = 400;
  std::vector<int> labels(n);
  for (std::size_t i = 0; i < n; ++i) labels[i] = int((i * 7) % 3 == 0);
  SampleRequest req;
  req.shape = {n, 2};
  req.condition = Condition::from_labels(labels);
  Rng rng(51);
  const auto s = make_sampler("{type: speculative, steps: 30, lookahead: 5}");
  const SampleOutput out = s->sample(model, req, rng);
  // The chains advance at their own pace (some windows are cut short by rejections), so rows are
  // regrouped every round; each must still be evaluated with its own label all the way.
  REQUIRE(scalar_extra(out, "acceptance_mean") < 0.99);
  for (std::size_t i = 0; i < n; ++i) {
    CAPTURE(i, labels[i], out.x(i, 0));
    REQUIRE((out.x(i, 0) > 0) == (labels[i] == 1));
  }
}

TEST_CASE("Speculative sampling refuses bad options and a non-Gaussian source, naming the key",
          "[speculative][sampler][config]") {
  load_plugins();
  auto error_of = [](const std::string& yaml) {
    try {
      make_sampler(yaml);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  REQUIRE_THAT(error_of("{type: speculative, lookahead: 0}"), Catch::Matchers::Contains("lookahead"));
  REQUIRE_THAT(error_of("{type: speculative, kernel: heun}"),
               Catch::Matchers::Contains("kernel") && Catch::Matchers::Contains("euler_maruyama"));
  REQUIRE_THAT(error_of("{type: speculative, draft: {type: medusa}}"), Catch::Matchers::Contains("frozen_target"));
  REQUIRE_THAT(error_of("{type: speculative, draft: {type: frozen_target, freeze: v}}"), Catch::Matchers::Contains("freeze"));
  REQUIRE_THAT(error_of("{type: speculative, draft: {type: network, model: model}}"), Catch::Matchers::Contains("draft.model"));
  REQUIRE_THAT(error_of("{type: speculative, looakhead: 3}"), Catch::Matchers::Contains("lookahead"));

  class UniformSource : public Source {
   public:
    Tensor sample(const Shape& shape, Rng& rng, PriorDraw) const override { return rng.uniform(shape); }
    std::string name() const override { return "moons"; }
  };
  const auto vp = make_path("{type: vp}");
  REQUIRE_THROWS_WITH(make_sampler("{type: speculative, steps: 10}")->check(*vp, UniformSource()),
                      Catch::Matchers::Contains("standard Gaussian") && Catch::Matchers::Contains("moons"));
}

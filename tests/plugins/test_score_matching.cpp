// The score_matching plugin: NCSN's noise_levels path (Song & Ermon 2019, 2020), the denoising
// score matching loss (Vincent 2011) against hand computation, finite differences and its
// minimiser, and the Langevin samplers against closed forms (the exact law of the unadjusted
// chain on Gaussian data) and the exact denoiser of a Gaussian mixture (no training, so a wrong
// sampler cannot hide behind a network's error).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

#include "core/gaussian_mixture_oracle.hpp"

using namespace diffusion;
using diffusion::testing::GaussianMixture;
using diffusion::testing::MixtureOracleDenoiser;
using diffusion::testing::NearestGroups;
using diffusion::testing::require_mixture_recovered;
using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

void load_plugins() {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_score_matching.so");
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_ddpm.so");
}

std::shared_ptr<Path> make_path(const std::string& yaml) {
  load_plugins();
  return registries().paths.create(Config::load_string(yaml).root(), BuildContext{});
}

std::shared_ptr<Sampler> make_sampler(const std::string& yaml) {
  load_plugins();
  return registries().samplers.create(Config::load_string(yaml).root(), BuildContext{{2}, 0, nullptr});
}

std::shared_ptr<Loss> make_loss(const std::string& yaml) {
  load_plugins();
  return registries().losses.create(Config::load_string(yaml).root(), BuildContext{});
}

std::vector<double> grid_times(const Path& path, std::size_t steps, const std::string& spacing = "linear") {
  return registries().time_grids.create(Config::load_string("type: " + spacing).root(), BuildContext{})->times(path, steps);
}

SampleOutput draw(const Sampler& s, const Denoiser& model, std::size_t n, Rng& rng, Trajectory* traj = nullptr) {
  SampleRequest req;
  req.shape = {n, 2};
  req.trajectory = traj;
  return s.sample(model, req, rng);
}

// ---- DSM's networks ----

/// F = x W + b with W (2, 2) and b (2) trained parameters; records what it was given.
class LinearNet : public Network {
 public:
  LinearNet() {
    Rng rng(17);
    w = register_parameter("w", Var(rng.normal({2, 2}, 0.0f, 0.7f), true));
    b = register_parameter("b", Var(rng.normal({2}, 0.0f, 0.3f), true));
  }
  Var forward(const Var& x, const Tensor& c_noise, const Condition&) override {
    input = x.value();
    noise_input = c_noise;
    return matmul(x, w) + b;
  }
  Var w, b;
  Tensor input, noise_input;
};

/// The exact eps_hat = E[z | x~] of a mixture's data on an alpha = 1 path, read at sigma =
/// exp(c_noise) (noise_levels' network time is log sigma); records its input.
class MixtureEpsNet : public Network {
 public:
  explicit MixtureEpsNet(GaussianMixture mix) : mix_(std::move(mix)) {}
  Var forward(const Var& xv, const Tensor& c_noise, const Condition&) override {
    input = xv.value();
    const std::size_t n = input.shape()[0];
    Tensor out = Tensor::from_shape({n, 2});
    std::vector<double> r, m;
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = std::exp(double(c_noise(i)));
      mix_.responsibilities(input.data() + i * 2, 1.0, sigma, r, m);
      for (std::size_t j = 0; j < 2; ++j) {
        double score = 0;
        for (std::size_t k = 0; k < r.size(); ++k) score += r[k] * m[k * 2 + j];
        out(i, j) = float(-sigma * score);
      }
    }
    return Var(out);
  }
  Tensor input;

 private:
  GaussianMixture mix_;
};

LossValues run_loss(const Loss& loss, Network& net, const Path& path, const Tensor& x0, std::uint64_t seed) {
  TrainContext ctx;
  ctx.path = &path;
  Rng rng(seed);
  return loss.loss(net, x0, Condition(), ctx, rng);
}

bool same(const Tensor& a, const Tensor& b) {
  return shape_of(a) == shape_of(b) && std::equal(a.begin(), a.end(), b.begin());
}

double mean_of(const Tensor& t) {
  double s = 0;
  for (const float v : t) s += v;
  return s / double(t.size());
}

// ---- samplers' checks ----

/// Well separated, unequal weights: half the distance between the means (2.06) is 4.1 standard
/// deviations of the wider component, so the nearest mean names a sample's component except with
/// probability ~2e-5.
GaussianMixture two_blobs() { return GaussianMixture({{0.3, {-2.0, 0.0}, {0.4, 0.4}}, {0.7, {2.0, 1.0}, {0.5, 0.5}}}); }

/// For components that overlap a little the nearest mean misnames a few samples: compare the
/// groups with those of exact draws from the mixture, which misname alike (the SEs of both
/// samples combined).
void require_mixture_like_exact_draws(const Tensor& x, const GaussianMixture& mix, std::size_t reference_n) {
  const auto& comps = mix.components();
  const std::size_t n = x.shape()[0];
  Rng rng(99);
  const NearestGroups g(x, mix), ref(mix.sample(reference_n, rng), mix);
  for (std::size_t k = 0; k < comps.size(); ++k) {
    const double w = comps[k].weight, se = std::sqrt(w * (1 - w) * (1.0 / n + 1.0 / reference_n));
    CAPTURE(k, g.fraction[k], ref.fraction[k]);
    REQUIRE(std::abs(g.fraction[k] - ref.fraction[k]) <= 4 * se);
    for (std::size_t j = 0; j < 2; ++j) {
      const double se_m = comps[k].std[j] * std::sqrt(1.0 / g.count[k] + 1.0 / ref.count[k]);
      CAPTURE(j, g.mean[k * 2 + j], ref.mean[k * 2 + j]);
      REQUIRE(std::abs(g.mean[k * 2 + j] - ref.mean[k * 2 + j]) <= 4 * se_m);
    }
  }
}

/// The law of the chain on Gaussian data N(mu, s^2 I): it stays Gaussian (from a Gaussian start),
/// so per coordinate a mean and one variance follow in closed form.
struct ChainLaw {
  double mean[2];
  double var;

  /// T unadjusted Langevin steps of size h on the marginal at t, N(a mu, v I) with v = a^2 s^2 +
  /// sigma^2: x - a mu <- c (x - a mu) + sqrt(h) z with c = 1 - h / (2 v).
  void langevin(const Path& path, double t, double h, std::size_t T, const double mu[2], double s) {
    const double a = path.alpha(t), sg = path.sigma(t), v = a * a * s * s + sg * sg, c = 1 - h / (2 * v);
    const double cT = std::pow(c, double(T));
    for (int j = 0; j < 2; ++j) mean[j] = a * mu[j] + cT * (mean[j] - a * mu[j]);
    var = cT * cT * var + h * (1 - cT * cT) / (1 - c * c);
  }
  /// x scaled by f (annealed Langevin's move between levels where alpha changes).
  void scale(double f) {
    for (int j = 0; j < 2; ++j) mean[j] *= f;
    var *= f * f;
  }
  /// Tweedie's step at t: x0_hat = ((1 - sigma^2 / v) x + sigma^2 a mu / v) / a.
  void denoise(const Path& path, double t, const double mu[2], double s) {
    const double a = path.alpha(t), sg = path.sigma(t), v = a * a * s * s + sg * sg, k = (1 - sg * sg / v) / a;
    for (int j = 0; j < 2; ++j) mean[j] = k * mean[j] + sg * sg * mu[j] / v;
    var *= k * k;
  }
  /// Sample mean within 4 SE sqrt(var / n), sample variance within 4 SE var sqrt(2 / (n - 1))
  /// (Gaussian; a uniform start's lighter tails only make the variance's SE smaller).
  void require_matches(const Tensor& x) const {
    const std::size_t n = x.shape()[0];
    for (std::size_t j = 0; j < 2; ++j) {
      double m = 0, q = 0;
      for (std::size_t i = 0; i < n; ++i) m += x(i, j) / double(n);
      for (std::size_t i = 0; i < n; ++i) q += (x(i, j) - m) * (x(i, j) - m) / double(n - 1);
      CAPTURE(j, m, mean[j], q, var);
      REQUIRE(std::abs(m - mean[j]) <= 4 * std::sqrt(var / double(n)));
      REQUIRE(std::abs(q - var) <= 4 * var * std::sqrt(2.0 / double(n - 1)));
    }
  }
};

/// A path whose sigma vanishes at t_min (flow matching's, ending exactly at the data).
struct ExactDataEnd : Path {
  double alpha(double t) const override { return 1 - t; }
  double sigma(double t) const override { return t; }
  double alpha_deriv(double) const override { return -1.0; }
  double sigma_deriv(double) const override { return 1.0; }
  double t_min() const override { return 0.0; }
  double t_max() const override { return 0.999; }
};

/// A source other than the standard Gaussian.
struct UniformSource : Source {
  Tensor sample(const Shape& shape, Rng& rng, PriorDraw) const override { return rng.uniform(shape); }
  std::string name() const override { return "uniform_test"; }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// The noise_levels path
// ---------------------------------------------------------------------------------------------

TEST_CASE("noise_levels: geometric sigmas from sigma_min at t = 0 to sigma_max at t = L - 1", "[score_matching][path]") {
  const auto p = make_path("{type: noise_levels, sigma_min: 0.01, sigma_max: 1.0, levels: 10}");
  REQUIRE(p->num_steps() == 10);
  REQUIRE(p->t_min() == 0.0);
  REQUIRE(p->t_max() == 9.0);
  for (int i = 0; i < 10; ++i) {
    CAPTURE(i);
    REQUIRE_THAT(p->sigma(i), WithinRel(0.01 * std::pow(100.0, i / 9.0), 1e-12));
    REQUIRE(p->alpha(i) == 1.0);
    REQUIRE(p->alpha_deriv(i + 0.5) == 0.0);
    // The network sees log sigma.
    REQUIRE(p->network_time(i) == static_cast<float>(std::log(p->sigma(i))));
  }
  // Between levels log sigma is linear: the geometric mean of the neighbours halfway, and
  // sigma' = sigma log(100) / 9 matches central differences.
  REQUIRE_THAT(p->sigma(2.5), WithinRel(std::sqrt(p->sigma(2) * p->sigma(3)), 1e-12));
  for (const double t : {0.3, 4.5, 8.7}) {
    const double h = 1e-5, fd = (p->sigma(t + h) - p->sigma(t - h)) / (2 * h);
    CAPTURE(t);
    REQUIRE_THAT(p->sigma_deriv(t), WithinRel(fd, 1e-8));
    REQUIRE_THAT(p->sigma_deriv(t), WithinRel(p->sigma(t) * std::log(100.0) / 9.0, 1e-12));
    // The variance-exploding SDE: no drift, g^2 = d sigma^2 / dt.
    REQUIRE(p->drift_coef(t) == 0.0);
    REQUIRE_THAT(p->diffusion_squared(t), WithinRel(2 * p->sigma(t) * p->sigma_deriv(t), 1e-12));
  }
  // Training levels: whole steps, each with probability 1/10 (4 binomial SEs over 20000 draws).
  Rng rng(3);
  const Tensor t = p->sample_times(20000, rng);
  std::vector<int> count(10, 0);
  for (const float v : t) {
    REQUIRE(v == std::floor(v));
    REQUIRE(v >= 0.0f);
    REQUIRE(v <= 9.0f);
    ++count[static_cast<int>(v)];
  }
  for (const int c : count) REQUIRE(std::abs(c / 20000.0 - 0.1) <= 4 * std::sqrt(0.09 / 20000));
  REQUIRE(p->time_at_quantile(0.0) == 0.0);
  REQUIRE(p->time_at_quantile(0.35) == 3.0);
  REQUIRE(p->time_at_quantile(std::nextafter(1.0, 0.0)) == 9.0);
}

TEST_CASE("noise_levels: sigma alone is the one-level path of single-noise DSM", "[score_matching][path]") {
  const auto p = make_path("{type: noise_levels, sigma: 0.15}");
  REQUIRE(p->num_steps() == 1);
  REQUIRE(p->t_min() == 0.0);
  REQUIRE(p->t_max() == 0.0);
  REQUIRE_THAT(p->sigma(0), WithinRel(0.15, 1e-12));
  REQUIRE(p->sigma_deriv(0) == 0.0);
  REQUIRE(p->network_time(0) == static_cast<float>(std::log(0.15)));
  Rng rng(1);
  for (const float v : p->sample_times(100, rng)) REQUIRE(v == 0.0f);
  REQUIRE(grid_times(*p, 1) == std::vector<double>{0.0});
  // levels: 1 with equal ends is the same path.
  const auto q = make_path("{type: noise_levels, sigma_min: 0.15, sigma_max: 0.15, levels: 1}");
  REQUIRE(q->sigma(0) == p->sigma(0));
}

TEST_CASE("noise_levels: bad settings are refused, naming the key", "[score_matching][path][config]") {
  REQUIRE_THROWS_WITH(make_path("{type: noise_levels, sigma_min: 0.5, sigma_max: 0.1}"),
                      Contains("sigma_min") && Contains("sigma_min <= sigma_max"));
  REQUIRE_THROWS_WITH(make_path("{type: noise_levels, sigma_max: 0.001}"), Contains("sigma_max") && Contains("0.01"));
  REQUIRE_THROWS_WITH(make_path("{type: noise_levels, levels: 0}"), Contains("levels") && Contains("[1, "));
  REQUIRE_THROWS_WITH(make_path("{type: noise_levels, levels: 1}"), Contains("levels") && Contains("sigma_min == sigma_max"));
  REQUIRE_THROWS_WITH(make_path("{type: noise_levels, sigma_min: 0.2, sigma_max: 0.2, levels: 5}"),
                      Contains("sigma_min < sigma_max"));
  REQUIRE_THROWS_WITH(make_path("{type: noise_levels, sigma: 0.1, levels: 3}"), Contains("levels") && Contains("not both"));
  REQUIRE_THROWS_WITH(make_path("{type: noise_levels, sigma: 0}"), Contains("sigma") && Contains("> 0"));
  REQUIRE_THROWS_WITH(make_path("{type: noise_levels, sigma_min: -0.01}"), Contains("sigma_min") && Contains("> 0"));
  REQUIRE_THROWS_WITH(make_path("{type: noise_levels, level: 10}"), Contains("did you mean 'levels'"));
}

// ---------------------------------------------------------------------------------------------
// The dsm loss
// ---------------------------------------------------------------------------------------------

TEST_CASE("dsm: each sample's loss is 1/2 lambda(sigma) times the squared score error, by hand", "[score_matching][loss]") {
  const auto path = make_path("{type: noise_levels, sigma_min: 0.01, sigma_max: 1.0, levels: 10}");
  const std::string pre = GENERATE(std::string("eps"), std::string("score"));
  const std::string weighting = GENERATE(std::string("sigma2"), std::string("none"));
  CAPTURE(pre, weighting);
  const auto loss = make_loss("{type: dsm, preconditioning: " + pre + ", weighting: " + weighting + "}");
  REQUIRE(loss->preconditioning()->name() == pre);
  LinearNet net;
  Rng data_rng(4);
  const Tensor x0 = data_rng.normal({64, 2});
  const LossValues v = run_loss(*loss, net, *path, x0, 9);
  REQUIRE(v.per_sample.shape() == Shape{64});
  REQUIRE(v.times.size() == 64);
  std::vector<bool> seen(10, false);
  for (std::size_t i = 0; i < 64; ++i) {
    const double t = v.times(i), sigma = path->sigma(t);
    REQUIRE(t == std::floor(t));
    seen[static_cast<std::size_t>(t)] = true;
    REQUIRE_THAT(std::exp(double(net.noise_input(i))), WithinRel(sigma, 1e-6));  // c_noise = log sigma
    double sq = 0, sq_eps = 0;
    for (std::size_t j = 0; j < 2; ++j) {
      const double xt = net.input(i, j), x = x0(i, j);  // x~ = x + sigma z
      double f = net.b.value()(j);
      for (std::size_t k = 0; k < 2; ++k) f += double(net.input(i, k)) * net.w.value()(k, j);
      const double s_theta = pre == "eps" ? -f / sigma : f;
      sq += std::pow(s_theta + (xt - x) / (sigma * sigma), 2);
      sq_eps += std::pow(f - (xt - x) / sigma, 2);
    }
    const double lambda = weighting == "sigma2" ? sigma * sigma : 1.0;
    CAPTURE(i, t);
    REQUIRE_THAT(v.per_sample.value()(i), WithinRel(0.5 * lambda * sq, 2e-4));
    // eps with lambda = sigma^2 is DDPM's L_simple, 1/2 ||F - z||^2.
    if (pre == "eps" && weighting == "sigma2") REQUIRE_THAT(v.per_sample.value()(i), WithinRel(0.5 * sq_eps, 2e-4));
  }
  REQUIRE(std::count(seen.begin(), seen.end(), true) >= 8);  // levels drawn per sample
}

TEST_CASE("dsm: the gradient with respect to the network's weights matches finite differences", "[score_matching][loss]") {
  // The loss is quadratic in (W, b), so the central difference is exact up to float rounding.
  const auto path = make_path("{type: noise_levels, sigma_min: 0.01, sigma_max: 1.0, levels: 10}");
  const std::string pre = GENERATE(std::string("eps"), std::string("score"));
  CAPTURE(pre);
  const auto loss = make_loss("{type: dsm, preconditioning: " + pre + "}");
  LinearNet net;
  Rng data_rng(5);
  const Tensor x0 = data_rng.normal({128, 2});
  net.zero_grad();
  const LossValues v = run_loss(*loss, net, *path, x0, 21);
  mean(v.per_sample).backward();
  const Tensor gw = net.w.grad(), gb = net.b.grad();
  double scale = 0;
  for (const float g : gw) scale = std::max(scale, double(std::abs(g)));
  REQUIRE(scale > 0.0);
  auto loss_at = [&]() { return mean_of(run_loss(*loss, net, *path, x0, 21).per_sample.value()); };
  const float h = 1.0f / 64;
  for (std::size_t e = 0; e < 6; ++e) {
    float& p = e < 4 ? net.w.value().data()[e] : net.b.value().data()[e - 4];
    const float analytic = e < 4 ? gw.data()[e] : gb.data()[e - 4];
    const float saved = p;
    p = saved + h;
    const double up = loss_at();
    p = saved - h;
    const double down = loss_at();
    p = saved;
    CAPTURE(e, analytic, up, down);
    REQUIRE_THAT((up - down) / (2 * h), WithinAbs(analytic, 1e-3 * std::max(1.0, scale)));
  }
}

TEST_CASE("dsm: the true score minimises the expected loss, with the closed-form gap", "[score_matching][loss][stat]") {
  // Vincent 2011: E l(s) = E l(s*) + 1/2 E lambda ||s - s*||^2 with s* the noised data's score.
  // With the exact eps-predictor F* = E[z | x~] of a mixture and any other F (here the
  // mixture's with the weights swapped), the per-sample gap is exactly
  //   l(F) - l(F*) = 1/2 ||F - F*||^2 - (F - F*) . (z - F*)     (eps, lambda = sigma^2),
  // and the last term has mean 0 only because F* is the conditional mean: its sample mean lies
  // within 4 SE of 0 (so the gap is 1/2 E||F - F*||^2), and the gap is far above 0.
  const auto path = make_path("{type: noise_levels, sigma_min: 0.05, sigma_max: 3.0, levels: 8}");
  const GaussianMixture truth = two_blobs();
  const GaussianMixture swapped({{0.7, {-2.0, 0.0}, {0.4, 0.4}}, {0.3, {2.0, 1.0}, {0.5, 0.5}}});
  MixtureEpsNet exact(truth), wrong(swapped);
  const auto loss = make_loss("{type: dsm}");
  Rng data_rng(6);
  const std::size_t n = 20000;
  const Tensor x0 = truth.sample(n, data_rng);
  const LossValues exact_values = run_loss(*loss, exact, *path, x0, 33);
  const Tensor l_exact = exact_values.per_sample.value(), xt = exact.input;
  const Tensor l_wrong = run_loss(*loss, wrong, *path, x0, 33).per_sample.value();
  REQUIRE(same(wrong.input, xt));  // the same x~: same levels and noise draws
  // Both networks at the recorded x~, each row at its level's sigma.
  Tensor c_noise = Tensor::from_shape({n});
  for (std::size_t i = 0; i < n; ++i) c_noise(i) = path->network_time(exact_values.times(i));
  const Tensor fe = exact.forward(Var(xt), c_noise, Condition()).value();
  const Tensor fw = wrong.forward(Var(xt), c_noise, Condition()).value();
  double gap = 0, half_sq = 0, cross = 0, cross_sq = 0, gap_sq = 0;
  for (std::size_t i = 0; i < n; ++i) {
    double u2 = 0;
    for (std::size_t j = 0; j < 2; ++j) u2 += std::pow(double(fw(i, j)) - fe(i, j), 2);
    const double d = double(l_wrong(i)) - l_exact(i), c = d - 0.5 * u2;
    gap += d / n, gap_sq += d * d / n, half_sq += 0.5 * u2 / n, cross += c / n, cross_sq += c * c / n;
  }
  const double se_cross = std::sqrt((cross_sq - cross * cross) / n), se_gap = std::sqrt((gap_sq - gap * gap) / n);
  CAPTURE(gap, half_sq, cross, se_cross, se_gap);
  REQUIRE(std::abs(cross) <= 4 * se_cross);
  REQUIRE(gap > 10 * se_gap);
}

TEST_CASE("dsm: bad options are refused, naming the key", "[score_matching][loss][config]") {
  REQUIRE_THROWS_WITH(make_loss("{type: dsm, weighting: sigma}"), Contains("weighting") && Contains("sigma2"));
  REQUIRE_THROWS_WITH(make_loss("{type: dsm, preconditioning: noise}"), Contains("preconditioning"));
  REQUIRE_THROWS_WITH(make_loss("{type: dsm, sigma: 0.1}"), Contains("sigma"));
  // The kernel's score is a Gaussian's: another source is refused, by name.
  const auto path = make_path("{type: noise_levels}");
  const UniformSource uniform;
  TrainContext ctx;
  ctx.path = path.get();
  ctx.source = &uniform;
  LinearNet net;
  Rng rng(1);
  REQUIRE_THROWS_WITH(make_loss("{type: dsm}")->loss(net, rng.normal({4, 2}), Condition(), ctx, rng),
                      Contains("standard Gaussian source") && Contains("uniform_test"));
}

// ---------------------------------------------------------------------------------------------
// The samplers on Gaussian data: the exact law of the unadjusted chain
// ---------------------------------------------------------------------------------------------

TEST_CASE("langevin: on Gaussian data the samples follow the unadjusted chain's closed-form law", "[score_matching][sampler][stat]") {
  // Starting from the source's N(0, (1 + sigma^2) I), K steps of size h on N(mu, v I) give
  // mean mu + c^K (0 - mu) and variance c^2K var0 + h (1 - c^2K) / (1 - c^2), c = 1 - h / (2 v):
  // a wrong drift or noise coefficient moves both by far more than 4 SE. Few steps, so the
  // chain is still far from its (biased) equilibrium v / (1 - h / (4 v)).
  const auto path = make_path("{type: noise_levels, sigma: 0.2}");
  const double mu[2] = {1.0, -2.0}, s = 0.5;
  const MixtureOracleDenoiser model(GaussianMixture({{1.0, {mu[0], mu[1]}, {s, s}}}), path);
  const bool denoise = GENERATE(false, true);
  CAPTURE(denoise);
  const auto sampler = make_sampler(std::string("{type: langevin, steps: 10, step_size: 0.1, denoise: ") +
                                    (denoise ? "true" : "false") + "}");
  Rng rng(8);
  const Tensor x = draw(*sampler, model, 20000, rng).x;
  ChainLaw law{{0.0, 0.0}, 1.0 + 0.2 * 0.2};
  law.langevin(*path, 0.0, 0.1, 10, mu, s);
  if (denoise) law.denoise(*path, 0.0, mu, s);
  law.require_matches(x);
}

TEST_CASE("annealed_langevin: Algorithm 1's step sizes give the closed-form law on any path", "[score_matching][sampler][stat]") {
  // Level by level the chain stays Gaussian. Algorithm 1 runs on y = x / alpha with the levels
  // s_i = sigma_i / alpha_i and steps eps s_i^2 / s_L^2: in x a step alpha_i^2 times that, and x
  // scaled by alpha_i / alpha_(i-1) between levels (both trivial where alpha = 1). With 3 steps
  // per level the chain is far from converged, so the final law pins every level's step and
  // scaling. Both init rules and the final denoising step.
  const double mu[2] = {1.0, -2.0}, s = 0.5;
  const std::string path_yaml = GENERATE(std::string("{type: noise_levels, sigma_min: 0.01, sigma_max: 3.0, levels: 12}"),
                                         std::string("{type: ddpm, timesteps: 1000}"));
  const bool uniform = GENERATE(false, true);
  const bool denoise = GENERATE(false, true);
  CAPTURE(path_yaml, uniform, denoise);
  const auto path = make_path(path_yaml);
  const bool ddpm = path->num_steps() == 1000;
  const MixtureOracleDenoiser model(GaussianMixture({{1.0, {mu[0], mu[1]}, {s, s}}}), path);
  const double eps = 5e-5;
  const auto sampler = make_sampler(std::string("{type: annealed_langevin, step_size: 5.0e-5, steps_per_level: 3") +
                                    (ddpm ? ", steps: 12" : "") + (uniform ? ", init: uniform, low: -3, high: 1" : "") +
                                    ", denoise: " + (denoise ? "true" : "false") + "}");
  Rng rng(12);
  const SampleOutput out = draw(*sampler, model, 20000, rng);
  REQUIRE(out.extras.size() == 2);
  REQUIRE(out.extras[0].first == "step_sizes");
  REQUIRE(out.extras[1].first == "sigmas");
  const std::vector<double> levels = grid_times(*path, 12);
  const double start_var = path->alpha(path->t_max()) * path->alpha(path->t_max()) +
                           path->sigma(path->t_max()) * path->sigma(path->t_max());
  ChainLaw law = uniform ? ChainLaw{{-1.0, -1.0}, 16.0 / 12.0} : ChainLaw{{0.0, 0.0}, start_var};
  const auto ratio = [&](double t) { return path->sigma(t) / path->alpha(t); };
  const double s_last = ratio(levels.back());
  for (std::size_t i = 0; i < levels.size(); ++i) {
    const double a = path->alpha(levels[i]), step = eps * std::pow(ratio(levels[i]) / s_last, 2);
    CAPTURE(i);
    REQUIRE_THAT(out.extras[0].second(i), WithinRel(step, 1e-6));
    REQUIRE_THAT(out.extras[1].second(i), WithinRel(ratio(levels[i]), 1e-6));
    if (!ddpm) REQUIRE(ratio(levels[i]) == path->sigma(levels[i]));
    if (i > 0) law.scale(a / path->alpha(levels[i - 1]));
    law.langevin(*path, levels[i], a * a * step, 3, mu, s);
  }
  if (denoise) law.denoise(*path, levels.back(), mu, s);
  law.require_matches(out.x);
}

TEST_CASE("annealed_langevin: one evaluation per step, trajectories and reproducibility", "[score_matching][sampler]") {
  const auto path = make_path("{type: noise_levels, sigma_min: 0.01, sigma_max: 1.0, levels: 10}");
  const auto oracle = std::make_shared<MixtureOracleDenoiser>(two_blobs(), path);
  CountingDenoiser counted(oracle);
  const auto sampler = make_sampler("{type: annealed_langevin, steps_per_level: 7}");
  Trajectory traj;
  traj.max_frames = 4;
  Rng r1(3), r2(3);
  const Tensor a = draw(*sampler, counted, 50, r1, &traj).x;
  REQUIRE(counted.nfe() == 10 * 7 + 1);  // L T steps and the denoising step
  REQUIRE(traj.frames.size() == 4);
  REQUIRE(same(traj.frames.back(), a));
  REQUIRE(traj.times.front() == 9.0);
  REQUIRE(traj.times.back() == 0.0);
  REQUIRE(same(draw(*sampler, *oracle, 50, r2).x, a));  // same seed, same samples
  // Levels from a list: exactly those.
  CountingDenoiser listed(oracle);
  const auto some = make_sampler("{type: annealed_langevin, timesteps: [9, 4, 1], steps_per_level: 2, denoise: false}");
  const SampleOutput out = draw(*some, listed, 10, r1);
  REQUIRE(listed.nfe() == 6);
  REQUIRE_THAT(out.extras[1].second(1), WithinRel(path->sigma(4), 1e-6));
  REQUIRE_THAT(out.extras[0].second(2), WithinRel(2e-5, 1e-6));  // the last level's step is eps
}

TEST_CASE("langevin and annealed_langevin refuse bad settings", "[score_matching][sampler][config]") {
  REQUIRE_THROWS_WITH(make_sampler("{type: langevin}"), Contains("step_size"));
  REQUIRE_THROWS_WITH(make_sampler("{type: langevin, step_size: 0}"), Contains("step_size") && Contains("> 0"));
  REQUIRE_THROWS_WITH(make_sampler("{type: annealed_langevin, step_size: -1.0e-5}"), Contains("step_size") && Contains("> 0"));
  REQUIRE_THROWS_WITH(make_sampler("{type: annealed_langevin, steps_per_level: 0}"), Contains("steps_per_level"));
  REQUIRE_THROWS_WITH(make_sampler("{type: annealed_langevin, step_sise: 1.0e-5}"), Contains("did you mean 'step_size'"));
  REQUIRE_THROWS_WITH(make_sampler("{type: langevin, step_size: 0.1, init: gaussian}"), Contains("init") && Contains("uniform"));
  REQUIRE_THROWS_WITH(make_sampler("{type: langevin, step_size: 0.1, init: uniform, low: 0}"), Contains("high"));
  REQUIRE_THROWS_WITH(make_sampler("{type: langevin, step_size: 0.1, init: uniform, low: 1, high: 1}"),
                      Contains("high") && Contains("high > low"));
  REQUIRE_THROWS_WITH(make_sampler("{type: annealed_langevin, low: -1}"), Contains("low") && Contains("init: uniform"));
  // Against a path, before anything is trained.
  const auto levels = make_path("{type: noise_levels, levels: 10}");
  REQUIRE_THROWS_WITH(make_sampler("{type: annealed_langevin, steps: 11}")->check(*levels, standard_normal_source()),
                      Contains("11 steps") && Contains("only 10"));
  REQUIRE_THROWS_WITH(make_sampler("{type: annealed_langevin}")->check(ExactDataEnd(), standard_normal_source()),
                      Contains("set `steps` for a continuous-time path"));
  REQUIRE_THROWS_WITH(make_sampler("{type: annealed_langevin, steps: 10}")->check(ExactDataEnd(), standard_normal_source()),
                      Contains("sigma at t = 0 is 0"));
  REQUIRE_THROWS_WITH(make_sampler("{type: langevin, step_size: 0.1}")->check(ExactDataEnd(), standard_normal_source()),
                      Contains("langevin") && Contains("sigma at t = 0 is 0"));
  for (const std::string yaml : {"{type: langevin, step_size: 0.1}", "{type: annealed_langevin}"})
    REQUIRE_THROWS_WITH(make_sampler(yaml)->check(*levels, UniformSource()),
                        Contains("standard Gaussian source") && Contains("uniform_test"));
}

// ---------------------------------------------------------------------------------------------
// The samplers on a Gaussian mixture's exact denoiser
// ---------------------------------------------------------------------------------------------

TEST_CASE("annealed_langevin recovers a well-separated mixture on noise_levels and on DDPM's path", "[score_matching][sampler][stat]") {
  // NCSN's sampler on its own path, and the same sampler on a DDPM eps-model's path (alpha != 1):
  // one model, read as a score at every level. noise_levels: sigma_1 = 6 about the largest
  // distance between two data points (NCSNv2, technique 1), 20 geometric levels down to 0.01.
  // DDPM: the 20 of its 1000 steps whose sigma / alpha are the same levels (the karras grid with a
  // large rho is geometric in sigma / alpha), where the sampler runs the same chain. eps = 5e-5
  // and T = 100: with 25 times the samples every fraction and mean was within 1 SE of the truth
  // (here < 0.2 SE); the paper's 2e-5 lags (the chains do not settle the weights before the
  // modes separate: the lighter component's fraction was 1 SE of this test too high).
  const std::string setting = GENERATE(
      std::string("{type: noise_levels, sigma_min: 0.01, sigma_max: 6.0, levels: 20}|{type: annealed_langevin, step_size: 5.0e-5}"),
      std::string("{type: ddpm, timesteps: 1000}|{type: annealed_langevin, step_size: 5.0e-5, steps: 20, "
                  "spacing: {type: karras, rho: 1000, sigma_min: 0.01, sigma_max: 6.0}}"));
  CAPTURE(setting);
  const auto bar = setting.find('|');
  const auto path = make_path(setting.substr(0, bar));
  const MixtureOracleDenoiser model(two_blobs(), path);
  Rng rng(2019);
  const SampleOutput out = draw(*make_sampler(setting.substr(bar + 1)), model, 4000, rng);
  // The levels are NCSN's geometric sigmas on both paths (DDPM's whole steps round them by < 6%).
  const Tensor& sigmas = out.extras[1].second;
  REQUIRE(sigmas.size() == 20);
  for (std::size_t i = 0; i < 20; ++i) REQUIRE_THAT(sigmas(i), WithinRel(6.0 * std::pow(0.01 / 6.0, i / 19.0), 0.1));
  require_mixture_recovered(out.x, model.mixture());
}

TEST_CASE("langevin at a small sigma recovers a mixture whose modes it can cross", "[score_matching][sampler][stat]") {
  // Plain Langevin mixes between modes only where the barrier is low: here the means are 2.45
  // apart with std 0.45, the chains start from N(0, I) over both modes, and 2000 steps of 0.06
  // (0.3 s^2) cross the barrier often enough to settle the 0.3 / 0.7 split. The nearest mean
  // misnames 0.3% of the samples (0.6 SE on the lighter group's mean), so the groups are compared
  // with those of exact draws. What is left is Langevin's own bias (its variance is 8% too large,
  // alike in both modes): over 25 seeds it moved the lighter group's mean by 0.5 SE, the rest
  // by < 0.3 SE. Between well-separated modes plain Langevin cannot mix (next test): annealed
  // Langevin is the fix.
  const auto path = make_path("{type: noise_levels, sigma: 0.01}");
  const MixtureOracleDenoiser model(GaussianMixture({{0.3, {-1.2, 0.0}, {0.45, 0.45}}, {0.7, {1.2, 0.5}, {0.45, 0.45}}}), path);
  Rng rng(2011);
  const Tensor x = draw(*make_sampler("{type: langevin, steps: 2000, step_size: 0.06, denoise: true}"), model, 4000, rng).x;
  require_mixture_like_exact_draws(x, model.mixture(), 400000);
}

TEST_CASE("between well-separated modes plain Langevin keeps the start's split and annealing fixes it", "[score_matching][sampler][stat]") {
  // Song & Ermon 2019, section 3.2.2 and figure 3: from uniform noise on [-4, 4]^2, Langevin at
  // the smallest noise level sends each chain to the mode whose basin it starts in (about half of
  // the box each), whatever the weights; annealed Langevin from the same start, with as many
  // network evaluations, recovers the 0.3 / 0.7 split.
  const auto path = make_path("{type: noise_levels, sigma_min: 0.01, sigma_max: 6.0, levels: 20}");
  const MixtureOracleDenoiser model(two_blobs(), path);
  const std::size_t n = 2000;
  Rng r1(7), r2(7);
  const Tensor plain = draw(*make_sampler("{type: langevin, steps: 2000, step_size: 0.03, init: uniform, low: -4, high: 4}"),
                            model, n, r1).x;
  const double frac = NearestGroups(plain, model.mixture()).fraction[1], se = std::sqrt(0.7 * 0.3 / n);
  CAPTURE(frac);
  REQUIRE(frac < 0.7 - 10 * se);
  const Tensor annealed = draw(*make_sampler("{type: annealed_langevin, init: uniform, low: -4, high: 4}"), model, n, r2).x;
  require_mixture_recovered(annealed, model.mixture());
}

// The predictor-corrector sampler (Song et al. 2021, section 4.2) against the exact denoiser of
// a Gaussian mixture (no training, so a wrong sampler cannot hide behind a network's error), its
// single steps against Song's formulas, and the continuous denoising score matching loss (eq. 7)
// against its hand-computed value, finite differences and its log-SNR importance sampling.
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
#include "core/grad_check.hpp"

using namespace diffusion;
using diffusion::testing::GaussianMixture;
using diffusion::testing::MixtureOracleDenoiser;
using diffusion::testing::require_mixture_recovered;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

void load_score_sde() { load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_score_sde.so"); }
/// DDPM's path, for the tests that run pc on it (each test may run alone, in its own process).
void load_ddpm() { load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_ddpm.so"); }

std::shared_ptr<Path> make_path(const std::string& yaml) {
  load_score_sde();
  return registries().paths.create(Config::load_string(yaml).root(), BuildContext{});
}

std::shared_ptr<Sampler> make_sampler(const std::string& yaml) {
  load_score_sde();
  return registries().samplers.create(Config::load_string(yaml).root(), BuildContext{});
}

std::shared_ptr<Loss> make_loss(const std::string& yaml) {
  load_score_sde();
  return registries().losses.create(Config::load_string(yaml).root(), BuildContext{});
}

/// Three well separated components of unequal weights: half the distance between any two means
/// is at least 4.5 standard deviations, so the nearest mean names a sample's component except
/// with probability ~1e-5.
GaussianMixture three_blobs() {
  return GaussianMixture({{0.5, {-2.0, 0.5}, {0.3, 0.35}}, {0.3, {2.0, 1.5}, {0.35, 0.3}}, {0.2, {0.0, -2.0}, {0.3, 0.3}}});
}

/// N(0, I) in 2-D: on VP, eps_hat = sigma x, score = -x and x0_hat = alpha x.
GaussianMixture standard_normal() { return GaussianMixture({{1.0, {0.0, 0.0}, {1.0, 1.0}}}); }

Tensor draw(const Sampler& s, const Denoiser& model, std::size_t n, Rng& rng, Trajectory* traj = nullptr) {
  SampleRequest req;
  req.shape = {n, 2};
  req.trajectory = traj;
  return s.sample(model, req, rng).x;
}

/// Every predictor alone and with Langevin correction, and the corrector alone, on one SDE.
///
/// Steps and sample sizes: each case's discretisation bias was measured by running it with
/// 100000 samples (20 times this n; seed 2024): every predictor case stayed within 3.2 of those
/// standard errors, i.e. below 0.7 standard errors of this test, so the 4-SE bounds test the
/// sampler, not its step count. (At half these steps the worst case reached 3.9 there.)
/// The corrector alone is annealed Langevin dynamics (Song & Ermon 2019), exact only as its steps
/// grow without bound: its weights lean towards equal ones (at 400 levels x 5 steps, snr 0.3, by
/// up to 5.9 standard errors of 100000 samples, 0.008 in the smallest weight), so it runs with
/// 2000 samples, where that is 0.83 of a standard error.
void require_pc_recovers_mixture(const std::string& sde) {
  const std::string sampler = GENERATE(
      std::string("{type: pc, steps: 500, predictor: euler_maruyama, corrector: none}"),
      std::string("{type: pc, steps: 500, predictor: reverse_diffusion, corrector: none}"),
      std::string("{type: pc, steps: 500, predictor: ancestral, corrector: none}"),
      std::string("{type: pc, steps: 500, predictor: {type: ancestral, variance: beta}, corrector: none}"),
      std::string("{type: pc, steps: 250, predictor: euler_maruyama, corrector: {type: langevin, snr: 0.16}}"),
      std::string("{type: pc, steps: 250, predictor: reverse_diffusion, corrector: {type: langevin, snr: 0.16}}"),
      std::string("{type: pc, steps: 250, predictor: ancestral, corrector: {type: langevin, snr: 0.16}}"),
      std::string("{type: pc, steps: 400, predictor: none, corrector: {type: langevin, snr: 0.3, steps: 5}}"));
  CAPTURE(sde, sampler);
  const bool corrector_only = sampler.find("predictor: none") != std::string::npos;
  const MixtureOracleDenoiser model(three_blobs(), make_path("{type: " + sde + "}"));
  Rng rng(2024);
  require_mixture_recovered(draw(*make_sampler(sampler), model, corrector_only ? 2000 : 5000, rng), model.mixture());
}

/// A source that is not the standard Gaussian.
class DataLikeSource : public Source {
 public:
  Tensor sample(const Shape& shape, Rng& rng, PriorDraw) const override { return rng.uniform(shape); }
  std::string name() const override { return "moons"; }
};

}  // namespace

TEST_CASE("PC sampling on VP recovers a Gaussian mixture with the exact denoiser", "[score_sde][sampler][pc][stat]") {
  require_pc_recovers_mixture("vp");
}

TEST_CASE("PC sampling on sub-VP recovers a Gaussian mixture with the exact denoiser", "[score_sde][sampler][pc][stat]") {
  require_pc_recovers_mixture("subvp");
}

TEST_CASE("PC sampling on VE recovers a Gaussian mixture with the exact denoiser", "[score_sde][sampler][pc][stat]") {
  require_pc_recovers_mixture("ve");
}

TEST_CASE("PC predictors and the Langevin corrector take Song's steps exactly", "[score_sde][sampler][pc]") {
  // N(0, I) data on VP, grid {1, 0.4}: one predictor step from 1 to 0.4, then x0_hat = alpha x.
  // The same stream replayed gives the prior draw and the step's noise.
  const auto vp = make_path("{type: vp}");
  const MixtureOracleDenoiser model(standard_normal(), vp);
  const double t = 1.0, s = 0.4, a_t = vp->alpha(t), a_s = vp->alpha(s), sig_t = vp->sigma(t), sig_s = vp->sigma(s);
  const double f = vp->drift_coef(t), g2 = vp->diffusion_squared(t);
  const std::string grid = "timesteps: [1.0, 0.4]";
  const auto run = [&](const std::string& options, Tensor& x, Tensor& z, Tensor* z2 = nullptr) {
    Rng r1(17), r2(17);
    const Tensor out = draw(*make_sampler("{type: pc, " + grid + ", " + options + "}"), model, 6, r1);
    x = standard_normal_source().start(*vp, {6, 2}, r2);
    z = r2.normal({6, 2});
    if (z2) *z2 = r2.normal({6, 2});
    return out;
  };
  Tensor x, z;
  SECTION("euler_maruyama: x + (f x - g^2 score) dt + g sqrt(-dt) z") {
    const Tensor out = run("predictor: euler_maruyama, corrector: none", x, z);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double x1 = x.data()[i] + (f * x.data()[i] + g2 * x.data()[i]) * (s - t) + std::sqrt(g2 * (t - s)) * z.data()[i];
      REQUIRE_THAT(out.data()[i], WithinAbs(a_s * x1, 1e-5));
    }
  }
  SECTION("reverse_diffusion: x - (a - 1) x + G^2 score + G z") {
    const Tensor out = run("predictor: reverse_diffusion, corrector: none", x, z);
    const double a = a_t / a_s, G2 = sig_t * sig_t - a * a * sig_s * sig_s;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double x1 = x.data()[i] - (a - 1) * x.data()[i] - G2 * x.data()[i] + std::sqrt(G2) * z.data()[i];
      REQUIRE_THAT(out.data()[i], WithinAbs(a_s * x1, 1e-5));
    }
  }
  SECTION("ancestral: the Gaussian posterior with x0_hat, either variance") {
    const bool beta = GENERATE(false, true);
    const Tensor out = run(beta ? "predictor: {type: ancestral, variance: beta}, corrector: none"
                                : "predictor: ancestral, corrector: none",
                           x, z);
    const GaussianPosterior q = gaussian_posterior(*vp, t, s, false);
    // DDPM's step in Song's form: mean (x + beta score) / sqrt(1 - beta) with 1 - beta = (a_t / a_s)^2.
    const double one_minus_beta = (a_t / a_s) * (a_t / a_s), b = 1 - one_minus_beta;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double mean = (x.data()[i] - b * x.data()[i]) / std::sqrt(one_minus_beta);
      REQUIRE_THAT(q.c_xt * x.data()[i] + q.c_x0 * a_t * x.data()[i], WithinAbs(mean, 1e-9));
      const double x1 = mean + std::sqrt(beta ? b : q.variance) * z.data()[i];
      REQUIRE_THAT(out.data()[i], WithinAbs(a_s * x1, 1e-5));
    }
  }
  SECTION("langevin: eps = 2 alpha_i (snr |z| / |grad|)^2, x + eps grad + sqrt(2 eps) z, at both grid times") {
    Tensor z2;
    const Tensor out = run("predictor: none, corrector: {type: langevin, snr: 0.2}", x, z, &z2);
    const auto mean_norm = [](const Tensor& v) {
      double total = 0;
      for (std::size_t i = 0; i < v.shape()[0]; ++i) total += std::hypot(double(v(i, 0)), double(v(i, 1)));
      return total / double(v.shape()[0]);
    };
    const auto langevin = [&](Tensor y, const Tensor& noise, double alpha_i) {  // grad = score = -y
      const double r = 0.2 * mean_norm(noise) / mean_norm(y), step = 2 * alpha_i * r * r;
      for (std::size_t i = 0; i < y.size(); ++i)
        y.data()[i] = float(y.data()[i] - step * y.data()[i] + std::sqrt(2 * step) * noise.data()[i]);
      return y;
    };
    // alpha_i = (alpha(t) / alpha(next))^2 at t = 1, and 1 at the last grid time.
    const Tensor y = langevin(langevin(x, z, (a_t / a_s) * (a_t / a_s)), z2, 1.0);
    for (std::size_t i = 0; i < x.size(); ++i) REQUIRE_THAT(out.data()[i], WithinAbs(a_s * y.data()[i], 1e-5));
  }
}

TEST_CASE("PC with the ancestral predictor alone is DDPM's ancestral sampler", "[score_sde][sampler][pc][ddpm]") {
  // On DDPM's discrete path with the same grid and stream: the same draws, the same steps, and
  // the last step to the data is x0_hat in both.
  load_ddpm();
  const auto ddpm = make_path("{type: ddpm, timesteps: 1000}");
  const MixtureOracleDenoiser model(three_blobs(), ddpm);
  for (const std::string variance : {"posterior", "beta"}) {
    CAPTURE(variance);
    Rng r1(5), r2(5);
    const Tensor a = draw(*make_sampler("{type: ancestral, steps: 50, variance: " + variance + "}"), model, 300, r1);
    const Tensor b = draw(*make_sampler("{type: pc, steps: 50, predictor: {type: ancestral, variance: " + variance +
                                        "}, corrector: none}"),
                          model, 300, r2);
    for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(a.data()[i] == b.data()[i]);
  }
}

TEST_CASE("On VE, ancestral sampling with the transition variance is the reverse diffusion step", "[score_sde][sampler][pc]") {
  // Song's two VE predictors: mean x + (sigma_t^2 - sigma_s^2) score for both, variance
  // sigma_t^2 - sigma_s^2 for reverse diffusion (and ancestral with variance: beta).
  const MixtureOracleDenoiser model(three_blobs(), make_path("{type: ve}"));
  Rng r1(8), r2(8);
  const Tensor a = draw(*make_sampler("{type: pc, steps: 40, predictor: reverse_diffusion, corrector: none}"), model, 200, r1);
  const Tensor b =
      draw(*make_sampler("{type: pc, steps: 40, predictor: {type: ancestral, variance: beta}, corrector: none}"), model, 200, r2);
  for (std::size_t i = 0; i < a.size(); ++i) REQUIRE_THAT(a.data()[i], WithinAbs(b.data()[i], 1e-4));
}

TEST_CASE("PC counts its network evaluations and records its trajectory", "[score_sde][sampler][pc]") {
  const auto vp = make_path("{type: vp}");
  auto model = std::make_shared<CountingDenoiser>(std::make_shared<MixtureOracleDenoiser>(three_blobs(), vp));
  const auto nfe = [&](const std::string& yaml) {
    model->reset();
    Rng rng(1);
    draw(*make_sampler(yaml), *model, 10, rng);
    return model->nfe();
  };
  // N (1 + corrector steps) with a predictor (N - 1 predictor steps and the final x0_hat) ...
  REQUIRE(nfe("{type: pc, steps: 10, corrector: {type: langevin, steps: 2}}") == 30);
  // ... N * corrector steps + 1 without, and no final x0_hat with denoise: false.
  REQUIRE(nfe("{type: pc, steps: 10, predictor: none, corrector: {type: langevin, steps: 3}}") == 31);
  REQUIRE(nfe("{type: pc, steps: 10, predictor: euler_maruyama, corrector: none, denoise: false}") == 9);
  Trajectory traj;
  traj.max_frames = 11;
  Rng rng(1);
  const Tensor x = draw(*make_sampler("{type: pc, steps: 10}"), *model, 10, rng, &traj);
  REQUIRE(traj.frames.size() == 11);
  REQUIRE(traj.times.front() == 1.0);
  REQUIRE(traj.times[9] == vp->t_min());
  REQUIRE(traj.times.back() == vp->t_min());
  REQUIRE(std::equal(x.begin(), x.end(), traj.frames.back().begin()));
}

TEST_CASE("PC refuses a non-Gaussian source for noisy steps and unknown names, listing the valid ones",
          "[score_sde][sampler][pc][config]") {
  const auto vp = make_path("{type: vp}");
  const DataLikeSource moons;
  REQUIRE_THROWS_WITH(make_sampler("{type: pc, corrector: none}")->check(*vp, moons),
                      Catch::Contains("reverse_diffusion predictor") && Catch::Contains("not moons"));
  REQUIRE_THROWS_WITH(make_sampler("{type: pc, predictor: none}")->check(*vp, moons),
                      Catch::Contains("langevin corrector") && Catch::Contains("not moons"));
  REQUIRE_NOTHROW(make_sampler("{type: pc, predictor: none, corrector: none}")->check(*vp, moons));
  REQUIRE_NOTHROW(make_sampler("{type: pc}")->check(*vp, standard_normal_source()));
  REQUIRE_THROWS_WITH(make_sampler("{type: pc, predictor: heun}"),
                      Catch::Contains("predictor") && Catch::Contains("unknown predictor 'heun'") &&
                          Catch::Contains("euler_maruyama, reverse_diffusion, ancestral, none"));
  REQUIRE_THROWS_WITH(make_sampler("{type: pc, predictor: {type: ancestr}}"),
                      Catch::Contains("predictor.type") && Catch::Contains("unknown predictor 'ancestr'"));
  REQUIRE_THROWS_WITH(make_sampler("{type: pc, corrector: {type: hmc}}"),
                      Catch::Contains("unknown corrector 'hmc'") && Catch::Contains("langevin, none"));
  REQUIRE_THROWS_WITH(make_sampler("{type: pc, corrector: {type: langevin, snr: 0}}"), Catch::Contains("corrector.snr"));
  REQUIRE_THROWS_WITH(make_sampler("{type: pc, predictor: {type: euler_maruyama, variance: beta}}"),
                      Catch::Contains("variance"));
  load_ddpm();
  REQUIRE_THROWS_WITH(make_sampler("{type: pc, steps: 2000}")->check(*make_path("{type: ddpm, timesteps: 1000}"),
                                                                      standard_normal_source()),
                      Catch::Contains("2000 steps"));
}

// ---- the continuous DSM loss ----

namespace {

/// F = x W + (c_noise / 999) b: a network with parameters whose per-sample loss is known, which
/// remembers its last inputs.
class AffineNet : public Network {
 public:
  AffineNet() {
    Rng rng(3);
    w = Var(rng.normal({2, 2}, 0.0f, 0.5f), true);
    b = Var(rng.normal({1, 2}), true);
  }
  Var forward(const Var& x, const Tensor& c_noise, const Condition&) override {
    input = x.value(), noise = c_noise;
    Tensor tn = Tensor::from_shape({c_noise.size(), 1});
    for (std::size_t i = 0; i < c_noise.size(); ++i) tn(i, 0) = c_noise(i) / 999.0f;
    return matmul(x, w) + Var(tn) * b;
  }
  Var w, b;
  Tensor input, noise;
};

/// Data x0 (N, 2) fixed.
Tensor fixed_batch(std::size_t n) {
  Rng rng(99);
  return rng.normal({n, 2}, 0.5f, 1.0f);
}

LossValues run_loss(const Loss& loss, Network& net, const Path& path, const Tensor& x0, std::uint64_t seed) {
  TrainContext ctx;
  ctx.path = &path;
  Rng rng(seed);
  return loss.loss(net, x0, Condition(), ctx, rng);
}

}  // namespace

TEST_CASE("continuous DSM's per-sample value is Song's formula for both weightings", "[score_sde][loss]") {
  const std::string sde = GENERATE(std::string("vp"), std::string("subvp"), std::string("ve"));
  const std::string pre = GENERATE(std::string("eps"), std::string("score"));
  const std::string weighting = GENERATE(std::string("sigma2"), std::string("likelihood"));
  CAPTURE(sde, pre, weighting);
  const auto path = make_path("{type: " + sde + "}");
  const auto loss = make_loss("{type: continuous_dsm, preconditioning: " + pre + ", weighting: " + weighting + "}");
  REQUIRE(loss->preconditioning()->name() == pre);
  AffineNet net;
  const Tensor x0 = fixed_batch(64);
  const LossValues v = run_loss(*loss, net, *path, x0, 4);
  REQUIRE(v.per_sample.shape() == Shape{64});
  // Likelihood weighting: lambda = g^2 importance-sampled in log SNR, weight D = the log-SNR range.
  const double d = path->log_snr(path->t_min()) - path->log_snr(path->t_max());
  const Tensor f = net.forward(Var(net.input), net.noise, Condition()).value();
  for (std::size_t i = 0; i < 64; ++i) {
    const double t = v.times(i), a = path->alpha(t), s = path->sigma(t);
    REQUIRE(t >= path->t_min());
    REQUIRE(t <= path->t_max());
    REQUIRE(net.noise(i) == path->network_time(t));
    // z is recovered from the network's input x_t (eps and score take x_t itself), which is
    // float: exact to 2^-23 |x_t| / sigma, large where sigma is small (sub-VP near t = eps).
    double expected = 0, rounding = 0;
    for (std::size_t j = 0; j < 2; ++j) {
      const double xt = net.input(i, j), z = (xt - a * x0(i, j)) / s;
      const double score = pre == "eps" ? -f(i, j) / s : f(i, j);
      expected += 0.5 * (s * score + z) * (s * score + z);
      rounding += std::abs(s * score + z) * 2 * std::ldexp(std::max(1.0, std::abs(xt)), -23) / s;
    }
    const double weight = weighting == "likelihood" ? d : 1.0;
    CAPTURE(i, t, rounding);
    REQUIRE_THAT(v.per_sample.value()(i), WithinAbs(weight * expected, weight * rounding + 1e-5 * weight * expected + 1e-6));
  }
}

TEST_CASE("continuous DSM's gradient with respect to the network's parameters matches finite differences",
          "[score_sde][loss]") {
  const std::string yaml = GENERATE(std::string("{type: continuous_dsm}"),
                                    std::string("{type: continuous_dsm, preconditioning: score, weighting: likelihood}"),
                                    std::string("{type: continuous_dsm, weighting: likelihood, t_sampling: low_discrepancy}"));
  const std::string sde = GENERATE(std::string("vp"), std::string("ve"));
  CAPTURE(yaml, sde);
  const auto path = make_path("{type: " + sde + "}");
  const auto loss = make_loss(yaml);
  AffineNet net;
  const Tensor x0 = fixed_batch(16);
  grad_check::check_gradients(
      [&](const std::vector<Var>& p) {
        net.w = p[0], net.b = p[1];
        return run_loss(*loss, net, *path, x0, 7).per_sample;  // the same t and z every call
      },
      {net.w.value(), net.b.value()});
}

TEST_CASE("likelihood weighting draws times uniformly in log SNR", "[score_sde][loss][stat]") {
  // 10 bins of log SNR over [log SNR(1), log SNR(eps)]: each holds n/10 times within 4
  // binomial standard errors. (On VP most of them fall at small t: uniform in t it is not.)
  const std::string sde = GENERATE(std::string("vp"), std::string("subvp"), std::string("ve"));
  const std::string sampling = GENERATE(std::string("iid"), std::string("low_discrepancy"));
  CAPTURE(sde, sampling);
  const auto path = make_path("{type: " + sde + "}");
  const auto loss = make_loss("{type: continuous_dsm, weighting: likelihood, t_sampling: " + sampling + "}");
  AffineNet net;
  const double lo = path->log_snr(path->t_max()), hi = path->log_snr(path->t_min());
  const std::size_t batches = 40, per = 500, n = batches * per, bins = 10;
  std::vector<std::size_t> count(bins, 0);
  for (std::size_t k = 0; k < batches; ++k) {
    const LossValues v = run_loss(*loss, net, *path, fixed_batch(per), k);
    for (std::size_t i = 0; i < per; ++i) {
      const double u = (path->log_snr(v.times(i)) - lo) / (hi - lo);
      ++count[std::min(bins - 1, static_cast<std::size_t>(std::max(0.0, u) * bins))];
    }
  }
  const double expected = double(n) / bins, se = std::sqrt(n * 0.1 * 0.9);
  for (std::size_t b = 0; b < bins; ++b) {
    CAPTURE(b, count[b]);
    REQUIRE(std::abs(double(count[b]) - expected) <= 4 * se);
  }
}

TEST_CASE("continuous DSM refuses unknown options, naming the key", "[score_sde][loss][config]") {
  REQUIRE_THROWS_WITH(make_loss("{type: continuous_dsm, weighting: uniform}"),
                      Catch::Contains("weighting") && Catch::Contains("likelihood"));
  REQUIRE_THROWS_WITH(make_loss("{type: continuous_dsm, t_sampling: sobol}"), Catch::Contains("t_sampling"));
  REQUIRE_THROWS_WITH(make_loss("{type: continuous_dsm, preconditioning: edm2}"), Catch::Contains("edm2"));
}

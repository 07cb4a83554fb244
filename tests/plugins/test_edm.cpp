// The edm plugin (Karras et al. 2022): the sigma path, the Table 1 preconditioning, the loss with
// log-normal noise levels and weight lambda(sigma), and the Heun samplers (Algorithms 1 and 2).
// The samplers are checked with the exact denoiser of a Gaussian mixture
// (tests/core/gaussian_mixture_oracle.hpp): no training, so what is measured is the sampler alone.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/plugin/registries.hpp>

#include "core/analytic_paths.hpp"
#include "core/gaussian_mixture_oracle.hpp"

using namespace diffusion;
using namespace diffusion::testing;

namespace {

void load_edm() { load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_edm.so"); }

BuildContext points() {
  BuildContext ctx;
  ctx.data_shape = {2};
  return ctx;
}

std::shared_ptr<const Path> edm_path(const std::string& yaml = "{type: edm}") {
  load_edm();
  return registries().paths.create(Config::load_string(yaml).root(), points());
}
std::shared_ptr<const Preconditioning> edm_pre(const std::string& yaml = "{type: edm}") {
  load_edm();
  return registries().preconditionings.create(Config::load_string(yaml).root(), points());
}
std::shared_ptr<Sampler> make_sampler(const std::string& yaml) {
  load_edm();
  return registries().samplers.create(Config::load_string(yaml).root(), points());
}
std::shared_ptr<Loss> make_loss(const std::string& yaml) {
  load_edm();
  return registries().losses.create(Config::load_string(yaml).root(), points());
}

/// Table 1 written out, for sigma_data sd at noise level s.
Scalings table1(double s, double sd) {
  const double r = s * s + sd * sd;
  return {sd * sd / r, s * sd / std::sqrt(r), 1 / std::sqrt(r), std::log(s) / 4};
}
double lambda(double s, double sd) { return (s * s + sd * sd) / (s * sd * s * sd); }

/// F(x, c_noise) = tanh(x + c_noise) + 0.5: bounded, nonzero, and it remembers its last inputs.
class RecordingNet : public Network {
 public:
  Var forward(const Var& x, const Tensor& t, const Condition&) override {
    last_x = x.value();
    last_t = t;
    Tensor y = Tensor::from_shape(shape_of(x.value()));
    const std::size_t per = x.value().size() / t.size();
    for (std::size_t i = 0; i < y.size(); ++i) y.data()[i] = float(std::tanh(x.value().data()[i] + t(i / per)) + 0.5);
    return Var(y);
  }
  Tensor last_x, last_t;
};

struct Run {
  Tensor start, end;
  SampleOutput out;
  std::size_t nfe = 0;
};

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

}  // namespace

TEST_CASE("edm path: alpha = 1 and sigma = t with EDM's time input and training times", "[edm][path]") {
  const auto p = edm_path("{type: edm, sigma_min: 0.002, sigma_max: 80}");
  REQUIRE(p->t_min() == 0.002);
  REQUIRE(p->t_max() == 80.0);
  for (const double t : {0.002, 0.3, 5.0, 80.0}) {
    CAPTURE(t);
    REQUIRE(p->alpha(t) == 1.0);
    REQUIRE(p->sigma(t) == t);
    REQUIRE(p->drift_coef(t) == 0.0);
    REQUIRE(p->diffusion_squared(t) == Approx(2 * t));  // d sigma^2 / dt
    REQUIRE(p->network_time(t) == Approx(std::log(t) / 4).margin(1e-6));
    REQUIRE(p->time_at_log_snr(p->log_snr(t)) == Approx(t).epsilon(1e-12));
  }
  // Training times: ln t ~ N(-1.2, 1.2^2) truncated to the range: the median is exp(-1.2) and
  // the quartiles exp(-1.2 -+ 0.6745 * 1.2) (truncation moves them by < 1e-4 relative).
  REQUIRE(p->time_at_quantile(0.5) == Approx(std::exp(-1.2)).epsilon(1e-4));
  REQUIRE(p->time_at_quantile(0.25) == Approx(std::exp(-1.2 - 0.6744897502 * 1.2)).epsilon(1e-4));
  REQUIRE(p->time_at_quantile(0.0) == Approx(0.002));
  REQUIRE_THROWS_WITH(edm_path("{type: edm, sigma_min: 90}"), Catch::Contains("sigma_min"));
}

TEST_CASE("edm preconditioning: the scalings of Table 1", "[edm][preconditioning]") {
  const auto path = edm_path();
  // sigma = sigma_data = 0.5 written out: c_skip 1/2, c_out 0.25 / sqrt(0.5), c_in sqrt(2),
  // c_noise ln(0.5) / 4.
  const Scalings k = edm_pre()->scalings(*path, 0.5);
  REQUIRE(k.c_skip == Approx(0.5));
  REQUIRE(k.c_out == Approx(0.3535533906));
  REQUIRE(k.c_in == Approx(1.4142135624));
  REQUIRE(k.c_noise == Approx(-0.1732867951));
  for (const double sd : {0.5, 1.0}) {
    const auto pre = edm_pre("{type: edm, sigma_data: " + std::to_string(sd) + "}");
    REQUIRE(pre->name() == "edm");
    for (const double s : {0.002, 0.1, 1.0, 10.0, 80.0}) {
      CAPTURE(sd, s);
      const Scalings got = pre->scalings(*path, s), want = table1(s, sd);
      REQUIRE(got.c_skip == Approx(want.c_skip).epsilon(1e-12));
      REQUIRE(got.c_out == Approx(want.c_out).epsilon(1e-12));
      REQUIRE(got.c_in == Approx(want.c_in).epsilon(1e-12));
      REQUIRE(got.c_noise == Approx(want.c_noise).epsilon(1e-12));
      // EDM's effective weight lambda(sigma) c_out(sigma)^2 = 1 (section 5, eq. 8).
      REQUIRE(lambda(s, sd) * got.c_out * got.c_out == Approx(1.0).epsilon(1e-12));
    }
  }
  // On a path with alpha != 1 the scalings are eq. 7's general form at sigma / alpha, so
  // D(x) = c_skip x + ... still gives back x0 as the noise vanishes: c_skip alpha -> 1.
  const CosineVp vp;
  const Scalings g = edm_pre()->scalings(vp, 1e-3);
  REQUIRE(g.c_skip * vp.alpha(1e-3) == Approx(1.0).epsilon(1e-4));
  REQUIRE_THROWS_WITH(edm_pre("{type: edm, sigma_data: 0}"), Catch::Contains("sigma_data"));
}

TEST_CASE("edm preconditioning: D(x, sigma) tends to x as sigma tends to 0", "[edm][preconditioning]") {
  // |D(x) - x| <= (1 - c_skip) |x| + c_out |F| = O(sigma) for a bounded F (|F| <= 1.5 here):
  // at most 1.5 sigma / sd + |x| sigma^2 / sd^2.
  const auto path = edm_path("{type: edm, sigma_min: 1.0e-9}");
  const auto net = std::make_shared<RecordingNet>();
  const NetworkDenoiser d(net, path, edm_pre());
  Rng rng(5);
  const Tensor x = rng.normal({16, 2});
  for (const double s : {1e-2, 1e-4, 1e-6, 1e-8}) {
    const Prediction p = d.predict(x, s);
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(double(p.x0.data()[i]) - x.data()[i]));
    CAPTURE(s, worst);
    REQUIRE(worst <= 1.5 * s / 0.5 + 16 * s * s / 0.25 + 1e-6);
    // and the network's output still matters at small sigma: D is not x exactly there.
    if (s >= 1e-4) REQUIRE(worst > 0.1 * s);
  }
}

TEST_CASE("edm loss: lambda(sigma) |D - x0|^2 at log-normal noise levels", "[edm][loss][stat]") {
  const auto path = edm_path();
  const double sd = 0.7;
  const auto loss = make_loss("{type: edm, sigma_data: 0.7}");
  REQUIRE(loss->preconditioning()->name() == "edm");
  RecordingNet net;
  Rng rng(11);
  const std::size_t n = 4000;
  const Tensor x0 = rng.normal({n, 2});
  TrainContext ctx;
  ctx.path = path.get();
  const LossValues v = loss->loss(net, x0, Condition(), ctx, rng);
  REQUIRE(v.per_sample.value().size() == n);
  double mean = 0, var = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double s = v.times(i);
    const Scalings k = table1(s, sd);
    CAPTURE(i, s);
    REQUIRE(net.last_t(i) == Approx(k.c_noise).margin(1e-6));
    // The network saw c_in x_t; D = c_skip x_t + c_out F, and the loss is lambda |D - x0|^2.
    double want = 0;
    for (std::size_t j = 0; j < 2; ++j) {
      const double xt = net.last_x(i, j) / k.c_in;
      const double f = std::tanh(double(net.last_x(i, j)) + net.last_t(i)) + 0.5;
      const double r = k.c_skip * xt + k.c_out * f - x0(i, j);
      want += lambda(s, sd) * r * r;
    }
    REQUIRE(v.per_sample.value()(i) == Approx(want).epsilon(2e-3).margin(1e-5));
    const double l = std::log(s);
    mean += l / n;
    var += l * l / n;
  }
  var -= mean * mean;
  // ln sigma ~ N(-1.2, 1.2^2): mean within 4 SE (1.2 / sqrt(n)), variance within 4 SE
  // (1.44 sqrt(2 / n)).
  CHECK(std::abs(mean + 1.2) <= 4 * 1.2 / std::sqrt(double(n)));
  CHECK(std::abs(var - 1.44) <= 4 * 1.44 * std::sqrt(2.0 / n));
}

TEST_CASE("edm loss: low-discrepancy noise levels are still log-normal", "[edm][loss][stat]") {
  const auto path = edm_path();
  const auto loss = make_loss("{type: edm, p_mean: 0.5, p_std: 0.8, t_sampling: low_discrepancy}");
  RecordingNet net;
  Rng rng(2);
  TrainContext ctx;
  ctx.path = path.get();
  // One batch is spread evenly over the quantiles: its mean and sd are those of N(0.5, 0.8^2)
  // to well within a single draw's standard error.
  const std::size_t n = 512;
  const LossValues v = loss->loss(net, rng.normal({n, 2}), Condition(), ctx, rng);
  double mean = 0, var = 0;
  for (std::size_t i = 0; i < n; ++i) mean += std::log(double(v.times(i))) / n;
  for (std::size_t i = 0; i < n; ++i) var += std::pow(std::log(double(v.times(i))) - mean, 2) / n;
  CHECK(std::abs(mean - 0.5) <= 0.1 * 0.8 / std::sqrt(double(n)));
  CHECK(std::abs(std::sqrt(var) - 0.8) <= 0.02);
  REQUIRE_THROWS_WITH(make_loss("{type: edm, p_std: 0}"), Catch::Contains("p_std"));
  REQUIRE_THROWS_WITH(make_loss("{type: edm, t_sampling: sobol}"), Catch::Contains("t_sampling"));
}

TEST_CASE("edm sampler: Algorithm 1 takes 2N - 1 evaluations on the karras grid", "[edm][sampler]") {
  const auto path = edm_path();
  const MixtureOracleDenoiser model(GaussianMixture({{1.0, {1.0, -2.0}, {0.5, 0.5}}}), path);
  for (const std::size_t steps : {1, 2, 5, 18}) {
    CAPTURE(steps);
    const Run r = run(*make_sampler("{type: edm, steps: " + std::to_string(steps) + "}"), model, 8, 1);
    REQUIRE(r.nfe == 2 * steps - 1);
    REQUIRE(extra(r.out, "stochastic_steps") == 0.0);
    // The starting draw is N(0, sigma_max^2 I): its scale is 80.
    double ss = 0;
    for (float v : r.start) ss += double(v) * v;
    REQUIRE(std::sqrt(ss / 16) > 40);
  }
  // Algorithm 2 adds noise but no evaluations; with s_tmin/s_tmax only the levels in between churn.
  const Run r = run(*make_sampler("{type: edm, steps: 18, s_churn: 40, s_tmin: 0.05, s_tmax: 50}"), model, 8, 1);
  REQUIRE(r.nfe == 35);
  // The 18-level grid (rho 7) has 13 levels in [0.05, 50]: 40.79, 28.37, ..., 0.0599 (the next is 0.0229).
  REQUIRE(extra(r.out, "stochastic_steps") == 13.0);
}

TEST_CASE("edm sampler: Heun's endpoints on Gaussian data converge at second order", "[edm][sampler]") {
  // For N(mu, s^2 I) data the flow keeps (x - mu) / sqrt(s^2 + sigma^2) constant: from 80 to
  // sigma_min = 0.002 it scales x - mu by sqrt((s^2 + 0.002^2) / (s^2 + 80^2)), and the last Euler
  // step to sigma = 0 lands on D there, which scales by s^2 / (s^2 + 0.002^2). Every sample's
  // (x_end - mu) / (x_start - mu) is checked against that product. Heun's relative error on this
  // map (the same recursion in double precision): 5.5% with 18 levels, 1.2% with 36.
  const auto path = edm_path();
  const double mu[2] = {1.0, -2.0}, s = 0.5;
  const MixtureOracleDenoiser model(GaussianMixture({{1.0, {mu[0], mu[1]}, {s, s}}}), path);
  const auto error = [&](std::size_t steps) {
    const Run r = run(*make_sampler("{type: edm, steps: " + std::to_string(steps) + "}"), model, 32, 3);
    const double smin = 0.002, scale = s * s / std::sqrt((s * s + smin * smin) * (s * s + 6400.0));
    double worst = 0;
    for (std::size_t i = 0; i < 32; ++i)
      for (std::size_t j = 0; j < 2; ++j) {
        const double ratio = (r.end(i, j) - mu[j]) / (r.start(i, j) - mu[j]);
        if (std::abs(r.start(i, j) - mu[j]) > 1.0) worst = std::max(worst, std::abs(ratio / scale - 1));
      }
    return worst;
  };
  const double e1 = error(18), e2 = error(36);
  CAPTURE(e1, e2);
  CHECK(e1 == Approx(0.0553).margin(2e-3));
  CHECK(e2 == Approx(0.0122).margin(2e-3));
  CHECK(e1 / e2 > 3.5);  // second order: 4 in the limit
}

TEST_CASE("edm sampler: deterministic and stochastic sampling recover a two-component mixture",
          "[edm][sampler][stat]") {
  const auto path = edm_path();
  const GaussianMixture mix({{0.3, {-2.0, 0.0}, {0.4, 0.4}}, {0.7, {2.0, 1.0}, {0.6, 0.6}}});
  const MixtureOracleDenoiser model(mix, path);
  // With 18 levels Heun's map still widens each component by ~5% (the test above), which 2000
  // samples resolve in the variances; weights and means are right at 18, everything at 64.
  // Algorithm 2 with gamma = sqrt(2) - 1 integrates further per level: at 18 levels it moved the
  // small component's mean to -2.10 (a separate double-precision Python run of the algorithm:
  // -2.11), so the stochastic cases run on 64 levels.
  for (const std::string yaml : {"{type: edm, steps: 18}", "{type: edm, steps: 18, prior: rqmc}",
                                 "{type: edm, steps: 64}",
                                 "{type: edm, steps: 64, s_churn: 40, s_tmin: 0.05, s_tmax: 50, s_noise: 1.003}",
                                 "{type: edm, steps: 64, s_churn: 80}"}) {
    CAPTURE(yaml);
    const Run r = run(*make_sampler(yaml), model, 2000, 17);
    require_mixture_recovered(r.end, mix, yaml.find("64") != std::string::npos);
  }
}

TEST_CASE("edm sampler: settings it cannot honour are refused", "[edm][sampler]") {
  REQUIRE_THROWS_WITH(make_sampler("{type: edm, spacing: linear, rho: 5}"), Catch::Contains("rho"));
  REQUIRE_THROWS_WITH(make_sampler("{type: edm, s_churn: -1}"), Catch::Contains("s_churn"));
  REQUIRE_THROWS_WITH(make_sampler("{type: edm, s_churn: 1, s_tmin: 5, s_tmax: 1}"), Catch::Contains("s_tmin"));
  REQUIRE_THROWS_WITH(make_sampler("{type: edm, s_chrun: 1}"), Catch::Contains("s_churn"));
  // alpha != 1: EDM's sampler steps in sigma on x = x0 + sigma z only.
  const CosineVp vp;
  REQUIRE_THROWS_WITH(make_sampler("{type: edm}")->check(vp, standard_normal_source()), Catch::Contains("alpha = 1"));
  REQUIRE_NOTHROW(make_sampler("{type: edm, steps: 10, spacing: {type: karras, rho: 3}}"));
}

// The smc plugin (plugins/smc) against closed forms, with the exact denoiser of Gaussian
// mixtures (no training: a wrong sampler cannot hide behind a network's error). Each target is
// a Gaussian mixture known in closed form:
//   - a linear-Gaussian observation of one coordinate of a mixture prior: the posterior is a
//     mixture (weights w_k N(y; mu_k0, s_k0^2 + tau^2), each component's observed coordinate
//     N((mu/s^2 + y/tau^2) v, v), v = 1 / (1/s^2 + 1/tau^2)) and the evidence is
//     Z = sum_k w_k N(y; mu_k0, s_k0^2 + tau^2);
//   - a region that contains some components whole: those components, Z = their weight;
//   - a linear reward exp(r . x / T): each component tilted, mean mu + s^2 r / T, weight
//     ∝ w exp(r . mu / T + |s r|^2 / (2 T^2));
//   - the exact classifier of the mixture's components: one component, Z = its weight;
//   - FKC's product of two mixtures (a mixture of the pairs' products) and annealing p^beta of
//     well separated components (weights ∝ w^beta prod_j s_j^(1 - beta), std s / sqrt(beta)).
// SMC's particles are weighted and correlated, so its estimates are checked across S seeds:
// per seed the weighted fraction of each target component (nearest mean) and its weighted
// mean, then their mean over seeds within 4 standard errors (the seeds' spread / sqrt(S)) of
// the closed form, and the normalising constant Z-hat likewise (it is unbiased; log Z-hat too,
// its Jensen bias is far below one standard error at these sizes). Each test also bounds the
// standard errors from above, so a sampler whose estimates scatter widely cannot pass by
// widening its own tolerance.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/model/predictions.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

#include "core/gaussian_mixture_oracle.hpp"
#include "smc/particle_weights.hpp"
#include "smc/resampling.hpp"

using namespace diffusion;
using diffusion::testing::GaussianMixture;
using diffusion::testing::MixtureComponent;
using diffusion::testing::MixtureOracleDenoiser;

namespace {

constexpr double kTwoPi = 6.283185307179586;

void load_plugins() {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_score_sde.so");
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_smc.so");
}

std::shared_ptr<const Path> vp_path() {
  load_plugins();
  return registries().paths.create(Config::load_string("{type: vp}").root(), BuildContext{});
}

std::shared_ptr<Sampler> make_sampler(const std::string& yaml) {
  load_plugins();
  return registries().samplers.create(Config::load_string(yaml).root(), BuildContext{});
}

double normal_pdf(double x, double mean, double var) {
  return std::exp(-0.5 * (x - mean) * (x - mean) / var) / std::sqrt(kTwoPi * var);
}

/// Four components, one in each quadrant, unequal weights.
GaussianMixture four_blobs() {
  return GaussianMixture({{0.1, {-2.0, -2.0}, {0.4, 0.4}},
                          {0.2, {-2.0, 2.0}, {0.4, 0.4}},
                          {0.3, {2.0, -2.0}, {0.4, 0.4}},
                          {0.4, {2.0, 2.0}, {0.4, 0.4}}});
}

/// The posterior of a mixture prior after observing coordinate 0 as y with noise tau, and the evidence.
GaussianMixture observed_posterior(const GaussianMixture& prior, double y, double tau, double* evidence) {
  std::vector<MixtureComponent> comps;
  double z = 0;
  for (const auto& c : prior.components()) {
    const double s2 = c.std[0] * c.std[0], lik = normal_pdf(y, c.mean[0], s2 + tau * tau);
    const double v = 1.0 / (1.0 / s2 + 1.0 / (tau * tau));
    comps.push_back({c.weight * lik, {v * (c.mean[0] / s2 + y / (tau * tau)), c.mean[1]}, {std::sqrt(v), c.std[1]}});
    z += c.weight * lik;
  }
  if (evidence) *evidence = z;
  return GaussianMixture(std::move(comps));
}

/// One run's weighted particles.
struct WeightedRun {
  Tensor x;
  std::vector<double> log_w;  // normalised
  double log_z = 0;
};

const Tensor& extra(const SampleOutput& out, const std::string& name) {
  for (const auto& [n, v] : out.extras)
    if (n == name) return v;
  FAIL("no extra " << name);
  throw;
}

WeightedRun run_smc(const Sampler& s, const Denoiser& model, std::size_t n, std::uint64_t seed,
                    const Models* models = nullptr) {
  SampleRequest req;
  req.shape = {n, 2};
  req.models = models;
  Rng rng(seed);
  const SampleOutput out = s.sample(model, req, rng);
  WeightedRun r;
  r.x = extra(out, "particles");
  const Tensor& lw = extra(out, "log_weights");
  r.log_w.assign(lw.begin(), lw.end());
  r.log_z = extra(out, "log_normalizing_constant").data()[0];
  return r;
}

/// Unweighted samples (a sampler without weights, or SMC's resampled output).
WeightedRun run_plain(const Sampler& s, const Denoiser& model, std::size_t n, std::uint64_t seed) {
  SampleRequest req;
  req.shape = {n, 2};
  Rng rng(seed);
  WeightedRun r;
  r.x = s.sample(model, req, rng).x;
  r.log_w.assign(n, -std::log(double(n)));
  return r;
}

struct SeedStats {
  double mean = 0, se = 0;
};
SeedStats across_seeds(const std::vector<double>& v) {
  const double m = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  double ss = 0;
  for (const double e : v) ss += (e - m) * (e - m);
  return {m, std::sqrt(ss / double(v.size() - 1) / double(v.size()))};
}

/// Per component of `target`: the seeds' weighted fraction (nearest mean) and mean estimates,
/// as z-scores |estimate - exact| / SE, and the SEs. Components of weight below 0.05 have no mean
/// checked (a seed may hold no particle there).
struct MixtureCheck {
  std::vector<double> weight_z, mean_z, weight_se, mean_se;
  double max_z() const {
    double m = 0;
    for (const double z : weight_z) m = std::max(m, z);
    for (const double z : mean_z) m = std::max(m, z);
    return m;
  }
};

MixtureCheck check_mixture(const std::vector<WeightedRun>& runs, const GaussianMixture& target) {
  const auto& comps = target.components();
  const std::size_t kk = comps.size();
  std::vector<std::vector<double>> frac(kk), mean(kk * 2);
  for (const WeightedRun& r : runs) {
    const std::size_t n = r.x.shape()[0];
    std::vector<double> f(kk, 0.0), m(kk * 2, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t best = 0;
      double best_d = std::numeric_limits<double>::infinity();
      for (std::size_t k = 0; k < kk; ++k) {
        const double dx = r.x(i, 0) - comps[k].mean[0], dy = r.x(i, 1) - comps[k].mean[1];
        if (dx * dx + dy * dy < best_d) best_d = dx * dx + dy * dy, best = k;
      }
      const double w = std::exp(r.log_w[i]);
      f[best] += w;
      for (std::size_t j = 0; j < 2; ++j) m[best * 2 + j] += w * r.x(i, j);
    }
    for (std::size_t k = 0; k < kk; ++k) {
      frac[k].push_back(f[k]);
      for (std::size_t j = 0; j < 2; ++j)
        if (f[k] > 0) mean[k * 2 + j].push_back(m[k * 2 + j] / f[k]);
    }
  }
  MixtureCheck c;
  for (std::size_t k = 0; k < kk; ++k) {
    const SeedStats w = across_seeds(frac[k]);
    c.weight_se.push_back(w.se);
    c.weight_z.push_back(std::abs(w.mean - comps[k].weight) / w.se);
    if (comps[k].weight < 0.05) continue;
    for (std::size_t j = 0; j < 2; ++j) {
      REQUIRE(mean[k * 2 + j].size() == runs.size());
      const SeedStats m = across_seeds(mean[k * 2 + j]);
      c.mean_se.push_back(m.se);
      c.mean_z.push_back(std::abs(m.mean - comps[k].mean[j]) / m.se);
    }
  }
  return c;
}

/// The target recovered: every z-score within 4, every SE below the given bounds.
void require_recovered(const std::vector<WeightedRun>& runs, const GaussianMixture& target, double max_weight_se,
                       double max_mean_se) {
  const MixtureCheck c = check_mixture(runs, target);
  for (std::size_t k = 0; k < c.weight_z.size(); ++k) {
    CAPTURE(k, target.components()[k].weight, c.weight_se[k]);
    REQUIRE(c.weight_z[k] <= 4.0);
    REQUIRE(c.weight_se[k] <= max_weight_se);
  }
  for (std::size_t k = 0; k < c.mean_z.size(); ++k) {
    CAPTURE(k, c.mean_se[k]);
    REQUIRE(c.mean_z[k] <= 4.0);
    REQUIRE(c.mean_se[k] <= max_mean_se);
  }
}

/// Z-hat and log Z-hat across seeds within 4 SE of Z; the SE of log Z-hat at most max_se.
void require_evidence(const std::vector<WeightedRun>& runs, double log_z, double max_se) {
  std::vector<double> ratio, logs;
  for (const auto& r : runs) ratio.push_back(std::exp(r.log_z - log_z)), logs.push_back(r.log_z);
  const SeedStats z = across_seeds(ratio), l = across_seeds(logs);
  CAPTURE(log_z, l.mean, l.se, z.mean, z.se);
  REQUIRE(std::abs(z.mean - 1.0) <= 4 * z.se);
  REQUIRE(std::abs(l.mean - log_z) <= 4 * l.se);
  REQUIRE(l.se <= max_se);
}

std::vector<WeightedRun> seeds(std::size_t count, const std::function<WeightedRun(std::uint64_t)>& run) {
  std::vector<WeightedRun> out;
  for (std::uint64_t s = 0; s < count; ++s) out.push_back(run(1000 + s));
  return out;
}

/// The mixture's eps-prediction as a network (eps preconditioning: c_in = 1, c_noise = the
/// path's network time, 999 t on vp), so that it can be a named model (a second expert).
class OracleEpsNetwork : public Network {
 public:
  OracleEpsNetwork(std::shared_ptr<const MixtureOracleDenoiser> oracle, double time_scale)
      : oracle_(std::move(oracle)), scale_(time_scale) {}
  Var forward(const Var& x, const Tensor& c_noise, const Condition& c) override {
    Times t(c_noise.size());
    for (std::size_t i = 0; i < t.size(); ++i) t[i] = c_noise.data()[i] / scale_;
    return oracle_->predict_var(x, t, c).eps;
  }

 private:
  std::shared_ptr<const MixtureOracleDenoiser> oracle_;
  double scale_;
};

/// The exact classifier of a mixture's components at noise level t: logits log w_k +
/// log N(x; alpha mu_k, diag(alpha^2 s_k^2 + sigma^2)) on the graph (input x_t, time 999 t).
class OracleClassifier : public Network {
 public:
  OracleClassifier(GaussianMixture mix, std::shared_ptr<const Path> path) : mix_(std::move(mix)), path_(std::move(path)) {}
  Var forward(const Var& x, const Tensor& c_noise, const Condition&) override {
    const double t = c_noise.data()[0] / 999.0;  // every row at one time (the smc sampler's batches)
    const double a = path_->alpha(t), s = path_->sigma(t);
    std::vector<Var> columns;
    for (std::size_t k = 0; k < mix_.components().size(); ++k) {
      const auto& c = mix_.components()[k];
      Tensor centre = Tensor::from_shape({2}), inv_var = Tensor::from_shape({2});
      double log_norm = std::log(c.weight);
      for (std::size_t j = 0; j < 2; ++j) {
        const double v = mix_.variance(k, j, a, s);
        centre.data()[j] = float(a * c.mean[j]), inv_var.data()[j] = float(1.0 / v);
        log_norm -= 0.5 * std::log(kTwoPi * v);
      }
      const Var quad = sum(square(x - Var(centre)) * Var(inv_var), {1}, true);  // (N, 1)
      columns.push_back(quad * -0.5f + float(log_norm));
    }
    return concat(columns, 1);
  }

 private:
  GaussianMixture mix_;
  std::shared_ptr<const Path> path_;
};

}  // namespace

// ---- acceptance 2: an inverse problem with a closed-form posterior ----

TEST_CASE("SMC recovers the posterior of a linear-Gaussian observation and its evidence", "[smc][stat]") {
  // y = x_0 + N(0, 1) observed as 0.5: posterior weights 0.024 0.047 0.398 0.531, log Z = -2.246.
  const double y = 0.5, tau = 1.0;
  double evidence = 0;
  const GaussianMixture posterior = observed_posterior(four_blobs(), y, tau, &evidence);
  const MixtureOracleDenoiser model(four_blobs(), vp_path());
  const std::string potential = "potential: {type: gaussian_observation, coordinates: [0], y: [0.5], noise: 1}";
  SECTION("TDS: twisted proposal, each resampling scheme") {
    const std::string scheme = GENERATE(std::string("systematic"), std::string("multinomial"), std::string("residual"));
    CAPTURE(scheme);
    const auto smc = make_sampler("{type: smc, steps: 200, spacing: quadratic, proposal: twisted, resampling: " + scheme + ", " + potential + "}");
    const auto runs = seeds(20, [&](std::uint64_t s) { return run_smc(*smc, model, 1000, s); });
    require_recovered(runs, posterior, 0.01, 0.02);
    require_evidence(runs, std::log(evidence), 0.02);
  }
  SECTION("FK steering: the model's kernel, potentials on x0_hat, at full strength or faded in") {
    const std::string schedule = GENERATE(std::string("constant"), std::string("snr"));
    CAPTURE(schedule);
    const auto smc = make_sampler("{type: smc, steps: 200, spacing: quadratic, twist_schedule: " + schedule + ", " + potential + "}");
    const auto runs = seeds(20, [&](std::uint64_t s) { return run_smc(*smc, model, 1000, s); });
    require_recovered(runs, posterior, 0.01, 0.02);
    require_evidence(runs, std::log(evidence), 0.03);
  }
}

TEST_CASE("Plain gradient guidance is biased on the inverse problem SMC solves", "[smc][stat]") {
  // The twisted proposal alone (reconstruction guidance): its samples, 20 x 1000 as SMC's, are
  // far from the posterior SMC recovers; the same count of samples from the exact posterior
  // would stay within 4 standard errors (the test above).
  double evidence = 0;
  const GaussianMixture posterior = observed_posterior(four_blobs(), 0.5, 1.0, &evidence);
  const MixtureOracleDenoiser model(four_blobs(), vp_path());
  const auto guidance = make_sampler(
      "{type: potential_guidance, steps: 200, spacing: quadratic, potential: {type: gaussian_observation, coordinates: [0], y: [0.5], noise: 1}}");
  const auto runs = seeds(20, [&](std::uint64_t s) { return run_plain(*guidance, model, 1000, s); });
  const MixtureCheck c = check_mixture(runs, posterior);
  CAPTURE(c.weight_z, c.mean_z);
  REQUIRE(c.max_z() > 10.0);
}

// ---- the other potentials ----

TEST_CASE("SMC restricted to a region recovers the components inside it and their weight", "[smc][stat]") {
  // The box x_0 >= 0 holds the two right components whole (5 standard deviations from its
  // edge): the target is them, renormalised, and Z = 0.3 + 0.4.
  const MixtureOracleDenoiser model(four_blobs(), vp_path());
  const GaussianMixture inside({{0.3, {2.0, -2.0}, {0.4, 0.4}}, {0.4, {2.0, 2.0}, {0.4, 0.4}}});
  // softness 0: the indicator at the data only; 0.3: a soft twist on x0_hat on the way (with
  // resampling below ESS 0.9 N, so the twisted weights do select particles).
  const std::string softness = GENERATE(std::string("0.3"), std::string("0"));
  CAPTURE(softness);
  const auto smc = make_sampler("{type: smc, steps: 200, spacing: quadratic, ess_threshold: 0.9, potential: {type: region, "
                                "low: [0, -100], high: [100, 100], softness: " + softness + "}}");
  const auto runs = seeds(20, [&](std::uint64_t s) { return run_smc(*smc, model, 1000, s); });
  require_recovered(runs, inside, 0.012, 0.02);
  require_evidence(runs, std::log(0.7), 0.02);
}

TEST_CASE("SMC with a reward recovers the tilted mixture", "[smc][stat]") {
  // exp(r . x / T) with r = (0.5, 1), T = 2: per component mean + s^2 r / T, weight
  // ∝ w exp(r . mu / T + s^2 |r|^2 / (2 T^2)).
  const GaussianMixture prior = four_blobs();
  const double r[2] = {0.5, 1.0}, temp = 2.0;
  std::vector<MixtureComponent> tilted;
  double z = 0;
  for (const auto& c : prior.components()) {
    const double s2 = c.std[0] * c.std[0];
    const double factor = std::exp((r[0] * c.mean[0] + r[1] * c.mean[1]) / temp + s2 * (r[0] * r[0] + r[1] * r[1]) / (2 * temp * temp));
    tilted.push_back({c.weight * factor, {c.mean[0] + s2 * r[0] / temp, c.mean[1] + s2 * r[1] / temp}, c.std});
    z += c.weight * factor;
  }
  const MixtureOracleDenoiser model(prior, vp_path());
  const auto smc = make_sampler(
      "{type: smc, steps: 200, spacing: quadratic, potential: {type: reward, temperature: 2, reward: {type: linear, weights: [0.5, 1]}}}");
  const auto runs = seeds(20, [&](std::uint64_t s) { return run_smc(*smc, model, 1000, s); });
  require_recovered(runs, GaussianMixture(tilted), 0.01, 0.03);
  require_evidence(runs, std::log(z), 0.02);
}

TEST_CASE("The final weight correction leaves G of the data whatever the potential form", "[smc]") {
  // Without resampling every form moves the particles alike (the same stream); the max and sum
  // forms weigh them on the way by exp of the running max or sum of r(x0_hat) / T, and the final
  // correction divides that out: every form's final weights are exp(r(x0) / T), normalised.
  const MixtureOracleDenoiser model(four_blobs(), vp_path());
  const std::string potential = "potential: {type: reward, temperature: 2, reward: {type: linear, weights: [0.5, 1]}}";
  SampleRequest req;
  req.shape = {200, 2};
  Tensor first;
  bool have_first = false;
  for (const std::string form : {"difference", "max", "sum"}) {
    CAPTURE(form);
    const auto smc = make_sampler("{type: smc, steps: 40, ess_threshold: 0, potential_form: " + form + ", " + potential + "}");
    Rng rng(5);
    const SampleOutput out = smc->sample(model, req, rng);
    const Tensor& x = extra(out, "particles");
    if (!have_first) first = x, have_first = true;
    for (std::size_t i = 0; i < x.size(); ++i) {
      CAPTURE(i, x.data()[i], first.data()[i]);
      REQUIRE(x.data()[i] == first.data()[i]);
    }
    const Tensor& lw = extra(out, "log_weights");
    std::vector<double> expected(200);
    for (std::size_t i = 0; i < 200; ++i) expected[i] = (0.5 * x(i, 0) + x(i, 1)) / 2.0;
    const double norm = smc::log_sum_exp(expected);
    for (std::size_t i = 0; i < 200; ++i) REQUIRE(lw.data()[i] == Approx(expected[i] - norm).margin(2e-3));
  }
}

TEST_CASE("SMC with the exact noisy classifier samples one component", "[smc][stat]") {
  // p(k = 1 | x_t) is the ideal twist: the target is component 1 alone, Z = its weight 0.2.
  const auto path = vp_path();
  const MixtureOracleDenoiser model(four_blobs(), path);
  Models models;
  models.add({"classifier", std::make_shared<OracleClassifier>(four_blobs(), path), true, ""});
  const std::string proposal = GENERATE(std::string("model"), std::string("twisted"));
  CAPTURE(proposal);
  const auto smc = make_sampler("{type: smc, steps: 200, spacing: quadratic, proposal: " + proposal + ", potential: {type: classifier, label: 1}}");
  REQUIRE(smc->required_models() == std::vector<std::string>{"classifier"});
  const auto runs = seeds(20, [&](std::uint64_t s) { return run_smc(*smc, model, 1000, s, &models); });
  const GaussianMixture one({{1.0, {-2.0, 2.0}, {0.4, 0.4}}});
  require_recovered(runs, one, 1.0, 0.005);
  require_evidence(runs, std::log(0.2), 0.02);
}

// ---- acceptance 3: Feynman-Kac correctors ----

TEST_CASE("FKC product of experts recovers the product of two Gaussian mixtures", "[smc][stat][fkc]") {
  // A: two blobs at x = -2, 2, narrow in x, wide in y; B: at y = -2, 2, wide in x. Their
  // product has four components (one per pair), each the product of two Gaussians.
  const GaussianMixture a({{0.3, {-2.0, 0.0}, {0.5, 2.0}}, {0.7, {2.0, 0.0}, {0.5, 2.0}}});
  const GaussianMixture b({{0.4, {0.0, -2.0}, {2.0, 0.5}}, {0.6, {0.0, 2.0}, {2.0, 0.5}}});
  std::vector<MixtureComponent> prod;
  double z = 0;
  for (const auto& ca : a.components())
    for (const auto& cb : b.components()) {
      MixtureComponent c{ca.weight * cb.weight, {0, 0}, {0, 0}};
      for (std::size_t j = 0; j < 2; ++j) {
        const double va = ca.std[j] * ca.std[j], vb = cb.std[j] * cb.std[j], v = 1.0 / (1.0 / va + 1.0 / vb);
        c.weight *= normal_pdf(ca.mean[j], cb.mean[j], va + vb);
        c.mean[j] = v * (ca.mean[j] / va + cb.mean[j] / vb), c.std[j] = std::sqrt(v);
      }
      z += c.weight;
      prod.push_back(c);
    }
  const auto path = vp_path();
  const MixtureOracleDenoiser model(a, path);
  Models models;
  models.add({"expert", std::make_shared<OracleEpsNetwork>(std::make_shared<MixtureOracleDenoiser>(b, path), 999.0), true, ""});
  const auto smc = make_sampler(
      "{type: smc, steps: 400, spacing: quadratic, experts: [{model: model}, {model: expert, preconditioning: eps}]}");
  const auto runs = seeds(20, [&](std::uint64_t s) { return run_smc(*smc, model, 1000, s, &models); });
  require_recovered(runs, GaussianMixture(prod), 0.025, 0.025);
  require_evidence(runs, std::log(z), 0.1);
}

TEST_CASE("FKC annealing recovers the tempered Gaussian mixture", "[smc][stat][fkc]") {
  // p^2 of three well separated components: weights ∝ w^2 prod_j s_j^-1, std s / sqrt(2); the
  // overlap terms are below 1e-20. Z = int p^2 = sum_k w_k^2 prod_j 1 / (2 s_kj sqrt(pi)).
  const GaussianMixture p({{0.5, {-2.0, 0.5}, {0.3, 0.35}}, {0.3, {2.0, 1.5}, {0.35, 0.3}}, {0.2, {0.0, -2.0}, {0.3, 0.3}}});
  const double beta = 2.0;
  std::vector<MixtureComponent> tempered;
  double z = 0;
  for (const auto& c : p.components()) {
    double w = std::pow(c.weight, beta), zk = std::pow(c.weight, beta);
    MixtureComponent t{0, c.mean, {0, 0}};
    for (std::size_t j = 0; j < 2; ++j) {
      w *= std::pow(c.std[j], 1 - beta);
      zk *= std::pow(kTwoPi * c.std[j] * c.std[j], (1 - beta) / 2) / std::sqrt(beta);
      t.std[j] = c.std[j] / std::sqrt(beta);
    }
    t.weight = w, z += zk;
    tempered.push_back(t);
  }
  const MixtureOracleDenoiser model(p, vp_path());
  const auto smc = make_sampler("{type: smc, steps: 200, spacing: quadratic, beta: 2}");
  const auto runs = seeds(20, [&](std::uint64_t s) { return run_smc(*smc, model, 1000, s); });
  require_recovered(runs, GaussianMixture(tempered), 0.025, 0.025);
  require_evidence(runs, std::log(z), 0.1);
}

// ---- the sampler's bookkeeping ----

TEST_CASE("SMC reports its extras and resamples when the ESS falls below the threshold", "[smc]") {
  const MixtureOracleDenoiser model(four_blobs(), vp_path());
  const std::string potential = "potential: {type: gaussian_observation, coordinates: [0], y: [0.2], noise: 0.5}";
  SampleRequest req;
  req.shape = {300, 2};
  for (const double threshold : {0.0, 0.5, 1.0}) {
    CAPTURE(threshold);
    const auto smc = make_sampler("{type: smc, steps: 50, ess_threshold: " + std::to_string(threshold) + ", " + potential + "}");
    Rng rng(7);
    const SampleOutput out = smc->sample(model, req, rng);
    REQUIRE(shape_of(out.x) == Shape{300, 2});
    REQUIRE(shape_of(extra(out, "particles")) == Shape{300, 2});
    const Tensor& lw = extra(out, "log_weights");
    double total = 0;
    for (const float l : lw) total += std::exp(double(l));
    REQUIRE(total == Approx(1.0).epsilon(1e-4));
    const Tensor& ess = extra(out, "ess");
    const Tensor& times = extra(out, "ess_times");
    REQUIRE(ess.size() == 51);
    REQUIRE(times.size() == 51);
    REQUIRE(times.data()[0] == Approx(1.0));
    // Decreasing; the last entry is the data, recorded at t_min as the grid's last time.
    for (std::size_t k = 0; k + 2 < times.size(); ++k) REQUIRE(times.data()[k + 1] < times.data()[k]);
    REQUIRE(times.data()[50] == times.data()[49]);
    for (const float e : ess) REQUIRE((e >= 1.0f - 1e-4f && e <= 300.0f + 1e-3f));
    const Tensor& resampled = extra(out, "resampling_times");
    REQUIRE(extra(out, "log_normalizing_constant").size() == 1);
    // The ESS before each step decides: below threshold * N, resample (ess[k] is at times[k]).
    // (ESS is written as float: a step within 1e-3 of the threshold may go either way.)
    const std::vector<float> at(resampled.begin(), resampled.end());
    for (std::size_t k = 0; k < 50; ++k) {
      CAPTURE(k, ess.data()[k]);
      const bool was = std::find(at.begin(), at.end(), times.data()[k]) != at.end();
      if (ess.data()[k] < threshold * 300 - 1e-3) REQUIRE(was);
      if (ess.data()[k] > threshold * 300 + 1e-3) REQUIRE(!was);
    }
    if (threshold == 0.0) REQUIRE(resampled.size() == 0);
    if (threshold == 1.0) REQUIRE(resampled.size() >= 45);
  }
}

TEST_CASE("SMC without a potential is the plain sampler with equal weights", "[smc]") {
  // The model's own target: every weight stays 1 (ESS = N throughout, log Z = 0). The model is
  // read through a NetworkDenoiser, as runexp reads a trained one (which reuses the tensors of its
  // output: a sampler that moved them away crashed there, never with the oracle).
  const auto path = vp_path();
  const auto oracle = std::make_shared<MixtureOracleDenoiser>(four_blobs(), path);
  const NetworkDenoiser model(std::make_shared<OracleEpsNetwork>(oracle, 999.0), path, make_prediction("eps"));
  const auto smc = make_sampler("{type: smc, steps: 100}");
  SampleRequest req;
  req.shape = {200, 2};
  Rng rng(3);
  const SampleOutput out = smc->sample(model, req, rng);
  for (const float e : extra(out, "ess")) REQUIRE(e == Approx(200.0f));
  REQUIRE(extra(out, "log_normalizing_constant").data()[0] == Approx(0.0).margin(1e-9));
  REQUIRE(extra(out, "resampling_times").size() == 0);
  for (const float v : out.x) REQUIRE(std::isfinite(v));
}

TEST_CASE("SMC refuses settings it cannot honour, naming the key", "[smc]") {
  const auto refuses = [](const std::string& yaml, const std::string& words) {
    CAPTURE(yaml);
    try {
      make_sampler(yaml);
      FAIL("accepted");
    } catch (const ConfigError& e) {
      CAPTURE(e.what());
      REQUIRE(std::string(e.what()).find(words) != std::string::npos);
    }
  };
  refuses("{type: smc, steps: 10, proposal: twisted}", "give a `potential:`");
  refuses("{type: smc, steps: 10, proposal: twisted, potential: {type: region, low: [0, 0], high: [1, 1]}}", "no gradient");
  refuses("{type: smc, steps: 10, potential_form: max, intermediate: false, potential: {type: reward, temperature: 1, "
          "reward: {type: linear, weights: [1, 0]}}}",
          "intermediate: true");
  refuses("{type: smc, steps: 10, resampling: stratified}", "resampling");
  refuses("{type: smc, steps: 10, ess_threshold: 2}", "ess_threshold");
  refuses("{type: smc, steps: 10, potential: {type: gaussian_observation, coordinates: [0, 1], y: [0.2], noise: 1}}",
          "one coordinate per value of y");
  refuses("{type: smc, steps: 10, potential: {type: region, low: [0, 0], high: [1, -1]}}", "above low");
  refuses("{type: smc, steps: 10, potential: {type: reward, temperature: 1, reward: {type: cubic}}}", "unknown reward");
  refuses("{type: smc, steps: 10, potential: {type: nope}}", "unknown potential");
  refuses("{type: smc, steps: 10, beta: 2, experts: [{model: model}]}", "not both");
  refuses("{type: smc, steps: 10, potential: {type: classifier, label: 0, input: blurry}}", "input");
}

// ---- the pieces ----

TEST_CASE("Resampling schemes draw each particle N W_i times on average", "[smc][resampling]") {
  const std::vector<double> w = {0.05, 0.0, 0.3, 0.125, 0.025, 0.5};
  const std::size_t n = 40, draws = 4000;
  using Scheme = smc::ResamplingScheme;
  for (const Scheme scheme : {Scheme::multinomial, Scheme::systematic, Scheme::residual}) {
    CAPTURE(int(scheme));
    Rng rng(11);
    std::vector<double> sum(w.size(), 0.0), sum2(w.size(), 0.0);
    for (std::size_t d = 0; d < draws; ++d) {
      const auto idx = smc::resample(scheme, w, n, rng);
      REQUIRE(idx.size() == n);
      std::vector<double> count(w.size(), 0.0);
      for (const auto i : idx) count.at(i) += 1;
      REQUIRE(count[1] == 0.0);  // weight 0: never drawn
      for (std::size_t i = 0; i < w.size(); ++i) {
        sum[i] += count[i], sum2[i] += count[i] * count[i];
        // Systematic and residual keep at least floor(N W_i) copies; systematic at most ceil.
        if (scheme != Scheme::multinomial) REQUIRE(count[i] >= std::floor(n * w[i]));
        if (scheme == Scheme::systematic) REQUIRE(count[i] <= std::ceil(n * w[i]));
      }
    }
    for (std::size_t i = 0; i < w.size(); ++i) {
      const double mean = sum[i] / draws, var = sum2[i] / draws - mean * mean;
      CAPTURE(i, mean, var);
      // Multinomial counts are binomial(N, W_i); the others have less variance.
      const double binomial_var = n * w[i] * (1 - w[i]);
      REQUIRE(std::abs(mean - n * w[i]) <= 4 * std::sqrt(binomial_var / draws) + 1e-12);
      if (scheme == Scheme::multinomial) REQUIRE(var == Approx(binomial_var).epsilon(0.1));
      else REQUIRE(var <= binomial_var + 1e-12);
    }
  }
}

TEST_CASE("Particle weights: normalised weights and the effective sample size", "[smc]") {
  const std::vector<double> lw = {std::log(1.0), std::log(3.0), -std::numeric_limits<double>::infinity(), std::log(4.0)};
  const auto w = smc::normalized_weights(lw, "test");
  REQUIRE(w[0] == Approx(0.125));
  REQUIRE(w[1] == Approx(0.375));
  REQUIRE(w[2] == 0.0);
  REQUIRE(smc::effective_sample_size(lw) == Approx(64.0 / 26.0));
  REQUIRE(smc::log_mean_exp(lw) == Approx(std::log(2.0)));
  const std::vector<double> none(3, -std::numeric_limits<double>::infinity());
  REQUIRE_THROWS_WITH(smc::normalized_weights(none, "step 3"), Catch::Contains("step 3: every particle has weight 0"));
}

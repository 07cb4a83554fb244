// Guidance (the guidance plugin and the core's wrappers) against closed forms. The data are a
// Gaussian mixture, whose noised marginals p_t(x), class conditionals p_t(x | k) and classifier
// p_t(k | x) are all known (tests/core/gaussian_mixture_oracle.hpp):
//   1. classifier guidance with the exact classifier at scale 1 turns the exact unconditional
//      score into the exact conditional score of the requested component (Dhariwal & Nichol
//      2021, eq. 14: grad log p(x) + grad log p(k | x) = grad log p(x | k)); at scale s it adds
//      s times the gradient, and rows whose condition is null are not guided;
//   2. sampling with it (the probability-flow ODE) draws the requested component: its mean and
//      variance within 4 standard errors;
//   3. classifier-free guidance of the exact conditional and unconditional scores is the score of
//      p_t(x | k)^(1 + w) p_t(x)^(-w) (Ho & Salimans 2022, eq. 6), checked against finite
//      differences of the closed-form log densities, and eps_guided = (1 + w) eps_k - w eps_u;
//      its `scale` convention is w + 1; it refuses an unconditional network;
//   4. the guidance of a trained classifier network is the gradient of its log-softmax (finite
//      differences), and its loss is the cross-entropy (log K for constant logits);
//   5. the metrics against inputs with known answers;
//   6. train.label_dropout: the fraction of dropped rows is p within 4 standard errors, the
//      same rows on a replay and after a resume, none at p = 0, all at p = 1; an unconditional
//      network is refused.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/model/predictions.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/plugin/registries.hpp>
#include <diffusion/run/experiment.hpp>
#include <diffusion/run/train_loop.hpp>

#include "core/analytic_paths.hpp"
#include "core/gaussian_mixture_oracle.hpp"
#include "e2e/scratch_dir.hpp"

using namespace diffusion;
using namespace diffusion::testing;
using Catch::Matchers::WithinAbs;

namespace {

void load_plugins(std::initializer_list<const char*> names) {
  for (const char* p : names) load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_" + p + ".so");
}

/// Three components in 2-D, unequal weights, overlapping at large t.
GaussianMixture three_components() {
  return GaussianMixture({{0.2, {-1.5, 0.0}, {0.3, 0.3}}, {0.5, {1.0, 1.0}, {0.4, 0.25}}, {0.3, {1.0, -1.5}, {0.3, 0.35}}});
}

/// The mixture's exact classifier p_t(k | x): grad log p(k | x) = m_k - sum_j r_j m_j, the
/// component's score minus the marginal's.
class ExactClassifier : public NoisyClassifier {
 public:
  ExactClassifier(GaussianMixture mix, std::shared_ptr<const Path> path) : mix_(std::move(mix)), path_(std::move(path)) {}
  Tensor grad_log_prob(const Tensor& x, const Times& t, const Condition& c) const override {
    const std::size_t n = x.shape()[0], d = mix_.dim();
    Tensor g = Tensor::from_shape(shape_of(x));
    std::vector<double> r, m;
    for (std::size_t i = 0; i < n; ++i) {
      mix_.responsibilities(x.data() + i * d, path_->alpha(t[i]), path_->sigma(t[i]), r, m);
      const std::size_t k = static_cast<std::size_t>(c.labels()[i]);
      for (std::size_t j = 0; j < d; ++j) {
        double score = 0;
        for (std::size_t q = 0; q < r.size(); ++q) score += r[q] * m[q * d + j];
        g.data()[i * d + j] = float(m[k * d + j] - score);
      }
    }
    ++calls;
    return g;
  }
  mutable std::size_t calls = 0;

 private:
  GaussianMixture mix_;
  std::shared_ptr<const Path> path_;
};

/// The exact class-conditional model of the mixture: a row with label k is component k's
/// denoiser, a null row the whole mixture's (what a CFG network learns with label dropout).
class ConditionalOracle : public Denoiser {
 public:
  ConditionalOracle(GaussianMixture mix, std::shared_ptr<const Path> path) : mix_(std::move(mix)), path_(std::move(path)) {}
  const Path& path() const override { return *path_; }
  void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const override {
    const std::size_t n = x.shape()[0], d = mix_.dim();
    out.x0 = Tensor::from_shape(shape_of(x));
    out.eps = Tensor::from_shape(shape_of(x));
    std::vector<double> r, m;
    for (std::size_t i = 0; i < n; ++i) {
      const double a = path_->alpha(t[i]), s = path_->sigma(t[i]);
      mix_.responsibilities(x.data() + i * d, a, s, r, m);
      for (std::size_t j = 0; j < d; ++j) {
        double score = 0;
        if (c.is_null(i))
          for (std::size_t q = 0; q < r.size(); ++q) score += r[q] * m[q * d + j];
        else
          score = m[static_cast<std::size_t>(c.labels()[i]) * d + j];
        out.eps.data()[i * d + j] = float(-s * score);
        out.x0.data()[i * d + j] = float((x.data()[i * d + j] + s * s * score) / a);
      }
    }
  }
  PredictionVar predict_var(const Var&, const Times&, const Condition&) const override {
    throw Error("not needed");
  }
  using Denoiser::predict;

 private:
  GaussianMixture mix_;
  std::shared_ptr<const Path> path_;
};

GaussianMixture component(const GaussianMixture& mix, std::size_t k) {
  auto c = mix.components()[k];
  c.weight = 1.0;
  return GaussianMixture({c});
}

/// Points spread over the mixture's support, and times from nearly clean to nearly pure noise.
Tensor probe_points(std::size_t n, std::uint64_t seed) {
  Rng rng(seed);
  Tensor x = rng.normal({n, 2});
  for (float& v : x) v *= 1.5f;
  return x;
}
const double kTimes[] = {0.05, 0.3, 0.6, 0.9};

}  // namespace

TEST_CASE("guidance: classifier guidance at scale 1 with the exact classifier is the exact conditional score",
          "[guidance][classifier]") {
  const auto path = std::make_shared<CosineVp>();
  const GaussianMixture mix = three_components();
  const auto uncond = std::make_shared<MixtureOracleDenoiser>(mix, path);
  const auto classifier = std::make_shared<ExactClassifier>(mix, path);
  const ClassifierGuidance guided(uncond, classifier, 1.0);
  const std::size_t n = 30;
  const Tensor x = probe_points(n, 7);
  std::vector<int> labels(n);
  for (std::size_t i = 0; i < n; ++i) labels[i] = int(i % 3);
  const Condition c = Condition::from_labels(labels);
  for (const double t : kTimes) {
    const Prediction g = guided.predict(x, t, c);
    const double a = path->alpha(t), s = path->sigma(t);
    for (std::size_t i = 0; i < n; ++i) {
      // Component k's own exact denoiser at the same point.
      const MixtureOracleDenoiser comp(component(mix, std::size_t(labels[i])), path);
      Tensor xi = Tensor::from_shape({1, 2});
      xi(0, 0) = x(i, 0), xi(0, 1) = x(i, 1);
      const Prediction want = comp.predict(xi, t);
      for (std::size_t j = 0; j < 2; ++j) {
        CAPTURE(t, i, j);
        // eps = -sigma score: relative to its size (float sums of responsibilities).
        REQUIRE_THAT(g.eps(i, j), WithinAbs(want.eps(0, j), 1e-5 + 1e-4 * std::abs(want.eps(0, j))));
        REQUIRE_THAT(g.x0(i, j), WithinAbs(want.x0(0, j), 1e-5 + 1e-4 * std::abs(want.x0(0, j)) + 1e-4 * s * s / a));
      }
    }
  }
  REQUIRE(classifier->calls == std::size(kTimes));
  REQUIRE(guided.classifier_nfe() == std::size(kTimes));
}

TEST_CASE("guidance: classifier guidance at scale s adds s sigma_t times the gradient and skips null rows",
          "[guidance][classifier]") {
  const auto path = std::make_shared<CosineVp>();
  const GaussianMixture mix = three_components();
  const auto uncond = std::make_shared<MixtureOracleDenoiser>(mix, path);
  const auto classifier = std::make_shared<ExactClassifier>(mix, path);
  const double scale = 2.5, t = 0.4, a = path->alpha(t), s = path->sigma(t);
  const ClassifierGuidance guided(uncond, classifier, scale);
  const std::size_t n = 6;
  const Tensor x = probe_points(n, 8);
  Condition c = Condition::from_labels({0, 1, 2, 0, 1, 2});
  c.set_null_mask({0, 0, 1, 0, 1, 0});
  const Prediction g = guided.predict(x, t, c);
  const Prediction u = uncond->predict(x, t, c);
  const Tensor grad = classifier->grad_log_prob(x, same_time(n, t), c);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < 2; ++j) {
      CAPTURE(i, j);
      const double ge = c.is_null(i) ? 0.0 : grad(i, j);
      REQUIRE_THAT(g.eps(i, j), WithinAbs(u.eps(i, j) - scale * s * ge, 1e-5));
      REQUIRE_THAT(g.x0(i, j), WithinAbs(u.x0(i, j) + scale * s * s / a * ge, 1e-5));
      // x0 and eps stay consistent on the path.
      REQUIRE_THAT(g.x0(i, j), WithinAbs((x(i, j) - s * g.eps(i, j)) / a, 1e-4));
    }
  SECTION("no labels, no guidance: a clear error") {
    REQUIRE_THROWS_WITH(guided.predict(x, t, Condition()), Catch::Contains("no class labels"));
  }
  SECTION("no differentiable prediction") {
    REQUIRE_THROWS_WITH(guided.predict_var(Var(x), same_time(n, t), c), Catch::Contains("second derivatives"));
  }
}

TEST_CASE("guidance: sampling with the exact classifier at scale 1 draws the requested component",
          "[guidance][classifier][stat]") {
  load_plugins({"score_sde"});
  const auto path = std::make_shared<CosineVp>();
  const GaussianMixture mix = three_components();
  const auto guided = std::make_shared<ClassifierGuidance>(std::make_shared<MixtureOracleDenoiser>(mix, path),
                                                           std::make_shared<ExactClassifier>(mix, path), 1.0);
  BuildContext ctx;
  ctx.data_shape = {2};
  const auto sampler = registries().samplers.create(
      Config::load_string("{type: ode, method: dopri5, rtol: 1.0e-5, atol: 1.0e-5}").root(), ctx);
  const std::size_t k = GENERATE(0, 1, 2);
  const std::size_t n = 1000;
  SampleRequest req;
  req.shape = {n, 2};
  req.condition = Condition::from_labels(std::vector<int>(n, int(k)));
  Rng rng(40 + k);
  const Tensor x = sampler->sample(*guided, req, rng).x;
  CAPTURE(k);
  // Component k alone: its mean and variance within 4 standard errors (the smallest component,
  // weight 0.2, would be missed by far more if the guidance were wrong).
  require_mixture_recovered(x, component(mix, k), /*variances=*/true);
}

TEST_CASE("guidance: classifier-free guidance of exact scores is the score of p(x|k)^(1+w) p(x)^(-w) at every t",
          "[guidance][cfg]") {
  load_plugins({"guidance"});
  const auto path = std::make_shared<CosineVp>();
  const GaussianMixture mix = three_components();
  const auto oracle = std::make_shared<ConditionalOracle>(mix, path);
  const double w = GENERATE(0.0, 1.0, 3.0);
  // Built as a sampler's `guidance:` is, in the w + 1 convention half of the time.
  const std::string yaml = w == 1.0 ? "{type: classifier_free, scale: 2}" : "{type: classifier_free, w: " + std::to_string(w) + "}";
  const auto guidance = registries().guidances.create(Config::load_string(yaml).root(), BuildContext{});
  const auto guided = guidance->guide(oracle, Models());
  const std::size_t n = 12;
  const Tensor x = probe_points(n, 9);
  std::vector<int> labels(n);
  for (std::size_t i = 0; i < n; ++i) labels[i] = int(i % 3);
  const Condition c = Condition::from_labels(labels);
  Condition null = c;
  null.set_null_mask(std::vector<std::uint8_t>(n, 1));
  for (const double t : kTimes) {
    const double a = path->alpha(t), s = path->sigma(t);
    const Prediction g = guided->predict(x, t, c), pc = oracle->predict(x, t, c), pu = oracle->predict(x, t, null);
    for (std::size_t i = 0; i < n; ++i) {
      const GaussianMixture comp = component(mix, std::size_t(labels[i]));
      // log of the tilted density p_t(x | k)^(1 + w) p_t(x)^(-w), up to its constant.
      const auto tilted = [&](double x0, double x1) {
        const float p[2] = {float(x0), float(x1)};
        return (1 + w) * comp.log_density(p, a, s) - w * mix.log_density(p, a, s);
      };
      const double h = 1e-3;
      const double fd[2] = {(tilted(x(i, 0) + h, x(i, 1)) - tilted(x(i, 0) - h, x(i, 1))) / (2 * h),
                            (tilted(x(i, 0), x(i, 1) + h) - tilted(x(i, 0), x(i, 1) - h)) / (2 * h)};
      for (std::size_t j = 0; j < 2; ++j) {
        CAPTURE(w, t, i, j, fd[j]);
        REQUIRE_THAT(g.eps(i, j), WithinAbs((1 + w) * pc.eps(i, j) - w * pu.eps(i, j), 1e-5 * (1 + 2 * w)));
        REQUIRE_THAT(-g.eps(i, j) / s, WithinAbs(fd[j], 2e-3 * (1 + std::abs(fd[j]))));
      }
    }
  }
}

TEST_CASE("guidance: classifier_free reads w or scale = w + 1 once and refuses an unconditional model",
          "[guidance][cfg]") {
  load_plugins({"guidance", "mlp"});
  const auto make = [](const std::string& yaml) {
    return registries().guidances.create(Config::load_string(yaml).root(), BuildContext{});
  };
  const auto attrs = make("{type: classifier_free, scale: 3.5}")->attributes();
  REQUIRE(attrs == std::vector<std::pair<std::string, double>>{{"guidance_w", 2.5}, {"guidance_scale", 3.5}});
  REQUIRE_THROWS_WITH(make("{type: classifier_free, w: 1, scale: 2}"), Catch::Contains("once"));
  REQUIRE_THROWS_WITH(make("{type: classifier_free}"), Catch::Contains("once"));
  REQUIRE_THROWS_WITH(make("{type: classifier_free, scale: -0.5}"), Catch::Contains("scale >= 0"));
  REQUIRE_THROWS_WITH(make("{type: classifier_free, w: 1, weight: 2}"), Catch::Contains("weight"));
  Rng rng(1);
  BuildContext ctx{{2}, 3, &rng};
  const auto uncond = registries().networks.create(Config::load_string("{type: mlp, hidden: [8]}").root(), ctx);
  const auto cond = registries().networks.create(Config::load_string("{type: mlp, hidden: [8], class_conditional: true}").root(), ctx);
  const auto cfg = make("{type: classifier_free, w: 1}");
  REQUIRE_THROWS_WITH(cfg->check(*uncond, 3), Catch::Contains("class-conditional"));
  REQUIRE_NOTHROW(cfg->check(*cond, 3));
}

namespace {

/// log p(y_i | x_i, t_i) of a classifier network as the guidance plugin reads it on the cosine
/// path (alpha^2 + sigma^2 = 1, so c_in = 1; network time t), in double from the float logits.
double network_log_prob(Network& net, const float* x, double t, int label) {
  NoGradScope none;
  Tensor xi = Tensor::from_shape({1, 2});
  xi(0, 0) = x[0], xi(0, 1) = x[1];
  Tensor tn = Tensor::from_shape({1});
  tn(0) = float(t);
  const Tensor logits = net.forward(Var(xi), tn, Condition()).value();
  double top = -1e300, z = 0;
  for (std::size_t k = 0; k < logits.shape()[1]; ++k) top = std::max(top, double(logits(0, k)));
  for (std::size_t k = 0; k < logits.shape()[1]; ++k) z += std::exp(double(logits(0, k)) - top);
  return double(logits(0, std::size_t(label))) - top - std::log(z);
}

}  // namespace

TEST_CASE("guidance: the classifier guidance of a network is the gradient of its log-softmax",
          "[guidance][classifier][grad]") {
  load_plugins({"guidance", "mlp"});
  const auto path = std::make_shared<CosineVp>();
  Rng init(5);
  BuildContext ctx{{2}, 3, &init};
  const auto net = registries().networks.create(
      Config::load_string("{type: mlp, hidden: [32, 32], activation: tanh, output: classes, "
                          "time_embedding: {type: fourier, dim: 8, scale: 1}}").root(), ctx);
  Models models;
  models.add({"judge", net, true, ""});
  const auto guidance = registries().guidances.create(
      Config::load_string("{type: classifier, model: judge, scale: 2}").root(), BuildContext{});
  REQUIRE(guidance->required_models() == std::vector<std::string>{"judge"});
  const auto inner = std::make_shared<MixtureOracleDenoiser>(three_components(), path);
  const auto guided = guidance->guide(inner, models);
  const std::size_t n = 8;
  const Tensor x = probe_points(n, 11);
  const Condition c = Condition::from_labels({0, 1, 2, 0, 1, 2, 2, 1});
  const double t = 0.35, a = path->alpha(t), s = path->sigma(t);
  const Prediction g = guided->predict(x, t, c), u = inner->predict(x, t, c);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < 2; ++j) {
      const double h = 1e-2;
      float xp[2] = {x(i, 0), x(i, 1)}, xm[2] = {x(i, 0), x(i, 1)};
      xp[j] += float(h), xm[j] -= float(h);
      const double fd = (network_log_prob(*net, xp, t, c.labels()[i]) - network_log_prob(*net, xm, t, c.labels()[i])) /
                        double(xp[j] - xm[j]);
      CAPTURE(i, j, fd);
      REQUIRE_THAT((u.eps(i, j) - g.eps(i, j)) / (2 * s), WithinAbs(fd, 2e-3 + 1e-2 * std::abs(fd)));
      REQUIRE_THAT((g.x0(i, j) - u.x0(i, j)) * a / (2 * s * s), WithinAbs(fd, 2e-3 + 1e-2 * std::abs(fd)));
    }
  REQUIRE(guidance->nfe(*guided) == std::vector<std::pair<std::string, std::size_t>>{{"judge", 1}});
  // The weights are constants of the guidance's graph.
  for (const auto& [name, p] : net->named_parameters()) {
    CAPTURE(name);
    REQUIRE_FALSE(p.has_grad());
  }
}

namespace {

/// Logits that do not depend on x: the cross-entropy is exactly log K.
class ConstantLogits : public Network {
 public:
  explicit ConstantLogits(std::size_t k) : k_(k) {}
  Var forward(const Var& x, const Tensor& t, const Condition&) override {
    times = t;
    inputs = x.value();
    return Var(zeros({x.shape()[0], k_}));
  }
  Tensor times, inputs;

 private:
  std::size_t k_;
};

}  // namespace

TEST_CASE("guidance: the noisy_classifier loss is the cross-entropy at x_t on the path", "[guidance][loss]") {
  load_plugins({"guidance"});
  const auto loss = registries().losses.create(Config::load_string("{type: noisy_classifier}").root(), BuildContext{});
  const auto path = std::make_shared<VeLinear>();  // alpha 1, sigma t: c_in = 1 / sqrt(1 + t^2)
  ConstantLogits net(5);
  TrainContext ctx;
  ctx.path = path.get();
  Rng rng(3);
  const std::size_t n = 64;
  const Tensor x0 = zeros({n, 2});  // zeros: x_t = sigma z, so c_in x_t = t z / sqrt(1 + t^2)
  std::vector<int> labels(n);
  for (std::size_t i = 0; i < n; ++i) labels[i] = int(i % 5);
  const LossValues v = loss->loss(net, x0, Condition::from_labels(labels), ctx, rng);
  REQUIRE(v.per_sample.shape() == Shape{n});
  double spread = 0;
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE_THAT(v.per_sample.value()(i), WithinAbs(std::log(5.0), 1e-5));
    const double t = v.times(i);
    REQUIRE(t >= path->t_min());
    REQUIRE(t <= path->t_max());
    REQUIRE(net.times(i) == Approx(t));  // the network time of a continuous path is t
    // The input is unit-scaled noise: |c_in x_t|^2 = t^2 |z|^2 / (1 + t^2), chi-square 2 scaled.
    spread += (double(net.inputs(i, 0)) * net.inputs(i, 0) + double(net.inputs(i, 1)) * net.inputs(i, 1)) * (1 + t * t) /
              (t * t) / double(n);
  }
  REQUIRE_THAT(spread, WithinAbs(2.0, 4 * 2.0 / std::sqrt(double(n))));  // E chi2_2 = 2, sd 2
  Condition dropped = Condition::from_labels(labels);
  dropped.set_null_mask(std::vector<std::uint8_t>(n, 1));
  REQUIRE_THROWS_WITH(loss->loss(net, x0, dropped, ctx, rng), Catch::Contains("label_dropout"));
  REQUIRE_THROWS_WITH(loss->loss(net, x0, Condition(), ctx, rng), Catch::Contains("no labels"));
}

namespace {

std::shared_ptr<Metric> make_metric(const std::string& yaml) {
  load_plugins({"guidance"});
  return registries().metrics.create(Config::load_string(yaml).root(), BuildContext{});
}

/// `per` points of each class k around (3k, 0), with their labels.
Tensor class_points(std::size_t classes, std::size_t per, double jitter, std::vector<int>& labels, std::uint64_t seed) {
  Rng rng(seed);
  Tensor x = Tensor::from_shape({classes * per, 2});
  labels.clear();
  for (std::size_t k = 0; k < classes; ++k)
    for (std::size_t i = 0; i < per; ++i) {
      x(k * per + i, 0) = float(3.0 * double(k) + jitter * rng.normal());
      x(k * per + i, 1) = float(jitter * rng.normal());
      labels.push_back(int(k));
    }
  return x;
}

}  // namespace

TEST_CASE("guidance metrics: class_fraction counts the samples nearest their requested class", "[guidance][metric]") {
  std::vector<int> ref_labels, labels;
  const Tensor ref = class_points(3, 50, 0.2, ref_labels, 1);
  Tensor x = class_points(3, 20, 0.2, labels, 2);
  // Ask for the wrong class for 6 of the 20 samples of class 0 and 2 of class 2.
  for (std::size_t i = 0; i < 6; ++i) labels[i] = 1;
  labels[40] = 0, labels[41] = 1;
  const std::string method = GENERATE(std::string("nearest_mean"), std::string("nearest_neighbour"));
  const auto m = make_metric("{type: class_fraction, classify: " + method + "}");
  REQUIRE(m->needs_labels());
  Rng rng(0);
  const MetricValue v = m->compute_labelled(x, labels, ref, ref_labels, rng);
  REQUIRE(v.value == Approx(52.0 / 60.0));
  // Per requested class: class 0 asked 15 times (14 right: sample 40 was of class 2), class 1
  // 27 times (20 right), class 2 18 times (all right).
  const std::vector<std::pair<std::string, double>> want{
      {"class_0", 14.0 / 15.0}, {"class_1", 20.0 / 27.0}, {"class_2", 1.0}};
  REQUIRE(v.figures.size() == want.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    REQUIRE(v.figures[k].first == want[k].first);
    REQUIRE(v.figures[k].second == Approx(want[k].second));
  }
  REQUIRE_THROWS_WITH(m->compute(x, ref, rng), Catch::Contains("labels"));
  REQUIRE_THROWS_WITH(m->compute_labelled(x, std::vector<int>(3, 0), ref, ref_labels, rng), Catch::Contains("3 labels"));
}

TEST_CASE("guidance metrics: class_w2 is the exact W2 of each class and their mean", "[guidance][metric]") {
  std::vector<int> ref_labels, labels;
  const Tensor ref = class_points(3, 40, 0.3, ref_labels, 3);
  // The samples: each class's reference rows shifted by its own vector (W2 of a translated set
  // is the translation's length), in another order, with 10 extra rows of class 1 that the
  // comparison leaves out (it takes the first min of the two counts).
  const double shift[3][2] = {{0.1, 0.0}, {0.0, -0.25}, {0.3, 0.4}};
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < 120; ++i) order.push_back((i * 7) % 120);
  Tensor x = Tensor::from_shape({130, 2});
  for (std::size_t r = 0; r < 120; ++r) {
    const std::size_t i = order[r];
    const int k = ref_labels[i];
    x(r, 0) = ref(i, 0) + float(shift[k][0]), x(r, 1) = ref(i, 1) + float(shift[k][1]);
    labels.push_back(k);
  }
  for (std::size_t r = 120; r < 130; ++r) x(r, 0) = 50.0f, x(r, 1) = 50.0f, labels.push_back(1);
  const auto m = make_metric("{type: class_w2}");
  Rng rng(0);
  const MetricValue v = m->compute_labelled(x, labels, ref, ref_labels, rng);
  const double w[3] = {0.1, 0.25, 0.5};
  REQUIRE(v.value == Approx((w[0] + w[1] + w[2]) / 3).epsilon(1e-5));
  REQUIRE(v.figures.size() == 6);
  for (std::size_t k = 0; k < 3; ++k) {
    REQUIRE(v.figures[2 * k].first == "class_" + std::to_string(k));
    REQUIRE(v.figures[2 * k].second == Approx(w[k]).epsilon(1e-5));
    REQUIRE(v.figures[2 * k + 1].second == 40.0);
  }
}

namespace {

/// Records the condition every training batch reaches the loss with.
struct BatchLog {
  std::mutex mutex;
  std::vector<Condition> batches;
};
BatchLog& batch_log() {
  static BatchLog log;
  return log;
}

class RecordingLoss : public Loss {
 public:
  std::shared_ptr<const Preconditioning> preconditioning() const override { return make_prediction("eps"); }
  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext&, Rng&) const override {
    {
      std::lock_guard<std::mutex> lock(batch_log().mutex);
      batch_log().batches.push_back(c);
    }
    const std::size_t n = x0.shape()[0];
    const Var f = net.forward(Var(x0), zeros({n}), c);
    return {sum(square(f), {1}), zeros({n})};
  }
};

Experiment compose_dropout_experiment(const std::string& network, double dropout, std::int64_t steps) {
  load_plugins({"toy_data", "mlp", "ddpm"});
  if (!registries().losses.contains("test_recording_loss"))
    registries().losses.add("test_recording_loss",
                            [](const ConfigNode&, const BuildContext&) { return std::make_shared<RecordingLoss>(); });
  const Config c = Config::load_string(
      "name: dropout\nseed: 4\n"
      "dataset: {type: eight_gaussians}\n"
      "network: " + network + "\n"
      "sde: {type: ddpm, timesteps: 100}\n"
      "loss: test_recording_loss\n"
      "train: {steps: " + std::to_string(steps) + ", batch_size: 100, label_dropout: " + std::to_string(dropout) +
      ", optimizer: {type: adam, lr: 1.0e-3}}\n");
  Experiment ex = compose_experiment(c);
  ex.codec->fit(*ex.dataset, Rng(ex.seed).split("normalize"));
  return ex;
}

/// The conditions of every training batch of a run of `steps` steps.
std::vector<Condition> train_and_record(const std::string& network, double dropout, std::int64_t steps = 40) {
  Experiment ex = compose_dropout_experiment(network, dropout, steps);
  batch_log().batches.clear();
  TrainLoop loop(ex, Rng(ex.seed));
  while (loop.steps_done() < steps) loop.step();
  return batch_log().batches;
}

const char* const kConditional = "{type: mlp, hidden: [8], class_conditional: true}";

}  // namespace

TEST_CASE("guidance: train.label_dropout drops each row's label with probability p", "[guidance][train]") {
  const double p = 0.25;
  const std::vector<Condition> run = train_and_record(kConditional, p);
  REQUIRE(run.size() == 40);
  std::size_t dropped = 0, rows = 0;
  for (const Condition& c : run) {
    REQUIRE(c.has_labels());  // the labels stay: the network reads its null row for dropped ones
    REQUIRE(c.has_null_mask());
    REQUIRE(c.rows() == 100);
    for (std::size_t i = 0; i < c.rows(); ++i) dropped += c.is_null(i), ++rows;
  }
  const double frac = double(dropped) / double(rows);
  CAPTURE(frac);
  REQUIRE_THAT(frac, WithinAbs(p, 4 * std::sqrt(p * (1 - p) / double(rows))));
  // The mask is a function of the seed and the step: a replay drops the same rows, and so does a
  // run resumed from a checkpoint at step 15 (the mask's stream is not checkpointed: it need not be).
  const std::vector<Condition> again = train_and_record(kConditional, p);
  for (std::size_t s = 0; s < run.size(); ++s) REQUIRE(again[s].null_mask() == run[s].null_mask());
  ScratchDir dir("dropout-resume");
  std::string ckpt;
  {
    Experiment ex = compose_dropout_experiment(kConditional, p, 40);
    TrainLoop loop(ex, Rng(ex.seed));
    while (loop.steps_done() < 15) loop.step();
    ckpt = loop.checkpoint(dir.path().string(), 1);
  }
  Experiment ex = compose_dropout_experiment(kConditional, p, 40);
  TrainLoop loop(ex, Rng(ex.seed));
  loop.restore(ckpt);
  batch_log().batches.clear();
  while (loop.steps_done() < 40) loop.step();
  REQUIRE(batch_log().batches.size() == 25);
  for (std::size_t s = 0; s < 25; ++s) {
    CAPTURE(s);
    REQUIRE(batch_log().batches[s].labels() == run[15 + s].labels());
    REQUIRE(batch_log().batches[s].null_mask() == run[15 + s].null_mask());
  }
}

TEST_CASE("guidance: label_dropout 0 leaves batches unmasked and 1 drops every row", "[guidance][train]") {
  for (const Condition& c : train_and_record(kConditional, 0.0, 5)) {
    REQUIRE(c.has_labels());
    REQUIRE_FALSE(c.has_null_mask());
  }
  for (const Condition& c : train_and_record(kConditional, 1.0, 5))
    REQUIRE(c.null_mask() == std::vector<std::uint8_t>(100, 1));
  REQUIRE_THROWS_WITH(train_and_record("{type: mlp, hidden: [8]}", 0.2, 1),
                      Catch::Contains("label_dropout") && Catch::Contains("class-conditional"));
}

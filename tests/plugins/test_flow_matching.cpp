// The flow matching plugin (Lipman et al. 2023; Liu et al. 2023; Tong et al. 2024):
// 1. the `linear` (with and without sigma_min) and `cosine` paths against their closed forms,
//    their derivatives against central differences, the conditional velocity (the velocity
//    preconditioning's target) against d x_t / dt, and x_t's marginal for Gaussian data;
// 2. the minibatch-OT coupling against brute force over all permutations and, on 512 rows, the
//    generic assignment solver's dual certificate; prepare_batch plans the whole block and the
//    shards, given the sliced condition, regress on their rows' partners in that plan;
// 3. the cfm loss on hand-computed cases (with both couplings);
// 4. the shared `ode` sampler on the exact velocity field of a Gaussian-to-Gaussian flow
//    (dopri5 transports the marginals; one Euler step of the independent coupling collapses
//    every sample onto the target's mean, as the closed form says);
// 5. reflow's couplings of that exact flow are the closed-form monotone map, so the straight
//    field of that map has zero reflow loss;
// 6. a short OT-CFM training from one Gaussian to another whose single Euler step transports.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/metrics/assignment.hpp>
#include <diffusion/model/denoising_batch.hpp>
#include <diffusion/model/predictions.hpp>
#include <diffusion/optim/optim.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/plugin/registries.hpp>

using namespace diffusion;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

constexpr double kPi = 3.14159265358979323846;

void load_plugins() {
  for (const char* p : {"flow_matching", "score_sde", "mlp"})
    load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_" + p + ".so");
}

template <class R>
auto create(R& reg, const std::string& yaml) {
  load_plugins();
  BuildContext ctx;
  ctx.data_shape = {2};
  return reg.create(Config::load_string(yaml).root(), ctx);
}

std::shared_ptr<Path> make_path(const std::string& yaml) { return create(registries().paths, yaml); }

/// N(mean, sd^2 I) in 2-D, as a source (a stand-in for a data-set source: start() gives
/// sigma(t_max) z = z on the flow paths).
class GaussianSource : public Source {
 public:
  GaussianSource(double mean, double sd) : mean_(mean), sd_(sd) {}
  Tensor sample(const Shape& shape, Rng& rng, PriorDraw) const override {
    Tensor z = Tensor::from_shape(shape);
    for (float& v : z) v = float(mean_ + sd_ * rng.normal());
    return z;
  }
  std::string name() const override { return "gaussian"; }

 private:
  double mean_, sd_;
};

/// Always the same rows: a source for hand-computed losses.
class FixedSource : public Source {
 public:
  explicit FixedSource(Tensor z) : z_(std::move(z)) {}
  Tensor sample(const Shape& shape, Rng&, PriorDraw) const override {
    REQUIRE(shape == shape_of(z_));
    return z_;
  }
  std::string name() const override { return "fixed"; }

 private:
  Tensor z_;
};

/// F = a x + b, elementwise (a = 0: a constant network).
class AffineNet : public Network {
 public:
  AffineNet(float a, float b) : a_(a), b_(b) {}
  Var forward(const Var& x, const Tensor&, const Condition&) override {
    Tensor out = x.value();
    for (float& v : out) v = a_ * v + b_;
    return Var(out);
  }

 private:
  float a_, b_;
};

// The Gaussian-to-Gaussian flow on the linear path (sigma_min = 0), per coordinate: data
// x0 ~ N(kMu, kS^2), source z ~ N(kM, kR^2), independent. x_t ~ N(m(t), v(t)) with
// m = (1 - t) kMu + t kM and v = (1 - t)^2 kS^2 + t^2 kR^2, and the marginal velocity
// E[z - x0 | x_t] = m' + (v' / 2v) (x - m) (jointly Gaussian regression); its flow maps the
// source onto the data by the monotone (optimal) map T(z) = kMu + (kS / kR)(z - kM).
constexpr double kMu = 1.5, kS = 0.5, kM = -1.0, kR = 2.0;

double exact_velocity(double x, double t) {
  const double m = (1 - t) * kMu + t * kM, v = (1 - t) * (1 - t) * kS * kS + t * t * kR * kR;
  const double dv = -2 * (1 - t) * kS * kS + 2 * t * kR * kR;
  return (kM - kMu) + dv / (2 * v) * (x - m);
}

/// The exact velocity field as a network (its time input is the path's 999 t).
class ExactFlowNet : public Network {
 public:
  Var forward(const Var& x, const Tensor& c_noise, const Condition&) override {
    Tensor out = x.value();
    const std::size_t n = out.shape()[0], d = out.size() / n;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < d; ++j) out.data()[i * d + j] = float(exact_velocity(out.data()[i * d + j], c_noise(i) / 999.0));
    return Var(out);
  }
};

struct Moments {
  double mean, var;
};

/// Mean and variance of every value of x.
Moments moments(const Tensor& x) {
  double s = 0, s2 = 0;
  for (const float v : x) s += v;
  const double m = s / double(x.size());
  for (const float v : x) s2 += (v - m) * (v - m);
  return {m, s2 / double(x.size() - 1)};
}

double sq_dist(const float* a, const float* b, std::size_t d) {
  double s = 0;
  for (std::size_t j = 0; j < d; ++j) s += (double(a[j]) - b[j]) * (double(a[j]) - b[j]);
  return s;
}

}  // namespace

TEST_CASE("flow matching paths follow their closed forms", "[flow_matching][path]") {
  const std::string yaml = GENERATE(std::string("{type: linear}"), std::string("{type: linear, sigma_min: 0.1}"),
                                    std::string("{type: cosine}"));
  CAPTURE(yaml);
  const auto path = make_path(yaml);
  const bool cosine = yaml == "{type: cosine}";
  const double smin = yaml.find("0.1") != std::string::npos ? 0.1 : 0.0;
  REQUIRE(path->t_min() == 0.0);
  REQUIRE(path->t_max() == 1.0);
  for (const double t : {0.0, 0.01, 0.25, 0.5, 0.8, 1.0}) {
    CAPTURE(t);
    const double a = cosine ? std::cos(kPi * t / 2) : 1 - t;
    const double s = cosine ? std::sin(kPi * t / 2) : smin + (1 - smin) * t;
    REQUIRE_THAT(path->alpha(t), WithinAbs(a, 1e-15));
    REQUIRE_THAT(path->sigma(t), WithinAbs(s, 1e-15));
    if (cosine) REQUIRE_THAT(a * a + s * s, WithinAbs(1.0, 1e-15));  // variance preserving
    // Central differences (one-sided at the ends); error O(h^2).
    const double h = 1e-5, lo = std::max(0.0, t - h), hi = std::min(1.0, t + h);
    REQUIRE_THAT(path->alpha_deriv(t), WithinAbs((path->alpha(hi) - path->alpha(lo)) / (hi - lo), 1e-4));
    REQUIRE_THAT(path->sigma_deriv(t), WithinAbs((path->sigma(hi) - path->sigma(lo)) / (hi - lo), 1e-4));
    if (cosine && t > 0 && t < 1) REQUIRE_THAT(path->time_at_log_snr(path->log_snr(t)), WithinAbs(t, 1e-12));
  }

  // The conditional velocity the loss regresses on is d x_t / dt of x_t = alpha x0 + sigma z:
  // on the linear path (1 - sigma_min) z - x0 (Lipman et al. eq. 23 in the toolkit's time).
  const auto velocity = make_prediction("velocity");
  Tensor x0 = Tensor::from_shape({1, 2}), z = Tensor::from_shape({1, 2}), t = Tensor::from_shape({1});
  x0(0, 0) = 0.7f, x0(0, 1) = -1.2f, z(0, 0) = 0.3f, z(0, 1) = 2.0f, t(0) = 0.375f;
  const DenoisingBatch b = denoising_batch(*path, *velocity, x0, z, t);
  for (std::size_t j = 0; j < 2; ++j) {
    const double h = 1e-6, tt = 0.375;
    const auto xt = [&](double u) { return path->alpha(u) * x0(0, j) + path->sigma(u) * z(0, j); };
    REQUIRE_THAT(b.input(0, j), WithinAbs(xt(tt), 1e-6));
    REQUIRE_THAT(b.target(0, j), WithinAbs((xt(tt + h) - xt(tt - h)) / (2 * h), 1e-5));
    if (!cosine) REQUIRE_THAT(b.target(0, j), WithinAbs((1 - smin) * z(0, j) - x0(0, j), 1e-6));
  }
  REQUIRE_THAT(b.c_noise(0), WithinRel(999.0 * 0.375, 1e-6));

  // x_t's marginal for Gaussian data N(kMu, kS^2) and a standard Gaussian source:
  // N(alpha kMu, alpha^2 kS^2 + sigma^2); mean and variance within 4 standard errors.
  Rng rng(7);
  const std::size_t n = 20000;
  Tensor data = Tensor::from_shape({n, 1}), noise = Tensor::from_shape({n, 1}), times = full({n}, 0.6f);
  for (std::size_t i = 0; i < n; ++i) data(i, 0) = float(kMu + kS * rng.normal()), noise(i, 0) = rng.normal();
  const Moments m = moments(denoising_batch(*path, *velocity, data, noise, times).input);
  const double a = path->alpha(0.6), s = path->sigma(0.6), var = a * a * kS * kS + s * s;
  REQUIRE_THAT(m.mean, WithinAbs(a * kMu, 4 * std::sqrt(var / n)));
  REQUIRE_THAT(m.var, WithinAbs(var, 4 * var * std::sqrt(2.0 / (n - 1))));
}

namespace {

/// The least total squared distance between rows [begin, begin + m) of x0 and of z over all
/// m! pairings.
double brute_force_ot(const Tensor& x0, const Tensor& z, std::size_t begin, std::size_t m) {
  std::vector<std::size_t> p(m);
  std::iota(p.begin(), p.end(), begin);
  double best = INFINITY;
  do {
    double c = 0;
    for (std::size_t i = 0; i < m; ++i) c += sq_dist(&x0(begin + i, 0), &z(p[i], 0), 2);
    best = std::min(best, c);
  } while (std::next_permutation(p.begin(), p.end()));
  return best;
}

/// The cfm loss's per-sample values with F = 0 on the linear path: |u|^2 = |z_paired - x0|^2,
/// the squared distance of each pair the coupling made, whatever the time.
Tensor pair_costs(const std::string& yaml, const Tensor& x0, const Tensor& z) {
  const auto path = make_path("{type: linear}");
  const FixedSource source(z);
  TrainContext ctx;
  ctx.path = path.get();
  ctx.source = &source;
  AffineNet zero(0, 0);
  Rng rng(1);
  return create(registries().losses, yaml)->loss(zero, x0, Condition(), ctx, rng).per_sample.value();
}

double total(const Tensor& t, std::size_t begin, std::size_t m) {
  double s = 0;
  for (std::size_t i = begin; i < begin + m; ++i) s += t(i);
  return s;
}

}  // namespace

TEST_CASE("minibatch OT coupling is the optimal permutation by brute force", "[flow_matching][coupling]") {
  Rng rng(11);
  for (std::size_t n = 1; n <= 7; ++n) {
    for (int trial = 0; trial < 4; ++trial) {
      CAPTURE(n, trial);
      Tensor x0 = rng.normal({n, 2}), z = rng.normal({n, 2}, 0.5f, 1.5f);
      const double best = brute_force_ot(x0, z, 0, n);
      const double cost = total(pair_costs("{type: cfm, coupling: minibatch_ot}", x0, z), 0, n);
      // Float per-sample values: relative rounding about 1e-7 per value.
      REQUIRE_THAT(cost, WithinAbs(best, 1e-5 * (1 + best)));
      // Independent: the rows as drawn.
      double drawn = 0;
      for (std::size_t i = 0; i < n; ++i) drawn += sq_dist(&x0(i, 0), &z(i, 0), 2);
      REQUIRE_THAT(total(pair_costs("{type: cfm}", x0, z), 0, n), WithinAbs(drawn, 1e-5 * (1 + drawn)));
    }
  }
}

TEST_CASE("cfm prepare_batch plans the whole block and shards regress on their rows' partners",
          "[flow_matching][coupling]") {
  const auto path = make_path("{type: linear}");
  const auto loss = create(registries().losses, "{type: cfm, coupling: minibatch_ot}");
  AffineNet zero(0, 0);
  Rng rng(17);
  // Two clusters, each shard holding data near one cluster and source draws near the other:
  // planned per shard every pair crosses (cost ~ 4 x 4 x 100), planned over the block the data
  // rows take the source draws of their own cluster.
  const std::size_t n = 8, half = 4;
  Tensor x0 = rng.normal({n, 2}, 0.0f, 0.3f), z = rng.normal({n, 2}, 0.0f, 0.3f);
  for (std::size_t i = 0; i < n; ++i) x0(i, 0) += i < half ? -5.0f : 5.0f, z(i, 0) += i < half ? 5.0f : -5.0f;
  const FixedSource source(z);
  TrainContext ctx;
  ctx.path = path.get();
  ctx.source = &source;
  Tensor block = x0;
  Condition c;
  loss->prepare_batch(block, c, ctx, rng);
  REQUIRE(std::equal(block.begin(), block.end(), x0.begin()));  // the data rows are kept in order
  REQUIRE(c.has("cfm_source"));
  REQUIRE(c.rows() == n);
  // The plan over the block is the brute-force optimum over all 8! pairings, and a permutation
  // of the source draws (each used once).
  const Tensor& paired = c.tensor("cfm_source");
  double planned = 0;
  std::vector<std::size_t> used;
  for (std::size_t i = 0; i < n; ++i) {
    planned += sq_dist(&x0(i, 0), &paired(i, 0), 2);
    for (std::size_t j = 0; j < n; ++j)
      if (paired(i, 0) == z(j, 0) && paired(i, 1) == z(j, 1)) used.push_back(j);
  }
  std::sort(used.begin(), used.end());
  std::vector<std::size_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  REQUIRE(used == all);
  const double best = brute_force_ot(x0, z, 0, n);
  REQUIRE_THAT(planned, WithinAbs(best, 1e-5 * (1 + best)));
  // Each shard (the condition sliced with its rows) regresses on its rows' partners in the
  // block's plan: with F = 0 the per-sample value is |z_paired - x0|^2 whatever the time, so the
  // two shards' values add up to the block's optimum, far below the per-shard optima.
  double shards = 0;
  for (std::size_t s = 0; s < 2; ++s) {
    Tensor xs = Tensor::from_shape({half, 2});
    std::copy(x0.data() + s * half * 2, x0.data() + (s + 1) * half * 2, xs.data());
    const Tensor v = loss->loss(zero, xs, c.slice(s * half, (s + 1) * half), ctx, rng).per_sample.value();
    for (std::size_t i = 0; i < half; ++i) {
      REQUIRE_THAT(v(i), WithinAbs(sq_dist(&x0(s * half + i, 0), &paired(s * half + i, 0), 2), 1e-4));
      shards += v(i);
    }
  }
  REQUIRE_THAT(shards, WithinAbs(best, 1e-4 * (1 + best)));
  REQUIRE(brute_force_ot(x0, z, 0, half) + brute_force_ot(x0, z, half, half) > 10 * best);
  // Independent coupling: prepare_batch leaves batch and condition alone.
  Condition none;
  create(registries().losses, "{type: cfm}")->prepare_batch(block, none, ctx, rng);
  REQUIRE(none.empty());
}

TEST_CASE("minibatch OT plan over a large block is optimal by its dual certificate", "[flow_matching][coupling]") {
  // 512 rows: the plugin's plan against the generic solver on the explicit cost matrix (a
  // different code path: no centring, no price extrapolation), whose potentials certify it.
  Rng rng(23);
  const std::size_t n = 512;
  const Tensor x0 = rng.normal({n, 2}), z = rng.normal({n, 2}, 1.0f, 2.0f);
  std::vector<double> cost(n * n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) cost[i * n + j] = sq_dist(&x0(i, 0), &z(j, 0), 2);
  const Assignment ref = solve_assignment(cost, n);
  double dual = 0;
  for (std::size_t i = 0; i < n; ++i) dual += ref.row_potential[i] + ref.col_potential[i];
  REQUIRE_THAT(dual, WithinAbs(ref.cost, 1e-9 * ref.cost));
  // The cfm loss's plan of the block (prepare_batch with these source draws).
  const auto path = make_path("{type: linear}");
  const FixedSource source(z);
  TrainContext ctx;
  ctx.path = path.get();
  ctx.source = &source;
  Tensor block = x0;
  Condition c;
  create(registries().losses, "{type: cfm, coupling: minibatch_ot}")->prepare_batch(block, c, ctx, rng);
  const Tensor& paired = c.tensor("cfm_source");
  double planned = 0;
  for (std::size_t i = 0; i < n; ++i) planned += sq_dist(&x0(i, 0), &paired(i, 0), 2);
  // Costs in double from float coordinates: equal to the optimum up to summation rounding.
  REQUIRE_THAT(planned, WithinAbs(dual, 1e-9 * dual));
  // Not trivially so: the rows as drawn cost far more.
  double drawn = 0;
  for (std::size_t i = 0; i < n; ++i) drawn += cost[i * n + i];
  REQUIRE(drawn > 1.5 * dual);
}

TEST_CASE("cfm loss matches hand-computed values", "[flow_matching][loss]") {
  const auto path = make_path("{type: linear}");
  // One row, x0 = (1, 2), z = (3, -1), network F = x_t: x_t = (1 - t) x0 + t z, u = z - x0, so
  // per sample ((2 - t) 1 + (t - 1) 3)^2 + ((2 - t) 2 + (t - 1)(-1))^2 = (2t - 1)^2 + (5 - 3t)^2.
  {
    Tensor x0 = Tensor::from_shape({1, 2}), z = Tensor::from_shape({1, 2});
    x0(0, 0) = 1, x0(0, 1) = 2, z(0, 0) = 3, z(0, 1) = -1;
    const FixedSource source(z);
    TrainContext ctx;
    ctx.path = path.get();
    ctx.source = &source;
    AffineNet identity(1, 0);
    const auto loss = create(registries().losses, "{type: cfm}");
    Rng rng(3);
    for (int k = 0; k < 5; ++k) {
      const LossValues v = loss->loss(identity, x0, Condition(), ctx, rng);
      const double t = v.times(0);
      REQUIRE(t >= 0.0);
      REQUIRE(t <= 1.0);
      REQUIRE_THAT(v.per_sample.value()(0), WithinAbs((2 * t - 1) * (2 * t - 1) + (5 - 3 * t) * (5 - 3 * t), 1e-4));
    }
  }
  // Two rows x0 = (0, 0), (10, 0) and source rows (10, 1), (0, 1), network F = 0: the value is
  // |z - x0|^2 of each pair, 101 and 101 as drawn (independent), 1 and 1 when OT swaps them.
  {
    Tensor x0 = zeros({2, 2}), z = zeros({2, 2});
    x0(1, 0) = 10, z(0, 0) = 10, z(0, 1) = 1, z(1, 1) = 1;
    const FixedSource source(z);
    TrainContext ctx;
    ctx.path = path.get();
    ctx.source = &source;
    AffineNet zero(0, 0);
    Rng rng(5);
    for (const auto& [yaml, expected] : {std::pair<std::string, double>{"{type: cfm, coupling: independent}", 101.0},
                                         {"{type: cfm, coupling: minibatch_ot}", 1.0}}) {
      CAPTURE(yaml);
      const LossValues v = create(registries().losses, yaml)->loss(zero, x0, Condition(), ctx, rng);
      REQUIRE_THAT(v.per_sample.value()(0), WithinAbs(expected, 1e-4));
      REQUIRE_THAT(v.per_sample.value()(1), WithinAbs(expected, 1e-4));
    }
    // An OT batch of whole training batches sets the batches per plan; any other is refused,
    // naming the key.
    ctx.batch_size = 2;
    REQUIRE(create(registries().losses, "{type: cfm, coupling: minibatch_ot, ot_batch: 8}")->batches_per_plan(ctx) == 4);
    REQUIRE(create(registries().losses, "{type: cfm, coupling: minibatch_ot, ot_batch: 2}")->batches_per_plan(ctx) == 1);
    REQUIRE(create(registries().losses, "{type: cfm, coupling: minibatch_ot}")->batches_per_plan(ctx) == 1);
    const auto odd = create(registries().losses, "{type: cfm, coupling: minibatch_ot, ot_batch: 3}");
    REQUIRE_THROWS_WITH(odd->batches_per_plan(ctx), Catch::Contains("ot_batch") && Catch::Contains("train.batch_size"));
  }
  REQUIRE_THROWS_WITH(create(registries().losses, "{type: cfm, ot_batch: 4}"), Catch::Contains("ot_batch"));
}

TEST_CASE("ode sampler integrates the exact Gaussian flow on the linear path", "[flow_matching][sampler]") {
  const auto path = make_path("{type: linear}");
  const auto velocity = make_prediction("velocity");
  const NetworkDenoiser model(std::make_shared<ExactFlowNet>(), path, velocity);
  const GaussianSource source(kM, kR);
  SampleRequest req;
  const std::size_t n = 4000;
  req.shape = {n, 2};
  req.source = &source;
  // dopri5: the data's N(kMu, kS^2) within 4 standard errors (2n values).
  {
    const auto ode = create(registries().samplers, "{type: ode, method: dopri5}");
    Rng rng(21);
    const Moments m = moments(ode->sample(model, req, rng).x);
    REQUIRE_THAT(m.mean, WithinAbs(kMu, 4 * kS / std::sqrt(2.0 * n)));
    REQUIRE_THAT(m.var, WithinAbs(kS * kS, 4 * kS * kS * std::sqrt(2.0 / (2 * n - 1))));
  }
  // One Euler step from t = 1: v(z, 1) = (kM - kMu) + (z - kM) = z - kMu, so x = kMu for every
  // sample: the independent coupling's field at the source is aimed at the data's mean.
  {
    const auto euler = create(registries().samplers, "{type: ode, method: euler, steps: 1}");
    Rng rng(22);
    const Tensor x = euler->sample(model, req, rng).x;
    for (const float v : x) REQUIRE_THAT(v, WithinAbs(kMu, 1e-4));
  }
}

TEST_CASE("reflow pairs are the exact flow's map and its straight field has zero loss", "[flow_matching][reflow]") {
  const auto path = make_path("{type: linear}");
  Models models;
  models.add({"base", std::make_shared<ExactFlowNet>(), true, ""});
  const GaussianSource source(kM, kR);
  TrainContext ctx;
  ctx.path = path.get();
  ctx.source = &source;
  ctx.models = &models;
  // The pairs are (T(z), z) with T(z) = kMu + k (z - kM), k = kS / kR: on x_t = (1 - t) T(z) + t z
  // the straight field recovers z = (x_t - (1 - t)(kMu - k kM)) / ((1 - t) k + t) and returns
  // z - T(z). Its loss is zero exactly when the pairs are T's.
  class StraightNet : public Network {
   public:
    Var forward(const Var& x, const Tensor& c_noise, const Condition&) override {
      Tensor out = x.value();
      const std::size_t n = out.shape()[0], d = out.size() / n;
      const double k = kS / kR;
      for (std::size_t i = 0; i < n; ++i) {
        const double t = c_noise(i) / 999.0;
        for (std::size_t j = 0; j < d; ++j) {
          const double z = (out.data()[i * d + j] - (1 - t) * (kMu - k * kM)) / ((1 - t) * k + t);
          out.data()[i * d + j] = float(z - (kMu + k * (z - kM)));
        }
      }
      return Var(out);
    }
  } straight;
  const auto loss = create(registries().losses, "{type: reflow, pairs: 500, method: dopri5, rtol: 1.0e-7, atol: 1.0e-7}");
  REQUIRE(loss->required_models() == std::vector<std::string>{"base"});
  Rng rng(31);
  const LossValues v = loss->loss(straight, zeros({256, 2}), Condition(), ctx, rng);
  REQUIRE(mean(v.per_sample).item() < 1e-6);
  // F = 0 gives |z - T(z)|^2, far from zero: the bound above is not trivially met.
  AffineNet zero(0, 0);
  const double scale = mean(loss->loss(zero, zeros({256, 2}), Condition(), ctx, rng).per_sample).item();
  REQUIRE(scale > 1.0);

  // The pairs are a function of the run's seed (the init stream's split): two losses built
  // from the same seed give the same values from the same stream, another seed other values.
  const auto values = [&](std::uint64_t seed) {
    Rng init(seed);
    BuildContext bctx{{2}, 0, &init};
    const auto l = registries().losses.create(Config::load_string("{type: reflow, pairs: 200}").root(), bctx);
    Rng r(77);
    return l->loss(zero, zeros({64, 2}), Condition(), ctx, r).per_sample.value();
  };
  const Tensor a = values(5), b = values(5), c = values(6);
  REQUIRE(std::equal(a.begin(), a.end(), b.begin()));
  REQUIRE_FALSE(std::equal(a.begin(), a.end(), c.begin()));
}

TEST_CASE("ot-cfm training transports a Gaussian to a Gaussian in one Euler step", "[flow_matching][train]") {
  const auto path = make_path("{type: linear}");
  Rng init(41);
  BuildContext bctx{{2}, 0, &init};
  const auto net = registries().networks.create(Config::load_string("{type: mlp, hidden: [32, 32]}").root(), bctx);
  const auto loss = create(registries().losses, "{type: cfm, coupling: minibatch_ot}");
  const GaussianSource source(kM, kR);
  TrainContext ctx;
  ctx.path = path.get();
  ctx.source = &source;
  AdamOptions opt;
  opt.lr = 1e-2;
  Adam adam(net->trainable_parameters(), opt);
  Rng rng(42);
  const std::size_t batch = 128;
  for (int step = 0; step < 600; ++step) {
    Tensor x0 = Tensor::from_shape({batch, 2});
    for (float& v : x0) v = float(kMu + kS * rng.normal());
    for (Var& p : net->trainable_parameters()) p.zero_grad();
    mean(loss->loss(*net, x0, Condition(), ctx, rng).per_sample).backward();
    adam.step();
  }
  // One Euler step: the learned map should be close to the OT map T(z) = kMu + (kS/kR)(z - kM),
  // so the samples are about N(kMu, kS^2), where the independent coupling gives the point kMu
  // (previous test). Tolerances are the training's, not sampling error (4000 samples: SE of the
  // mean 0.006, of the variance 0.0056): mean within 0.1, variance within 30% of kS^2 = 0.25.
  const NetworkDenoiser model(net, path, loss->preconditioning());
  const auto euler = create(registries().samplers, "{type: ode, method: euler, steps: 1}");
  SampleRequest req;
  req.shape = {2000, 2};
  req.source = &source;
  Rng srng(43);
  const Moments m = moments(euler->sample(model, req, srng).x);
  CAPTURE(m.mean, m.var);
  REQUIRE_THAT(m.mean, WithinAbs(kMu, 0.1));
  REQUIRE_THAT(m.var, WithinAbs(kS * kS, 0.3 * kS * kS));
}

// Losses and parameterisations on a point-mass data set x0 = c, where every target is known
// exactly from x_t: eps = (x_t - alpha c) / sigma, x0 = c, v = alpha eps - sigma c,
// score = -eps / sigma, velocity = alpha' c + sigma' eps.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>

#include <diffusion/components.hpp>
#include <diffusion/model/predictions.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

using namespace diffusion;
using Catch::Matchers::WithinAbs;

namespace {

const float kC[2] = {0.7f, -1.3f};

/// Predicts the exact target of prediction `p` for data concentrated at kC (DDPM's network
/// time is the path's time).
class PointMassNet : public Network {
 public:
  PointMassNet(std::shared_ptr<const Path> path, std::string p) : path_(std::move(path)), p_(std::move(p)) {}
  Var forward(const Var& xv, const Tensor& t, const Condition&) override {
    Tensor out = xv.value();
    for (std::size_t i = 0; i < out.shape()[0]; ++i) {
      const double a = path_->alpha(t(i)), s = path_->sigma(t(i));
      const double da = path_->alpha_deriv(t(i)), ds = path_->sigma_deriv(t(i));
      for (std::size_t j = 0; j < 2; ++j) {
        const double x = xv.value()(i, j), eps = (x - a * kC[j]) / s;
        out(i, j) = float(p_ == "eps" ? eps
                          : p_ == "x0" ? kC[j]
                          : p_ == "v" ? a * eps - s * kC[j]
                          : p_ == "velocity" ? da * kC[j] + ds * eps
                                             : -eps / s);  // score
      }
    }
    return Var(out);
  }

 private:
  std::shared_ptr<const Path> path_;
  std::string p_;
};

std::shared_ptr<Path> ddpm() {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_ddpm.so");
  return registries().paths.create(Config::load_string("{type: ddpm, timesteps: 1000}").root(), BuildContext{});
}

/// The batch's loss: the mean of the per-sample values.
double batch_loss(const Loss& l, Network& net, const Path& path, const Tensor& x0, Rng& rng) {
  TrainContext ctx;
  ctx.path = &path;
  const LossValues v = l.loss(net, x0, Condition(), ctx, rng);
  REQUIRE(v.per_sample.size() == x0.shape()[0]);
  REQUIRE(v.times.size() == x0.shape()[0]);
  return mean(v.per_sample).item();
}

std::shared_ptr<Loss> loss(const std::string& type) {
  return registries().losses.create(Config::load_string("{type: " + type + "}").root(), BuildContext{});
}

Tensor point_mass_batch(std::size_t n) {
  Tensor x = Tensor::from_shape({n, 2});
  for (std::size_t i = 0; i < n; ++i) x(i, 0) = kC[0], x(i, 1) = kC[1];
  return x;
}

}  // namespace

TEST_CASE("regression losses vanish for the exact predictor of their target only", "[loss][ddpm]") {
  auto sde = ddpm();
  const std::vector<std::pair<std::string, std::string>> cases = {{"eps_mse", "eps"},
                                                                  {"x0_mse", "x0"},
                                                                  {"v_mse", "v"},
                                                                  {"{type: mse, preconditioning: velocity}", "velocity"},
                                                                  {"{type: mse, preconditioning: score}", "score"}};
  for (const auto& [name, target] : cases) {
    auto l = name[0] == '{' ? registries().losses.create(Config::load_string(name).root(), BuildContext{}) : loss(name);
    REQUIRE(l->preconditioning()->name() == target);
    for (const auto& [other_name, other] : cases) {
      CAPTURE(name, other_name);
      PointMassNet net(sde, other);
      Rng rng(5);
      // The score's target -eps / sigma is huge near t = 0: compare relative to its size there.
      const double value = batch_loss(*l, net, *sde, point_mass_batch(512), rng);
      if (other == target && target == "score") {
        REQUIRE(value < 1e-2);
      } else if (other == target) {
        // Float rounding of x0 = (x_t - sigma eps)/alpha at large t is the only error left.
        REQUIRE(value < 1e-6);
      } else {
        REQUIRE(value > 1e-2);
      }
    }
  }
}

TEST_CASE("the denoiser recovers x0 from every parameterisation", "[denoiser]") {
  auto sde = ddpm();
  for (const std::string p : {"eps", "x0", "v", "score", "velocity"}) {
    CountingDenoiser d(std::make_shared<NetworkDenoiser>(std::make_shared<PointMassNet>(sde, p), sde, make_prediction(p)));
    Rng rng(9);
    for (double t : {0.0, 10.0, 250.0, 600.0}) {
      CAPTURE(p, t);
      Tensor x = rng.normal({8, 2});
      const Prediction pred = d.predict(x, t);
      for (std::size_t i = 0; i < 8; ++i)
        for (std::size_t j = 0; j < 2; ++j) {
          REQUIRE_THAT(pred.x0(i, j), WithinAbs(kC[j], 1e-3));
          // x = alpha x0 + sigma eps holds for the converted pair.
          REQUIRE_THAT(sde->alpha(t) * pred.x0(i, j) + sde->sigma(t) * pred.eps(i, j), WithinAbs(x(i, j), 1e-4));
        }
    }
    REQUIRE(d.nfe() == 4);
  }
}

TEST_CASE("low-discrepancy training times: each uniform over the steps, the batch spread evenly", "[loss][ddpm][qmc]") {
  auto sde = ddpm();
  // Spread: 256 times over 1000 steps put exactly 32 in each eighth of the steps (125 each).
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    const Tensor t = low_discrepancy_times(*sde, 256, rng);
    int bins[8] = {0};
    for (std::size_t i = 0; i < 256; ++i) {
      REQUIRE(t(i) == std::floor(t(i)));
      REQUIRE(t(i) >= 0.0f);
      REQUIRE(t(i) <= 999.0f);
      ++bins[static_cast<int>(t(i)) / 125];
    }
    for (int b : bins) CHECK(std::abs(b - 32) <= 1);
  }
  // Each time alone is uniform over 0..999: mean 499.5, sd 288.7, over 4000 batches.
  double sum = 0, sum_sq = 0;
  const int batches = 4000;
  for (int seed = 0; seed < batches; ++seed) {
    Rng rng(static_cast<std::uint64_t>(seed));
    const double t3 = low_discrepancy_times(*sde, 64, rng)(3);
    sum += t3, sum_sq += t3 * t3;
  }
  const double mean = sum / batches, var = sum_sq / batches - mean * mean;
  CHECK(std::abs(mean - 499.5) < 4 * 288.7 / std::sqrt(double(batches)));
  CHECK(std::abs(var - 288.7 * 288.7) < 4 * 288.7 * 288.7 * std::sqrt(0.8 / batches));  // var of U: 4/5 sd^4 / n
}

/// The exact eps-predictor for point-mass data plus an error of t / T in every output: its
/// eps_mse per sample is (t / T)^2, a function of t alone.
class TimeErrorNet : public Network {
 public:
  explicit TimeErrorNet(std::shared_ptr<const Path> sde) : exact_(sde, "eps") {}
  Var forward(const Var& x, const Tensor& t, const Condition& c) override {
    Tensor out = exact_.forward(x, t, c).value();
    for (std::size_t i = 0; i < out.shape()[0]; ++i)
      for (std::size_t j = 0; j < 2; ++j) out(i, j) += t(i) / 1000.0f;
    return Var(out);
  }

 private:
  PointMassNet exact_;
};

TEST_CASE("t_sampling: low_discrepancy keeps the loss's expectation and lowers its variance", "[loss][ddpm][qmc]") {
  // With a per-sample loss of (t / T)^2, an iid batch of 64 varies by sd(U^2) / 8 = 0.037, and
  // the low-discrepancy batch hardly at all; both average 1/3.
  auto sde = ddpm();
  auto iid = loss("eps_mse");
  auto ld = registries().losses.create(Config::load_string("{type: eps_mse, t_sampling: low_discrepancy}").root(), BuildContext{});
  TimeErrorNet net(sde);
  const int batches = 400;
  double m[2] = {0, 0}, v[2] = {0, 0};
  for (int b = 0; b < batches; ++b) {
    Rng r1(static_cast<std::uint64_t>(b)), r2(static_cast<std::uint64_t>(b + 100000));
    const double a = batch_loss(*iid, net, *sde, point_mass_batch(64), r1);
    const double c = batch_loss(*ld, net, *sde, point_mass_batch(64), r2);
    m[0] += a, v[0] += a * a, m[1] += c, v[1] += c * c;
  }
  for (int k = 0; k < 2; ++k) m[k] /= batches, v[k] = v[k] / batches - m[k] * m[k];
  CAPTURE(m[0], m[1], v[0], v[1]);
  CHECK(std::abs(m[0] - 1.0 / 3.0) < 4 * std::sqrt(v[0] / batches));
  CHECK(std::abs(m[1] - 1.0 / 3.0) < 0.01);
  CHECK(v[1] < 0.05 * v[0]);  // measured: 70 times lower
  REQUIRE_THROWS_WITH(registries().losses.create(Config::load_string("{type: v_mse, t_sampling: sobol}").root(), BuildContext{}),
                      Catch::Contains("t_sampling") && Catch::Contains("low_discrepancy"));
}

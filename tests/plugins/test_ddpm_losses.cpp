// Losses and parameterisations on a point-mass data set x0 = c, where every target is known
// exactly from x_t: eps = (x_t - alpha c) / sigma, x0 = c, v = alpha eps - sigma c.
#include <catch2/catch.hpp>

#include <cmath>

#include <diffusion/components.hpp>
#include <diffusion/config.hpp>
#include <diffusion/plugin_loader.hpp>

using namespace diffusion;
using Catch::Matchers::WithinAbs;

namespace {

const float kC[2] = {0.7f, -1.3f};

/// Predicts the exact target of `p` for data concentrated at kC.
class PointMassNet : public Network {
 public:
  PointMassNet(std::shared_ptr<const Sde> sde, Parameterisation p) : sde_(std::move(sde)), p_(p) {}
  Var forward(const Var& xv, const Tensor& t, const std::vector<int>*) override {
    Tensor out = xv.value();
    for (std::size_t i = 0; i < out.shape()[0]; ++i) {
      const double a = sde_->alpha(t(i)), s = sde_->sigma(t(i));
      for (std::size_t j = 0; j < 2; ++j) {
        const double x = xv.value()(i, j), eps = (x - a * kC[j]) / s;
        out(i, j) = float(p_ == Parameterisation::eps ? eps
                          : p_ == Parameterisation::x0 ? kC[j]
                          : p_ == Parameterisation::v ? a * eps - s * kC[j]
                                                      : -eps / s);  // score
      }
    }
    return Var(out);
  }

 private:
  std::shared_ptr<const Sde> sde_;
  Parameterisation p_;
};

std::shared_ptr<Sde> ddpm() {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_ddpm.so");
  return registries().sdes.create(Config::load_string("{type: ddpm, timesteps: 1000}").root(), BuildContext{});
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
  const std::vector<std::pair<std::string, Parameterisation>> cases = {
      {"eps_mse", Parameterisation::eps}, {"x0_mse", Parameterisation::x0}, {"v_mse", Parameterisation::v}};
  for (const auto& [name, target] : cases) {
    auto l = loss(name);
    REQUIRE(l->parameterisation() == target);
    for (const auto& [other_name, other] : cases) {
      CAPTURE(name, other_name);
      PointMassNet net(sde, other);
      Rng rng(5);
      const double value = l->loss(net, *sde, point_mass_batch(512), rng).item();
      if (other == target) {
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
  for (auto p : {Parameterisation::eps, Parameterisation::x0, Parameterisation::v, Parameterisation::score}) {
    Denoiser d(std::make_shared<PointMassNet>(sde, p), sde, p);
    Rng rng(9);
    for (double t : {0.0, 10.0, 250.0, 600.0}) {
      CAPTURE(to_string(p), t);
      Tensor x = rng.normal({8, 2});
      Tensor eps, x0;
      d.predict(x, t, eps, x0);
      for (std::size_t i = 0; i < 8; ++i)
        for (std::size_t j = 0; j < 2; ++j) {
          REQUIRE_THAT(x0(i, j), WithinAbs(kC[j], 1e-3));
          // x = alpha x0 + sigma eps holds for the converted pair.
          REQUIRE_THAT(sde->alpha(t) * x0(i, j) + sde->sigma(t) * eps(i, j), WithinAbs(x(i, j), 1e-4));
        }
    }
    REQUIRE(d.nfe() == 4);
  }
}

// Preconditionings (preconditioning.hpp): the built-in predictions and a test-defined EDM-like
// one that gives only scalings(). For each, on several paths and times: the training target
// and the readout are inverse to each other (train target -> predict -> the same x0 and eps),
// the readout is c_skip x + c_out F, the targets are the classic ones, the registry builds the
// same objects, and a NetworkDenoiser over a network that returns exactly F* predicts the data.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/plugin/registries.hpp>
#include <diffusion/model/predictions.hpp>

#include "analytic_paths.hpp"

using namespace diffusion;
using namespace diffusion::testing;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

/// Neither VP nor VE (alpha^2 + sigma^2 != 1, alpha != 1), with a network time of its own
/// (1000 t), so c_noise = network_time(t) is told apart from t.
struct Skewed : Path {
  double alpha(double t) const override { return std::exp(-t); }
  double sigma(double t) const override { return 2 * t + 0.1 * t * t; }
  double alpha_deriv(double t) const override { return -std::exp(-t); }
  double sigma_deriv(double t) const override { return 2 + 0.2 * t; }
  double t_min() const override { return 0.01; }
  double t_max() const override { return 3.0; }
  float network_time(double t) const override { return static_cast<float>(1000 * t); }
};

struct NamedPath {
  std::string name;
  std::shared_ptr<const Path> path;
  std::vector<double> times;
};

std::vector<NamedPath> test_paths() {
  return {{"cosine VP", std::make_shared<CosineVp>(), {1e-3, 0.01, 0.3, 0.5, 0.9, 0.999}},
          {"VE", std::make_shared<VeLinear>(), {0.002, 0.05, 0.5, 1.0, 10.0, 80.0}},
          {"linear flow", std::make_shared<LinearFlow>(), {1e-3, 0.2, 0.5, 0.8, 0.999}},
          {"skewed", std::make_shared<Skewed>(), {0.01, 0.4, 1.5, 3.0}}};
}

/// EDM (Karras et al. 2022, Table 1) in the noise-to-signal ratio s = sigma / alpha, with
/// sigma_data = 0.5; only scalings() is given, so readout() and target() are the base class's.
class EdmLike : public Preconditioning {
 public:
  static constexpr double sd = 0.5;
  std::string name() const override { return "edm_like"; }
  Scalings scalings(const Path& p, double t) const override {
    const double s = p.sigma(t) / p.alpha(t), r = s * s + sd * sd;
    return {sd * sd / r, s * sd / std::sqrt(r), 1 / std::sqrt(r), std::log(s) / 4};
  }
};

/// A preconditioning with another's scalings but the base class's readout and target: the
/// general formulas that every closed form must agree with.
class GeneralFormOf : public Preconditioning {
 public:
  explicit GeneralFormOf(std::shared_ptr<const Preconditioning> p) : p_(std::move(p)) {}
  std::string name() const override { return "general " + p_->name(); }
  Scalings scalings(const Path& path, double t) const override { return p_->scalings(path, t); }

 private:
  std::shared_ptr<const Preconditioning> p_;
};

const std::vector<std::string> kPredictions = {"eps", "x0", "v", "score", "velocity"};

std::shared_ptr<const Preconditioning> make(const std::string& name) {
  return name == "edm_like" ? std::make_shared<EdmLike>() : make_prediction(name);
}

double apply(const LinearReadout& r, double x, double f) { return (r.x * x + r.f * f) / r.div; }

}  // namespace

TEST_CASE("preconditioning round trip: the training target read out gives back x0 and eps", "[preconditioning]") {
  // x_t = alpha x0 + sigma eps, F* = target.x0 x0 + target.eps eps, then the readout of
  // (x_t, F*) must be (x0, eps) up to double rounding.
  const std::string name = GENERATE(as<std::string>{}, "eps", "x0", "v", "score", "velocity", "edm_like");
  const auto pre = make(name);
  REQUIRE(pre->name() == name);
  Rng rng(3);
  for (const NamedPath& np : test_paths())
    for (const double t : np.times) {
      CAPTURE(name, np.name, t);
      const Path& p = *np.path;
      const double a = p.alpha(t), s = p.sigma(t);
      const Target y = pre->target(p, t);
      const Readout r = pre->readout(p, t);
      for (int k = 0; k < 20; ++k) {
        const double x0 = 2.0 * rng.normal(), eps = rng.normal();
        const double x = a * x0 + s * eps, f = y.x0 * x0 + y.eps * eps;
        // The readout cancels terms of size |x| and |F| (times its coefficients): relative to
        // those, double rounding leaves ~1e-15.
        const double scale = std::abs(x) + std::abs(f) + std::abs(x0) + std::abs(eps);
        const double x0_hat = apply(r.x0, x, f), eps_hat = apply(r.eps, x, f);
        CAPTURE(x0, eps, x, f);
        REQUIRE_THAT(x0_hat, WithinAbs(x0, 1e-10 * scale));
        REQUIRE_THAT(eps_hat, WithinAbs(eps, 1e-10 * scale));
        // And through the scalings: D = c_skip x + c_out F is x0.
        const Scalings k2 = pre->scalings(p, t);
        REQUIRE_THAT(k2.c_skip * x + k2.c_out * f, WithinAbs(x0, 1e-10 * scale * (1 + std::abs(k2.c_skip) + std::abs(k2.c_out))));
      }
    }
}

TEST_CASE("preconditioning readout is c_skip x + c_out F, and eps follows from x0 on the path", "[preconditioning]") {
  const std::string name = GENERATE(as<std::string>{}, "eps", "x0", "v", "score", "velocity", "edm_like");
  const auto pre = make(name);
  const GeneralFormOf general(pre);
  Rng rng(4);
  for (const NamedPath& np : test_paths())
    for (const double t : np.times) {
      CAPTURE(name, np.name, t);
      const Path& p = *np.path;
      const double a = p.alpha(t), s = p.sigma(t);
      const Scalings k = pre->scalings(p, t);
      const Readout r = pre->readout(p, t), rg = general.readout(p, t);
      const Target y = pre->target(p, t), yg = general.target(p, t);
      // The target is F* = (x0 - c_skip x_t) / c_out, written in x0 and eps.
      // (1 - c_skip alpha) cancels to rounding of c_skip alpha, which 1 / c_out then scales.
      const double tol_x0 = 1e-12 * (1 + std::abs(y.x0) + std::abs(k.c_skip * a / k.c_out));
      REQUIRE_THAT(y.x0, WithinAbs((1 - k.c_skip * a) / k.c_out, tol_x0));
      REQUIRE_THAT(y.eps, WithinAbs(-k.c_skip * s / k.c_out, 1e-12 * (1 + std::abs(y.eps))));
      REQUIRE_THAT(y.x0, WithinAbs(yg.x0, tol_x0));
      REQUIRE_THAT(y.eps, WithinAbs(yg.eps, 1e-12 * (1 + std::abs(y.eps))));
      for (int j = 0; j < 10; ++j) {
        const double x = 3.0 * rng.normal(), f = 3.0 * rng.normal();
        const double x0_hat = apply(r.x0, x, f), eps_hat = apply(r.eps, x, f);
        // Rounding relative to the largest term: |x|, |F| times the coefficients.
        const double scale = (std::abs(x) + std::abs(f)) * (1 + std::abs(k.c_skip) + std::abs(k.c_out));
        const double d = k.c_skip * x + k.c_out * f;
        CAPTURE(x, f);
        REQUIRE_THAT(x0_hat, WithinAbs(d, 1e-12 * scale));
        REQUIRE_THAT(eps_hat, WithinAbs((x - a * x0_hat) / s, 1e-12 * scale * (1 + a / s)));
        REQUIRE_THAT(x0_hat, WithinAbs(apply(rg.x0, x, f), 1e-12 * scale));
        REQUIRE_THAT(eps_hat, WithinAbs(apply(rg.eps, x, f), 1e-12 * scale * (1 + a / s)));
      }
    }
}

TEST_CASE("the built-in predictions regress on the classic targets with c_in = 1 and c_noise = network time",
          "[preconditioning]") {
  // eps: F* = eps; x0: F* = x0; v: alpha eps - sigma x0 (Salimans & Ho 2022); score:
  // -eps / sigma; velocity: alpha' x0 + sigma' eps.
  for (const NamedPath& np : test_paths())
    for (const double t : np.times) {
      const Path& p = *np.path;
      const double a = p.alpha(t), s = p.sigma(t);
      const std::vector<std::pair<std::string, Target>> expected = {{"eps", {0.0, 1.0}},
                                                                    {"x0", {1.0, 0.0}},
                                                                    {"v", {-s, a}},
                                                                    {"score", {0.0, -1 / s}},
                                                                    {"velocity", {p.alpha_deriv(t), p.sigma_deriv(t)}}};
      for (const auto& [name, y] : expected) {
        CAPTURE(np.name, t, name);
        const auto pre = make_prediction(name);
        const Target got = pre->target(p, t);
        REQUIRE_THAT(got.x0, WithinAbs(y.x0, 1e-14 * (1 + std::abs(y.x0))));
        REQUIRE_THAT(got.eps, WithinAbs(y.eps, 1e-14 * (1 + std::abs(y.eps))));
        const Scalings k = pre->scalings(p, t);
        REQUIRE(k.c_in == 1.0);
        REQUIRE(k.c_noise == double(p.network_time(t)));
      }
    }
  // The EDM-like scalings at one point written out: s = 1, sigma_data = 0.5.
  const VeLinear ve;
  const Scalings k = EdmLike().scalings(ve, 1.0);
  REQUIRE_THAT(k.c_skip, WithinRel(0.25 / 1.25, 1e-15));
  REQUIRE_THAT(k.c_out, WithinRel(0.5 / std::sqrt(1.25), 1e-15));
  REQUIRE_THAT(k.c_in, WithinRel(1 / std::sqrt(1.25), 1e-15));
  REQUIRE(k.c_noise == 0.0);
  REQUIRE_THROWS_WITH(make_prediction("epsilon"), Catch::Contains("epsilon") && Catch::Contains("eps, score, v"));
}

TEST_CASE("every name in the preconditionings registry builds that prediction", "[preconditioning][registry]") {
  const std::vector<std::string> names = registries().preconditionings.names();
  for (const std::string& n : kPredictions) {
    CAPTURE(n);
    REQUIRE(std::find(names.begin(), names.end(), n) != names.end());
    REQUIRE(registries().preconditionings.origin(n) == "core");
  }
  for (const std::string& n : names) {
    if (registries().preconditionings.origin(n) != "core") continue;  // a plugin's own
    CAPTURE(n);
    const auto made = registries().preconditionings.create(Config::load_string("type: " + n).root(), BuildContext{});
    REQUIRE(made->name() == n);
    // The same object kind as make_prediction's: equal numbers everywhere (typeid would do too,
    // but the numbers are what matters).
    const auto ref = make_prediction(n);
    REQUIRE(typeid(*made) == typeid(*ref));
    for (const NamedPath& np : test_paths())
      for (const double t : np.times) {
        CAPTURE(np.name, t);
        const Scalings a = made->scalings(*np.path, t), b = ref->scalings(*np.path, t);
        REQUIRE(a.c_skip == b.c_skip);
        REQUIRE(a.c_out == b.c_out);
        REQUIRE(a.c_in == b.c_in);
        REQUIRE(a.c_noise == b.c_noise);
        const Readout ra = made->readout(*np.path, t), rb = ref->readout(*np.path, t);
        REQUIRE(ra.x0.x == rb.x0.x);
        REQUIRE(ra.x0.f == rb.x0.f);
        REQUIRE(ra.x0.div == rb.x0.div);
        REQUIRE(ra.eps.x == rb.eps.x);
        REQUIRE(ra.eps.f == rb.eps.f);
        REQUIRE(ra.eps.div == rb.eps.div);
        const Target ya = made->target(*np.path, t), yb = ref->target(*np.path, t);
        REQUIRE(ya.x0 == yb.x0);
        REQUIRE(ya.eps == yb.eps);
      }
  }
  REQUIRE_THROWS_WITH(registries().preconditionings.create(Config::load_string("type: vee").root(), BuildContext{}),
                      Catch::Contains("unknown preconditioning 'vee'"));
}

namespace {

const double kC[2] = {0.7, -1.3};

/// For data concentrated at kC, the exact F*(x_t, t) of a preconditioning: eps = (x_t -
/// alpha c) / sigma, F* = target.x0 c + target.eps eps. The network sees c_in x_t and c_noise;
/// it checks both against the preconditioning's (so the denoiser must scale its input and
/// pass the noise input), and is told each row's time by the test.
class PointMassNet : public Network {
 public:
  PointMassNet(std::shared_ptr<const Path> path, std::shared_ptr<const Preconditioning> pre)
      : path_(std::move(path)), pre_(std::move(pre)) {}
  std::vector<double> times;  ///< the rows' times of the next call
  int calls = 0;

  Var forward(const Var& xv, const Tensor& c_noise, const Condition&) override {
    ++calls;
    const Tensor& in = xv.value();
    const std::size_t n = in.shape()[0];
    REQUIRE(times.size() == n);
    REQUIRE(c_noise.size() == n);
    Tensor out = Tensor::from_shape(shape_of(in));
    for (std::size_t i = 0; i < n; ++i) {
      const double t = times[i];
      const Scalings k = pre_->scalings(*path_, t);
      REQUIRE(c_noise(i) == static_cast<float>(k.c_noise));
      const Target y = pre_->target(*path_, t);
      const double a = path_->alpha(t), s = path_->sigma(t);
      for (std::size_t j = 0; j < 2; ++j) {
        const double x = in(i, j) / k.c_in;  // undo the denoiser's c_in
        out(i, j) = static_cast<float>(y.x0 * kC[j] + y.eps * (x - a * kC[j]) / s);
      }
    }
    return Var(out);
  }

 private:
  std::shared_ptr<const Path> path_;
  std::shared_ptr<const Preconditioning> pre_;
};

std::shared_ptr<const Path> ddpm_path() {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_ddpm.so");
  return registries().paths.create(Config::load_string("{type: ddpm, timesteps: 1000}").root(), BuildContext{});
}

}  // namespace

TEST_CASE("NetworkDenoiser over the exact F* of a point mass predicts it, per row, for every preconditioning",
          "[preconditioning][denoiser][ddpm]") {
  const std::string name = GENERATE(as<std::string>{}, "eps", "x0", "v", "score", "velocity", "edm_like");
  const std::string where = GENERATE(as<std::string>{}, "ddpm", "cosine VP", "skewed");
  CAPTURE(name, where);
  const auto path = where == "ddpm" ? ddpm_path() : where == "cosine VP" ? std::shared_ptr<const Path>(std::make_shared<CosineVp>())
                                                                          : std::shared_ptr<const Path>(std::make_shared<Skewed>());
  // Rows at different times, adjacent repeats included (the denoiser reuses a row's scalings).
  const std::vector<double> times =
      where == "ddpm" ? std::vector<double>{0, 0, 10, 250, 250, 600, 999, 37.5}
                      : where == "cosine VP" ? std::vector<double>{1e-3, 0.1, 0.1, 0.5, 0.9, 0.999}
                                             : std::vector<double>{0.01, 0.5, 0.5, 2.0, 3.0};
  const auto pre = make(name);
  const auto net = std::make_shared<PointMassNet>(path, pre);
  net->times = times;
  const NetworkDenoiser d(net, path, pre);
  REQUIRE(&d.path() == path.get());
  REQUIRE(&d.network() == net.get());
  REQUIRE(&d.preconditioning() == pre.get());
  const std::size_t n = times.size();
  Rng rng(8);
  Tensor x = Tensor::from_shape({n, 2});
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < 2; ++j)
      x(i, j) = static_cast<float>(path->alpha(times[i]) * kC[j] + path->sigma(times[i]) * rng.normal());
  Times t(times.begin(), times.end());
  Prediction pred;
  d.predict(x, t, Condition(), pred);
  REQUIRE(net->calls == 1);
  const PredictionVar pv = d.predict_var(Var(x), t, Condition());
  REQUIRE(net->calls == 2);
  REQUIRE(shape_of(pred.x0) == shape_of(x));
  REQUIRE(shape_of(pred.eps) == shape_of(x));
  REQUIRE(shape_of(pv.x0.value()) == shape_of(x));
  REQUIRE(shape_of(pv.eps.value()) == shape_of(x));
  for (std::size_t i = 0; i < n; ++i) {
    const double a = path->alpha(times[i]), s = path->sigma(times[i]);
    // x, F and the outputs are float32: the readout divides by alpha (x0 from eps) or by sigma
    // (eps from x0), which amplifies their rounding by up to 1 / min(alpha, sigma).
    const double tol = 2e-6 * (1 + std::abs(x(i, 0)) + std::abs(x(i, 1))) * std::max(1.0, 1 / std::min(a, s));
    for (std::size_t j = 0; j < 2; ++j) {
      const double eps = (x(i, j) - a * kC[j]) / s;
      CAPTURE(i, times[i], j, tol);
      REQUIRE_THAT(pred.x0(i, j), WithinAbs(kC[j], tol));
      REQUIRE_THAT(pred.eps(i, j), WithinAbs(eps, tol));
      REQUIRE_THAT(pv.x0.value()(i, j), WithinAbs(kC[j], tol));
      REQUIRE_THAT(pv.eps.value()(i, j), WithinAbs(eps, tol));
    }
  }
  // The convenience overload: every row at one time.
  net->times.assign(n, times[2]);
  const Prediction one = d.predict(x, times[2]);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < 2; ++j) REQUIRE_THAT(one.x0(i, j), WithinAbs(kC[j], 1e-3));
}

// The classic parameterisations as preconditionings, each with closed forms.
#include "diffusion/model/predictions.hpp"


namespace diffusion {

namespace {

/// F predicts the noise: x0 = (x - sigma F) / alpha (Ho et al. 2020).
class EpsPrediction : public Preconditioning {
 public:
  std::string name() const override { return "eps"; }
  Scalings scalings(const Path& p, double t) const override {
    const double a = p.alpha(t), s = p.sigma(t);
    return {1.0 / a, -s / a, 1.0, p.network_time(t)};
  }
  Readout readout(const Path& p, double t) const override {
    return {{1.0, -p.sigma(t), p.alpha(t)}, {0.0, 1.0, 1.0}};
  }
  Target target(const Path&, double) const override { return {0.0, 1.0}; }
};

/// F predicts the clean data.
class X0Prediction : public Preconditioning {
 public:
  std::string name() const override { return "x0"; }
  Scalings scalings(const Path& p, double t) const override { return {0.0, 1.0, 1.0, p.network_time(t)}; }
  Readout readout(const Path& p, double t) const override {
    return {{0.0, 1.0, 1.0}, {1.0, -p.alpha(t), p.sigma(t)}};
  }
  Target target(const Path&, double) const override { return {1.0, 0.0}; }
};

/// F predicts v = alpha eps - sigma x0 (Salimans & Ho 2022): x0 = (alpha x - sigma v) / r and
/// eps = (sigma x + alpha v) / r with r = alpha^2 + sigma^2.
class VPrediction : public Preconditioning {
 public:
  std::string name() const override { return "v"; }
  Scalings scalings(const Path& p, double t) const override {
    const double a = p.alpha(t), s = p.sigma(t), r = a * a + s * s;
    return {a / r, -s / r, 1.0, p.network_time(t)};
  }
  Readout readout(const Path& p, double t) const override {
    const double a = p.alpha(t), s = p.sigma(t), r = a * a + s * s;
    return {{a, -s, r}, {s, a, r}};
  }
  Target target(const Path& p, double t) const override { return {-p.sigma(t), p.alpha(t)}; }
};

/// F predicts the score grad log p_t(x) = -eps / sigma (Tweedie; Song et al. 2021).
class ScorePrediction : public Preconditioning {
 public:
  std::string name() const override { return "score"; }
  Scalings scalings(const Path& p, double t) const override {
    const double a = p.alpha(t), s = p.sigma(t);
    return {1.0 / a, s * s / a, 1.0, p.network_time(t)};
  }
  Readout readout(const Path& p, double t) const override {
    const double a = p.alpha(t), s = p.sigma(t);
    return {{1.0, s * s, a}, {0.0, -s, 1.0}};
  }
  Target target(const Path& p, double t) const override { return {0.0, -1.0 / p.sigma(t)}; }
};

/// F predicts the velocity u = dx_t/dt = alpha' x0 + sigma' eps (flow matching): with
/// x = alpha x0 + sigma eps, x0 = (sigma' x - sigma u) / d and eps = (alpha u - alpha' x) / d,
/// d = alpha sigma' - sigma alpha'.
class VelocityPrediction : public Preconditioning {
 public:
  std::string name() const override { return "velocity"; }
  Scalings scalings(const Path& p, double t) const override {
    const double a = p.alpha(t), s = p.sigma(t), da = p.alpha_deriv(t), ds = p.sigma_deriv(t);
    const double d = a * ds - s * da;
    return {ds / d, -s / d, 1.0, p.network_time(t)};
  }
  Readout readout(const Path& p, double t) const override {
    const double a = p.alpha(t), s = p.sigma(t), da = p.alpha_deriv(t), ds = p.sigma_deriv(t);
    const double d = a * ds - s * da;
    return {{ds, -s, d}, {-da, a, d}};
  }
  Target target(const Path& p, double t) const override { return {p.alpha_deriv(t), p.sigma_deriv(t)}; }
};

}  // namespace

std::shared_ptr<const Preconditioning> make_prediction(const std::string& name) {
  if (name == "eps") return std::make_shared<EpsPrediction>();
  if (name == "x0") return std::make_shared<X0Prediction>();
  if (name == "v") return std::make_shared<VPrediction>();
  if (name == "score") return std::make_shared<ScorePrediction>();
  if (name == "velocity") return std::make_shared<VelocityPrediction>();
  throw Error("unknown prediction '" + name + "' (expected eps, score, v, velocity or x0)");
}

}  // namespace diffusion

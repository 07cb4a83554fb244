// Parameterisation conversions on the Gaussian path x_t = alpha x0 + sigma eps.
#include <cmath>

#include "diffusion/model/components.hpp"
#include "diffusion/tensor/quasi_random.hpp"

namespace diffusion {

Parameterisation parse_parameterisation(const std::string& name) {
  if (name == "eps") return Parameterisation::eps;
  if (name == "x0") return Parameterisation::x0;
  if (name == "v") return Parameterisation::v;
  if (name == "score") return Parameterisation::score;
  if (name == "velocity") return Parameterisation::velocity;
  throw Error("unknown parameterisation '" + name + "' (expected eps, score, v, velocity or x0)");
}

std::string to_string(Parameterisation p) {
  switch (p) {
    case Parameterisation::eps: return "eps";
    case Parameterisation::x0: return "x0";
    case Parameterisation::v: return "v";
    case Parameterisation::score: return "score";
    case Parameterisation::velocity: return "velocity";
  }
  return "?";
}

TimeSpacing parse_time_spacing(const std::string& name) {
  if (name == "linear") return TimeSpacing::linear;
  if (name == "quadratic") return TimeSpacing::quadratic;
  throw Error("unknown time spacing '" + name + "' (expected linear or quadratic)");
}

PriorDraw parse_prior_draw(const std::string& name) {
  if (name == "iid") return PriorDraw::iid;
  if (name == "rqmc") return PriorDraw::rqmc;
  throw Error("unknown prior draw '" + name + "' (expected iid or rqmc)");
}

Denoiser::Denoiser(std::shared_ptr<Network> net, std::shared_ptr<const Sde> sde,
                   Parameterisation p)
    : net_(std::move(net)), sde_(std::move(sde)), param_(p) {
  if (!net_ || !sde_) throw Error("Denoiser: network and SDE are required");
}

void Denoiser::predict(const Tensor& x, double t, Tensor& eps, Tensor& x0,
                       const std::vector<int>* labels) const {
  NoGradScope no_grad;
  const std::size_t n = x.shape()[0];
  Tensor tt = full({n}, sde_->network_time(t));
  const Var out = net_->forward(Var(x), tt, labels);
  ++nfe_;
  const Tensor& y = out.value();
  if (y.size() != x.size())
    throw Error("Denoiser: network output " + shape_str(y) + " does not match input " +
                shape_str(x));
  const double a = sde_->alpha(t), s = sde_->sigma(t);
  eps = Tensor::from_shape(shape_of(x));
  x0 = Tensor::from_shape(shape_of(x));
  const float* px = x.data();
  const float* py = y.data();
  float* pe = eps.data();
  float* p0 = x0.data();
  const std::size_t m = x.size();
  // Each branch solves x = a x0 + s eps for the missing quantity.
  switch (param_) {
    case Parameterisation::eps:
      for (std::size_t i = 0; i < m; ++i) pe[i] = py[i], p0[i] = float((px[i] - s * py[i]) / a);
      break;
    case Parameterisation::x0:
      for (std::size_t i = 0; i < m; ++i) p0[i] = py[i], pe[i] = float((px[i] - a * py[i]) / s);
      break;
    case Parameterisation::score:
      // Tweedie: score = -eps / sigma.
      for (std::size_t i = 0; i < m; ++i)
        pe[i] = float(-s * py[i]), p0[i] = float((px[i] - s * pe[i]) / a);
      break;
    case Parameterisation::v: {
      // v = a eps - s x0 (Salimans & Ho 2022), so x0 = (a x - s v)/(a^2+s^2), eps = (s x + a v)/(a^2+s^2).
      const double r = a * a + s * s;
      for (std::size_t i = 0; i < m; ++i)
        p0[i] = float((a * px[i] - s * py[i]) / r), pe[i] = float((s * px[i] + a * py[i]) / r);
      break;
    }
    case Parameterisation::velocity: {
      // u = d x_t / dt = a' x0 + s' eps; with x = a x0 + s eps solve the 2x2 system.
      const double h = 1e-4 * std::max(1.0, std::abs(sde_->t_max() - sde_->t_min()));
      const double lo = std::max(sde_->t_min(), t - h), hi = std::min(sde_->t_max(), t + h);
      const double da = (sde_->alpha(hi) - sde_->alpha(lo)) / (hi - lo);
      const double ds = (sde_->sigma(hi) - sde_->sigma(lo)) / (hi - lo);
      const double det = a * ds - s * da;
      for (std::size_t i = 0; i < m; ++i) {
        p0[i] = float((ds * px[i] - s * py[i]) / det);
        pe[i] = float((a * py[i] - da * px[i]) / det);
      }
      break;
    }
  }
}

Tensor Denoiser::eps(const Tensor& x, double t, const std::vector<int>* labels) const {
  Tensor e, x0;
  predict(x, t, e, x0, labels);
  return e;
}

Tensor Denoiser::x0(const Tensor& x, double t, const std::vector<int>* labels) const {
  Tensor e, x0;
  predict(x, t, e, x0, labels);
  return x0;
}

Tensor Sde::prior_sample(const Shape& shape, Rng& rng, PriorDraw draw) const {
  const double a = alpha(t_max()), s = sigma(t_max());
  const auto std = static_cast<float>(std::sqrt(a * a + s * s));
  return draw == PriorDraw::rqmc ? rqmc_normal(shape, rng, 0.0f, std) : rng.normal(shape, 0.0f, std);
}

double Sde::time_at_quantile(double) const {
  throw Error("this SDE does not define time_at_quantile, so it cannot draw low-discrepancy training times");
}

Tensor low_discrepancy_times(const Sde& sde, std::size_t n, Rng& rng) {
  Tensor t = Tensor::from_shape({n});
  const double u0 = rng.uniform_double();
  for (std::size_t i = 0; i < n; ++i) {
    double u = u0 + double(i) / double(n);
    if (u >= 1.0) u -= 1.0;
    t(i) = static_cast<float>(sde.time_at_quantile(u));
  }
  return t;
}

void Trajectory::record(const Tensor& x, double t, std::size_t step, std::size_t total) {
  if (max_frames == 0) return;
  // Keep step k if it is the nearest step to one of max_frames evenly spaced targets.
  const std::size_t k = max_frames < 2 ? 1 : max_frames - 1;
  bool keep = max_frames < 2 ? step == total : false;
  for (std::size_t j = 0; j <= k && !keep && max_frames >= 2; ++j)
    keep = (j * total + k / 2) / k == step;
  if (keep && frames.size() < max_frames) {
    frames.push_back(x);
    times.push_back(t);
  }
}

}  // namespace diffusion

// Predictors of the PC sampler (Song et al. 2021, section 4.2, appendix G; sampling.py's
// EulerMaruyamaPredictor, ReverseDiffusionPredictor, AncestralSamplingPredictor). In every
// formula score = -eps_hat / sigma(t) and z ~ N(0, I).
#include "predictors.hpp"

#include <algorithm>
#include <cmath>

#include <diffusion/io/text.hpp>
#include <diffusion/model/gaussian_posterior.hpp>

namespace diffusion::score_sde {
namespace {

/// Euler-Maruyama on the reverse SDE with dt = s - t < 0:
///   x_mean = x + (f x - g^2 score) dt,   x = x_mean + g sqrt(t - s) z.
class EulerMaruyamaPredictor : public Predictor {
 public:
  std::string name() const override { return "euler_maruyama"; }
  bool stochastic() const override { return true; }
  void step(const Denoiser& model, const Condition& c, double t, double s, Tensor& x, Prediction& p,
            Rng& rng) const override {
    const Path& path = model.path();
    model.predict(x, t, c, p);
    const double f = path.drift_coef(t), g2 = path.diffusion_squared(t), dt = s - t;
    const double score_from_eps = -1.0 / path.sigma(t);
    const double noise = std::sqrt(std::max(0.0, g2 * (t - s)));
    const Tensor z = rng.normal(shape_of(x));
    float* px = x.data();
    for (std::size_t j = 0; j < x.size(); ++j) {
      const double score = score_from_eps * p.eps.data()[j];
      const double mean = px[j] + (f * px[j] - g2 * score) * dt;
      px[j] = float(mean + noise * z.data()[j]);
    }
  }
};

/// Reverse diffusion: the forward process between s and t is x_t = a x_s + G z with
/// a = alpha(t) / alpha(s), G^2 = sigma(t)^2 - a^2 sigma(s)^2 (Song's discretize(): for VP
/// a = sqrt(1 - beta_i), G^2 = beta_i; for VE a = 1, G^2 = sigma_t^2 - sigma_s^2); it is reversed as
///   x_mean = x - (a - 1) x + G^2 score,   x = x_mean + G z.
class ReverseDiffusionPredictor : public Predictor {
 public:
  std::string name() const override { return "reverse_diffusion"; }
  bool stochastic() const override { return true; }
  void step(const Denoiser& model, const Condition& c, double t, double s, Tensor& x, Prediction& p,
            Rng& rng) const override {
    const Path& path = model.path();
    model.predict(x, t, c, p);
    const double a = path.alpha(t) / path.alpha(s), sigma_t = path.sigma(t), sigma_s = path.sigma(s);
    const double g2 = sigma_t * sigma_t - a * a * sigma_s * sigma_s;
    const double score_from_eps = -1.0 / sigma_t;
    const double noise = std::sqrt(std::max(0.0, g2));
    const Tensor z = rng.normal(shape_of(x));
    float* px = x.data();
    for (std::size_t j = 0; j < x.size(); ++j) {
      const double score = score_from_eps * p.eps.data()[j];
      const double mean = px[j] - (a - 1.0) * px[j] + g2 * score;
      px[j] = float(mean + noise * z.data()[j]);
    }
  }
};

/// Ancestral sampling: x_s ~ q(x_s | x_t, x0 = x0_hat(x_t, t)), the Gaussian posterior of the
/// path, with its own variance (`variance: posterior`) or the forward transition's G^2
/// (`variance: beta`). Song's AncestralSamplingPredictor is `beta` on VP (DDPM's sampler with
/// sigma_t^2 = beta_t: mean (x + beta score) / sqrt(1 - beta), variance beta) and `posterior` on
/// VE (mean x + (sigma_t^2 - sigma_s^2) score, variance sigma_s^2 (sigma_t^2 - sigma_s^2) / sigma_t^2).
class AncestralPredictor : public Predictor {
 public:
  explicit AncestralPredictor(bool beta_variance) : beta_variance_(beta_variance) {}
  std::string name() const override { return "ancestral"; }
  bool stochastic() const override { return true; }
  void step(const Denoiser& model, const Condition& c, double t, double s, Tensor& x, Prediction& p,
            Rng& rng) const override {
    model.predict(x, t, c, p);
    const GaussianPosterior q = gaussian_posterior(model.path(), t, s, false);
    const double sd = std::sqrt(std::max(0.0, beta_variance_ ? q.transition_variance : q.variance));
    const Tensor z = rng.normal(shape_of(x));
    float* px = x.data();
    for (std::size_t j = 0; j < x.size(); ++j)
      px[j] = float(q.c_xt * px[j] + q.c_x0 * p.x0.data()[j] + sd * z.data()[j]);
  }

 private:
  bool beta_variance_;
};

/// No predictor: the corrector alone (annealed Langevin dynamics, Song & Ermon 2019).
class NoPredictor : public Predictor {
 public:
  std::string name() const override { return "none"; }
  bool stochastic() const override { return false; }
  void step(const Denoiser&, const Condition&, double, double, Tensor&, Prediction&, Rng&) const override {}
};

}  // namespace

const std::vector<std::string>& predictor_names() {
  static const std::vector<std::string> names = {"euler_maruyama", "reverse_diffusion", "ancestral", "none"};
  return names;
}

std::shared_ptr<const Predictor> read_predictor(const ConfigNode& sampler, const std::string& key,
                                                const std::string& def) {
  const auto node = sampler.find(key);
  const std::string type = node ? node->type() : def;
  if (type == "euler_maruyama") return std::make_shared<EulerMaruyamaPredictor>();
  if (type == "reverse_diffusion") return std::make_shared<ReverseDiffusionPredictor>();
  if (type == "none") return std::make_shared<NoPredictor>();
  if (type == "ancestral") {
    const bool beta = node && node->get_choice("variance", "posterior", {"posterior", "beta"}) == "beta";
    return std::make_shared<AncestralPredictor>(beta);
  }
  const ConfigNode where = node->is_map() ? node->at("type") : *node;
  where.error("unknown predictor '" + type + "' (expected one of " + join(predictor_names(), ", ") + ")");
}

}  // namespace diffusion::score_sde

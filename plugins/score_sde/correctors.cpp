// Correctors of the PC sampler (Song et al. 2021, Algorithms 4 and 5; sampling.py's
// LangevinCorrector and NoneCorrector).
#include "correctors.hpp"

#include <cmath>

#include <diffusion/io/text.hpp>

namespace diffusion::score_sde {
namespace {

/// Per row of x (N, ...), the L2 norm of the row, averaged over the rows (Song's code's norms).
double mean_row_norm(const Tensor& x) {
  const std::size_t n = x.shape()[0], d = n ? x.size() / n : 0;
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    double sq = 0.0;
    for (std::size_t j = 0; j < d; ++j) sq += double(x.data()[i * d + j]) * x.data()[i * d + j];
    total += std::sqrt(sq);
  }
  return n ? total / double(n) : 0.0;
}

/// Langevin MCMC with the step size set by a signal-to-noise ratio r (Algorithms 4, 5): `steps`
/// times,
///   grad = score(x, t),  z ~ N(0, I),  eps = 2 alpha_i (r ||z|| / ||grad||)^2,
///   x = x + eps grad + sqrt(2 eps) z,
/// with ||.|| the rows' L2 norms averaged over the batch. alpha_i = (alpha(t) / alpha(t_next))^2,
/// the signal kept by the forward step to the next time: 1 - beta_i on DDPM's path, 1 on VE, and
/// on VP about 1 - beta(t) dt (Song's code takes 1 - beta(t) / 1000 whatever the step count: the
/// same on his 1000-step grid); 1 at the last grid time, which has no next time.
class LangevinCorrector : public Corrector {
 public:
  LangevinCorrector(double snr, std::size_t steps) : snr_(snr), steps_(steps) {}
  std::string name() const override { return "langevin"; }
  bool stochastic() const override { return true; }
  void correct(const Denoiser& model, const Condition& c, double t, std::optional<double> next, Tensor& x,
               Prediction& p, Rng& rng) const override {
    const Path& path = model.path();
    const double ratio = next ? path.alpha(t) / path.alpha(*next) : 1.0;
    const double alpha_i = ratio * ratio, sigma = path.sigma(t);
    for (std::size_t k = 0; k < steps_; ++k) {
      model.predict(x, t, c, p);
      const Tensor z = rng.normal(shape_of(x));
      // score = -eps / sigma, so ||score|| = ||eps|| / sigma.
      const double grad_norm = mean_row_norm(p.eps) / sigma, noise_norm = mean_row_norm(z);
      if (!(grad_norm > 0.0)) continue;  // a zero score: nothing to follow
      const double r = snr_ * noise_norm / grad_norm;
      const double step = 2.0 * alpha_i * r * r, noise = std::sqrt(2.0 * step);
      float* px = x.data();
      for (std::size_t j = 0; j < x.size(); ++j) {
        const double grad = -p.eps.data()[j] / sigma;
        px[j] = float(px[j] + step * grad + noise * z.data()[j]);
      }
    }
  }

 private:
  double snr_;
  std::size_t steps_;
};

class NoCorrector : public Corrector {
 public:
  std::string name() const override { return "none"; }
  bool stochastic() const override { return false; }
  void correct(const Denoiser&, const Condition&, double, std::optional<double>, Tensor&, Prediction&,
               Rng&) const override {}
};

}  // namespace

const std::vector<std::string>& corrector_names() {
  static const std::vector<std::string> names = {"langevin", "none"};
  return names;
}

std::shared_ptr<const Corrector> read_corrector(const ConfigNode& sampler, const std::string& key) {
  const auto node = sampler.find(key);
  const std::string type = node ? node->type() : "langevin";
  if (type == "none") return std::make_shared<NoCorrector>();
  if (type == "langevin") {
    const double snr = node ? node->get_double("snr", 0.16, Interval::greater_than(0.0)) : 0.16;
    const auto steps = node ? node->get_int("steps", 1, 1, 100000) : 1;
    return std::make_shared<LangevinCorrector>(snr, static_cast<std::size_t>(steps));
  }
  const ConfigNode where = node->is_map() ? node->at("type") : *node;
  where.error("unknown corrector '" + type + "' (expected one of " + join(corrector_names(), ", ") + ")");
}

}  // namespace diffusion::score_sde

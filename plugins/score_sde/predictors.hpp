#pragma once
// The predictors of the predictor-corrector sampler (Song et al. 2021, section 4.2 and
// appendix G; their code's sampling.py): one step of a discretisation of the reverse-time SDE
//   dx = [f(t) x - g(t)^2 grad log p_t(x)] dt + g(t) dw-bar      (eq. 6)
// from t to s < t, with the score read from the denoiser as -eps_hat / sigma(t). Everything is
// written with the path's alpha, sigma, f and g^2, so the same predictors run on vp, subvp, ve and
// DDPM's discrete path.
#include <memory>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>

namespace diffusion::score_sde {

class Predictor {
 public:
  virtual ~Predictor() = default;
  /// The YAML name.
  virtual std::string name() const = 0;
  /// True when the step adds Gaussian noise (it then needs the standard Gaussian source).
  virtual bool stochastic() const = 0;
  /// x at time t becomes x at time s < t. `p` is scratch for the model's predictions.
  virtual void step(const Denoiser& model, const Condition& c, double t, double s, Tensor& x, Prediction& p,
                    Rng& rng) const = 0;
};

/// euler_maruyama, reverse_diffusion, ancestral, none.
const std::vector<std::string>& predictor_names();

/// The predictor under `key` of a sampler's node (a name, or a map with `type:` and the
/// predictor's options), `def` when absent; a ConfigError lists the names for an unknown one.
std::shared_ptr<const Predictor> read_predictor(const ConfigNode& sampler, const std::string& key,
                                                const std::string& def);

}  // namespace diffusion::score_sde

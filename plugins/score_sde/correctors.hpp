#pragma once
// The correctors of the predictor-corrector sampler (Song et al. 2021, section 4.2, Algorithms
// 4 and 5; their code's sampling.py): score-based MCMC steps at one time t that move x towards
// p_t, with the score read from the denoiser as -eps_hat / sigma(t).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>

namespace diffusion::score_sde {

class Corrector {
 public:
  virtual ~Corrector() = default;
  /// The YAML name.
  virtual std::string name() const = 0;
  /// True when it adds Gaussian noise (it then needs the standard Gaussian source).
  virtual bool stochastic() const = 0;
  /// Corrects x at time t; `next` is the sampler's next time (none at the last grid time), from
  /// which the step size's alpha_i follows. `p` is scratch for the model's predictions.
  virtual void correct(const Denoiser& model, const Condition& c, double t, std::optional<double> next, Tensor& x,
                       Prediction& p, Rng& rng) const = 0;
};

/// langevin, none.
const std::vector<std::string>& corrector_names();

/// The corrector under `key` of a sampler's node (a name, or a map with `type:` and its
/// options; langevin's are `snr` (default 0.16) and `steps` (default 1)); Langevin with its
/// defaults when absent. A ConfigError lists the names for an unknown one.
std::shared_ptr<const Corrector> read_corrector(const ConfigNode& sampler, const std::string& key);

}  // namespace diffusion::score_sde

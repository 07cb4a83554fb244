#pragma once
// A potential of a Feynman-Kac sampler: a nonnegative G(x) whose product with the model's
// distribution is the target, pi(x0) ∝ p(x0) G(x0) (a likelihood p(y | x0), an indicator, a
// tilt exp(r(x0) / temperature)). The sampler also evaluates it at intermediate times on the
// denoiser's estimate x0_hat(x_t) (TDS's twisting functions p~_t(x_t) = G(x0_hat(x_t)), Wu et
// al. 2023 section 3.2; Feynman-Kac steering's potentials, Singhal et al. 2025 section 3), where a
// potential may also use x_t and t (a noise-conditional classifier's p(y | x_t) is the ideal
// twist). Values are log G on the autodiff graph, so twisted proposals get grad_x log p~_t.
// Potentials are registered in the `potentials` registry (YAML key `potential:` of a sampler)
// and work in the model's (encoded) space, where the sampler's particles live.
#include <string>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/model/path.hpp"
#include "diffusion/model/sampler.hpp"

namespace diffusion {

/// Where a potential is evaluated.
struct PotentialPoint {
  Var x_t;       ///< the particles (N, sample...)
  Var x0_hat;    ///< the denoiser's estimate of their clean data; x_t itself at the data
  double t;      ///< the path's time (t_min at the data)
  bool at_data;  ///< true: the final potential G(x0); false: an intermediate twist
};

/// What a potential may read besides the particles.
struct PotentialContext {
  const Path* path = nullptr;
  const SampleRequest* request = nullptr;  ///< named models, the condition
};

class Potential {
 public:
  virtual ~Potential() = default;
  /// log G of each row, shape (N); -inf where G is 0.
  virtual Var log_value(const PotentialPoint& at, const PotentialContext& ctx) const = 0;
  /// False when log G has no useful gradient (a hard indicator): no twisted proposal then.
  virtual bool differentiable() const { return true; }
  /// Named models it reads (a classifier), so an experiment without them is refused early.
  virtual std::vector<std::string> required_models() const { return {}; }
};

}  // namespace diffusion

// Langevin dynamics (Song & Ermon 2019, section 2.2, eq. 4; Welling & Teh 2011) with a learned
// score, at the path's smallest noise level t_min:
//
//   x_k = x_(k-1) + (eps / 2) s(x_(k-1)) + sqrt(eps) z_k,   s = grad log p_(t_min) = -eps_hat / sigma,
//
// for `steps` steps of size `step_size` (eps; no default: it must be small against sigma(t_min)^2
// and the data's finest scale, and Langevin's bias grows with it), unadjusted (no Metropolis
// correction). The chains start from `init: prior` (the source's draw at t_max) or
// `init: uniform` on [low, high]. `denoise: true` ends with Tweedie's step x + sigma^2 s(x) (over
// alpha where alpha != 1), the denoiser's x0_hat: the sample of the data rather than of the data
// plus sigma(t_min) noise. This is the seed's single-level sampler: between well-separated modes
// it mixes slowly, which annealed_langevin fixes.
#include <diffusion/plugin.hpp>

#include "langevin_dynamics.hpp"

namespace diffusion::score_matching {
namespace {

class LangevinSampler : public Sampler {
 public:
  LangevinSampler(std::size_t steps, double step_size, LangevinInit init, bool denoise)
      : steps_(steps), step_size_(step_size), init_(init), denoise_(denoise) {}

  void check(const Path& path, const Source& source) const override {
    require_gaussian_source(source, "langevin");
    require_positive_sigma(path, path.t_min(), "langevin");
  }

  SampleOutput sample(const Denoiser& model, const SampleRequest& req, Rng& rng) const override {
    const Path& path = model.path();
    const double t = path.t_min(), sigma = path.sigma(t);
    const std::size_t total = steps_ + (denoise_ ? 1 : 0);
    Tensor x = init_.draw(path, req.source_or_default(), req.shape, rng);
    if (req.trajectory) req.trajectory->record(x, t, 0, total);
    Prediction p;
    Tensor noise;
    for (std::size_t k = 0; k < steps_; ++k) {
      model.predict(x, t, req.condition, p);
      langevin_step(x, p.eps, sigma, step_size_, noise, rng);
      if (req.trajectory) req.trajectory->record(x, t, k + 1, total);
    }
    if (denoise_) {
      model.predict(x, t, req.condition, p);
      x = p.x0;  // (x + sigma^2 s(x)) / alpha
      if (req.trajectory) req.trajectory->record(x, t, total, total);
    }
    return {std::move(x), {}, {}};
  }

 private:
  std::size_t steps_;
  double step_size_;
  LangevinInit init_;
  bool denoise_;
};

std::shared_ptr<Sampler> make_langevin(const ConfigNode& c, const BuildContext&) {
  const auto steps = static_cast<std::size_t>(c.get_int("steps", 1000, 1, 100000000));
  const double step_size = c.require_double("step_size", Interval::greater_than(0.0));
  const LangevinInit init = LangevinInit::read(c, "langevin");
  return std::make_shared<LangevinSampler>(steps, step_size, init, c.get_bool("denoise", false));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "langevin", make_langevin);

}  // namespace diffusion::score_matching

// `potential_guidance`: plain gradient guidance, the baseline that TDS corrects (Wu et al. 2023,
// section 3.3: their twisted proposal alone, i.e. reconstruction guidance / DPS-style guidance
// with the likelihood evaluated at x0_hat; Chung et al. 2023). Every sample follows the reverse
// kernel with its mean shifted by scale * h * grad_x log G(x0_hat(x_t)) (reverse_kernel.hpp) and
// carries no weight: the samples are not distributed as p(x0) G(x0) / Z (log G(x0_hat(x_t)) is
// not log p_t(y | x_t)), which tests/plugins/test_smc.cpp measures against the exact posterior.
// Options: `potential:` (required, differentiable), `scale` (default 1), `twist_schedule`
// (twist.hpp; default constant), `steps`, `spacing`, `timesteps`. Each step costs one forward and one backward pass of the model.
#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

#include "fk_target.hpp"
#include "potential.hpp"
#include "reverse_kernel.hpp"
#include "twist.hpp"

namespace diffusion::smc {
namespace {

class PotentialGuidanceSampler : public Sampler {
 public:
  PotentialGuidanceSampler(GridOption grid, std::shared_ptr<const Potential> potential, double scale,
                           TwistSchedule schedule)
      : grid_(std::move(grid)), potential_(std::move(potential)), scale_(scale), schedule_(schedule) {}

  void check(const Path& path, const Source& source) const override {
    if (!source.standard_normal())
      throw Error("potential_guidance: its Gaussian posterior needs the standard Gaussian source, not " + source.name());
    grid_.grid->times(path, resolve_steps(grid_.steps, path, "potential_guidance"));
  }
  std::vector<std::string> required_models() const override { return potential_->required_models(); }

  SampleOutput sample(const Denoiser& model, const SampleRequest& req, Rng& rng) const override {
    const Path& path = model.path();
    const std::size_t steps = resolve_steps(grid_.steps, path, "potential_guidance");
    const std::vector<double> grid = grid_.grid->times(path, steps);
    const BoundTarget target = target_.bind(model, req);
    const PotentialContext pctx{&path, &req};
    Tensor x = req.source_or_default().start(path, req.shape, rng);
    if (req.trajectory) req.trajectory->record(x, grid[0], 0, steps);
    TwistedState state;
    for (std::size_t k = 0; k < steps; ++k) {
      const bool last = k + 1 == steps;
      const double t = grid[k], s = last ? 0.0 : grid[k + 1];
      evaluate_twist(target, potential_.get(), pctx, x, t, req.condition, !last, twist_scale_at(schedule_, path, t), state);
      ReverseKernel(path, t, s, last).move(x, state.pred.x0, last ? nullptr : &state.grad, scale_, rng, nullptr);
      if (req.trajectory) req.trajectory->record(x, last ? path.t_min() : s, k + 1, steps);
    }
    return {std::move(x), {}, {}};
  }

 private:
  GridOption grid_;
  std::shared_ptr<const Potential> potential_;
  double scale_;
  TwistSchedule schedule_;
  FkTarget target_{std::vector<Expert>{}};  // the model itself
};

std::shared_ptr<Sampler> make_potential_guidance(const ConfigNode& c, const BuildContext& ctx) {
  GridOption grid = read_time_grid(c, 0, ctx);
  auto potential = read_potential(c.at("potential"), ctx);
  if (!potential->differentiable())
    c.at("potential").error("guidance follows the potential's gradient; this one has none (a hard indicator: give it softness > 0)");
  const double scale = c.get_double("scale", 1.0, Interval::at_least(0));
  return std::make_shared<PotentialGuidanceSampler>(std::move(grid), std::move(potential), scale, read_twist_schedule(c));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "potential_guidance", make_potential_guidance);

}  // namespace diffusion::smc

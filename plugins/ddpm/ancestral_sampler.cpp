// Ancestral sampling, DDPM Algorithm 2 (Ho et al. 2020), on any time grid:
// x_s ~ q(x_s | x_t, x0 = x0_hat(x_t, t)), with the posterior variance beta-tilde or the
// forward transition variance beta (the two choices of section 3.2); x0_hat optionally clipped
// to the data's range (clip_x0.hpp).
#include <cmath>

#include <diffusion/model/gaussian_posterior.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

#include "clip_x0.hpp"

namespace diffusion::ddpm {
namespace {

class AncestralSampler : public Sampler {
 public:
  AncestralSampler(GridOption grid, bool beta_variance, double clip)
      : grid_(std::move(grid)), beta_variance_(beta_variance), clip_(clip) {}

  void check(const Path& path, const Source& source) const override {
    if (!source.standard_normal())
      throw Error("ancestral: its Gaussian posterior needs the standard Gaussian source, not " + source.name());
    grid_.grid->times(path, resolve_steps(grid_.steps, path, "ancestral"));
  }

  SampleOutput sample(const Denoiser& model, const SampleRequest& req, Rng& rng) const override {
    const Path& path = model.path();
    const std::size_t steps = resolve_steps(grid_.steps, path, "ancestral");
    const std::vector<double> grid = grid_.grid->times(path, steps);
    Tensor x = req.source_or_default().start(path, req.shape, rng);
    if (req.trajectory) req.trajectory->record(x, grid[0], 0, steps);
    Prediction p;
    for (std::size_t i = 0; i < steps; ++i) {
      const bool last = i + 1 == steps;
      const double t = grid[i], s = last ? 0.0 : grid[i + 1];
      model.predict(x, t, req.condition, p);
      clip_x0(p, x, path, t, clip_);
      const GaussianPosterior q = gaussian_posterior(path, t, s, last);
      const double sd = std::sqrt(beta_variance_ ? q.transition_variance : q.variance);
      const Tensor z = rng.normal(req.shape);
      for (std::size_t j = 0; j < x.size(); ++j)
        x.data()[j] = float(q.c_xt * x.data()[j] + q.c_x0 * p.x0.data()[j] + sd * z.data()[j]);
      if (req.trajectory) req.trajectory->record(x, s, i + 1, steps);
    }
    return {std::move(x), {}, {}};
  }

 private:
  GridOption grid_;
  bool beta_variance_;
  double clip_;
};

std::shared_ptr<Sampler> make_ancestral(const ConfigNode& c, const BuildContext& ctx) {
  GridOption grid = read_time_grid(c, 0, ctx);  // steps 0: every step of the path
  const std::string v = c.get_choice("variance", "posterior", {"posterior", "beta"});
  return std::make_shared<AncestralSampler>(std::move(grid), v == "beta", read_clip_x0(c));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "ancestral", make_ancestral);

}  // namespace diffusion::ddpm

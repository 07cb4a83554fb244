// Ancestral sampling, DDPM Algorithm 2 (Ho et al. 2020), on any subsequence of the time grid:
// x_s ~ q(x_s | x_t, x0 = x0_hat(x_t, t)), with the posterior variance beta-tilde or the
// forward transition variance beta (the two choices of section 3.2).
#include <cmath>

#include <diffusion/model/gaussian_posterior.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::ddpm {
namespace {

class AncestralSampler : public Sampler {
 public:
  AncestralSampler(std::size_t steps, bool beta_variance, TimeSpacing spacing)
      : steps_(steps), beta_variance_(beta_variance), spacing_(spacing) {}
  void check(const Sde& sde) const override {
    if (steps_ == 0 && sde.num_steps() == 0) throw Error("ancestral: set `steps` for a continuous-time SDE");
    sde.time_grid(steps_ ? steps_ : sde.num_steps(), spacing_);
  }

  Tensor sample(const Denoiser& model, const Shape& shape, Rng& rng, Trajectory* traj,
                const std::vector<int>* labels) const override {
    const Sde& sde = model.sde();
    const std::size_t steps = steps_ ? steps_ : sde.num_steps();
    if (steps == 0) throw Error("ancestral: set `steps` for a continuous-time SDE");
    const std::vector<double> grid = sde.time_grid(steps, spacing_);
    Tensor x = sde.prior_sample(shape, rng);
    if (traj) traj->record(x, grid[0], 0, steps);
    Tensor eps, x0, z;
    for (std::size_t i = 0; i < steps; ++i) {
      const bool last = i + 1 == steps;
      const double t = grid[i], s = last ? 0.0 : grid[i + 1];
      model.predict(x, t, eps, x0, labels);
      const GaussianPosterior q = gaussian_posterior(sde, t, s, last);
      const double sd = std::sqrt(beta_variance_ ? q.transition_variance : q.variance);
      z = rng.normal(shape);
      for (std::size_t j = 0; j < x.size(); ++j)
        x.data()[j] = float(q.c_xt * x.data()[j] + q.c_x0 * x0.data()[j] + sd * z.data()[j]);
      if (traj) traj->record(x, s, i + 1, steps);
    }
    return x;
  }

 private:
  std::size_t steps_;
  bool beta_variance_;
  TimeSpacing spacing_;
};

std::shared_ptr<Sampler> make_ancestral(const ConfigNode& c, const BuildContext&) {
  const auto steps = static_cast<std::size_t>(c.get_int("steps", 0, 0, 1000000));
  const std::string v = c.get_choice("variance", "posterior", {"posterior", "beta"});
  const auto spacing = parse_time_spacing(c.get_choice("spacing", "linear", {"linear", "quadratic"}));
  return std::make_shared<AncestralSampler>(steps, v == "beta", spacing);
}

}  // namespace

DIFFUSION_REGISTER(samplers, "ancestral", make_ancestral);

}  // namespace diffusion::ddpm

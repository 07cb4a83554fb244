// DDIM (Song, Meng & Ermon 2021, eq. 12): from x_t predict x0_hat and eps_hat, then
//   x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
//   c = eta * sqrt(posterior variance of q(x_s | x_t, x0))    (eq. 16),
// so eta = 0 is the deterministic sampler and eta = 1 is ancestral sampling (DDPM).
// `prior: rqmc` starts from randomised quasi-Monte Carlo draws instead of independent ones: with
// eta = 0 the map from prior to samples is deterministic, so evenly spread starting points give
// evenly spread samples, each still distributed exactly as with independent draws.
#include <cmath>
#include <string>

#include <diffusion/quasi_random.hpp>

#include <diffusion/gaussian_posterior.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::ddpm {
namespace {

class DdimSampler : public Sampler {
 public:
  DdimSampler(std::size_t steps, double eta, TimeSpacing spacing, PriorDraw prior)
      : steps_(steps), eta_(eta), spacing_(spacing), prior_(prior) {}
  void check(const Sde& sde) const override { sde.time_grid(steps_, spacing_); }

  Tensor sample(const Denoiser& model, const Shape& shape, Rng& rng, Trajectory* traj,
                const std::vector<int>* labels) const override {
    const Sde& sde = model.sde();
    const std::vector<double> grid = sde.time_grid(steps_, spacing_);
    Tensor x = sde.prior_sample(shape, rng, prior_);
    if (traj) traj->record(x, grid[0], 0, steps_);
    Tensor eps, x0;
    for (std::size_t i = 0; i < steps_; ++i) {
      const bool last = i + 1 == steps_;
      const double t = grid[i], s = last ? 0.0 : grid[i + 1];
      model.predict(x, t, eps, x0, labels);
      const GaussianPosterior q = gaussian_posterior(sde, t, s, last);
      const double c = eta_ * std::sqrt(q.variance);
      const double dir = std::sqrt(std::max(0.0, q.sigma_s * q.sigma_s - c * c));
      float* px = x.data();
      if (c > 0.0) {
        const Tensor z = rng.normal(shape);
        for (std::size_t j = 0; j < x.size(); ++j)
          px[j] = float(q.alpha_s * x0.data()[j] + dir * eps.data()[j] + c * z.data()[j]);
      } else {
        for (std::size_t j = 0; j < x.size(); ++j)
          px[j] = float(q.alpha_s * x0.data()[j] + dir * eps.data()[j]);
      }
      if (traj) traj->record(x, s, i + 1, steps_);
    }
    return x;
  }

 private:
  std::size_t steps_;
  double eta_;
  TimeSpacing spacing_;
  PriorDraw prior_;
};

std::shared_ptr<Sampler> make_ddim(const ConfigNode& c, const BuildContext& ctx) {
  const auto steps = static_cast<std::size_t>(c.get_int("steps", 50, 1, 1000000));
  const double eta = c.get_double("eta", 0.0, 0.0, 10.0);
  const auto spacing = parse_time_spacing(c.get_choice("spacing", "linear", {"linear", "quadratic"}));
  const auto prior = parse_prior_draw(c.get_choice("prior", "iid", {"iid", "rqmc"}));
  const std::size_t dim = numel(ctx.data_shape);
  if (prior == PriorDraw::rqmc && dim > kMaxRqmcDimension)
    c.at("prior").error("rqmc draws are for samples of at most " + std::to_string(kMaxRqmcDimension) +
                        " values; this data set's have " + std::to_string(dim) + " (use iid)");
  return std::make_shared<DdimSampler>(steps, eta, spacing, prior);
}

}  // namespace

DIFFUSION_REGISTER(samplers, "ddim", make_ddim);

}  // namespace diffusion::ddpm

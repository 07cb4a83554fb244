// DDIM (Song, Meng & Ermon 2021, eq. 12): from x_t predict x0_hat and eps_hat, then
//   x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
//   c = eta * sqrt(posterior variance of q(x_s | x_t, x0))    (eq. 16),
// so eta = 0 is the deterministic sampler and eta = 1 is ancestral sampling (DDPM).
// `timesteps: [t_1, ..., t_S]` gives the sub-sequence tau of the paper (section 4.2) explicitly,
// any strictly decreasing times; the last step goes from t_S to the data. Without it, `steps`
// times are spread by `spacing`.
// `prior: rqmc` starts from randomised quasi-Monte Carlo draws instead of independent ones: with
// eta = 0 the map from prior to samples is deterministic, so evenly spread starting points give
// evenly spread samples, each still distributed exactly as with independent draws.
#include <cmath>
#include <string>

#include <diffusion/quasi_random.hpp>

#include <diffusion/gaussian_posterior.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/text.hpp>

namespace diffusion::ddpm {
namespace {

class DdimSampler : public Sampler {
 public:
  DdimSampler(std::size_t steps, double eta, TimeSpacing spacing, PriorDraw prior,
              std::vector<double> timesteps)
      : steps_(steps), eta_(eta), spacing_(spacing), prior_(prior), timesteps_(std::move(timesteps)) {}
  void check(const Sde& sde) const override { grid(sde); }

  Tensor sample(const Denoiser& model, const Shape& shape, Rng& rng, Trajectory* traj,
                const std::vector<int>* labels) const override {
    const Sde& sde = model.sde();
    const std::vector<double> grid = this->grid(sde);
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
  std::vector<double> grid(const Sde& sde) const {
    if (timesteps_.empty()) return sde.time_grid(steps_, spacing_);
    for (const double t : timesteps_)
      if (t < sde.t_min() || t > sde.t_max())
        throw Error("ddim: timestep " + format_number(t) + " lies outside the SDE's times [" +
                    format_number(sde.t_min()) + ", " + format_number(sde.t_max()) + "]");
    return timesteps_;
  }

  std::size_t steps_;
  double eta_;
  TimeSpacing spacing_;
  PriorDraw prior_;
  std::vector<double> timesteps_;  // explicit grid; empty: steps_ spread by spacing_
};

std::shared_ptr<Sampler> make_ddim(const ConfigNode& c, const BuildContext& ctx) {
  auto steps = static_cast<std::size_t>(c.get_int("steps", 50, 1, 1000000));
  std::vector<double> timesteps;
  if (c.has("timesteps")) {
    timesteps = c.get_double_list("timesteps");
    if (timesteps.empty()) c.at("timesteps").error("expected a non-empty list of strictly decreasing times");
    for (std::size_t i = 1; i < timesteps.size(); ++i)
      if (!(timesteps[i] < timesteps[i - 1]))
        c.at("timesteps").error("expected strictly decreasing times; entry " + std::to_string(i + 1) + " (" +
                                format_number(timesteps[i]) + ") follows " + format_number(timesteps[i - 1]));
    if (c.has("steps") && steps != timesteps.size())
      c.at("steps").error("steps is " + std::to_string(steps) + " but timesteps lists " +
                          std::to_string(timesteps.size()) + " times; give one of the two");
    if (c.has("spacing")) c.at("spacing").error("spacing and timesteps exclude each other");
    steps = timesteps.size();
  }
  const double eta = c.get_double("eta", 0.0, 0.0, 10.0);
  const auto spacing = parse_time_spacing(c.get_choice("spacing", "linear", {"linear", "quadratic"}));
  const auto prior = parse_prior_draw(c.get_choice("prior", "iid", {"iid", "rqmc"}));
  const std::size_t dim = numel(ctx.data_shape);
  if (prior == PriorDraw::rqmc && dim > kMaxRqmcDimension)
    c.at("prior").error("rqmc draws are for samples of at most " + std::to_string(kMaxRqmcDimension) +
                        " values; this data set's have " + std::to_string(dim) + " (use iid)");
  return std::make_shared<DdimSampler>(steps, eta, spacing, prior, std::move(timesteps));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "ddim", make_ddim);

}  // namespace diffusion::ddpm

// DDIM (Song, Meng & Ermon 2021, eq. 12): from x_t predict x0_hat and eps_hat, then
//   x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
//   c = eta * sqrt(posterior variance of q(x_s | x_t, x0))    (eq. 16),
// so eta = 0 is the deterministic sampler and eta = 1 is ancestral sampling (DDPM).
// The sub-sequence tau of times (the paper's section 4.2) comes from `steps` and `spacing`:
// `linear` or `quadratic` (the paper's two), or `{type: piecewise, times: [..], shares: [..]}`,
// which puts shares[k] / sum(shares) of the steps between times[k] and times[k + 1], evenly
// (rounded to whole steps for DDPM), so the same shape serves any number of steps. Or
// `timesteps: [t_1, ..., t_S]` lists them outright. The last step goes from t_S to the data.
// `prior: rqmc` starts from randomised quasi-Monte Carlo draws instead of independent ones: with
// eta = 0 the map from prior to samples is deterministic, so evenly spread starting points give
// evenly spread samples, each still distributed exactly as with independent draws.
#include <algorithm>
#include <cmath>
#include <string>

#include <diffusion/tensor/quasi_random.hpp>

#include <diffusion/model/gaussian_posterior.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/io/text.hpp>

namespace diffusion::ddpm {
namespace {

class DdimSampler : public Sampler {
 public:
  /// A piecewise spacing: steps spread over [times[k], times[k + 1]] in proportion to shares[k].
  struct Piecewise {
    std::vector<double> times, shares;
  };

  DdimSampler(std::size_t steps, double eta, TimeSpacing spacing, Piecewise piecewise,
              PriorDraw prior, std::vector<double> timesteps)
      : steps_(steps), eta_(eta), spacing_(spacing), piecewise_(std::move(piecewise)),
        prior_(prior), timesteps_(std::move(timesteps)) {}
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
    if (!timesteps_.empty()) return checked(sde, "timestep", timesteps_);
    if (piecewise_.times.empty()) return sde.time_grid(steps_, spacing_);
    checked(sde, "spacing time", piecewise_.times);
    if (sde.num_steps() > 0 && steps_ > sde.num_steps())
      throw Error("ddim: " + std::to_string(steps_) + " steps, but the SDE has only " +
                  std::to_string(sde.num_steps()));
    return piecewise_grid(sde);
  }

  static const std::vector<double>& checked(const Sde& sde, const char* what,
                                            const std::vector<double>& times) {
    for (const double t : times)
      if (t < sde.t_min() || t > sde.t_max())
        throw Error(std::string("ddim: ") + what + " " + format_number(t) + " lies outside the SDE's times [" +
                    format_number(sde.t_min()) + ", " + format_number(sde.t_max()) + "]");
    return times;
  }

  // u_i = i / (steps - 1) through the piecewise-linear map that sends the cumulative shares
  // (0 = u_0 < u_1 < ... < u_K = 1) to the times.
  std::vector<double> piecewise_grid(const Sde& sde) const {
    const std::vector<double>& times = piecewise_.times;
    std::vector<double> u(times.size(), 0.0);
    double total = 0.0;
    for (const double w : piecewise_.shares) total += w;
    for (std::size_t k = 0; k + 1 < times.size(); ++k) u[k + 1] = u[k] + piecewise_.shares[k];
    for (double& v : u) v /= total;
    u.back() = 1.0;
    std::vector<double> grid(steps_);
    std::size_t k = 0;
    for (std::size_t i = 0; i < steps_; ++i) {
      const double ui = steps_ == 1 ? 0.0 : double(i) / double(steps_ - 1);
      while (k + 2 < times.size() && ui > u[k + 1]) ++k;
      grid[i] = times[k] + (ui - u[k]) / (u[k + 1] - u[k]) * (times[k + 1] - times[k]);
      if (sde.num_steps() > 0) grid[i] = std::round(grid[i]);  // DDPM's whole steps
    }
    // Rounding can repeat a time where steps are dense: keep the grid strictly decreasing.
    if (sde.num_steps() > 0)
      for (std::size_t i = steps_ - 1; i-- > 0;) grid[i] = std::max(grid[i], grid[i + 1] + 1);
    return grid;
  }

  std::size_t steps_;
  double eta_;
  TimeSpacing spacing_;
  Piecewise piecewise_;  // empty times: spacing_ applies
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
  TimeSpacing spacing = TimeSpacing::linear;
  DdimSampler::Piecewise piecewise;
  if (const auto sp = c.find("spacing"); sp && sp->is_map()) {
    if (sp->type() != "piecewise")
      sp->at("type").error("unknown spacing '" + sp->type() + "' (expected linear, quadratic or piecewise)");
    piecewise.times = sp->get_double_list("times");
    piecewise.shares = sp->get_double_list("shares", {}, 0.0);
    if (piecewise.times.size() < 2) sp->at("times").error("expected at least two times, from the first step's to the last's");
    for (std::size_t i = 1; i < piecewise.times.size(); ++i)
      if (!(piecewise.times[i] < piecewise.times[i - 1]))
        sp->at("times").error("expected strictly decreasing times; entry " + std::to_string(i + 1) + " (" +
                              format_number(piecewise.times[i]) + ") follows " + format_number(piecewise.times[i - 1]));
    if (piecewise.shares.size() != piecewise.times.size() - 1)
      sp->at("shares").error("expected one share per interval between the times (" +
                             std::to_string(piecewise.times.size() - 1) + "), got " +
                             std::to_string(piecewise.shares.size()));
    for (const double w : piecewise.shares)
      if (!(w > 0.0)) sp->at("shares").error("expected positive shares, got " + format_number(w));
  } else {
    spacing = parse_time_spacing(c.get_choice("spacing", "linear", {"linear", "quadratic"}));
  }
  const auto prior = parse_prior_draw(c.get_choice("prior", "iid", {"iid", "rqmc"}));
  const std::size_t dim = numel(ctx.data_shape);
  if (prior == PriorDraw::rqmc && dim > kMaxRqmcDimension)
    c.at("prior").error("rqmc draws are for samples of at most " + std::to_string(kMaxRqmcDimension) +
                        " values; this data set's have " + std::to_string(dim) + " (use iid)");
  return std::make_shared<DdimSampler>(steps, eta, spacing, std::move(piecewise), prior, std::move(timesteps));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "ddim", make_ddim);

}  // namespace diffusion::ddpm

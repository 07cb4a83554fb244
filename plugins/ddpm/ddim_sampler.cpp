// DDIM (Song, Meng & Ermon 2021, eq. 12): from x_t predict x0_hat and eps_hat, then
//   x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z,
//   c = eta * sqrt(posterior variance of q(x_s | x_t, x0))    (eq. 16),
// so eta = 0 is the deterministic sampler and eta = 1 is ancestral sampling (DDPM).
// The sub-sequence tau of times (the paper's section 4.2) is any registered time grid
// (`spacing:`; linear by default, quadratic as in the paper's appendix) or `timesteps: [..]`.
// The last step goes from the grid's last time to the data.
// `prior: rqmc` starts from randomised quasi-Monte Carlo draws instead of independent ones: with
// eta = 0 the map from prior to samples is deterministic, so evenly spread starting points give
// evenly spread samples, each still distributed exactly as with independent draws.
// `clip_x0` clips x0_hat to the data's range and reads eps_hat from it (clip_x0.hpp).
#include <algorithm>
#include <cmath>

#include <diffusion/model/gaussian_posterior.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

#include "clip_x0.hpp"

namespace diffusion::ddpm {
namespace {

class DdimSampler : public Sampler {
 public:
  DdimSampler(GridOption grid, double eta, PriorDraw prior, double clip)
      : grid_(std::move(grid)), eta_(eta), prior_(prior), clip_(clip) {}

  void check(const Path& path, const Source& source) const override {
    if (eta_ > 0 && !source.standard_normal())
      throw Error("ddim: eta > 0 adds Gaussian noise, which needs the standard Gaussian source, not " + source.name());
    if (prior_ == PriorDraw::rqmc && !source.standard_normal())
      throw Error("ddim: prior: rqmc draws from the standard Gaussian source, not " + source.name() + " (use prior: iid)");
    grid_.grid->times(path, grid_.steps);
  }

  SampleOutput sample(const Denoiser& model, const SampleRequest& req, Rng& rng) const override {
    const Path& path = model.path();
    const std::size_t steps = grid_.steps;
    const std::vector<double> grid = grid_.grid->times(path, steps);
    Tensor x = req.source_or_default().start(path, req.shape, rng, prior_);
    if (req.trajectory) req.trajectory->record(x, grid[0], 0, steps);
    Prediction p;
    for (std::size_t i = 0; i < steps; ++i) {
      const bool last = i + 1 == steps;
      const double t = grid[i], s = last ? 0.0 : grid[i + 1];
      model.predict(x, t, req.condition, p);
      clip_x0(p, x, path, t, clip_);
      const GaussianPosterior q = gaussian_posterior(path, t, s, last);
      const double c = eta_ * std::sqrt(q.variance);
      const double dir = std::sqrt(std::max(0.0, q.sigma_s * q.sigma_s - c * c));
      float* px = x.data();
      if (c > 0.0) {
        const Tensor z = rng.normal(req.shape);
        for (std::size_t j = 0; j < x.size(); ++j)
          px[j] = float(q.alpha_s * p.x0.data()[j] + dir * p.eps.data()[j] + c * z.data()[j]);
      } else {
        for (std::size_t j = 0; j < x.size(); ++j) px[j] = float(q.alpha_s * p.x0.data()[j] + dir * p.eps.data()[j]);
      }
      if (req.trajectory) req.trajectory->record(x, s, i + 1, steps);
    }
    return {std::move(x), {}, {}};
  }

 private:
  GridOption grid_;
  double eta_;
  PriorDraw prior_;
  double clip_;
};

std::shared_ptr<Sampler> make_ddim(const ConfigNode& c, const BuildContext& ctx) {
  GridOption grid = read_time_grid(c, 50, ctx);
  const double eta = c.get_double("eta", 0.0, 0.0, 10.0);
  return std::make_shared<DdimSampler>(std::move(grid), eta, read_prior_draw(c, ctx), read_clip_x0(c));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "ddim", make_ddim);

}  // namespace diffusion::ddpm

// Predictor-corrector sampling (Song et al. 2021, section 4.2, Algorithm 1; their code's
// sampling.py pc_sampler). On a grid t_0 = t_max > ... > t_{N-1} = t_min (any time grid; default
// linear, 1000 steps: linspace(1, eps, N) as in Song's code):
//
//   x ~ the prior at t_max
//   for i = 0 .. N-1:
//     x = corrector(x, t_i)                 (Langevin MCMC at p_{t_i}, or none)
//     if i < N-1: x = predictor(x, t_i -> t_{i+1})   (a reverse-SDE step, or none)
//   denoise: x = x0_hat(x, t_min)           (Tweedie's formula, one more network evaluation)
//
// Corrector before predictor at each time, as Song's code (the paper's Algorithms 2 and 3 put
// the predictor first; the two orders differ only in the first and last step). `denoise: true`
// (the default, as Song's code, which returns the noise-free mean of its last step) ends with the
// denoiser's estimate of the clean data at t_min, whatever the predictor (also none);
// `denoise: false` returns x at t_min, still carrying noise of std sigma(t_min). Network
// evaluations: N (1 + corrector steps) with a predictor; N * corrector steps + 1 without.
// Options: `predictor:` (predictors.hpp, default reverse_diffusion), `corrector:` (correctors.hpp,
// default {type: langevin, snr: 0.16, steps: 1}), `steps`, `spacing`, `timesteps`, `prior`.
#include <optional>

#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

#include "correctors.hpp"
#include "predictors.hpp"

namespace diffusion::score_sde {
namespace {

class PcSampler : public Sampler {
 public:
  PcSampler(GridOption grid, std::shared_ptr<const Predictor> predictor, std::shared_ptr<const Corrector> corrector,
            bool denoise, PriorDraw prior)
      : grid_(std::move(grid)),
        predictor_(std::move(predictor)),
        corrector_(std::move(corrector)),
        denoise_(denoise),
        prior_(prior) {}

  void check(const Path& path, const Source& source) const override {
    if (!source.standard_normal()) {
      if (predictor_->stochastic())
        throw Error("pc: the " + predictor_->name() + " predictor adds Gaussian noise and reads the score of a " +
                    "Gaussian path, which needs the standard Gaussian source, not " + source.name());
      if (corrector_->stochastic())
        throw Error("pc: the " + corrector_->name() + " corrector needs the standard Gaussian source, not " +
                    source.name());
      if (prior_ == PriorDraw::rqmc)
        throw Error("pc: prior: rqmc draws from the standard Gaussian source, not " + source.name());
    }
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
      const std::optional<double> next = last ? std::nullopt : std::optional<double>(grid[i + 1]);
      corrector_->correct(model, req.condition, grid[i], next, x, p, rng);
      if (last) break;
      predictor_->step(model, req.condition, grid[i], *next, x, p, rng);
      if (req.trajectory) req.trajectory->record(x, *next, i + 1, steps);
    }
    if (denoise_) {
      model.predict(x, grid.back(), req.condition, p);
      x = std::move(p.x0);
    }
    if (req.trajectory) req.trajectory->record(x, path.t_min(), steps, steps);
    return {std::move(x), {}, {}};
  }

 private:
  GridOption grid_;
  std::shared_ptr<const Predictor> predictor_;
  std::shared_ptr<const Corrector> corrector_;
  bool denoise_;
  PriorDraw prior_;
};

std::shared_ptr<Sampler> make_pc(const ConfigNode& c, const BuildContext& ctx) {
  GridOption grid = read_time_grid(c, 1000, ctx);
  auto predictor = read_predictor(c, "predictor", "reverse_diffusion");
  auto corrector = read_corrector(c, "corrector");
  const bool denoise = c.get_bool("denoise", true);
  return std::make_shared<PcSampler>(std::move(grid), std::move(predictor), std::move(corrector), denoise,
                                     read_prior_draw(c, ctx));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "pc", make_pc);

}  // namespace diffusion::score_sde

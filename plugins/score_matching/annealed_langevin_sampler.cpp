// Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1), with NCSNv2's final denoising
// step (Song & Ermon 2020, section 4 and appendix C.2):
//
//   for i = 1..L:                                  sigma_1 > ... > sigma_L
//     alpha_i = eps sigma_i^2 / sigma_L^2          (the step size; not the path's alpha)
//     for k = 1..T:  x <- x + (alpha_i / 2) s(x, sigma_i) + sqrt(alpha_i) z
//   denoise:         x <- x + sigma_L^2 s(x, sigma_L)
//
// On any path. Level i is a time t_i of the sampler's time grid (default: every step of a
// discrete path, all L of noise_levels or all 1000 of DDPM; `steps`, `spacing` or `timesteps`
// pick others, and are needed on a continuous path). Its target is the marginal p_(t_i) of
// x = a_i x0 + sigma_i z (a = the path's alpha), whose score is -eps_hat(x, t_i) / sigma_i.
// In y = x / a_i that marginal is NCSN's perturbation y = x0 + s_i z with s_i = sigma_i / a_i
// (the noise-to-signal ratio), so the sampler is Algorithm 1 on y with the levels s_i:
//
//   alpha_i = eps s_i^2 / s_L^2,   y <- y + (alpha_i / 2) grad_y log p + sqrt(alpha_i) z,
//   grad_y log p = a_i grad_x log p_(t_i) = -a_i eps_hat / sigma_i,   y kept between levels.
//
// In x this is a Langevin step of size a_i^2 alpha_i = eps sigma_i^2 a_L^2 / sigma_L^2 (so the
// path's sigma, not sigma / a, sets the step's scale: with sigma / a DDPM's steps near t = T
// would be ~10^4 times its marginal's unit variance), and x scaled by a_(i+1) / a_i between
// levels. The scaling matters where a != 1: at the low levels a chain hardly moves within a
// mode (alpha_i << the data's spread), so unscaled it keeps the data scale a_i of the level
// where it froze; on DDPM's path that shrank a two-blob mixture's means by 2-2.5 standard errors
// of a 4000-sample test. With it, DDPM's path at the levels s_i of a noise_levels path runs the
// same chain: one model. Where a = 1 (noise_levels) all of this is Algorithm 1 exactly. The
// chains start at level 1 from the init draw as it is; the final denoising step is the
// denoiser's x0_hat at t_L, y + s_L^2 grad_y log p (Tweedie's formula).
//
// Options: step_size (eps, default 2e-5: the paper's; with s_L = 0.01, noise_levels' default
// sigma_min and DDPM's at t = 0, each level's step is 0.2 s_i^2, whose chain relaxes on the
// noise's scale in ~5 of the T steps with Langevin's variance bias alpha_i / (4 s_i^2) <= 5%),
// steps_per_level (T, default 100), init: prior | uniform (with low, high), denoise (default
// true). Extras, per level: `sigmas` (s_i) and `step_sizes` (alpha_i), both in y: the path's own
// where a = 1.
#include <diffusion/io/text.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

#include "langevin_dynamics.hpp"

namespace diffusion::score_matching {
namespace {

class AnnealedLangevinSampler : public Sampler {
 public:
  AnnealedLangevinSampler(GridOption levels, double step_size, std::size_t steps_per_level, LangevinInit init,
                          bool denoise)
      : levels_(std::move(levels)), step_size_(step_size), steps_per_level_(steps_per_level), init_(init),
        denoise_(denoise) {}

  void check(const Path& path, const Source& source) const override {
    require_gaussian_source(source, "annealed_langevin");
    const std::vector<double> t = level_times(path);
    for (const double ti : t)
      if (!(path.alpha(ti) > 0.0))
        throw Error("annealed_langevin: the path's alpha at the level t = " + format_number(ti) +
                    " is 0, where the noise-to-signal ratio sigma / alpha is infinite");
    require_positive_sigma(path, t.back(), "annealed_langevin");
  }

  SampleOutput sample(const Denoiser& model, const SampleRequest& req, Rng& rng) const override {
    const Path& path = model.path();
    const std::vector<double> t = level_times(path);  // t_1 > ... > t_L: sigma_1 > ... > sigma_L
    const std::size_t levels = t.size(), T = steps_per_level_;
    const std::size_t total = levels * T + (denoise_ ? 1 : 0);
    const double s_last = noise_to_signal(path, t.back());
    Tensor step_sizes = Tensor::from_shape({levels}), sigmas = Tensor::from_shape({levels});

    Tensor x = init_.draw(path, req.source_or_default(), req.shape, rng);
    if (req.trajectory) req.trajectory->record(x, t[0], 0, total);
    Prediction p;
    Tensor noise;
    for (std::size_t i = 0; i < levels; ++i) {
      const double a = path.alpha(t[i]), sigma = path.sigma(t[i]), s = sigma / a;
      const double step = step_size_ * s * s / (s_last * s_last);  // Algorithm 1's alpha_i, in y = x / a
      sigmas(i) = static_cast<float>(s), step_sizes(i) = static_cast<float>(step);
      if (i > 0) scale(x, a / path.alpha(t[i - 1]));  // y stays as it is
      for (std::size_t k = 0; k < T; ++k) {
        model.predict(x, t[i], req.condition, p);
        langevin_step(x, p.eps, sigma, a * a * step, noise, rng);  // the same step in x
        if (req.trajectory) req.trajectory->record(x, t[i], i * T + k + 1, total);
      }
    }
    if (denoise_) {
      model.predict(x, t.back(), req.condition, p);
      x = p.x0;  // y + s_L^2 grad_y log p(y; s_L)
      if (req.trajectory) req.trajectory->record(x, t.back(), total, total);
    }
    SampleOutput out{std::move(x), {}, {}};
    out.add_extra("step_sizes", std::move(step_sizes));
    out.add_extra("sigmas", std::move(sigmas));
    return out;
  }

 private:
  static double noise_to_signal(const Path& path, double t) { return path.sigma(t) / path.alpha(t); }
  static void scale(Tensor& x, double factor) {
    if (factor != 1.0)
      for (float& v : x) v = static_cast<float>(v * factor);
  }
  std::vector<double> level_times(const Path& path) const {
    return levels_.grid->times(path, resolve_steps(levels_.steps, path, "annealed_langevin"));
  }

  GridOption levels_;
  double step_size_;
  std::size_t steps_per_level_;
  LangevinInit init_;
  bool denoise_;
};

std::shared_ptr<Sampler> make_annealed_langevin(const ConfigNode& c, const BuildContext& ctx) {
  GridOption levels = read_time_grid(c, 0, ctx);  // steps 0: every level of a discrete path
  const double step_size = c.get_double("step_size", 2e-5, Interval::greater_than(0.0));
  const auto steps_per_level = static_cast<std::size_t>(c.get_int("steps_per_level", 100, 1, 100000000));
  const LangevinInit init = LangevinInit::read(c, "annealed_langevin");
  return std::make_shared<AnnealedLangevinSampler>(std::move(levels), step_size, steps_per_level, init,
                                                   c.get_bool("denoise", true));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "annealed_langevin", make_annealed_langevin);

}  // namespace diffusion::score_matching

// EDM's samplers (Karras et al. 2022, section 3, Algorithm 1, and section 4, Algorithm 2), on a
// path x = x0 + sigma z (alpha = 1: `sde: edm`, or a VE path), stepping in the noise level sigma:
//
//   sigma_0 > ... > sigma_{N-1}: the karras grid (eq. 5, rho = 7), sigma_N = 0
//   x ~ N(0, sigma_0^2 I)
//   for i = 0 .. N-1:
//     gamma_i = min(s_churn / N, sqrt(2) - 1) if sigma_i in [s_tmin, s_tmax], else 0
//     sigma^ = sigma_i + gamma_i sigma_i                       (raise the noise level ...)
//     x^ = x + sqrt(sigma^^2 - sigma_i^2) eps, eps ~ N(0, s_noise^2 I)   (... by adding noise)
//     d = (x^ - D(x^; sigma^)) / sigma^                        (dx/dsigma of the ODE, eq. 4)
//     x = x^ + (sigma_{i+1} - sigma^) d                          (Euler step)
//     if sigma_{i+1} != 0:                                        (Heun's 2nd-order correction)
//       d' = (x - D(x; sigma_{i+1})) / sigma_{i+1}
//       x = x^ + (sigma_{i+1} - sigma^) (d + d') / 2
//
// s_churn = 0 (the default) is Algorithm 1, the deterministic Heun sampler: N - 1 Heun steps
// and a last Euler step to sigma = 0, 2N - 1 network evaluations (18 steps: 35).
//
//   sampler: {type: edm, steps: 18, rho: 7, s_churn: 0, s_tmin: 0, s_tmax: .inf, s_noise: 1}
//
// `rho` sets the default karras grid between the path's ends; `spacing:` (any registered grid)
// or `timesteps:` replace it. sigma^ is capped at the path's sigma_max (the model was trained up
// to there), which only matters where s_tmax reaches it. `prior: rqmc` draws the starting z
// evenly spread. Extras: stochastic_steps (steps with gamma_i > 0); the run adds nfe.
#include <algorithm>
#include <cmath>
#include <limits>

#include <diffusion/io/text.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

namespace diffusion::edm {
namespace {

struct Churn {
  double s_churn, s_tmin, s_tmax, s_noise;
};

class EdmSampler : public Sampler {
 public:
  EdmSampler(GridOption grid, Churn churn, PriorDraw prior) : grid_(std::move(grid)), churn_(churn), prior_(prior) {}

  void check(const Path& path, const Source& source) const override {
    if (!source.standard_normal())
      throw Error("edm sampler: Algorithms 1 and 2 start from N(0, sigma_max^2 I) and add Gaussian noise; the source is " +
                  source.name() + " (use the standard Gaussian source)");
    for (const double t : times(path))
      if (path.alpha(t) != 1.0)
        throw Error("edm sampler: EDM's samplers step in sigma on a path x = x0 + sigma z (alpha = 1, e.g. sde: edm); "
                    "this path has alpha = " + format_number(path.alpha(t)) + " at t = " + format_number(t));
  }

  SampleOutput sample(const Denoiser& model, const SampleRequest& req, Rng& rng) const override {
    const Path& path = model.path();
    const std::vector<double> t = times(path);
    const std::size_t steps = t.size();
    std::vector<double> sigma(steps + 1, 0.0);  // sigma_N = 0
    for (std::size_t i = 0; i < steps; ++i) sigma[i] = path.sigma(t[i]);
    const double sigma_cap = path.sigma(path.t_max());

    Tensor x = req.source_or_default().sample(req.shape, rng, prior_);
    scale(x, sigma[0]);
    if (req.trajectory) req.trajectory->record(x, t[0], 0, steps);
    Prediction p;
    Tensor x_hat = Tensor::from_shape(req.shape), d = Tensor::from_shape(req.shape);
    const double gamma_max = std::min(churn_.s_churn / double(steps), std::sqrt(2.0) - 1.0);
    std::size_t stochastic = 0;
    for (std::size_t i = 0; i < steps; ++i) {
      // Raise the noise level to sigma^ by adding fresh noise (Algorithm 2, lines 4-6).
      const bool churn = gamma_max > 0 && sigma[i] >= churn_.s_tmin && sigma[i] <= churn_.s_tmax;
      const double s_hat = churn ? std::min(sigma[i] * (1.0 + gamma_max), sigma_cap) : sigma[i];
      const double t_hat = s_hat == sigma[i] ? t[i] : path.time_at_log_snr(-2.0 * std::log(s_hat));
      x_hat = x;
      if (s_hat > sigma[i]) {
        ++stochastic;
        const double extra = std::sqrt(s_hat * s_hat - sigma[i] * sigma[i]) * churn_.s_noise;
        const Tensor eps = rng.normal(req.shape);
        for (std::size_t j = 0; j < x_hat.size(); ++j) x_hat.data()[j] += float(extra * eps.data()[j]);
      }
      // Euler step from sigma^ to sigma_{i+1} (lines 7-8).
      model.predict(x_hat, t_hat, req.condition, p);
      derivative(x_hat, p.x0, s_hat, d);
      const double h = sigma[i + 1] - s_hat;
      for (std::size_t j = 0; j < x.size(); ++j) x.data()[j] = float(x_hat.data()[j] + h * d.data()[j]);
      // Heun's correction unless the step ends at sigma = 0 (lines 9-11).
      if (sigma[i + 1] != 0.0) {
        model.predict(x, t[i + 1], req.condition, p);
        const float* pd = d.data();
        const float* px0 = p.x0.data();
        const float* pxh = x_hat.data();
        float* px = x.data();
        for (std::size_t j = 0; j < x.size(); ++j) {
          const double d2 = (double(px[j]) - px0[j]) / sigma[i + 1];
          px[j] = float(pxh[j] + h * 0.5 * (double(pd[j]) + d2));
        }
      }
      if (req.trajectory) req.trajectory->record(x, i + 1 < steps ? t[i + 1] : path.t_min(), i + 1, steps);
    }
    SampleOutput out{std::move(x), {}, {}};
    out.add_extra("stochastic_steps", full({1}, static_cast<float>(stochastic)));
    return out;
  }

 private:
  std::vector<double> times(const Path& path) const { return grid_.grid->times(path, grid_.steps); }

  static void scale(Tensor& x, double s) {
    for (float& v : x) v = float(v * s);
  }

  /// d = (x - D(x; sigma)) / sigma: the probability-flow ODE's dx/dsigma (eq. 4, sigma(t) = t).
  static void derivative(const Tensor& x, const Tensor& denoised, double sigma, Tensor& d) {
    for (std::size_t j = 0; j < x.size(); ++j)
      d.data()[j] = float((double(x.data()[j]) - denoised.data()[j]) / sigma);
  }

  GridOption grid_;
  Churn churn_;
  PriorDraw prior_;
};

std::shared_ptr<Sampler> make_edm_sampler(const ConfigNode& c, const BuildContext& ctx) {
  GridOption grid = read_time_grid(c, 18, ctx);
  const bool own_grid = c.has("spacing") || c.has("timesteps");
  if (own_grid && c.has("rho"))
    c.at("rho").error("rho shapes the default karras grid; with `spacing:` or `timesteps:` set it there (spacing: {type: karras, rho: ...})");
  if (!own_grid) grid.grid = make_karras_grid(c.get_double("rho", 7.0, Interval::greater_than(0.0)));
  Churn churn;
  churn.s_churn = c.get_double("s_churn", 0.0, Interval::at_least(0.0));
  churn.s_tmin = c.get_double("s_tmin", 0.0, Interval::at_least(0.0));
  churn.s_tmax = c.get_double("s_tmax", std::numeric_limits<double>::infinity(),
                             Interval::closed(0.0, std::numeric_limits<double>::infinity()));  // .inf: no upper limit
  churn.s_noise = c.get_double("s_noise", 1.0, Interval::greater_than(0.0));
  if (churn.s_tmin > churn.s_tmax)
    c.at("s_tmin").error("s_tmin (" + format_number(churn.s_tmin) + ") exceeds s_tmax (" + format_number(churn.s_tmax) + ")");
  return std::make_shared<EdmSampler>(std::move(grid), churn, read_prior_draw(c, ctx));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "edm", make_edm_sampler);

}  // namespace diffusion::edm

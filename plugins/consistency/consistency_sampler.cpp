// One-step and multistep consistency sampling (CM paper, Algorithm 1):
//
//   x <- f(x_T, T),  x_T ~ N(0, T^2 I)
//   for sigma in sigmas (decreasing):  z ~ N(0, I);  x <- x + sqrt(sigma^2 - sigma_min^2) z;  x <- f(x, sigma)
//
// f is the sampled model's x0 prediction (the consistency preconditioning), T and sigma_min the
// path's sigma at t_max and t_min. One network evaluation per sigma plus one (the run reports it
// as nfe); `sigmas: []` (the default) is one-step sampling. `prior: rqmc` draws x_T from
// randomised quasi-Monte Carlo points: the first step is a deterministic map of x_T, so evenly
// spread starting points give evenly spread one-step samples.
//
//   sampler: {type: consistency, name: cm_2step, sigmas: [0.8], prior: rqmc}
#include <cmath>
#include <string>
#include <vector>

#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

#include "noise_levels.hpp"

namespace diffusion::consistency {
namespace {

class ConsistencySampler : public Sampler {
 public:
  ConsistencySampler(std::vector<double> sigmas, PriorDraw prior) : sigmas_(std::move(sigmas)), prior_(prior) {}

  void check(const Path& path, const Source& source) const override {
    require_unit_alpha(path, "sampler consistency");
    if (!source.standard_normal())
      throw Error("sampler consistency: x_T ~ N(0, T^2 I) needs the standard Gaussian source, not " + source.name());
    const double s_min = path.sigma(path.t_min()), s_max = path.sigma(path.t_max());
    for (const double s : sigmas_)
      if (!(s > s_min && s < s_max))
        throw Error("sampler consistency: sigma " + std::to_string(s) + " is outside the path's (" +
                    std::to_string(s_min) + ", " + std::to_string(s_max) + ")");
  }

  SampleOutput sample(const Denoiser& model, const SampleRequest& req, Rng& rng) const override {
    const Path& path = model.path();
    check(path, req.source_or_default());
    const double s_min = path.sigma(path.t_min()), s_max = path.sigma(path.t_max());
    const std::size_t total = sigmas_.size() + 1;
    Tensor x = req.source_or_default().sample(req.shape, rng, prior_);
    for (float& v : x) v = static_cast<float>(s_max * v);
    if (req.trajectory) req.trajectory->record(x, path.t_max(), 0, total);
    Prediction p;
    model.predict(x, path.t_max(), req.condition, p);
    x = p.x0;
    if (req.trajectory) req.trajectory->record(x, path.t_min(), 1, total);
    for (std::size_t k = 0; k < sigmas_.size(); ++k) {
      const double sigma = sigmas_[k], scale = std::sqrt(sigma * sigma - s_min * s_min);
      const Tensor z = req.source_or_default().sample(req.shape, rng);
      for (std::size_t j = 0; j < x.size(); ++j) x.data()[j] = static_cast<float>(x.data()[j] + scale * z.data()[j]);
      model.predict(x, time_at_sigma(path, sigma), req.condition, p);
      x = p.x0;
      if (req.trajectory) req.trajectory->record(x, path.t_min(), k + 2, total);
    }
    SampleOutput out;
    out.x = std::move(x);
    Tensor sig = Tensor::from_shape({total});
    sig(0) = static_cast<float>(s_max);
    for (std::size_t k = 0; k < sigmas_.size(); ++k) sig(k + 1) = static_cast<float>(sigmas_[k]);
    out.add_extra("sigmas", std::move(sig));
    return out;
  }

 private:
  std::vector<double> sigmas_;
  PriorDraw prior_;
};

std::shared_ptr<Sampler> make_consistency(const ConfigNode& c, const BuildContext& ctx) {
  std::vector<double> sigmas;
  if (c.has("sigmas")) {
    sigmas = c.get_double_list("sigmas");
    for (std::size_t k = 0; k < sigmas.size(); ++k) {
      if (!(sigmas[k] > 0)) c.at("sigmas").item(k).fail("a noise level > 0");
      if (k > 0 && !(sigmas[k] < sigmas[k - 1])) c.at("sigmas").item(k).fail("strictly decreasing noise levels");
    }
  }
  return std::make_shared<ConsistencySampler>(std::move(sigmas), read_prior_draw(c, ctx));
}

}  // namespace

DIFFUSION_REGISTER(samplers, "consistency", make_consistency);

}  // namespace diffusion::consistency

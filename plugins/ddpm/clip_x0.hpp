#pragma once
// Clipping the predicted x0 to the data's range before the step uses it (Ho et al. 2020's
// sampler clips x0_hat to [-1, 1] for images; improved-diffusion's `clip_denoised`). The
// network's eps is then read from the clipped x0, eps = (x_t - alpha_t x0) / sigma_t, so the two
// predictions stay one consistent pair (as improved-diffusion's DDIM does). Off by default:
// points have no range to clip to. YAML: `clip_x0: 1.0` clips to [-1, 1] in the model's space.
#include <algorithm>

#include <diffusion/plugin.hpp>

namespace diffusion::ddpm {

/// The `clip_x0` option: the bound c > 0 of [-c, c], or 0 (the default) for no clipping.
inline double read_clip_x0(const ConfigNode& c) { return c.get_double("clip_x0", 0.0, Interval::greater_than(0)); }

/// Clips p.x0 to [-bound, bound] at x_t on `path` at time t and makes p.eps agree with it;
/// bound 0 leaves p as it is.
inline void clip_x0(Prediction& p, const Tensor& x_t, const Path& path, double t, double bound) {
  if (bound <= 0.0) return;
  const double alpha = path.alpha(t), sigma = path.sigma(t);
  for (std::size_t j = 0; j < x_t.size(); ++j) {
    const double x0 = std::clamp(double(p.x0.data()[j]), -bound, bound);
    p.x0.data()[j] = float(x0);
    if (sigma > 0.0) p.eps.data()[j] = float((x_t.data()[j] - alpha * x0) / sigma);
  }
}

}  // namespace diffusion::ddpm

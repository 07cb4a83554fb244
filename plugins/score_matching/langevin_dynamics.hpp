#pragma once
// What the two Langevin samplers share (Song & Ermon 2019, section 2.2 and Algorithm 1): the
// chains' starting draw and one step of unadjusted Langevin dynamics on the path's marginal at a
// time t, whose score Tweedie's formula reads from the denoiser: grad log p_t(x) = -eps_hat / sigma(t).
#include <string>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>

namespace diffusion::score_matching {

/// Where the chains start: `init: prior` (the source's draw at t_max, Source::start) or
/// `init: uniform` with `low` and `high` (NCSN's uniform noise, on [low, high] per value).
struct LangevinInit {
  bool uniform = false;
  double low = 0.0, high = 0.0;

  /// Reads init, low and high; low and high are refused with init: prior.
  static LangevinInit read(const ConfigNode& c, const char* sampler);
  Tensor draw(const Path& path, const Source& source, const Shape& shape, Rng& rng) const;
};

/// x <- x + (step / 2) score + sqrt(step) z with score = -eps_hat / sigma and z ~ N(0, I) (drawn
/// into `noise`, which is reused across steps).
void langevin_step(Tensor& x, const Tensor& eps_hat, double sigma, double step, Tensor& noise, Rng& rng);

/// An Error unless sigma(t) > 0, where the score -eps_hat / sigma is read.
void require_positive_sigma(const Path& path, double t, const std::string& sampler);
/// An Error unless the source is the standard Gaussian: only then is -eps_hat / sigma the score
/// of the path's marginal (Tweedie), and Langevin's noise the path's.
void require_gaussian_source(const Source& source, const std::string& sampler);

}  // namespace diffusion::score_matching

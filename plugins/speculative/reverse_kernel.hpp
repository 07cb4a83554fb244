#pragma once
// The target sampler's reverse kernel, step by step (De Bortoli et al. 2025, section 3: the
// target Markov chain p_{k+1|k}(y_{k+1} | y_k) = N(m_k(y_k), sigma_k^2 I)). Speculative sampling
// needs the kernel as a Gaussian with an isotropic variance that does not depend on the state,
// so the draft kernel q_{k+1|k} = N(m_k^draft(y_k), sigma_k^2 I) can share it and the reflection
// coupling applies. Both base samplers of this toolkit that are of that form are here:
//
//   ancestral       DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) on any grid:
//                   q(x_s | x_t, x0 = x0_hat), mean c_xt x + c_x0 x0_hat, the posterior variance
//                   (beta-tilde) or the forward transition's (beta); the last step, to the data,
//                   is x0_hat (variance 0). As plugins/ddpm's `ancestral` sampler.
//   euler_maruyama  Euler-Maruyama on the reverse SDE (Song et al. 2021, eq. 6) with
//                   score = -eps_hat / sigma(t): mean x + (f x - g^2 score)(s - t), variance
//                   g^2 (t - s); after the grid's last time, x0_hat there (Tweedie's
//                   denoising step). As plugins/score_sde's `pc` with that predictor, no
//                   corrector and denoise: true.
//
// A grid of S times t_0 > ... > t_{S-1} gives S steps; step k goes from t_k to t_{k+1} (the
// data after the last), and each needs one prediction at (y_k, t_k).
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>

namespace diffusion::speculative {

/// One step's Gaussian: mean = c_x y + c_x0 x0_hat(y) + c_eps eps_hat(y), standard deviation sd.
struct GaussianStep {
  double c_x = 0, c_x0 = 0, c_eps = 0;
  double sd = 0;  ///< 0: a deterministic step (the last one)
  /// The mean's coordinate j for the state y and the prediction (x0, eps) at it.
  double mean(float y, float x0, float eps) const { return c_x * y + c_x0 * x0 + c_eps * eps; }
};

class ReverseKernel {
 public:
  virtual ~ReverseKernel() = default;
  /// The YAML name.
  virtual std::string name() const = 0;
  /// The S steps of the grid (strictly decreasing times on `path`).
  virtual std::vector<GaussianStep> steps(const Path& path, const std::vector<double>& grid) const = 0;
};

/// The kernel under `key` of a sampler's node (a name, or a map with `type:` and the kernel's
/// options: ancestral's `variance: posterior | beta`); `ancestral` when absent.
std::shared_ptr<const ReverseKernel> read_reverse_kernel(const ConfigNode& sampler, const std::string& key);

}  // namespace diffusion::speculative

// The target sampler's Gaussian reverse kernels (reverse_kernel.hpp).
#include "reverse_kernel.hpp"

#include <algorithm>
#include <cmath>

#include <diffusion/model/gaussian_posterior.hpp>

namespace diffusion::speculative {
namespace {

/// The last step of both kernels: the denoiser's estimate of the data, no noise.
GaussianStep to_data() { return {0.0, 1.0, 0.0, 0.0}; }

/// DDPM Algorithm 2 on any grid: x_s ~ q(x_s | x_t, x0 = x0_hat(x_t, t)).
class AncestralKernel : public ReverseKernel {
 public:
  explicit AncestralKernel(bool beta_variance) : beta_variance_(beta_variance) {}
  std::string name() const override { return "ancestral"; }
  std::vector<GaussianStep> steps(const Path& path, const std::vector<double>& grid) const override {
    std::vector<GaussianStep> out;
    for (std::size_t k = 0; k + 1 < grid.size(); ++k) {
      const GaussianPosterior q = gaussian_posterior(path, grid[k], grid[k + 1], false);
      const double var = beta_variance_ ? q.transition_variance : q.variance;
      out.push_back({q.c_xt, q.c_x0, 0.0, std::sqrt(std::max(0.0, var))});
    }
    out.push_back(to_data());
    return out;
  }

 private:
  bool beta_variance_;
};

/// Euler-Maruyama on the reverse SDE with dt = s - t < 0:
///   mean = y + (f y - g^2 score) dt = (1 + f dt) y + (g^2 dt / sigma_t) eps_hat,
///   sd = g sqrt(t - s),
/// then x0_hat at the grid's last time.
class EulerMaruyamaKernel : public ReverseKernel {
 public:
  std::string name() const override { return "euler_maruyama"; }
  std::vector<GaussianStep> steps(const Path& path, const std::vector<double>& grid) const override {
    std::vector<GaussianStep> out;
    for (std::size_t k = 0; k + 1 < grid.size(); ++k) {
      const double t = grid[k], s = grid[k + 1], dt = s - t;
      const double f = path.drift_coef(t), g2 = path.diffusion_squared(t);
      out.push_back({1.0 + f * dt, 0.0, g2 * dt / path.sigma(t), std::sqrt(std::max(0.0, g2 * (t - s)))});
    }
    out.push_back(to_data());
    return out;
  }
};

}  // namespace

std::shared_ptr<const ReverseKernel> read_reverse_kernel(const ConfigNode& sampler, const std::string& key) {
  const auto node = sampler.find(key);
  const std::string type = node ? node->type() : "ancestral";
  if (type == "ancestral") {
    const bool beta = node && node->get_choice("variance", "posterior", {"posterior", "beta"}) == "beta";
    return std::make_shared<AncestralKernel>(beta);
  }
  if (type == "euler_maruyama") return std::make_shared<EulerMaruyamaKernel>();
  const ConfigNode where = node->is_map() ? node->at("type") : *node;
  where.error("unknown reverse kernel '" + type + "' (expected ancestral or euler_maruyama)");
}

}  // namespace diffusion::speculative

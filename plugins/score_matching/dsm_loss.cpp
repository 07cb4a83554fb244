// Denoising score matching (Vincent 2011, eq. 11) over noise levels, as NCSN trains its
// noise-conditional score network (Song & Ermon 2019, section 4.2, eqs. 5 and 6):
//
//   l(theta; sigma) = 1/2 E || s_theta(x~, sigma) + (x~ - x) / sigma^2 ||^2,   x~ = x + sigma z,
//   L(theta) = 1/L sum_i lambda(sigma_i) l(theta; sigma_i),   lambda(sigma) = sigma^2,
//
// with the level i drawn uniformly per sample (the path's sample_times) and z from the source
// (the standard Gaussian: the kernel's score below is a Gaussian's).
// -(x~ - x) / sigma^2 is the score of the perturbation kernel q(x~ | x) = N(x, sigma^2 I); on a
// path with alpha != 1 the kernel is N(alpha x, sigma^2 I) and the target -(x~ - alpha x) /
// sigma^2. ||.||^2 sums over the sample's values, as in the paper.
//
// The score model is the network read through a preconditioning, s_theta = -eps_hat / sigma:
//   eps (default)        s_theta = -F / sigma, NCSNv2's noise-scaled output s(x, sigma) =
//                        F(x, sigma) / sigma (Song & Ermon 2020, technique 3) up to the sign;
//                        with lambda = sigma^2 the loss is 1/2 ||F - z||^2, DDPM's L_simple.
//   score                s_theta = F, NCSNv1's network.
//   any other registered preconditioning reads the same way.
// `weighting: sigma2 | none` picks lambda(sigma) = sigma^2 (default) or 1.
// With one level (`sde: {type: noise_levels, sigma: ...}`) this is Vincent's single-level DSM.
#include <diffusion/model/predictions.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::score_matching {
namespace {

class DsmLoss : public Loss {
 public:
  DsmLoss(std::shared_ptr<const Preconditioning> pre, bool sigma2_weighting)
      : pre_(std::move(pre)), sigma2_weighting_(sigma2_weighting) {}
  std::shared_ptr<const Preconditioning> preconditioning() const override { return pre_; }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    const Path& path = *ctx.path;
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0], d = n ? x0.size() / n : 0;
    c.check_rows(n, "dsm");
    const Source& source = ctx.source_or_default();
    if (!source.standard_normal())
      throw Error("dsm: the perturbation kernel's score -(x~ - alpha x) / sigma^2 needs the standard Gaussian source, not " +
                  source.name());
    Tensor t = path.sample_times(n, rng);  // the level i of each sample
    const Tensor z = source.sample(shape, rng);

    // Per sample at its sigma: the network's inputs; s_theta = f_coef F + x_part (the
    // preconditioning's eps readout divided by -sigma); the kernel's score; lambda(sigma).
    Tensor input = Tensor::from_shape(shape), c_noise = Tensor::from_shape({n});
    Tensor f_coef = Tensor::from_shape({n, 1}), x_part = Tensor::from_shape({n, d});
    Tensor kernel_score = Tensor::from_shape({n, d}), lambda = Tensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) {
      const double a = path.alpha(t(i)), sigma = path.sigma(t(i));
      const Scalings k = pre_->scalings(path, t(i));
      const LinearReadout eps = pre_->readout(path, t(i)).eps;  // eps_hat = (x x~ + f F) / div
      c_noise(i) = static_cast<float>(k.c_noise);
      f_coef(i, 0) = static_cast<float>(-eps.f / (eps.div * sigma));
      lambda(i) = static_cast<float>(sigma2_weighting_ ? sigma * sigma : 1.0);
      for (std::size_t j = 0; j < d; ++j) {
        const double x = x0.data()[i * d + j], noise = z.data()[i * d + j];
        const double perturbed = a * x + sigma * noise;  // x~
        input.data()[i * d + j] = static_cast<float>(k.c_in * perturbed);
        x_part(i, j) = static_cast<float>(-eps.x * perturbed / (eps.div * sigma));
        kernel_score(i, j) = static_cast<float>(-noise / sigma);  // -(x~ - alpha x) / sigma^2
      }
    }
    const Var f = reshape(net.forward(Var(std::move(input)), c_noise, c), {static_cast<long>(n), -1L});
    const Var score = f * Var(std::move(f_coef)) + Var(std::move(x_part));  // s_theta(x~, sigma)
    const Var residual = score - Var(std::move(kernel_score));                // s_theta + (x~ - x) / sigma^2
    const Var per_sample = 0.5f * sum(square(residual), {1}) * Var(std::move(lambda));
    return {per_sample, std::move(t)};
  }

 private:
  std::shared_ptr<const Preconditioning> pre_;
  bool sigma2_weighting_;
};

std::shared_ptr<Loss> make_dsm(const ConfigNode& c, const BuildContext& ctx) {
  const auto node = c.find("preconditioning");
  auto pre = node ? registries().preconditionings.create(*node, ctx) : make_prediction("eps");
  const bool sigma2 = c.get_choice("weighting", "sigma2", {"sigma2", "none"}) == "sigma2";
  return std::make_shared<DsmLoss>(std::move(pre), sigma2);
}

}  // namespace

DIFFUSION_REGISTER(losses, "dsm", make_dsm);

}  // namespace diffusion::score_matching

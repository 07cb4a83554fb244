// Continuous-time denoising score matching (Song et al. 2021, eq. 7):
//
//   E_t E_x0 E_z [ lambda(t) || s_theta(x_t, t) + z / sigma(t) ||^2 ],  x_t = alpha x0 + sigma z,
//
// with the score read from the network through its preconditioning, s = -eps_hat / sigma, so
// sigma s + z = z - eps_hat. Two weightings:
//
//   sigma2      lambda = sigma^2 (Song's default): || sigma s + z ||^2 at t from the path's
//               training distribution (uniform on [eps, 1]), iid or low-discrepancy.
//   likelihood  lambda = g^2 (Song, Durkan, Murray & Ermon 2021, "Maximum Likelihood Training of
//               Score-Based Diffusion Models", Theorem 1), with importance sampling of t: since
//               g^2 / sigma^2 = 2 sigma'/sigma - 2 alpha'/alpha = -d log SNR / dt on every Gaussian
//               path, drawing log SNR uniformly on [log SNR(t_max), log SNR(t_min)] and mapping
//               back (Path::time_at_log_snr) draws t with density (g^2 / sigma^2) / D,
//               D = log SNR(t_min) - log SNR(t_max). The weight lambda / (sigma^2 p(t)) is then
//               the constant D: the per-sample value is D || sigma s + z ||^2, an unbiased
//               estimate of int_{t_min}^{t_max} g^2 E|| s + z / sigma ||^2 dt.
//
// Reduction as in Song's code with reduce_mean = false: per sample, 1/2 times the sum over the
// sample's values (for 2-D points the same as the mean over dimensions). The training loop
// takes the mean over the batch.
//
// `preconditioning:` any registered one (default eps, Song's VP models' parameterisation). The
// loss is written on F: with the preconditioning's target F*, eps_hat - z = k (F - F*) where k is
// the readout's coefficient of F in eps_hat, so the per-sample value is (1/2) w k^2 || F - F* ||^2
// with w = 1 (sigma2) or D (likelihood).
#include <cmath>

#include <diffusion/model/denoising_batch.hpp>
#include <diffusion/model/predictions.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::score_sde {
namespace {

enum class Weighting { sigma2, likelihood };

class ContinuousDsmLoss : public Loss {
 public:
  ContinuousDsmLoss(std::shared_ptr<const Preconditioning> pre, Weighting weighting, bool low_discrepancy)
      : pre_(std::move(pre)), weighting_(weighting), low_discrepancy_(low_discrepancy) {}
  std::shared_ptr<const Preconditioning> preconditioning() const override { return pre_; }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    const Path& path = *ctx.path;
    const Source& source = ctx.source_or_default();
    if (!source.standard_normal())
      throw Error("continuous_dsm: score matching perturbs the data with Gaussian noise; the source is " +
                  source.name() + " (use the standard Gaussian source)");
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0];
    c.check_rows(n, "loss");
    double weight = 1.0;
    Tensor t = weighting_ == Weighting::sigma2 ? sigma2_times(path, n, rng) : log_snr_times(path, n, rng, weight);
    const Tensor z = source.sample(shape, rng);
    DenoisingBatch b = denoising_batch(path, *pre_, x0, z, t);
    Tensor w = Tensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) {
      const LinearReadout eps = pre_->readout(path, t(i)).eps;
      const double k = eps.f / eps.div;
      w(i) = static_cast<float>(0.5 * weight * k * k);
    }
    const Var f = net.forward(Var(std::move(b.input)), b.c_noise, c);
    const Var sq = sum(reshape(square(f - Var(std::move(b.target))), {static_cast<long>(n), -1}), {1});
    return {sq * Var(std::move(w)), std::move(t)};
  }

 private:
  /// The path's training times (uniform on [eps, 1] for the score SDEs).
  Tensor sigma2_times(const Path& path, std::size_t n, Rng& rng) const {
    return low_discrepancy_ ? low_discrepancy_times(path, n, rng) : path.sample_times(n, rng);
  }

  /// Times uniform in log SNR; `weight` receives the importance weight D.
  Tensor log_snr_times(const Path& path, std::size_t n, Rng& rng, double& weight) const {
    const double lo = path.log_snr(path.t_max()), hi = path.log_snr(path.t_min());
    weight = hi - lo;
    Tensor t = Tensor::from_shape({n});
    const double u0 = low_discrepancy_ ? rng.uniform_double() : 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      double u = low_discrepancy_ ? u0 + double(i) / double(n) : rng.uniform_double();
      if (u >= 1.0) u -= 1.0;
      t(i) = static_cast<float>(path.time_at_log_snr(lo + u * (hi - lo)));
    }
    return t;
  }

  std::shared_ptr<const Preconditioning> pre_;
  Weighting weighting_;
  bool low_discrepancy_;
};

std::shared_ptr<Loss> make_continuous_dsm(const ConfigNode& c, const BuildContext& ctx) {
  const auto node = c.find("preconditioning");
  auto pre = node ? registries().preconditionings.create(*node, ctx) : make_prediction("eps");
  const Weighting weighting =
      c.get_choice("weighting", "sigma2", {"sigma2", "likelihood"}) == "sigma2" ? Weighting::sigma2 : Weighting::likelihood;
  const bool low_discrepancy = c.get_choice("t_sampling", "iid", {"iid", "low_discrepancy"}) == "low_discrepancy";
  return std::make_shared<ContinuousDsmLoss>(std::move(pre), weighting, low_discrepancy);
}

}  // namespace

DIFFUSION_REGISTER(losses, "continuous_dsm", make_continuous_dsm);

}  // namespace diffusion::score_sde

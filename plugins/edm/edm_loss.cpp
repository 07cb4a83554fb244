// EDM's training loss (Karras et al. 2022, eq. 2 and section 5, Table 1 "Training"):
//
//   E_sigma E_x0 E_n [ lambda(sigma) || D(x0 + n; sigma) - x0 ||^2 ],  n ~ N(0, sigma^2 I),
//   ln sigma ~ N(p_mean, p_std^2),  lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2,
//
// with D the `edm` preconditioning's denoiser (sigma_data sd). Written on F as in eq. 8: with
// F* = (x0 - c_skip x) / c_out the target of denoising_batch, D - x0 = c_out (F - F*), so each
// sample's value is lambda c_out^2 || F - F* ||^2, summed over the sample's coordinates (EDM's
// code reduces by sum), and lambda c_out^2 = 1: the effective weight is uniform.
//
//   loss: {type: edm, p_mean: -1.2, p_std: 1.2, sigma_data: 0.5, t_sampling: iid}
//
// A sigma is drawn as a noise-to-signal ratio and mapped to the path's time by its log SNR
// (-2 ln sigma); a path clamps that to its range, which on the `edm` path [0.002, 80] touches
// only draws beyond 4.2 (below) and 4.7 (above) standard deviations. `t_sampling:
// low_discrepancy` draws the batch's ln sigma at the normal quantiles of VDM's evenly spread
// u_i = (u_0 + i / n) mod 1 (each still exactly N(p_mean, p_std^2)).
#include <cmath>

#include <diffusion/model/denoising_batch.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/tensor/quasi_random.hpp>

#include "edm_preconditioning.hpp"

namespace diffusion::edm {
namespace {

class EdmLoss : public Loss {
 public:
  EdmLoss(double p_mean, double p_std, double sigma_data, bool low_discrepancy)
      : p_mean_(p_mean), p_std_(p_std), low_discrepancy_(low_discrepancy),
        pre_(std::make_shared<EdmPreconditioning>(sigma_data)) {}
  std::shared_ptr<const Preconditioning> preconditioning() const override { return pre_; }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    const Path& path = *ctx.path;
    const Source& source = ctx.source_or_default();
    if (!source.standard_normal())
      throw Error("edm loss: EDM adds Gaussian noise n ~ N(0, sigma^2 I) to the data; the source is " + source.name() +
                  " (use the standard Gaussian source)");
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0];
    c.check_rows(n, "loss");
    const Tensor t = training_times(path, n, rng);
    const Tensor z = source.sample(shape, rng);
    DenoisingBatch b = denoising_batch(path, *pre_, x0, z, t);
    Tensor w = Tensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) {
      const double sigma = path.sigma(t(i)) / path.alpha(t(i)), c_out = pre_->scalings(path, t(i)).c_out;
      w(i) = static_cast<float>(pre_->loss_weight(sigma) * c_out * c_out);
    }
    const Var f = net.forward(Var(std::move(b.input)), b.c_noise, c);
    const Var sq = sum(reshape(square(f - Var(std::move(b.target))), {static_cast<long>(n), -1}), {1});
    return {sq * Var(std::move(w)), t};
  }

 private:
  /// ln sigma ~ N(p_mean, p_std^2), as path times.
  Tensor training_times(const Path& path, std::size_t n, Rng& rng) const {
    Tensor t = Tensor::from_shape({n});
    const double u0 = low_discrepancy_ ? rng.uniform_double() : 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      double z;
      if (low_discrepancy_) {
        double u = u0 + double(i) / double(n);
        if (u >= 1.0) u -= 1.0;
        z = normal_quantile(u > 0.0 ? u : 0.5 / double(n));  // u_0 = 0 exactly has no quantile
      } else {
        z = rng.normal();
      }
      const double ln_sigma = p_mean_ + p_std_ * z;
      t(i) = static_cast<float>(path.time_at_log_snr(-2.0 * ln_sigma));
    }
    return t;
  }

  double p_mean_, p_std_;
  bool low_discrepancy_;
  std::shared_ptr<const EdmPreconditioning> pre_;
};

std::shared_ptr<Loss> make_edm_loss(const ConfigNode& c, const BuildContext&) {
  const double p_mean = c.get_double("p_mean", -1.2, Interval());
  const double p_std = c.get_double("p_std", 1.2, Interval::greater_than(0.0));
  const double sigma_data = c.get_double("sigma_data", 0.5, Interval::greater_than(0.0));
  const bool low_discrepancy = c.get_choice("t_sampling", "iid", {"iid", "low_discrepancy"}) == "low_discrepancy";
  return std::make_shared<EdmLoss>(p_mean, p_std, sigma_data, low_discrepancy);
}

}  // namespace

DIFFUSION_REGISTER(losses, "edm", make_edm_loss);

}  // namespace diffusion::edm

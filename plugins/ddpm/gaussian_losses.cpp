// Regression losses on the Gaussian path (Ho et al. 2020, eq. 14 "L_simple"; x0 and v targets
// as in Salimans & Ho 2022): draw t and eps, form x_t = alpha(t) x0 + sigma(t) eps, and regress
// the network output on the chosen target with an unweighted mean squared error.
// `t_sampling: low_discrepancy` draws a batch's times with VDM's low-discrepancy sampler
// (Kingma et al. 2021): the same loss in expectation, with less variance per batch.
#include <diffusion/plugin.hpp>

namespace diffusion::ddpm {
namespace {

class GaussianRegressionLoss : public Loss {
 public:
  GaussianRegressionLoss(Parameterisation target, bool low_discrepancy)
      : target_(target), low_discrepancy_(low_discrepancy) {}
  Parameterisation parameterisation() const override { return target_; }

  Var loss(Network& net, const Sde& sde, const Tensor& x0, Rng& rng,
           const std::vector<int>* labels) const override {
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0], per = x0.size() / n;
    const Tensor t = low_discrepancy_ ? low_discrepancy_times(sde, n, rng) : sde.sample_times(n, rng);
    const Tensor eps = rng.normal(shape);
    Tensor xt = Tensor::from_shape(shape), target = Tensor::from_shape(shape);
    Tensor t_net = Tensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) {
      const double a = sde.alpha(t(i)), s = sde.sigma(t(i));
      t_net(i) = sde.network_time(t(i));
      const float* px = x0.data() + i * per;
      const float* pe = eps.data() + i * per;
      float* pxt = xt.data() + i * per;
      float* pt = target.data() + i * per;
      for (std::size_t j = 0; j < per; ++j) {
        pxt[j] = float(a * px[j] + s * pe[j]);
        switch (target_) {
          case Parameterisation::eps: pt[j] = pe[j]; break;
          case Parameterisation::x0: pt[j] = px[j]; break;
          default: pt[j] = float(a * pe[j] - s * px[j]); break;  // v = alpha eps - sigma x0
        }
      }
    }
    const Var pred = net.forward(Var(std::move(xt)), t_net, labels);
    return mse_loss(pred, Var(std::move(target)));
  }

 private:
  Parameterisation target_;
  bool low_discrepancy_;
};

template <Parameterisation P>
std::shared_ptr<Loss> make(const ConfigNode& c, const BuildContext&) {
  const bool low_discrepancy = c.get_choice("t_sampling", "iid", {"iid", "low_discrepancy"}) == "low_discrepancy";
  return std::make_shared<GaussianRegressionLoss>(P, low_discrepancy);
}

}  // namespace

DIFFUSION_REGISTER(losses, "eps_mse", make<Parameterisation::eps>);
DIFFUSION_REGISTER(losses, "x0_mse", make<Parameterisation::x0>);
DIFFUSION_REGISTER(losses, "v_mse", make<Parameterisation::v>);

}  // namespace diffusion::ddpm

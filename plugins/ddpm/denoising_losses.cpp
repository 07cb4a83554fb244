// Denoising regression on the Gaussian path (Ho et al. 2020, eq. 14 "L_simple"; x0 and v
// targets as in Salimans & Ho 2022): draw t and a source draw z, form x_t = alpha(t) x0 +
// sigma(t) z, and regress the network on the target its preconditioning defines (eps: z), per
// sample, unweighted. `eps_mse`, `x0_mse` and `v_mse` fix the preconditioning; `mse` takes any
// registered one (`preconditioning: velocity` is flow matching's regression).
// `t_sampling: low_discrepancy` draws a batch's times with VDM's low-discrepancy sampler
// (Kingma et al. 2021): the same loss in expectation, with less variance per batch.
#include <diffusion/model/predictions.hpp>
#include <diffusion/plugin.hpp>

namespace diffusion::ddpm {
namespace {

class DenoisingLoss : public Loss {
 public:
  DenoisingLoss(std::shared_ptr<const Preconditioning> pre, bool low_discrepancy)
      : pre_(std::move(pre)), low_discrepancy_(low_discrepancy) {}
  std::shared_ptr<const Preconditioning> preconditioning() const override { return pre_; }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    const Path& path = *ctx.path;
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0], per = x0.size() / n;
    c.check_rows(n, "loss");
    Tensor t = low_discrepancy_ ? low_discrepancy_times(path, n, rng) : path.sample_times(n, rng);
    const Tensor z = (ctx.source ? *ctx.source : standard_normal_source()).sample(shape, rng);
    Tensor xt = Tensor::from_shape(shape), target = Tensor::from_shape(shape);
    Tensor c_noise = Tensor::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) {
      const double a = path.alpha(t(i)), s = path.sigma(t(i));
      const Scalings k = pre_->scalings(path, t(i));
      const Target y = pre_->target(path, t(i));
      c_noise(i) = static_cast<float>(k.c_noise);
      const float* px = x0.data() + i * per;
      const float* pz = z.data() + i * per;
      float* pxt = xt.data() + i * per;
      float* pt = target.data() + i * per;
      for (std::size_t j = 0; j < per; ++j) {
        pxt[j] = float(a * px[j] + s * pz[j]);
        pt[j] = float(y.x0 * px[j] + y.eps * pz[j]);
        if (k.c_in != 1.0) pxt[j] = float(k.c_in * pxt[j]);  // the network sees c_in x_t
      }
    }
    const Var pred = net.forward(Var(std::move(xt)), c_noise, c);
    return {mse_per_sample(pred, Var(std::move(target))), std::move(t)};
  }

 private:
  std::shared_ptr<const Preconditioning> pre_;
  bool low_discrepancy_;
};

bool read_low_discrepancy(const ConfigNode& c) {
  return c.get_choice("t_sampling", "iid", {"iid", "low_discrepancy"}) == "low_discrepancy";
}

template <const char* Prediction>
std::shared_ptr<Loss> make_fixed(const ConfigNode& c, const BuildContext&) {
  return std::make_shared<DenoisingLoss>(make_prediction(Prediction), read_low_discrepancy(c));
}

std::shared_ptr<Loss> make_mse(const ConfigNode& c, const BuildContext& ctx) {
  static const Config eps = Config::load_string("type: eps", "<default preconditioning>");
  const auto node = c.find("preconditioning");
  auto pre = registries().preconditionings.create(node ? *node : eps.root(), ctx);
  return std::make_shared<DenoisingLoss>(std::move(pre), read_low_discrepancy(c));
}

constexpr char kEps[] = "eps", kX0[] = "x0", kV[] = "v";

}  // namespace

DIFFUSION_REGISTER(losses, "eps_mse", make_fixed<kEps>);
DIFFUSION_REGISTER(losses, "x0_mse", make_fixed<kX0>);
DIFFUSION_REGISTER(losses, "v_mse", make_fixed<kV>);
DIFFUSION_REGISTER(losses, "mse", make_mse);

}  // namespace diffusion::ddpm

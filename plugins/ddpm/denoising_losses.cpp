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
    const std::size_t n = shape[0];
    c.check_rows(n, "loss");
    Tensor t = low_discrepancy_ ? low_discrepancy_times(path, n, rng) : path.sample_times(n, rng);
    const Tensor z = ctx.source_or_default().sample(shape, rng);
    DenoisingBatch b = denoising_batch(path, *pre_, x0, z, t);
    const Var pred = net.forward(Var(std::move(b.input)), b.c_noise, c);
    return {mse_per_sample(pred, Var(std::move(b.target))), std::move(t)};
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
  const auto node = c.find("preconditioning");
  auto pre = node ? registries().preconditionings.create(*node, ctx) : make_prediction("eps");
  return std::make_shared<DenoisingLoss>(std::move(pre), read_low_discrepancy(c));
}

constexpr char kEps[] = "eps", kX0[] = "x0", kV[] = "v";

}  // namespace

DIFFUSION_REGISTER(losses, "eps_mse", make_fixed<kEps>);
DIFFUSION_REGISTER(losses, "x0_mse", make_fixed<kX0>);
DIFFUSION_REGISTER(losses, "v_mse", make_fixed<kV>);
DIFFUSION_REGISTER(losses, "mse", make_mse);

}  // namespace diffusion::ddpm

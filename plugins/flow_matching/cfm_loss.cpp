// Conditional flow matching, `cfm` (Lipman et al. 2023, eq. 9; Tong et al. 2024, Algorithms 1
// and 2):
//
//   t ~ U[0, 1], x0 ~ data, z ~ source, (x0, z) coupled (independent or minibatch OT),
//   x_t = alpha(t) x0 + sigma(t) z,  minimise || v_theta(x_t, t) - (alpha'(t) x0 + sigma'(t) z) ||^2.
//
//   loss: {type: cfm, coupling: minibatch_ot, ot_batch: 0, t_sampling: iid}
//
// The source is the experiment's (`source:`; the standard Gaussian by default, or any data set,
// so transport between two data sets is one YAML change). With coupling: minibatch_ot the pairs
// of each block of ot_batch rows (0: the whole batch the loss sees, one shard) are the exact OT
// plan (coupling.hpp): OT-CFM.
#include <diffusion/plugin.hpp>

#include "cfm_regression.hpp"
#include "coupling.hpp"

namespace diffusion::flow_matching {
namespace {

class CfmLoss : public Loss {
 public:
  CfmLoss(Coupling coupling, bool low_discrepancy) : coupling_(coupling), low_discrepancy_(low_discrepancy) {}
  std::shared_ptr<const Preconditioning> preconditioning() const override { return velocity_preconditioning(); }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    const Path& path = *ctx.path;
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0];
    if (coupling_.type == CouplingType::minibatch_ot && coupling_.ot_batch > n)
      throw Error("cfm: ot_batch " + std::to_string(coupling_.ot_batch) + " exceeds the " + std::to_string(n) +
                  " rows the loss sees per call (train.batch_size / train.shards); an OT batch larger than a shard "
                  "needs the training loop to draw and plan it (not supported yet)");
    Tensor t = draw_times(path, n, low_discrepancy_, rng);
    Tensor z = ctx.source_or_default().sample(shape, rng);
    couple(x0, z, coupling_);
    return cfm_regression(net, path, x0, z, std::move(t), c);
  }

 private:
  Coupling coupling_;
  bool low_discrepancy_;
};

std::shared_ptr<Loss> make_cfm(const ConfigNode& c, const BuildContext&) {
  Coupling coupling;
  coupling.type = parse_coupling(c.get_choice("coupling", "independent", {"independent", "minibatch_ot"}));
  if (c.has("ot_batch")) {
    if (coupling.type != CouplingType::minibatch_ot)
      c.at("ot_batch").error("ot_batch sets the size of the OT plans of coupling: minibatch_ot");
    coupling.ot_batch = static_cast<std::size_t>(c.get_int("ot_batch", 0, 0, 1 << 24));
  }
  const bool low_discrepancy = c.get_choice("t_sampling", "iid", {"iid", "low_discrepancy"}) == "low_discrepancy";
  return std::make_shared<CfmLoss>(coupling, low_discrepancy);
}

}  // namespace

DIFFUSION_REGISTER(losses, "cfm", make_cfm);

}  // namespace diffusion::flow_matching

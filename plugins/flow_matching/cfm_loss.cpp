// Conditional flow matching, `cfm` (Lipman et al. 2023, eq. 9; Tong et al. 2024, Algorithms 1
// and 2):
//
//   t ~ U[0, 1], x0 ~ data, z ~ source, (x0, z) coupled (independent or minibatch OT),
//   x_t = alpha(t) x0 + sigma(t) z,  minimise || v_theta(x_t, t) - (alpha'(t) x0 + sigma'(t) z) ||^2.
//
//   loss: {type: cfm, coupling: minibatch_ot, ot_batch: 1024, t_sampling: iid}
//
// The source is the experiment's (`source:`; the standard Gaussian by default, or any data set,
// so transport between two data sets is one YAML change). With coupling: minibatch_ot the pairs
// are the exact OT plan (coupling.hpp) of Algorithm 2's minibatch: the loss plans in
// prepare_batch, on the whole training batch before the loop shards it (ot_batch absent or 0:
// train.batch_size), or on ot_batch = k train.batch_size rows which the loop then feeds to k
// consecutive steps; each data row's partner travels with it in the condition as the named
// tensor "cfm_source", so every shard regresses on its rows' pairs of the whole plan.
#include <diffusion/plugin.hpp>

#include <optional>

#include "cfm_regression.hpp"
#include "coupling.hpp"

namespace diffusion::flow_matching {
namespace {

/// The condition's named tensor holding each data row's paired source draw.
constexpr const char* kPairedSource = "cfm_source";

/// c without the named tensor `name` (the network sees the experiment's condition only).
Condition without(const Condition& c, const std::string& name) {
  Condition out;
  if (c.has_labels()) out.set_labels(c.labels());
  if (c.has_null_mask()) out.set_null_mask(c.null_mask());
  for (const std::string& n : c.names())
    if (n != name) out.set(n, c.tensor(n));
  return out;
}

class CfmLoss : public Loss {
 public:
  CfmLoss(Coupling coupling, bool low_discrepancy, std::optional<ConfigNode> ot_batch_node)
      : coupling_(coupling), low_discrepancy_(low_discrepancy), ot_batch_node_(std::move(ot_batch_node)) {}
  std::shared_ptr<const Preconditioning> preconditioning() const override { return velocity_preconditioning(); }

  std::size_t batches_per_plan(const TrainContext& ctx) const override {
    if (coupling_.type != CouplingType::minibatch_ot || coupling_.ot_batch == 0) return 1;
    const std::size_t batch = static_cast<std::size_t>(ctx.batch_size);
    if (batch == 0 || coupling_.ot_batch % batch != 0) {
      const std::string msg = "ot_batch " + std::to_string(coupling_.ot_batch) + " is not a multiple of train.batch_size " +
                              std::to_string(batch) + " (an OT plan spans whole training batches)";
      if (ot_batch_node_) ot_batch_node_->error(msg);
      throw Error("cfm: " + msg);
    }
    return coupling_.ot_batch / batch;
  }

  /// Algorithm 2's minibatch: source draws for every row of the plan block, paired by OT.
  void prepare_batch(Tensor& x0, Condition& c, const TrainContext& ctx, Rng& rng) const override {
    if (coupling_.type != CouplingType::minibatch_ot) return;
    Tensor z = ctx.source_or_default().sample(shape_of(x0), rng);
    pair_by_optimal_transport(x0, z);
    c.set(kPairedSource, std::move(z));
  }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    const Path& path = *ctx.path;
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0];
    Tensor t = draw_times(path, n, low_discrepancy_, rng);
    if (coupling_.type == CouplingType::independent)
      return cfm_regression(net, path, x0, ctx.source_or_default().sample(shape, rng), std::move(t), c);
    c.check_rows(n, "cfm");
    if (c.has(kPairedSource)) return cfm_regression(net, path, x0, c.tensor(kPairedSource), std::move(t), without(c, kPairedSource));
    // Called without the training loop's prepare_batch (tests, tools): plan over these rows.
    Tensor z = ctx.source_or_default().sample(shape, rng);
    pair_by_optimal_transport(x0, z);
    return cfm_regression(net, path, x0, z, std::move(t), c);
  }

 private:
  Coupling coupling_;
  bool low_discrepancy_;
  std::optional<ConfigNode> ot_batch_node_;  // for the error when ot_batch does not fit train.batch_size
};

std::shared_ptr<Loss> make_cfm(const ConfigNode& c, const BuildContext&) {
  Coupling coupling;
  coupling.type = parse_coupling(c.get_choice("coupling", "independent", {"independent", "minibatch_ot"}));
  std::optional<ConfigNode> ot_batch_node;
  if (c.has("ot_batch")) {
    if (coupling.type != CouplingType::minibatch_ot)
      c.at("ot_batch").error("ot_batch sets the size of the OT plans of coupling: minibatch_ot");
    coupling.ot_batch = static_cast<std::size_t>(c.get_int("ot_batch", 0, 0, 1 << 24));
    ot_batch_node = c.at("ot_batch");
  }
  const bool low_discrepancy = c.get_choice("t_sampling", "iid", {"iid", "low_discrepancy"}) == "low_discrepancy";
  return std::make_shared<CfmLoss>(coupling, low_discrepancy, std::move(ot_batch_node));
}

}  // namespace

DIFFUSION_REGISTER(losses, "cfm", make_cfm);

}  // namespace diffusion::flow_matching

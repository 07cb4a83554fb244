#pragma once
// Training objectives. A loss returns one value per sample with that sample's time (EDM's
// unreduced loss); the training loop minimises their mean and bins them by time into
// /train/loss_by_t. It sees the TrainContext (step, total steps, the path, the source, the named
// models), and its after_step hook runs after every update (target networks, curricula). Its
// prepare_batch hook sees the whole batch before it is sharded (a coupling planned across
// shards, e.g. minibatch OT), optionally over several training batches at once
// (batches_per_plan).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/model/condition.hpp"
#include "diffusion/model/models.hpp"
#include "diffusion/model/network.hpp"
#include "diffusion/model/path.hpp"
#include "diffusion/model/preconditioning.hpp"
#include "diffusion/model/source.hpp"
#include "diffusion/tensor/random.hpp"

namespace diffusion {

/// What a loss may read besides its batch (the step, the total steps, the path, the source, the
/// named models, the random stream). The loss runs on several threads at once when a batch is
/// sharded, so during loss() everything here is read-only.
struct TrainContext {
  std::int64_t step = 0;         ///< updates done before this one (0 for the first)
  std::int64_t total_steps = 0;  ///< train.steps
  std::int64_t batch_size = 0;   ///< train.batch_size (rows of one step, all shards)
  const Path* path = nullptr;
  const Source* source = nullptr;
  Models* models = nullptr;      ///< `model` (being trained), `ema`, and the experiment's others
  /// The training stream, for after_step (checkpointed with the run). During loss() draw from
  /// the rng argument instead: each shard has its own stream.
  Rng* rng = nullptr;

  /// The source, or the standard Gaussian when none is set (tests, tools).
  const Source& source_or_default() const { return source ? *source : standard_normal_source(); }
};

/// One value per sample (the training loop minimises their mean) and each sample's time on
/// the path (for the loss-by-time curve).
struct LossValues {
  Var per_sample;  ///< (N), differentiable
  Tensor times;    ///< (N)
};

class Loss {
 public:
  virtual ~Loss() = default;
  /// How the trained network is read: the same object turns it into the samplers' denoiser.
  virtual std::shared_ptr<const Preconditioning> preconditioning() const = 0;
  /// The loss of `net` on a batch x0 (N, ...) of encoded data with its condition (empty or N
  /// rows), drawing its times, source draws and noise from rng.
  virtual LossValues loss(Network& net, const Tensor& x0, const Condition& c,
                          const TrainContext& ctx, Rng& rng) const = 0;
  /// Runs after each update (and after the EMA's), on one thread. It may change unfrozen
  /// named models (they are checkpointed); any state of its own must be a function of
  /// ctx.step, so that a resumed run ends as an uninterrupted one.
  virtual void after_step(const TrainContext& /*ctx*/) const {}
  /// Runs once per plan, on one thread, on the whole encoded batch before it is sharded: the
  /// batches_per_plan() * train.batch_size rows of the steps of one plan block, with their
  /// condition. It may reorder the rows or add per-row named tensors to the condition (the
  /// shards and steps get them sliced with their rows); it must keep the row count. ctx.step
  /// is the block's first step; rng (and, for k > 1, the block's data) is a function of the
  /// run's seed and the block's index only (split, never drawn, from the master stream), so a
  /// run resumed inside a block redraws and re-plans the same block. With k = 1 the batch comes
  /// from the checkpointed data stream as without the hook.
  virtual void prepare_batch(Tensor& /*x0*/, Condition& /*c*/, const TrainContext& /*ctx*/, Rng& /*rng*/) const {}
  /// How many consecutive training batches one prepare_batch call plans together (k): the loop
  /// draws k * ctx.batch_size rows for steps [k b, k b + k) at once and feeds rows
  /// [i B, (i + 1) B) to step k b + i. Error (naming the key) when the loss's setting does not
  /// fit ctx.batch_size. With k = 1 each step's batch is drawn as without the hook.
  virtual std::size_t batches_per_plan(const TrainContext& /*ctx*/) const { return 1; }
  /// The named models (slots other than `model`) the loss reads, and those its after_step
  /// changes: an experiment without one of them, or with a changed one frozen, is refused
  /// before training, naming the slot.
  virtual std::vector<std::string> required_models() const { return {}; }
  virtual std::vector<std::string> changed_models() const { return {}; }
};

}  // namespace diffusion

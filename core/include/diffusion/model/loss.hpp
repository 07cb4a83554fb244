#pragma once
// Training objectives. A loss returns one value per sample with that sample's time (EDM's
// unreduced loss); the training loop minimises their mean and bins them by time into
// /train/loss_by_t. It sees the TrainContext (step, total steps, the path, the source, the named
// models), and its after_step hook runs after every update (target networks, curricula).
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
  /// The named models (slots other than `model`) the loss reads, and those its after_step
  /// changes: an experiment without one of them, or with a changed one frozen, is refused
  /// before training, naming the slot.
  virtual std::vector<std::string> required_models() const { return {}; }
  virtual std::vector<std::string> changed_models() const { return {}; }
};

}  // namespace diffusion

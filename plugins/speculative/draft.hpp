#pragma once
// Draft models of speculative sampling (De Bortoli et al. 2025, section 3.2): what proposes the
// next L states of the reverse chain. A draft gives a prediction (x0_hat, eps_hat) at a drafted
// state; the draft kernel q is the target's reverse kernel (reverse_kernel.hpp) read through it,
// so q and p share the variance and differ only in the mean, as the reflection coupling needs.
//
//   frozen_target   (frozen_target_draft.cpp) no network: the target's last prediction, kept
//                   fixed over the whole draft window (x0_hat or eps_hat frozen, the other one
//                   re-read through the path at each drafted state and time).
//   network         (network_draft.cpp) an independent, cheaper denoiser: a named model of the
//                   experiment (default slot `draft`) read through its preconditioning.
#include <memory>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>

namespace diffusion::speculative {

class Draft {
 public:
  virtual ~Draft() = default;
  /// The YAML name.
  virtual std::string name() const = 0;
  /// The named models it reads (the sampler declares them).
  virtual std::vector<std::string> required_models() const { return {}; }
  /// True when predict() reads the target's last prediction (`last`): the chain's first step,
  /// which has none, is then taken by the target alone.
  virtual bool needs_last_target_prediction() const = 0;
  /// True when each predict() is one network evaluation (counted as the draft's NFE).
  virtual bool evaluates_network() const = 0;
  /// Predictions at the drafted states x (rows at times t): `last` holds, row for row, the
  /// target's most recent prediction on that row's chain; `target` is the sampled model (its
  /// path) and `request` the run's (named models).
  virtual void predict(const Denoiser& target, const SampleRequest& request, const Tensor& x, const Times& t,
                       const Condition& c, const Prediction& last, Prediction& out) const = 0;
};

/// The draft under `key` of a sampler's node (a name or a map with `type:`); frozen_target
/// with its defaults when absent.
std::shared_ptr<const Draft> read_draft(const ConfigNode& sampler, const std::string& key, const BuildContext& ctx);

/// Which of the target's predictions the frozen draft keeps fixed.
enum class Frozen { x0, eps };
/// frozen_target {freeze: x0 | eps} (default x0).
std::shared_ptr<const Draft> make_frozen_target_draft(Frozen frozen);
/// network {model: <slot> (default draft), preconditioning: <name or map> (default eps): how the
/// draft network was trained}.
std::shared_ptr<const Draft> make_network_draft(std::string slot, std::shared_ptr<const Preconditioning> pre);

}  // namespace diffusion::speculative

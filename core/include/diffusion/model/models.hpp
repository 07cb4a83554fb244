#pragma once
// Named models: an experiment holds its networks in slots. `model` is the network that is
// trained; `ema` its moving average when train.ema > 0; a method declares others under
// `models:` (a `target` network, a frozen `teacher`, a `draft`, a `classifier`), each optionally
// loaded from a results file and frozen. Losses reach them through the TrainContext, samplers
// through the SampleRequest.
#include <memory>
#include <string>
#include <vector>

#include "diffusion/model/network.hpp"

namespace diffusion {

struct ModelSlot {
  std::string name;
  std::shared_ptr<Network> network;
  /// Never changed by the run (no gradients, not in checkpoints; loaded from `init` or
  /// rebuilt from the config). Unfrozen extra slots are changed by a method's after_step and
  /// are checkpointed.
  bool frozen = false;
  std::string init;  ///< the results file it was loaded from ("" if none)
};

class Models {
 public:
  /// Add a slot; Error if the name is taken.
  void add(ModelSlot slot);
  bool has(const std::string& name) const;
  /// The slot's network; Error listing the slots when there is no such slot.
  Network& get(const std::string& name) const;
  std::shared_ptr<Network> shared(const std::string& name) const;
  const ModelSlot& slot(const std::string& name) const;
  /// Every slot, in the order added (model first).
  const std::vector<ModelSlot>& slots() const { return slots_; }

 private:
  std::vector<ModelSlot> slots_;
};

}  // namespace diffusion

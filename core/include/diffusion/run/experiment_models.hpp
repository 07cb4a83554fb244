#pragma once
// The named models of an experiment and the results files they are loaded from (`init:`).
#include <functional>
#include <memory>

#include "diffusion/run/experiment.hpp"
#include "diffusion/run/init_architecture.hpp"

namespace diffusion {

/// Builds a network from a `network:` node, initialised from the experiment's init stream.
using NetworkFactory = std::function<std::shared_ptr<Network>(const ConfigNode&)>;

/// How the results files of `init:` and `models.<slot>.init` are checked.
struct InitOptions {
  Registries* registries = nullptr;  ///< to build the file's own components (init_architecture.hpp)
  BuildContext build;                ///< the experiment's (its rng is not used)
  /// Load weights whose architecture differs from the experiment's (runexp --force).
  bool allow_architecture_change = false;
};

/// The top-level `init: RUN.h5`: loads /model into the model, the codec from /data, and the EMA
/// (experiment.hpp says which). The file is read only if its seal matches (file_seal.hpp) and
/// its weights are finite, and only if it was trained with the experiment's architecture
/// (init_architecture.hpp; the preconditioning only with train.steps 0) unless
/// options.allow_architecture_change. Every failure is a
/// ConfigError at the `init` key naming the file.
void load_init(Experiment& ex, const ConfigNode& init_node, const std::function<std::shared_ptr<Network>()>& make_network,
               const InitOptions& options);

/// `models: {<slot>: {network, init, from, frozen}, ...}`: each slot's network (default: the
/// model's `network:`, which starts as a copy of the model's initial weights), optionally loaded
/// from a results file's group `from` (model, ema, or another run's slot name; default model),
/// and frozen (default: true when loaded, else false). A slot's file is checked as load_init's
/// is, but of its architecture only the network, against the slot's: how a slot is read (its
/// path, its preconditioning) is the business of the loss or sampler that uses it.
void read_model_slots(const ConfigNode& slots, const ConfigNode& model_network, const NetworkFactory& make_network,
                      Experiment& ex, const InitOptions& options);

}  // namespace diffusion

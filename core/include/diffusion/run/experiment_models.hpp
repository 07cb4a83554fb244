#pragma once
// The named models of an experiment and the results files they are loaded from (`init:`).
#include <functional>
#include <memory>

#include "diffusion/run/experiment.hpp"

namespace diffusion {

/// Builds a network from a `network:` node, initialised from the experiment's init stream.
using NetworkFactory = std::function<std::shared_ptr<Network>(const ConfigNode&)>;

/// The top-level `init: RUN.h5`: loads /model into the model, the codec from /data, and the EMA
/// (experiment.hpp says which). Every failure is a ConfigError at the `init` key naming the file.
void load_init(Experiment& ex, const ConfigNode& init_node, const std::function<std::shared_ptr<Network>()>& make_network);

/// `models: {<slot>: {network, init, from, frozen}, ...}`: each slot's network (default: the
/// model's `network:`, which starts as a copy of the model's initial weights), optionally loaded
/// from a results file's group `from` (model, ema, or another run's slot name; default model),
/// and frozen (default: true when loaded, else false).
void read_model_slots(const ConfigNode& slots, const ConfigNode& model_network, const NetworkFactory& make_network,
                      Experiment& ex);

}  // namespace diffusion

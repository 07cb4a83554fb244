#pragma once
// Whether the weights of a results file compute, in a new experiment, the function they were
// trained to compute (`init:`, `models.<slot>.init`).
//
// A results file stores the config it was trained under (root attribute `config`). Weights
// mean the same function only if everything that turns them into one is the same: the network
// (`network:`), the path (`sde:`: the network's time input and what x_t is), the
// preconditioning the loss reads the network through (`loss:`'s type or `preconditioning:`),
// and the shape of one sample. The codec comes from the file itself (/data) and its load
// checks its kind and shapes. Training settings (optimiser, steps, the loss's weighting or time
// sampling, samplers, metrics) may differ: that is what fine-tuning and evaluating change.
//
// The stored and the new config are compared key by key in those sections; a section whose
// keys differ is then compared by what it builds, so that a default spelled out
// (`activation: silu` where the file's config left it out) is no difference, and a loss key
// that does not touch the preconditioning (`t_sampling`) is none either:
//   network          both networks built, the file's weights loaded into each: their outputs
//                    on the same 16 random inputs agree (to float rounding)
//   sde              t_min, t_max, the step count and, at 33 times, alpha, sigma and the
//                    network's time input agree
//   preconditioning  the file's loss and the new one built: c_skip, c_out, c_in, c_noise and
//                    the readouts of x0 and eps agree at 33 times of the new path. Only for a
//                    run that samples the loaded weights as they are (train.steps 0): a run
//                    that trains may start from weights read another way (consistency
//                    distillation starts its student from the teacher, cd_moons.yaml)
//   sample shape     /data/reference's rows have the data set's sample shape
// A section the stored config cannot build (a plugin not loaded, a key since renamed) counts
// as differing by its keys.
#include <string>
#include <vector>

#include <H5Cpp.h>

#include "diffusion/io/config.hpp"
#include "diffusion/model/build_context.hpp"
#include "diffusion/plugin/registries.hpp"
#include "diffusion/run/experiment.hpp"

namespace diffusion {

struct ArchitectureDifference {
  std::string part;  ///< "network", "sde", "preconditioning", "sample shape"
  std::string keys;  ///< the config keys that differ, "network.activation (silu -> relu)"; may be empty
  std::string how;   ///< what differs in what they build
};

/// What the comparison needs of the experiment being composed.
struct ArchitectureCheck {
  Registries* registries = nullptr;
  BuildContext build;                  ///< the experiment's (sample shape in model space, classes); its rng is not used
  const Path* path = nullptr;          ///< the experiment's path (also gives the networks' time inputs)
  bool compare_path = true;            ///< false: the path is not compared (a named model's file)
  const Preconditioning* preconditioning = nullptr;  ///< the experiment's loss's; null: not compared
  Shape sample_shape;                  ///< one sample of the data set, in data coordinates
};

/// The differences between the architecture the file `root` was trained with (its `config`
/// attribute, whose network section for this group is `stored_network_key`) and the new one:
/// `network_node` is the network the weights of group `weights` (under root) are loaded into.
/// Empty when they compute the same function.
std::vector<ArchitectureDifference> architecture_differences(const Config& stored, const Config& now,
                                                             const std::string& stored_network_key,
                                                             const ConfigNode& network_node,
                                                             const H5::Group& root, const std::string& weights,
                                                             const ArchitectureCheck& check);

/// "network.activation (silu -> relu): the outputs differ ...; sde.timesteps (...)".
std::string describe(const std::vector<ArchitectureDifference>& diffs);

}  // namespace diffusion

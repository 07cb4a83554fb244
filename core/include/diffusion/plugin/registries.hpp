#pragma once
// The registries of the toolkit, one per kind of component. They live in libdiffusion_core,
// so the core, every plugin and runexp see the same tables.
#include "diffusion/model/components.hpp"
#include "diffusion/plugin/registry.hpp"

namespace diffusion {

using DatasetRegistry = Registry<Dataset, const BuildContext&>;
using NetworkRegistry = Registry<Network, const BuildContext&>;
using LossRegistry = Registry<Loss, const BuildContext&>;
using SdeRegistry = Registry<Sde, const BuildContext&>;
using SamplerRegistry = Registry<Sampler, const BuildContext&>;
using MetricRegistry = Registry<Metric, const BuildContext&>;

/// All registries together; plugins receive this in their registration entry point.
struct Registries {
  DatasetRegistry datasets{"dataset"};
  NetworkRegistry networks{"network"};
  LossRegistry losses{"loss"};
  SdeRegistry sdes{"sde"};
  SamplerRegistry samplers{"sampler"};
  MetricRegistry metrics{"metric"};

  /// Remove everything a plugin registered (when its registration fails halfway).
  void remove_origin(const std::string& origin);
};

/// The process-wide registries (the core's built-in metrics are registered on first use).
Registries& registries();

}  // namespace diffusion

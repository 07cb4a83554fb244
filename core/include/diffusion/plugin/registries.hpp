#pragma once
// The registries of the toolkit, one per kind of component. They live in libdiffusion_core,
// so the core, every plugin and runexp see the same tables.
#include <string>

#include "diffusion/components.hpp"
#include "diffusion/plugin/registry.hpp"

namespace diffusion {

using DatasetRegistry = Registry<Dataset, const BuildContext&>;
using NetworkRegistry = Registry<Network, const BuildContext&>;
using LossRegistry = Registry<Loss, const BuildContext&>;
using PathRegistry = Registry<Path, const BuildContext&>;
using SamplerRegistry = Registry<Sampler, const BuildContext&>;
using MetricRegistry = Registry<Metric, const BuildContext&>;
using TimeGridRegistry = Registry<TimeGrid, const BuildContext&>;
using PreconditioningRegistry = Registry<const Preconditioning, const BuildContext&>;
using CodecRegistry = Registry<Codec, const BuildContext&>;
using GuidanceRegistry = Registry<Guidance, const BuildContext&>;
using PotentialRegistry = Registry<Potential, const BuildContext&>;

/// All registries together; plugins receive this in their registration entry point. The
/// experiment file's key for each: dataset (and source), network (and models.<slot>.network),
/// loss, sde, sampler(s), metrics, a sampler's spacing, a loss's preconditioning, codec.
struct Registries {
  DatasetRegistry datasets{"dataset"};
  NetworkRegistry networks{"network"};
  LossRegistry losses{"loss"};
  PathRegistry paths{"sde"};
  SamplerRegistry samplers{"sampler"};
  MetricRegistry metrics{"metric"};
  TimeGridRegistry time_grids{"time grid"};
  PreconditioningRegistry preconditionings{"preconditioning"};
  CodecRegistry codecs{"codec"};
  GuidanceRegistry guidances{"guidance"};  ///< a sampler's `guidance:`
  PotentialRegistry potentials{"potential"};  ///< an smc sampler's `potential:`

  /// Remove everything a plugin registered (when its registration fails halfway).
  void remove_origin(const std::string& origin);
};

/// The process-wide registries (the core's own metrics, time grids, preconditionings and
/// codecs are registered on first use).
Registries& registries();

}  // namespace diffusion

#pragma once
// Every kind of component an experiment composes, in one include for plugin authors. Each kind
// has a registry (plugin/registries.hpp); docs/architecture.md says how to add one of each.
#include "diffusion/metrics/metric.hpp"
#include "diffusion/model/build_context.hpp"
#include "diffusion/model/codec.hpp"
#include "diffusion/model/condition.hpp"
#include "diffusion/model/dataset.hpp"
#include "diffusion/model/denoising_batch.hpp"
#include "diffusion/model/denoiser.hpp"
#include "diffusion/model/loss.hpp"
#include "diffusion/model/models.hpp"
#include "diffusion/model/network.hpp"
#include "diffusion/model/path.hpp"
#include "diffusion/model/potential.hpp"
#include "diffusion/model/preconditioning.hpp"
#include "diffusion/model/sampler.hpp"
#include "diffusion/model/source.hpp"
#include "diffusion/model/time_grid.hpp"

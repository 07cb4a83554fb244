#pragma once
// Options every sampler reads the same way, for sampler factories.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "diffusion/components.hpp"
#include "diffusion/integrate/ode.hpp"
#include "diffusion/io/config.hpp"

namespace diffusion {

/// A sampler's time grid and step count.
struct GridOption {
  std::shared_ptr<const TimeGrid> grid;
  std::size_t steps = 0;  ///< 0: every step of a discrete path (resolve_steps)
};

/// From a sampler's node: `timesteps: [t_1, ..., t_S]` lists the times (the `list` grid;
/// `steps`, if also given, must be S; `spacing` may not be), or `spacing:` names any registered
/// time grid (default linear) and `steps` (default `default_steps`; 0 allowed only when
/// default_steps is 0) how many times it gives.
GridOption read_time_grid(const ConfigNode& node, std::int64_t default_steps, const BuildContext& ctx);

/// A list of at least `min_size` strictly decreasing times under `key` (a grid's or a sampler's
/// times); a ConfigError names the first entry out of order.
std::vector<double> read_decreasing_times(const ConfigNode& node, const std::string& key, std::size_t min_size);

/// `steps`, or every step of a discrete path when it is 0; Error naming the sampler for a
/// continuous path.
std::size_t resolve_steps(std::size_t steps, const Path& path, const char* sampler);

/// How an ODE is integrated, as a sampler or metric reads it.
struct OdeIntegration {
  OdeMethod method = OdeMethod::dopri5;
  AdaptiveOptions adaptive;  ///< dopri5's
  GridOption grid;           ///< the fixed-step methods'
};

/// `method:` euler, midpoint, heun, rk4 or dopri5 (the default). dopri5 reads `rtol` and `atol`
/// (default 1e-5), `max_steps` (10000) and `controller: pi | standard` (pi) and refuses a time
/// grid; the fixed-step methods read one (read_time_grid, default_steps) and refuse dopri5's keys.
OdeIntegration read_ode_integration(const ConfigNode& node, std::int64_t default_steps, const BuildContext& ctx);

/// `prior: iid | rqmc` (default iid); rqmc is refused for samples of more than
/// kMaxRqmcDimension values.
PriorDraw read_prior_draw(const ConfigNode& node, const BuildContext& ctx);

}  // namespace diffusion

#include "diffusion/plugin/sampler_options.hpp"

#include "diffusion/io/text.hpp"
#include "diffusion/plugin/registries.hpp"
#include "diffusion/tensor/quasi_random.hpp"

namespace diffusion {

std::vector<double> read_decreasing_times(const ConfigNode& c, const std::string& key, std::size_t min_size) {
  const std::vector<double> t = c.get_double_list(key);
  if (t.size() < min_size)
    c.at(key).error(min_size == 1 ? std::string("expected a non-empty list of strictly decreasing times")
                                  : "expected at least " + std::to_string(min_size) + " strictly decreasing times");
  for (std::size_t i = 1; i < t.size(); ++i)
    if (!(t[i] < t[i - 1]))
      c.at(key).error("expected strictly decreasing times; entry " + std::to_string(i + 1) + " (" +
                      format_number(t[i]) + ") follows " + format_number(t[i - 1]));
  return t;
}

GridOption read_time_grid(const ConfigNode& c, std::int64_t default_steps, const BuildContext& ctx) {
  GridOption g;
  g.steps = static_cast<std::size_t>(c.get_int("steps", default_steps, default_steps == 0 ? 0 : 1, 1000000));
  const bool listed = c.has("timesteps");
  if (listed) {
    if (c.has("spacing")) c.at("spacing").error("spacing and timesteps exclude each other");
    g.grid = make_list_grid(read_decreasing_times(c, "timesteps", 1));
  } else {
    const auto spacing = c.find("spacing");
    g.grid = spacing ? registries().time_grids.create(*spacing, ctx) : make_linear_grid();
  }
  if (g.grid->fixed_steps()) {
    if (c.has("steps") && g.steps != g.grid->fixed_steps())
      c.at("steps").error("steps is " + std::to_string(g.steps) + " but " + (listed ? "timesteps" : "the spacing") +
                          " lists " + std::to_string(g.grid->fixed_steps()) + " times; give one of the two");
    g.steps = g.grid->fixed_steps();
  }
  return g;
}

std::size_t resolve_steps(std::size_t steps, const Path& path, const char* sampler) {
  if (steps > 0) return steps;
  if (path.num_steps() == 0) throw Error(std::string(sampler) + ": set `steps` for a continuous-time path");
  return path.num_steps();
}

PriorDraw read_prior_draw(const ConfigNode& c, const BuildContext& ctx) {
  const PriorDraw prior = parse_prior_draw(c.get_choice("prior", "iid", {"iid", "rqmc"}));
  const std::size_t dim = numel(ctx.data_shape);
  if (prior == PriorDraw::rqmc && dim > kMaxRqmcDimension)
    c.at("prior").error("rqmc draws are for samples of at most " + std::to_string(kMaxRqmcDimension) +
                        " values; this data set's have " + std::to_string(dim) + " (use iid)");
  return prior;
}

OdeIntegration read_ode_integration(const ConfigNode& c, std::int64_t default_steps, const BuildContext& ctx) {
  OdeIntegration o;
  o.method = parse_ode_method(c.get_choice("method", "dopri5", ode_method_names()));
  if (o.method == OdeMethod::dopri5) {
    for (const char* key : {"steps", "spacing", "timesteps"})
      if (c.has(key)) c.at(key).error("dopri5 chooses its own steps; `" + std::string(key) +
                                      "` is for the fixed-step methods (euler, midpoint, heun, rk4)");
    o.adaptive.rtol = c.get_double("rtol", 1e-5, Interval::greater_than(0));
    o.adaptive.atol = c.get_double("atol", 1e-5, Interval::greater_than(0));
    o.adaptive.max_steps = static_cast<std::size_t>(c.get_int("max_steps", 10000, 1, 100000000));
    o.adaptive.controller =
        c.get_choice("controller", "pi", {"pi", "standard"}) == "pi" ? StepController::pi : StepController::standard;
  } else {
    for (const char* key : {"rtol", "atol", "max_steps", "controller"})
      if (c.has(key)) c.at(key).error("`" + std::string(key) + "` sets the adaptive method's error control; method " +
                                      ode_method_name(o.method) + " takes `steps` (use method: dopri5)");
    o.grid = read_time_grid(c, default_steps, ctx);
  }
  return o;
}

}  // namespace diffusion

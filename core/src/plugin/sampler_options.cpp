#include "diffusion/plugin/sampler_options.hpp"

#include "diffusion/io/text.hpp"
#include "diffusion/plugin/registries.hpp"
#include "diffusion/tensor/quasi_random.hpp"

namespace diffusion {

GridOption read_time_grid(const ConfigNode& c, std::int64_t default_steps, const BuildContext& ctx) {
  GridOption g;
  g.steps = static_cast<std::size_t>(c.get_int("steps", default_steps, default_steps == 0 ? 0 : 1, 1000000));
  if (c.has("timesteps")) {
    const std::vector<double> times = c.get_double_list("timesteps");
    if (times.empty()) c.at("timesteps").error("expected a non-empty list of strictly decreasing times");
    for (std::size_t i = 1; i < times.size(); ++i)
      if (!(times[i] < times[i - 1]))
        c.at("timesteps").error("expected strictly decreasing times; entry " + std::to_string(i + 1) + " (" +
                                format_number(times[i]) + ") follows " + format_number(times[i - 1]));
    if (c.has("steps") && g.steps != times.size())
      c.at("steps").error("steps is " + std::to_string(g.steps) + " but timesteps lists " +
                          std::to_string(times.size()) + " times; give one of the two");
    if (c.has("spacing")) c.at("spacing").error("spacing and timesteps exclude each other");
    g.steps = times.size();
    g.grid = make_list_grid(times);
    return g;
  }
  static const Config linear = Config::load_string("type: linear", "<default spacing>");
  const auto spacing = c.find("spacing");
  g.grid = registries().time_grids.create(spacing ? *spacing : linear.root(), ctx);
  if (g.grid->fixed_steps()) {
    if (c.has("steps") && g.steps != g.grid->fixed_steps())
      c.at("steps").error("steps is " + std::to_string(g.steps) + " but the spacing lists " +
                          std::to_string(g.grid->fixed_steps()) + " times; give one of the two");
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

}  // namespace diffusion

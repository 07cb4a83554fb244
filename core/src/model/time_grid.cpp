// The rules every time grid obeys, in one place.
#include "diffusion/model/time_grid.hpp"

#include <algorithm>
#include <cmath>

#include "diffusion/io/text.hpp"

namespace diffusion {

std::vector<double> TimeGrid::times(const Path& path, std::size_t steps) const {
  if (steps == 0) throw Error("time grid: at least one step is needed");
  if (fixed_steps() && steps != fixed_steps())
    throw Error("time grid: it lists " + std::to_string(fixed_steps()) + " times but " + std::to_string(steps) +
                " steps were asked for");
  const std::size_t discrete = path.num_steps();
  if (discrete && steps > discrete)
    throw Error(std::to_string(steps) + " steps, but the path has only " + std::to_string(discrete));
  std::vector<double> grid = make(path, steps);
  if (grid.size() != steps)
    throw Error("time grid: made " + std::to_string(grid.size()) + " times for " + std::to_string(steps) + " steps");
  for (const double t : grid) {
    if (!(t >= path.t_min() && t <= path.t_max()))
      throw Error("time grid: time " + format_number(t) + " lies outside the path's times [" +
                  format_number(path.t_min()) + ", " + format_number(path.t_max()) + "]");
    if (discrete && t != std::floor(t))
      throw Error("time grid: time " + format_number(t) + " is not a whole step of the path (its times are 0, 1, ..., " +
                  format_number(path.t_max()) + ")");
  }
  // Rounding to whole steps can repeat a time where the grid is dense. Then keep room for the
  // steps on either side of each time and nudge earlier times up: whole steps, strictly
  // decreasing, in range. A grid that decreases already is left as it is.
  const auto decreasing = [&] {
    for (std::size_t i = 1; i < steps; ++i)
      if (!(grid[i] < grid[i - 1])) return false;
    return true;
  };
  if (discrete && !decreasing()) {
    const double last = double(steps - 1);
    for (std::size_t i = 0; i < steps; ++i)
      grid[i] = std::clamp(grid[i], path.t_min() + (last - double(i)), path.t_max() - double(i));
    for (std::size_t i = steps - 1; i-- > 0;) grid[i] = std::max(grid[i], grid[i + 1] + 1);
  }
  for (std::size_t i = 1; i < steps; ++i)
    if (!(grid[i] < grid[i - 1]))
      throw Error("time grid: times must strictly decrease; entry " + std::to_string(i + 1) + " (" +
                  format_number(grid[i]) + ") follows " + format_number(grid[i - 1]));
  return grid;
}

}  // namespace diffusion

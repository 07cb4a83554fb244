// The integrators' argument checks: a grid of times, and a state that must stay finite.
#include <cmath>

#include "diffusion/integrate/ode.hpp"
#include "diffusion/io/text.hpp"

namespace diffusion {

void check_time_grid(const std::vector<double>& times, const std::string& who) {
  if (times.size() < 2)
    throw Error(who + ": the grid of times needs at least two times (start and end), got " +
                std::to_string(times.size()));
  for (std::size_t i = 0; i < times.size(); ++i)
    if (!std::isfinite(times[i]))
      throw Error(who + ": times[" + std::to_string(i) + "] = " + format_number(times[i]) + " is not finite");
  const bool forward = times[1] > times[0];
  for (std::size_t i = 1; i < times.size(); ++i)
    if (forward ? !(times[i] > times[i - 1]) : !(times[i] < times[i - 1]))
      throw Error(who + ": the times must be strictly " + (forward ? "increasing" : "decreasing") + ", but times[" +
                  std::to_string(i) + "] = " + format_number(times[i]) + " follows times[" + std::to_string(i - 1) +
                  "] = " + format_number(times[i - 1]));
}

void check_state_finite(const Tensor& y, const std::string& who, double t_from, double t_to) {
  const float* p = y.data();
  for (std::size_t i = 0, n = y.size(); i < n; ++i)
    if (!std::isfinite(p[i]))
      throw Error(who + ": the state is not finite (value " + format_number(p[i]) + " at index " + std::to_string(i) +
                  ") after the step from t = " + format_number(t_from) + " to t = " + format_number(t_to) +
                  "; the vector field returned inf or NaN, or the steps are too large for it");
}

}  // namespace diffusion

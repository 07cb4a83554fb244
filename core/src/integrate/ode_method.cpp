// The integrators' names (as configs spell them) and their cost per step.
#include "diffusion/integrate/ode.hpp"
#include "diffusion/io/text.hpp"

namespace diffusion {

const std::vector<std::string>& ode_method_names() {
  // In the order of the enum, so a method's index is its name's index.
  static const std::vector<std::string> names{"euler", "midpoint", "heun", "rk4", "dopri5"};
  return names;
}

OdeMethod parse_ode_method(const std::string& name) {
  const auto& names = ode_method_names();
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<OdeMethod>(i);
  const auto guess = nearest(name, names);
  throw Error("unknown ODE method \"" + name + "\"" + (guess ? " (did you mean \"" + *guess + "\"?)" : "") +
              "; expected one of " + join(names, ", "));
}

std::string ode_method_name(OdeMethod method) { return ode_method_names().at(static_cast<std::size_t>(method)); }

std::size_t ode_method_stages(OdeMethod method) {
  switch (method) {
    case OdeMethod::euler: return 1;
    case OdeMethod::midpoint:
    case OdeMethod::heun: return 2;
    case OdeMethod::rk4: return 4;
    case OdeMethod::dopri5: return 6;
  }
  throw Error("ode_method_stages: invalid OdeMethod value " + std::to_string(static_cast<int>(method)));
}

}  // namespace diffusion

#include "diffusion/plugin/registries.hpp"

namespace diffusion {

void register_core_components(Registries& regs);  // core_components.cpp

void Registries::remove_origin(const std::string& origin) {
  datasets.remove_origin(origin);
  networks.remove_origin(origin);
  losses.remove_origin(origin);
  paths.remove_origin(origin);
  samplers.remove_origin(origin);
  metrics.remove_origin(origin);
  time_grids.remove_origin(origin);
  preconditionings.remove_origin(origin);
  codecs.remove_origin(origin);
  guidances.remove_origin(origin);
  potentials.remove_origin(origin);
}

Registries& registries() {
  static Registries* regs = [] {
    // Never destroyed: plugin objects may outlive static destruction order, and tearing the
    // tables down at exit would unload libraries whose code is still on the stack.
    auto* r = new Registries();
    register_core_components(*r);
    return r;
  }();
  return *regs;
}

}  // namespace diffusion

#include "diffusion/plugin/registries.hpp"

namespace diffusion {

void register_core_metrics(Registries& regs);  // metrics_registration.cpp

void Registries::remove_origin(const std::string& origin) {
  datasets.remove_origin(origin);
  networks.remove_origin(origin);
  losses.remove_origin(origin);
  sdes.remove_origin(origin);
  samplers.remove_origin(origin);
  metrics.remove_origin(origin);
}

Registries& registries() {
  static Registries* regs = [] {
    // Never destroyed: plugin objects may outlive static destruction order, and tearing the
    // tables down at exit would unload libraries whose code is still on the stack.
    auto* r = new Registries();
    register_core_metrics(*r);
    return r;
  }();
  return *regs;
}

}  // namespace diffusion

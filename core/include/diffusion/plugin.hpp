#pragma once
// Writing a plugin: one shared library that registers components by name.
//
//   // my_sampler.cpp
//   #include <diffusion/plugin.hpp>
//   class MySampler : public diffusion::Sampler { ... };
//   DIFFUSION_REGISTER(samplers, "my_sampler",
//                      [](const diffusion::ConfigNode& c, const diffusion::BuildContext&) {
//                        return std::make_shared<MySampler>(c);
//                      });
//   // exactly one .cpp of the plugin:
//   DIFFUSION_PLUGIN("my_plugin")
//
// The DIFFUSION_REGISTER lines only queue their entries when the library is loaded; the
// loader first checks the ABI version, then calls the plugin's one registration entry point,
// which adds the queued entries to the core's registries.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "diffusion/components.hpp"
#include "diffusion/io/config.hpp"
#include "diffusion/plugin/registries.hpp"

namespace diffusion {

/// Bumped whenever a change in the core breaks plugins built against an older version.
// 2: Sde::prior_sample takes a PriorDraw; Sde::time_at_quantile.
// 3: the version 2 interfaces (docs/architecture.md): Path, Source, Preconditioning, Denoiser,
//    Condition, time grids, per-sample losses with a TrainContext, named models, codecs,
//    sample outputs with extras.
// 4: metrics of the model (Metric::of_model, evaluate_model), Codec::log_det_encode,
//    Dataset::log_density, the core's integrators.
// 5: the potentials and guidances registries, Metric::check_sizes / memory_bytes /
//    needs_labels / compute_labelled, the image ops and layers.
constexpr int kPluginAbiVersion = 5;

/// What the loader hands a plugin's registration entry point.
struct PluginHost {
  Registries* registries;
  std::string origin;                   ///< the plugin's file, for messages and --list
  std::shared_ptr<const void> library;  ///< keeps the library loaded while its objects live
};

namespace plugin_detail {
using PendingRegistration = std::function<void(PluginHost&)>;
/// The queue of this plugin's registrations. Defined by DIFFUSION_PLUGIN in each plugin and
/// hidden, so every plugin has its own queue however the libraries are loaded.
__attribute__((visibility("hidden"))) std::vector<PendingRegistration>& pending();

/// Queues one registration; returns a token so the macro can hold it in a static variable.
template <class Reg, class Factory>
int queue_registration(Reg Registries::*kind, const char* name, Factory factory) {
  pending().push_back([kind, name, factory](PluginHost& host) {
    ((*host.registries).*kind).add(name, factory, host.origin, host.library);
  });
  return static_cast<int>(pending().size());
}
}  // namespace plugin_detail

}  // namespace diffusion

#define DIFFUSION_CONCAT_INNER(a, b) a##b
#define DIFFUSION_CONCAT(a, b) DIFFUSION_CONCAT_INNER(a, b)

/// Register a component: kind is one of datasets, networks, losses, paths, samplers, metrics,
/// time_grids, preconditionings, codecs, potentials (plugin/registries.hpp).
#define DIFFUSION_REGISTER(kind, name, factory)                                    \
  [[maybe_unused]] static const int DIFFUSION_CONCAT(diffusion_registered_, __LINE__) = \
      ::diffusion::plugin_detail::queue_registration(&::diffusion::Registries::kind,   \
                                                     name, factory)

/// Define the plugin's entry points; write it in exactly one .cpp of the plugin.
#define DIFFUSION_PLUGIN(plugin_name)                                                    \
  std::vector<::diffusion::plugin_detail::PendingRegistration>&                          \
  diffusion::plugin_detail::pending() {                                                  \
    static std::vector<PendingRegistration> queue;                                       \
    return queue;                                                                        \
  }                                                                                      \
  extern "C" __attribute__((visibility("default"))) int diffusion_plugin_abi_version() { \
    return ::diffusion::kPluginAbiVersion;                                               \
  }                                                                                      \
  extern "C" __attribute__((visibility("default"))) const char* diffusion_plugin_name() {\
    return plugin_name;                                                                  \
  }                                                                                      \
  extern "C" __attribute__((visibility("default"))) void diffusion_plugin_register(      \
      ::diffusion::PluginHost& host) {                                                   \
    for (auto& reg : ::diffusion::plugin_detail::pending()) reg(host);                   \
  }

#pragma once
// Loading plugins with Boost.DLL: check that the file is a complete ELF shared object (mapping a
// truncated one kills the process with SIGBUS), load it (a refusal carries the system loader's
// own reason), check the ABI version, then call the registration entry point. A refused library
// leaves nothing registered and the reason names the file.
#include <string>
#include <vector>

#include "diffusion/plugin/registries.hpp"

namespace diffusion {

/// The plugins folder that belongs to this core library: <dir of libdiffusion_core>/diffusion/plugins
/// (the same relation holds in the build tree and in the install tree).
std::string default_plugin_dir();

/// Bad input, as runexp reports it (exit code 2): a plugin that cannot be used.
class PluginError : public Error {
 public:
  using Error::Error;
};

/// Load one plugin file into the registries; throws PluginError naming the file and the reason
/// (not a complete shared library, the loader's refusal such as a missing dependency, not a
/// plugin, missing entry point, ABI mismatch, duplicate component).
void load_plugin(const std::string& file, Registries& regs = registries());

/// Load every shared library (*.so) in a folder, in sorted order; returns the files loaded.
/// Throws on the first refusal (a plugin folder with a broken plugin is an error to fix).
std::vector<std::string> load_plugin_dir(const std::string& dir, Registries& regs = registries());

/// A plugin file, or every plugin of a folder (`runexp --plugins`); PluginError when the path is
/// neither.
std::vector<std::string> load_plugins(const std::string& file_or_dir, Registries& regs = registries());

/// Files loaded so far in this process (each is loaded once; later calls are no-ops).
const std::vector<std::string>& loaded_plugins();

}  // namespace diffusion

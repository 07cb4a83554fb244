#include "diffusion/plugin/plugin_loader.hpp"

#include <algorithm>
#include <filesystem>
#include <memory>

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include "diffusion/plugin.hpp"

namespace diffusion {
namespace fs = std::filesystem;

namespace {
std::vector<std::string>& loaded_list() {
  static std::vector<std::string> list;
  return list;
}
}  // namespace

const std::vector<std::string>& loaded_plugins() { return loaded_list(); }

std::string default_plugin_dir() {
  const fs::path core = boost::dll::this_line_location().string();
  return (core.parent_path() / "diffusion" / "plugins").string();
}

void load_plugin(const std::string& file, Registries& regs) {
  const std::string path = fs::weakly_canonical(fs::path(file)).string();
  auto& loaded = loaded_list();
  if (std::find(loaded.begin(), loaded.end(), path) != loaded.end()) return;

  auto lib = std::make_shared<boost::dll::shared_library>();
  boost::dll::fs::error_code ec;
  lib->load(path, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local, ec);
  if (ec) throw Error("plugin " + path + ": cannot be loaded: " + ec.message());
  if (!lib->has("diffusion_plugin_abi_version"))
    throw Error("plugin " + path +
                ": not a diffusion plugin (no symbol diffusion_plugin_abi_version; did you "
                "write DIFFUSION_PLUGIN(\"name\") in one of its .cpp files?)");
  const int abi = lib->get<int()>("diffusion_plugin_abi_version")();
  if (abi != kPluginAbiVersion)
    throw Error("plugin " + path + ": ABI version " + std::to_string(abi) +
                " (symbol diffusion_plugin_abi_version), this toolkit needs " +
                std::to_string(kPluginAbiVersion) + "; rebuild the plugin against it");
  if (!lib->has("diffusion_plugin_register"))
    throw Error("plugin " + path + ": missing entry point diffusion_plugin_register");
  auto enter = lib->get<void(PluginHost&)>("diffusion_plugin_register");
  PluginHost host{&regs, fs::path(path).filename().string(), lib};
  try {
    enter(host);
  } catch (const std::exception& e) {
    // Leave no half-registered plugin behind.
    regs.remove_origin(host.origin);
    throw Error("plugin " + path + ": " + e.what());
  }
  loaded.push_back(path);
}

std::vector<std::string> load_plugin_dir(const std::string& dir, Registries& regs) {
  if (!fs::is_directory(dir)) throw Error("plugin folder " + dir + " does not exist");
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().extension() == ".so")
      files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) load_plugin(f, regs);
  return files;
}

}  // namespace diffusion

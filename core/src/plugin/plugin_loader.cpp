#include "diffusion/plugin/plugin_loader.hpp"

#include <dlfcn.h>
#include <elf.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
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
[[noreturn]] void refuse(const std::string& path, const std::string& why) {
  throw PluginError("plugin " + path + ": " + why);
}

// What the system loader would map: an ELF shared object of this machine's kind whose program
// and section headers and loadable segments all lie within the file. A file cut short (a copy
// or a build that did not finish) would otherwise be mapped and fault with SIGBUS when touched.
void check_shared_object(const std::string& path) {
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec) refuse(path, "cannot be read: " + ec.message());
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr h{};
  if (size < sizeof h || !in.read(reinterpret_cast<char*>(&h), sizeof h))
    refuse(path, "file too short to be a shared library (" + std::to_string(size) + " bytes)");
  if (std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0)
    refuse(path, "not a shared library (no ELF header: a text file, or not a build output?)");
  if (h.e_ident[EI_CLASS] != ELFCLASS64 || h.e_type != ET_DYN)
    refuse(path, "an ELF file but not a 64-bit shared library (built with -shared -fPIC?)");
  const auto within = [size](std::uint64_t offset, std::uint64_t bytes) {
    return offset <= size && bytes <= size - offset;
  };
  const auto truncated = [&](const char* part) {
    refuse(path, std::string("truncated: its ") + part + " lie past its end (" + std::to_string(size) +
                     " bytes; a copy or build that did not finish?)");
  };
  if (!within(h.e_phoff, std::uint64_t(h.e_phnum) * h.e_phentsize)) truncated("program headers");
  if (!within(h.e_shoff, std::uint64_t(h.e_shnum) * h.e_shentsize)) truncated("section headers");
  for (unsigned i = 0; i < h.e_phnum; ++i) {
    Elf64_Phdr ph{};
    in.seekg(std::streamoff(h.e_phoff + std::uint64_t(i) * h.e_phentsize));
    if (!in.read(reinterpret_cast<char*>(&ph), sizeof ph)) truncated("program headers");
    if (ph.p_type == PT_LOAD && !within(ph.p_offset, ph.p_filesz)) truncated("loadable segments");
  }
}

// The system loader's own reason for refusing a library ("file too short", "libfoo.so: cannot
// open shared object file"), which Boost.DLL's error code does not carry.
std::string loader_reason(const std::string& path, const std::string& fallback) {
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (handle) {
    dlclose(handle);
    return fallback;
  }
  const char* why = dlerror();
  return why ? why : fallback;
}

}  // namespace

const std::vector<std::string>& loaded_plugins() { return loaded_list(); }

std::string loaded_plugins_text() {
  const auto& loaded = loaded_list();
  if (loaded.empty()) return "no plugin is loaded";
  std::vector<std::string> names;
  for (const auto& path : loaded) names.push_back(fs::path(path).filename().string());
  return "loaded plugins: " + join(names, ", ");
}

std::string default_plugin_dir() {
  const fs::path core = boost::dll::this_line_location().string();
  return (core.parent_path() / "diffusion" / "plugins").string();
}

void load_plugin(const std::string& file, Registries& regs) {
  const std::string path = fs::weakly_canonical(fs::path(file)).string();
  auto& loaded = loaded_list();
  if (std::find(loaded.begin(), loaded.end(), path) != loaded.end()) return;

  check_shared_object(path);
  auto lib = std::make_shared<boost::dll::shared_library>();
  boost::dll::fs::error_code ec;
  lib->load(path, boost::dll::load_mode::rtld_lazy | boost::dll::load_mode::rtld_local, ec);
  if (ec) refuse(path, "cannot be loaded: " + loader_reason(path, ec.message()));
  if (!lib->has("diffusion_plugin_abi_version"))
    refuse(path,
           "not a diffusion plugin (no symbol diffusion_plugin_abi_version; did you "
           "write DIFFUSION_PLUGIN(\"name\") in one of its .cpp files?)");
  const int abi = lib->get<int()>("diffusion_plugin_abi_version")();
  if (abi != kPluginAbiVersion)
    refuse(path, "ABI version " + std::to_string(abi) + " (symbol diffusion_plugin_abi_version), this toolkit needs " +
                     std::to_string(kPluginAbiVersion) + "; rebuild the plugin against it");
  if (!lib->has("diffusion_plugin_register"))
    refuse(path, "missing entry point diffusion_plugin_register");
  auto enter = lib->get<void(PluginHost&)>("diffusion_plugin_register");
  PluginHost host{&regs, fs::path(path).filename().string(), lib};
  try {
    enter(host);
  } catch (const std::exception& e) {
    // Leave no half-registered plugin behind.
    regs.remove_origin(host.origin);
    refuse(path, e.what());
  }
  loaded.push_back(path);
}

std::vector<std::string> load_plugin_dir(const std::string& dir, Registries& regs) {
  if (!fs::is_directory(dir)) throw PluginError("plugin folder " + dir + " does not exist");
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().extension() == ".so")
      files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) load_plugin(f, regs);
  return files;
}

std::vector<std::string> load_plugins(const std::string& file_or_dir, Registries& regs) {
  if (fs::is_directory(file_or_dir)) return load_plugin_dir(file_or_dir, regs);
  if (fs::exists(file_or_dir)) {
    load_plugin(file_or_dir, regs);
    return {file_or_dir};
  }
  throw PluginError("plugins: " + file_or_dir + " is neither a plugin file nor a folder of plugins");
}

}  // namespace diffusion

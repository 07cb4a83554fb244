// The loader's refusals that need a purpose-built library: a plugin built for another ABI
// version, and one that has the version but no registration entry point. Each library is
// compiled here with the system's C++ compiler.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <diffusion/plugin.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

namespace fs = std::filesystem;
using namespace diffusion;

namespace {

/// Compile `source` into <tmp>/<name>.so and return its path.
std::string build_library(const fs::path& dir, const std::string& name, const std::string& source) {
  const fs::path cpp = dir / (name + ".cpp"), so = dir / (name + ".so");
  std::ofstream(cpp) << source;
  const std::string cmd = "c++ -shared -fPIC -o '" + so.string() + "' '" + cpp.string() + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return so.string();
}

}  // namespace

TEST_CASE("the plugin loader refuses another ABI version and a missing entry point", "[e2e][plugin][loader]") {
  char pattern[] = "/tmp/diffusion-abi-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const fs::path dir = pattern;
  Registries regs;

  const std::string wrong_abi = build_library(dir, "libwrong_abi", std::string(
      "extern \"C\" int diffusion_plugin_abi_version() { return ") +
      std::to_string(kPluginAbiVersion + 998) + "; }\n"
      "extern \"C\" void diffusion_plugin_register(void*) {}\n");
  REQUIRE_THROWS_WITH(load_plugin(wrong_abi, regs),
                      Catch::Contains(wrong_abi) && Catch::Contains("ABI version " + std::to_string(kPluginAbiVersion + 998)) &&
                          Catch::Contains("needs " + std::to_string(kPluginAbiVersion)));

  const std::string no_entry = build_library(dir, "libno_entry", std::string(
      "extern \"C\" int diffusion_plugin_abi_version() { return ") +
      std::to_string(kPluginAbiVersion) + "; }\n");
  REQUIRE_THROWS_WITH(load_plugin(no_entry, regs),
                      Catch::Contains(no_entry) && Catch::Contains("missing entry point diffusion_plugin_register"));

  REQUIRE(regs.datasets.names().empty());
  REQUIRE(regs.samplers.names().empty());
  fs::remove_all(dir);
}

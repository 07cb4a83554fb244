// The loader's refusals: a plugin built for another ABI version, one that has the version but no
// registration entry point (libraries compiled here with the system's C++ compiler), broken
// plugin files, and unknown component types.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <diffusion/plugin.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

#include "runexp_child.hpp"

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

// What a careless install produces: an empty or text file named .so, a plugin cut short by an
// interrupted copy (mapping it used to kill the process with SIGBUS), a plugin whose own
// dependency is missing (used to say "Bad file descriptor"). Each is refused with its own reason;
// runexp exits 2 for them (bad input) and takes a plugin file as well as a folder.
TEST_CASE("runexp refuses broken plugin files with the reason and exit 2, and loads a plugin file",
          "[e2e][plugin][loader]") {
  using diffusion::testing::run_runexp;
  char pattern[] = "/tmp/diffusion-broken-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const fs::path dir = pattern;
  const std::string flagship = std::string(DIFFUSION_SOURCE_DIR) + "/experiments/ddim_moons.yaml";
  const fs::path real = fs::path(DIFFUSION_PLUGIN_BUILD_DIR) / "libdiffusion_toy_data.so";

  std::ofstream(dir / "empty.so");
  std::ofstream(dir / "text.so") << std::string(200, '#') << " not a library\n";
  {
    std::ifstream in(real, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(bytes.size() > 4096);
    std::ofstream(dir / "truncated.so", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  build_library(dir, "libneeded", "extern \"C\" int needed() { return 1; }\n");
  std::ofstream(dir / "needs.cpp") << "extern \"C\" int needed();\nint f() { return needed(); }\n";
  const std::string cmd = "c++ -shared -fPIC -o '" + (dir / "needs.so").string() + "' '" + (dir / "needs.cpp").string() +
                          "' -L'" + dir.string() + "' -lneeded";
  REQUIRE(std::system(cmd.c_str()) == 0);
  fs::remove(dir / "libneeded.so");

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"empty.so", "file too short to be a shared library (0 bytes)"},
      {"text.so", "not a shared library (no ELF header"},
      {"truncated.so", "truncated: its"},
      {"needs.so", "libneeded.so: cannot open shared object file"},
  };
  for (const auto& [file, reason] : cases) {
    const std::string path = (dir / file).string();
    INFO(file);
    Registries regs;
    REQUIRE_THROWS_WITH(load_plugin(path, regs), Catch::Contains(path) && Catch::Contains(reason));
    const auto child = run_runexp({flagship, "train.steps=2", "--plugins", path, "--out", (dir / "out.h5").string()},
                                  (dir / "log").string());
    CHECK(child.status == 2);
    CHECK_THAT(child.err, Catch::Contains(reason));
    CHECK_FALSE(fs::exists(dir / "out.h5"));
  }

  // A path that is neither a file nor a folder; then a plugin given as a file loads.
  const auto missing = run_runexp({flagship, "--plugins", (dir / "nowhere").string()}, (dir / "log").string());
  CHECK(missing.status == 2);
  CHECK_THAT(missing.err, Catch::Contains("is neither a plugin file nor a folder"));
  // (Into the process's registries: a plugin file is loaded once per process, so a fresh
  // Registries would stay empty when another test case of this process loaded it first.)
  REQUIRE(load_plugins(real.string()) == std::vector<std::string>{real.string()});
  const auto& loaded = loaded_plugins();
  CHECK(std::find(loaded.begin(), loaded.end(), fs::weakly_canonical(real).string()) != loaded.end());
  const auto names = registries().datasets.names();
  CHECK(std::find(names.begin(), names.end(), "moons") != names.end());
  fs::remove_all(dir);
}

TEST_CASE("an unknown component type names the loaded plugins and how to load another", "[e2e][plugin][loader]") {
  using diffusion::testing::run_runexp;
  char pattern[] = "/tmp/diffusion-unknown-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::string flagship = std::string(DIFFUSION_SOURCE_DIR) + "/experiments/ddim_moons.yaml";
  const auto child = run_runexp({flagship, "sampler.type=my_sampler"}, std::string(pattern) + "/log");
  CHECK(child.status == 2);
  CHECK_THAT(child.err, Catch::Contains("unknown sampler 'my_sampler'") && Catch::Contains("runexp --plugins") &&
                            Catch::Contains("loaded plugins: ") && Catch::Contains("libdiffusion_ddpm.so"));
  fs::remove_all(pattern);
}

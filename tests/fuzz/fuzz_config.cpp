// libFuzzer harness over the path every experiment file takes: YAML text -> Config (with
// command-line overrides) -> compose_experiment, with the plugins of this build loaded.
//
// A rejected input must raise diffusion::Error (ConfigError for bad config). Anything else is a
// bug: a crash, a sanitizer report, a hang, or another exception escaping (libFuzzer reports it
// as a crash through std::terminate).
//
// Input format: an experiment file. Lines starting with `#=` are YAML comments to the parser
// and command-line overrides to the harness (`#=train.steps=5` is `runexp x.yaml train.steps=5`),
// so the fuzzer reaches apply_override and the errors it attributes to the command line.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <string>

#include <diffusion/run/checkpoint.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/run/experiment.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

namespace {

using diffusion::Config;

/// A YAML map's value for `key` without yaml-cpp's inserting operator[].
std::optional<YAML::Node> find_key(const YAML::Node& map, const std::string& key) {
  if (!map.IsMap()) return std::nullopt;
  for (auto it = map.begin(); it != map.end(); ++it)
    if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
  return std::nullopt;
}

/// Sum of the magnitudes of the integers in a subtree (`1e3` counts as 1000).
double integer_mass(const YAML::Node& n) {
  if (n.IsScalar()) {
    char* end = nullptr;
    const double x = std::strtod(n.Scalar().c_str(), &end);
    const bool number = end && *end == '\0' && !n.Scalar().empty();
    return number && std::isfinite(x) && x == std::floor(x) ? std::fabs(x) : 0.0;
  }
  double sum = 0;
  if (n.IsSequence() || n.IsMap())
    for (auto it = n.begin(); it != n.end(); ++it)
      sum += integer_mass(n.IsMap() ? it->second : *it);
  return sum;
}

/// A network whose widths add up to more than this is a legitimately big experiment, not a
/// bug: composing it allocates widths x widths floats (the mlp accepts widths up to 2^20), which
/// libFuzzer would report as out-of-memory. Such inputs are only loaded, not composed.
constexpr double kMaxNetworkMass = 4096;

/// The loaded document must dump to YAML that loads back to the same values: checkpoints store
/// the dump and --resume compares it with the config it is resumed under.
void check_dump_round_trip(const Config& config) {
  const std::string dumped = config.dump();
  std::string reloaded_canonical;
  try {
    reloaded_canonical = diffusion::canonical_config(Config::load_string(dumped, "dump"));
  } catch (const diffusion::Error& e) {
    std::fprintf(stderr, "dump does not load back: %s\n--- dump ---\n%s\n", e.what(), dumped.c_str());
    std::abort();
  }
  const std::string canonical = diffusion::canonical_config(config);
  if (canonical != reloaded_canonical) {
    std::fprintf(stderr, "dump changes values\n--- canonical ---\n%s\n--- after dump and load ---\n%s\n",
                 canonical.c_str(), reloaded_canonical.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The plugins built next to the core in this build tree (lib/diffusion/plugins).
  diffusion::load_plugin_dir(diffusion::default_plugin_dir());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    Config config = Config::load_string(text, "fuzz.yaml");
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind("#=", 0) == 0) config.apply_override(line.substr(2));
    check_dump_round_trip(config);

    const YAML::Node root = config.root().yaml();
    if (const auto net = find_key(root, "network"); net && integer_mass(*net) > kMaxNetworkMass) return 0;
    // `init:` reads a file; a fuzzed path could name /dev/stdin or a FIFO and block. The init
    // loader's file handling is tested end to end (tests/e2e/test_init.cpp); here it only sees
    // a path that does not exist.
    if (const auto init = find_key(root, "init"); init && !init->IsNull() && init->IsScalar())
      config.apply_override("init=/nonexistent/diffusion-fuzz/init.h5");
    diffusion::compose_experiment(config);
  } catch (const diffusion::Error&) {
    // A rejected input: the expected outcome for almost everything the fuzzer makes.
  }
  return 0;
}

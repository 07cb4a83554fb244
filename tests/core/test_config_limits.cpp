// The YAML loader's size limits (issue: nothing lost at the edges, case 6): an oversized text is
// refused before yaml-cpp builds its tree (a 60 MB list took 14 GB before), and each refusal
// says what is too large and where: the file's size, the value that passes the count, the
// level that passes the nesting limit (yaml-cpp alone said `bad file`).
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "diffusion/io/config.hpp"

using Catch::Contains;
using diffusion::Config;
using diffusion::ConfigError;

namespace {

/// `key: ` followed by `depth` nested flow lists around a 1.
std::string nested_lists(const std::string& key, std::size_t depth) {
  return key + ": " + std::string(depth, '[') + "1" + std::string(depth, ']') + "\n";
}

/// A block map `depth` levels deep: "k:\n  k:\n    k: 1".
std::string nested_block_maps(std::size_t depth) {
  std::string s;
  for (std::size_t i = 0; i + 1 < depth; ++i) s += std::string(2 * i, ' ') + "k:\n";
  return s + std::string(2 * (depth - 1), ' ') + "k: 1\n";
}

}  // namespace

TEST_CASE("config limits: a text over 1 MiB is refused by its size", "[config][limits]") {
  // 2 MB of valid YAML (one long comment): refused for its size, before any parse.
  const std::string big = "seed: 1\n#" + std::string(2000000, 'x') + "\n";
  REQUIRE_THROWS_WITH(Config::load_string(big, "big.yaml"),
                      "big.yaml: the text is 2.0 MB; an experiment file may have at most 1 MiB (they have a few KB): "
                      "is this the right file?");
  // Just under the limit it loads.
  const std::string fits = "seed: 1\n#" + std::string((1 << 20) - 10, 'x') + "\n";
  REQUIRE(fits.size() <= (1u << 20));
  CHECK(Config::load_string(fits).root().get_int("seed") == 1);
}

TEST_CASE("config limits: a 60 MB file is refused naming its size without being read", "[config][limits]") {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("diffusion-limits-" + std::to_string(::getpid()) + ".yaml")).string();
  {
    // Sparse: 60 MB of size on disk costs nothing; only the first MiB would be read.
    std::ofstream f(path);
    f << "seed: 1\nbig:\n";
  }
  std::filesystem::resize_file(path, 60000000);
  CHECK_THROWS_WITH(Config::load_file(path), path + ": the file is 60.0 MB; an experiment file may have at most 1 MiB "
                                                    "(they have a few KB): is this the right file?");
  std::filesystem::remove(path);
}

TEST_CASE("config limits: a list of more than 100000 values is refused at the value past the limit",
          "[config][limits]") {
  // Without aliases: the message must not blame aliases the file does not have.
  std::string list = "name: x\nbig: [";
  for (int i = 0; i < 120000; ++i) list += i ? ",1" : "1";
  list += "]\n";
  try {
    Config::load_string(list, "list.yaml");
    FAIL("a list of 120000 values was accepted");
  } catch (const ConfigError& e) {
    // Values: the root map, `name`'s value, the list, then its items: the 100001st value is
    // item 99997, on line 2 at column 7 + 2 * 99997.
    CHECK(std::string(e.what()) ==
          "list.yaml:2:" + std::to_string(7 + 2 * 99997) +
              ": big.99997: more than 100000 values in the file (an experiment has tens): is this the right file?");
    CHECK(std::string(e.what()).find("alias") == std::string::npos);
  }
  // The alias bomb still names aliases: the file itself is small.
  std::string bomb = "l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n";
  for (int i = 1; i <= 8; ++i) {
    bomb += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) bomb += (k ? ", *l" : "*l") + std::to_string(i - 1);
    bomb += "]\n";
  }
  CHECK_THROWS_WITH(Config::load_string(bomb, "bomb.yaml"), Contains("once YAML aliases are expanded"));
}

TEST_CASE("config limits: nesting deeper than 100 levels is refused at the level past it", "[config][limits]") {
  // 100 levels (the root map and 99 lists) load; the 101st is refused where it opens.
  CHECK(Config::load_string(nested_lists("a", 99)).root().at("a").is_sequence());
  CHECK_THROWS_WITH(Config::load_string(nested_lists("a", 100), "deep.yaml"),
                    "deep.yaml:1:103: a: nested more than 100 levels deep (an experiment needs a handful)");
  // yaml-cpp gave up with `bad file` near 500 levels; the limit speaks first at any depth.
  CHECK_THROWS_WITH(Config::load_string(nested_lists("a", 5000), "deeper.yaml"),
                    "deeper.yaml:1:103: a: nested more than 100 levels deep (an experiment needs a handful)");
  // Block maps: the map of level 101 starts on line 101, indented by 2 x 100 columns; at 600
  // levels yaml-cpp alone said `bad file`.
  CHECK_NOTHROW(Config::load_string(nested_block_maps(100)));
  CHECK_THROWS_WITH(Config::load_string(nested_block_maps(101), "block.yaml"),
                    "block.yaml:101:201: k: nested more than 100 levels deep (an experiment needs a handful)");
  CHECK_THROWS_WITH(Config::load_string(nested_block_maps(600), "block.yaml"),
                    "block.yaml:101:201: k: nested more than 100 levels deep (an experiment needs a handful)");
}

TEST_CASE("config limits: an override value is held to the same limits", "[config][limits]") {
  Config c = Config::load_string("seed: 1\n");
  const std::string deep = "x=" + std::string(150, '[') + std::string(150, ']');
  CHECK_THROWS_WITH(c.apply_override(deep),
                    "<command line> '" + deep + "': x.0: nested more than 100 levels deep (an experiment needs a handful)");
  CHECK_NOTHROW(c.apply_override("y=" + std::string(50, '[') + std::string(50, ']')));
}

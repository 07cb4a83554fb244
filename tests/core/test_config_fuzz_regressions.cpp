// Inputs the config fuzzer (tests/fuzz/fuzz_config.cpp) found to crash, hang or break an
// invariant, each kept as a test of the fixed behaviour.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "diffusion/run/checkpoint.hpp"
#include "diffusion/components.hpp"
#include "diffusion/io/config.hpp"
#include "diffusion/plugin/plugin_loader.hpp"

using namespace diffusion;
using Catch::Matchers::Contains;

TEST_CASE("fuzz: invalid UTF-8 is refused at its position instead of changing on dump", "[config][fuzz]") {
  // The emitter wrote byte 0x88 back as U+FFFD, so the dump (stored in checkpoints) no longer
  // loaded to the same values and --resume saw a changed config.
  REQUIRE_THROWS_WITH(Config::load_string("seed: 1\nname: \x88\x1e" "Am\n", "bad.yaml"),
                      "bad.yaml:2:7: invalid UTF-8 (byte 0x88); experiment files must be UTF-8 text");
  // Overlong forms, surrogates and truncated sequences are invalid too.
  CHECK_THROWS_AS(Config::load_string("name: \xC0\xAF\n"), ConfigError);
  CHECK_THROWS_AS(Config::load_string("name: \xED\xA0\x80\n"), ConfigError);
  CHECK_THROWS_AS(Config::load_string("name: \xE2\x82"), ConfigError);
  Config c = Config::load_string("seed: 1\n");
  REQUIRE_THROWS_WITH(c.apply_override("name=\xFF"), Contains("<command line> 'name=") &&
                                                         Contains("invalid UTF-8 (byte 0xFF)"));
  // Valid UTF-8 (a BOM, accents, an emoji) still loads and survives a dump.
  const Config ok = Config::load_string("\xEF\xBB\xBFname: caf\xC3\xA9 \xF0\x9F\x8C\x99\n");
  CHECK(ok.root().get_string("name") == "caf\xC3\xA9 \xF0\x9F\x8C\x99");
  CHECK(canonical_config(Config::load_string(ok.dump())) == canonical_config(ok));
}

TEST_CASE("fuzz: control characters are refused instead of read as other bytes", "[config][fuzz]") {
  // yaml-cpp read the NUL as a lone byte 0x85 (not UTF-8), so the value changed on dump.
  const std::string with_nul("seed: 1\ninit: results7\0NULL.h5\n", 31);
  REQUIRE_THROWS_WITH(Config::load_string(with_nul, "nul.yaml"),
                      "nul.yaml:2:15: control character U+0000 is not allowed in YAML text "
                      "(write it as an escape in a double-quoted string)");
  CHECK_THROWS_AS(Config::load_string("name: a\x1e" "b\n"), ConfigError);
  CHECK_THROWS_AS(Config::load_string("name: a\x7f" "b\n"), ConfigError);
  CHECK_THROWS_AS(Config::load_string("name: a\xC2\x80" "b\n"), ConfigError);
  // Tabs, CRLF line ends and escapes in double quotes are fine.
  const Config ok = Config::load_string("name: \"a\\x1eb\"\r\nseed:\t3\r\n");
  CHECK(ok.root().get_string("name") == "a\x1e" "b");
  CHECK(canonical_config(Config::load_string(ok.dump())) == canonical_config(ok));
}

TEST_CASE("fuzz: the escapes yaml-cpp decodes to invalid UTF-8 are refused", "[config][fuzz]") {
  // yaml-cpp reads "\N" (U+0085) and "\_" (U+00A0) as the single bytes 0x85 and 0xA0; the
  // emitter then wrote U+FFFD, so the value changed on dump.
  REQUIRE_THROWS_WITH(Config::load_string("seed: 3\n\"quoted key\": \"a\\NULtb\"\n", "esc.yaml"),
                      "esc.yaml:2:15: quoted key: unsupported escape \\N or \\_ (write \\u0085 or \\u00A0 instead)");
  CHECK_THROWS_AS(Config::load_string("\"a\\_b\": 1\n"), ConfigError);
  Config c = Config::load_string("seed: 1\n");
  CHECK_THROWS_AS(c.apply_override("name=\"\\N\""), ConfigError);
  // The same characters written as \u escapes, or themselves, survive a dump.
  const Config ok = Config::load_string("a: \"x\\u0085y\\u00A0z\"\nb: \"x\xC2\xA0y\"\n");
  CHECK(ok.root().get_string("a") == "x\xC2\x85y\xC2\xA0z");
  CHECK(canonical_config(Config::load_string(ok.dump())) == canonical_config(ok));
}

TEST_CASE("fuzz: carriage returns are line breaks, so a dump keeps the values", "[config][fuzz]") {
  // yaml-cpp kept `\r\r\r` at the end of the input inside the scalar, and the dump lost one.
  const Config c = Config::load_string("seed: 1\nloss: x0atyba\r\r\r", "cr.yaml");
  CHECK(c.root().get_string("loss") == "x0atyba");
  CHECK(canonical_config(Config::load_string(c.dump())) == canonical_config(c));
  // CR LF and lone CR line ends keep their line numbers in messages.
  REQUIRE_THROWS_WITH(Config::load_string("seed: 1\r\nname: a\rtrain: {steps: x}\r\n", "mac.yaml").root()
                          .at("train").get_int("steps"),
                      Contains("mac.yaml:3:16: train.steps: expected an integer"));
}

TEST_CASE("fuzz: a stray top-level comma is invalid YAML, not an endless loop", "[config][fuzz]") {
  // yaml-cpp 0.7's LoadAll never returned on these, allocating a null document per turn.
  REQUIRE_THROWS_WITH(Config::load_string(",na", "comma.yaml"),
                      "comma.yaml:1:1: invalid YAML: unexpected ','");
  CHECK_THROWS_AS(Config::load_string(","), ConfigError);
  CHECK_THROWS_AS(Config::load_string("seed: 1\n---\n,\n"), ConfigError);
  // Several documents are still counted and refused at the second one.
  REQUIRE_THROWS_WITH(Config::load_string("a: 1\n---\nb: 2\n---\nc: 3\n", "three.yaml"),
                      "three.yaml:2:1: expected one YAML document, found 3");
}

TEST_CASE("fuzz: nested YAML aliases cannot expand a small file into billions of values", "[config][fuzz]") {
  // 511 bytes, 10^9 values once expanded: the duplicate-key walk never finished.
  std::string bomb = "l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n";
  for (int i = 1; i <= 8; ++i) {
    bomb += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) bomb += (k ? ", *l" : "*l") + std::to_string(i - 1);
    bomb += "]\n";
  }
  REQUIRE_THROWS_WITH(Config::load_string(bomb, "bomb.yaml"),
                      Contains("bomb.yaml:") && Contains("more than 100000 values once YAML aliases are expanded"));
  // An alias inside its own anchor is a cycle: the walk overflowed the stack.
  REQUIRE_THROWS_WITH(Config::load_string("seed: 1\nl2: &l2 [1, *l2]\n", "cycle.yaml"),
                      "cycle.yaml:2:10: nested more than 1000 levels deep (is an alias inside its own anchor?)");
  CHECK_THROWS_AS(Config::load_string("a: &a {b: *a}\n"), ConfigError);
  // Aliases themselves are fine: a shared block reads in both places.
  const Config shared = Config::load_string("base: &net {type: mlp, hidden: [8]}\nnetwork: *net\n");
  CHECK(shared.root().at("network").get_int_list("hidden") == std::vector<std::int64_t>{8});
  Config c = Config::load_string("seed: 1\n");
  CHECK_NOTHROW(c.apply_override("x=[&a [1,1,1,1,1,1,1,1,1,1], [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]]"));
}

// A bug in plugins/mlp/time_mlp.cpp, left to that plugin's owner: `hidden: []` with
// `conditioning: add` reads hidden[0] of an empty list (UBSan: reference binding to null
// pointer; a crash in a release build). Hidden ([.]) until the plugin refuses it with a
// ConfigError at network.hidden; then drop the [.] tag. Run it with: diffusion_tests "[known-bug]".
TEST_CASE("fuzz: a key too long for a simple key is dumped as an explicit one", "[config][fuzz]") {
  // YAML limits an implicit (simple) key to 1024 characters. A longer key, written as an
  // explicit `? key` in the file, was dumped as a simple key, so the dump did not load back
  // ("end of map not found").
  for (const std::string quote : {"\"", "'", ""}) {
    for (const std::size_t n : {std::size_t{1000}, std::size_t{1100}, std::size_t{3000}}) {
      CAPTURE(quote, n);
      const std::string key = quote + std::string(n, 'k') + quote;
      for (const std::string doc : {"? " + key + "\n: 1\nseed: 2\n", "{? " + key + " : [1, 2], seed: 2}\n",
                                    "a: {? " + key + " : {? " + key + " : 3}}\n"}) {
        const Config c = Config::load_string(doc);
        const std::string dumped = c.dump();
        CAPTURE(dumped.substr(0, 200));
        REQUIRE(canonical_config(Config::load_string(dumped)) == canonical_config(c));
      }
    }
  }
}

TEST_CASE("fuzz: an empty hidden list with conditioning add is refused", "[.][known-bug]") {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_mlp.so");
  Rng rng(3);
  BuildContext ctx{{2}, 0, &rng};
  const Config c = Config::load_string("network: {type: mlp, hidden: [], conditioning: add}\n", "mlp.yaml");
  REQUIRE_THROWS_WITH(registries().networks.create(c.root().at("network"), ctx), Contains("network.hidden"));
}

// Config: positions in every error, typed getters, unknown keys, command-line overrides.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <limits>
#include <string>

#include "diffusion/io/config.hpp"
#include "diffusion/io/text.hpp"

using namespace diffusion;
using Catch::Matchers::Contains;
using Catch::Matchers::WithinRel;

namespace {

const char* const kMoons =
    "name: ddim_moons\n"                                                                  // 1
    "seed: 0\n"                                                                           // 2
    "dataset: {type: moons, noise: 0.05}\n"                                               // 3
    "network: {type: mlp, hidden: [128, 128, 128], activation: silu,\n"                   // 4
    "          time_embedding: {type: sinusoidal, dim: 32}}\n"                            // 5
    "sde:     {type: ddpm, timesteps: 1000, schedule: linear, beta_start: 1.0e-4, beta_end: 0.02}\n"
    "loss:    {type: eps_mse}\n"                                                          // 7
    "train:   {steps: 30000, batch_size: 256, optimizer: {type: adam, lr: 1.0e-3}, ema: 0.999}\n"
    "sampler: {type: ddim, steps: 50, eta: 0.0, n: 2000, trajectory: 10}\n"               // 9
    "metrics: [w2, sliced_w2, mmd]\n";                                                    // 10

// The ConfigError thrown by f (fails the test if none is).
template <class F>
ConfigError catch_config_error(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e;
  }
  FAIL("no ConfigError thrown");
  throw;  // unreachable
}

}  // namespace

TEST_CASE("the flagship experiment reads with the right types", "[config]") {
  const Config cfg = Config::load_string(kMoons, "experiments/ddim_moons.yaml");
  const ConfigNode root = cfg.root();
  CHECK(root.get_string("name") == "ddim_moons");
  CHECK(root.get_int("seed", 1) == 0);
  CHECK(root.at("dataset").type() == "moons");
  CHECK_THAT(root.at("dataset").get_double("noise"), WithinRel(0.05, 1e-12));
  CHECK(root.at("network").get_int_list("hidden") == std::vector<std::int64_t>{128, 128, 128});
  CHECK(root.at("network").at("time_embedding").get_int("dim", 0, 1) == 32);
  CHECK_THAT(root.at("sde").get_double("beta_start"), WithinRel(1e-4, 1e-12));
  CHECK_THAT(root.at("train").at("optimizer").get_double("lr", 0.1, Interval::greater_than(0)),
             WithinRel(1e-3, 1e-12));
  CHECK(root.get_string_list("metrics") == std::vector<std::string>{"w2", "sliced_w2", "mmd"});
  CHECK(root.at("sampler").get_double("eta", 1.0, 0.0, 1.0) == 0.0);
  CHECK(root.at("sampler").get_bool("clip", true));  // absent: the default
  CHECK(cfg.name() == "experiments/ddim_moons.yaml");
}

TEST_CASE("numbers follow YAML 1.2: 1e-4 is a double, 2.5 is not an integer", "[config]") {
  const Config cfg = Config::load_string(
      "a: 1e-4\nb: 1.0e-4\nc: 3\nd: 2.5\ne: \"5\"\nf: 1e5\ng: .inf\nh: many\ni: 99999999999999999999\n",
      "n.yaml");
  const ConfigNode r = cfg.root();
  CHECK_THAT(r.get_double("a"), WithinRel(1e-4, 1e-12));
  CHECK_THAT(r.get_double("b"), WithinRel(1e-4, 1e-12));
  CHECK(r.get_double("c") == 3.0);  // a double getter accepts integers
  CHECK(r.get_int("f") == 100000);  // an exactly integral float literal is an integer
  CHECK(std::isinf(r.get_double("g")));
  REQUIRE_THROWS_WITH(r.get_int("d"), "n.yaml:4:4: d: expected an integer, got 2.5");
  // Quoted, "5" is a string: a number getter must not read it.
  REQUIRE_THROWS_WITH(r.get_int("e"), "n.yaml:5:4: e: expected an integer, got \"5\"");
  REQUIRE_THROWS_WITH(r.get_double("h"), "n.yaml:8:4: h: expected a number, got \"many\"");
  REQUIRE_THROWS_WITH(r.get_int("i"), Contains("i: expected an integer, got 99999999999999999999"));
  CHECK(r.get_string("e") == "5");
  CHECK(r.get_string("c") == "3");
}

TEST_CASE("a wrong type names file, line, column, key path and expectation", "[config]") {
  const Config cfg = Config::load_string(
      "name: x\n"
      "train:\n"
      "  batch_size: 0\n"
      "  steps: \"many\"\n",
      "experiments/x.yaml");
  const ConfigNode train = cfg.root().at("train");
  REQUIRE_THROWS_WITH(train.get_int("steps", 1000, 1),
                      "experiments/x.yaml:4:10: train.steps: expected an integer >= 1, got \"many\"");
  const ConfigError e = catch_config_error([&] { train.get_int("steps", 1000, 1); });
  CHECK(e.file() == "experiments/x.yaml");
  CHECK(e.line() == 4);
  CHECK(e.column() == 10);
  CHECK(e.key_path() == "train.steps");
  CHECK(e.message() == "expected an integer >= 1, got \"many\"");
  CHECK(e.override_text().empty());
  // Out of range: zero batch.
  REQUIRE_THROWS_WITH(train.get_int("batch_size", 256, 1),
                      "experiments/x.yaml:3:15: train.batch_size: expected an integer >= 1, got 0");
  REQUIRE_THROWS_WITH(train.get_int("batch_size", 256, 1, 4096),
                      Contains("expected an integer in [1, 4096], got 0"));
  // A map where a scalar belongs.
  REQUIRE_THROWS_WITH(cfg.root().get_int("train", 1), Contains("train: expected an integer, got a map"));
}

TEST_CASE("number ranges: closed, open and one-sided bounds in the message", "[config]") {
  const Config cfg = Config::load_string("lr: 0\nema: 1.0\nsteps: -5\nbeta: 2\n", "r.yaml");
  const ConfigNode r = cfg.root();
  REQUIRE_THROWS_WITH(r.get_double("lr", 1e-3, Interval::greater_than(0)),
                      "r.yaml:1:5: lr: expected a number > 0, got 0");
  REQUIRE_THROWS_WITH(r.get_double("ema", 0.999, Interval::half_open(0, 1)),
                      Contains("ema: expected a number in [0, 1), got 1.0"));
  REQUIRE_THROWS_WITH(r.get_int("steps", 10, 1), Contains("steps: expected an integer >= 1, got -5"));
  REQUIRE_THROWS_WITH(r.get_double("beta", 0.5, 0.0, 1.0),
                      Contains("beta: expected a number in [0, 1], got 2"));
  REQUIRE_THROWS_WITH(r.require_double("lr", Interval::at_least(1e-4)),
                      Contains("expected a number >= 0.0001, got 0"));
  CHECK(r.get_double("ema", 0.5, Interval::closed(0, 1)) == 1.0);
  CHECK_FALSE(Interval::greater_than(0).contains(std::nan("")));
}

TEST_CASE("number ranges: .inf is refused unless a range reaches it", "[config]") {
  const Config cfg = Config::load_string("lr: .inf\nlow: -.inf\ns_tmax: .inf\n", "i.yaml");
  const ConfigNode r = cfg.root();
  REQUIRE_THROWS_WITH(r.get_double("lr", 1e-3, Interval::greater_than(0)),
                      "i.yaml:1:5: lr: expected a finite number > 0, got .inf");
  REQUIRE_THROWS_WITH(r.get_double("lr", 1e-3, Interval::at_least(0)), Contains("expected a finite number >= 0"));
  REQUIRE_THROWS_WITH(r.get_double("lr", 1e-3, Interval()), Contains("expected a finite number, got .inf"));
  REQUIRE_THROWS_WITH(r.get_double("low", 0, Interval::at_most(1)), Contains("expected a finite number <= 1"));
  REQUIRE_THROWS_WITH(r.get_double("low", 0, Interval::less_than(1)), Contains("got -.inf"));
  // A range that names infinity as a closed end accepts it (EDM's s_tmax: no upper limit).
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(r.get_double("s_tmax", 0, Interval::closed(0, inf)) == inf);
  CHECK(Interval::closed(0, inf).contains(inf));
  CHECK_FALSE(Interval::at_least(0).contains(inf));
  CHECK(Interval::at_least(0).contains(1e300));
}

TEST_CASE("a missing required key is reported at its parent", "[config]") {
  const Config cfg = Config::load_string("name: x\ndataset: {noise: 0.1}\n", "m.yaml");
  REQUIRE_THROWS_WITH(cfg.root().at("dataset").type(),
                      "m.yaml:2:10: dataset: missing required key 'type'");
  REQUIRE_THROWS_WITH(cfg.root().at("sampler"), "m.yaml:1:1: missing required key 'sampler'");
  REQUIRE_THROWS_WITH(cfg.root().get_double("lr"), Contains("missing required key 'lr'"));
}

TEST_CASE("an empty value is null and is reported at its key", "[config]") {
  const Config cfg = Config::load_string("train:\n  steps:\n  lr: 1\n", "null.yaml");
  REQUIRE_THROWS_WITH(cfg.root().at("train").get_int("steps", 5),
                      "null.yaml:2:3: train.steps: expected an integer, got null");
  CHECK(cfg.root().at("train").has("steps"));
  CHECK(cfg.root().at("train").at("steps").is_null());
}

TEST_CASE("unknown keys are rejected with the nearest known key", "[config]") {
  const Config cfg = Config::load_string(
      "dataset:\n"
      "  type: moons\n"
      "  nosie: 0.05\n",
      "u.yaml");
  const ConfigNode ds = cfg.root().at("dataset");
  CHECK(ds.type() == "moons");
  CHECK(ds.get_double("noise", 0.1) == 0.1);  // absent under its real name: the default
  REQUIRE_THROWS_WITH(ds.check_no_unknown_keys(),
                      "u.yaml:3:3: dataset.nosie: unknown key 'nosie'; did you mean 'noise'?");
  // From the root, the same key is found through the dataset map that was read.
  REQUIRE_THROWS_WITH(cfg.root().check_no_unknown_keys(), Contains("did you mean 'noise'?"));

  SECTION("far from every known key: the known keys are listed") {
    const Config c2 = Config::load_string("sampler: {type: ddim, steps: 5, zzzzzz: 1}\n", "v.yaml");
    const ConfigNode s = c2.root().at("sampler");
    s.type();
    s.get_int("steps", 50);
    s.get_double("eta", 0.0);
    REQUIRE_THROWS_WITH(s.check_no_unknown_keys(),
                        "v.yaml:1:33: sampler.zzzzzz: unknown key 'zzzzzz' (known keys: eta, steps, type)");
  }
  SECTION("a top-level typo") {
    const Config c3 = Config::load_string("name: a\ntrian: {steps: 5}\n", "t.yaml");
    c3.root().get_string("name");
    c3.root().has("train");
    REQUIRE_THROWS_WITH(c3.root().check_no_unknown_keys(),
                        "t.yaml:2:1: trian: unknown key 'trian'; did you mean 'train'?");
  }
  SECTION("maps nobody read are left to whoever owns them; keys() claims every key") {
    const Config c4 = Config::load_string("a: {x: 1}\nb: {y: 2}\n", "k.yaml");
    CHECK(c4.root().keys() == std::vector<std::string>{"a", "b"});
    CHECK_NOTHROW(c4.root().check_no_unknown_keys());
    c4.root().at("a").get_int("z", 0);
    REQUIRE_THROWS_WITH(c4.root().check_no_unknown_keys(), Contains("a.x: unknown key 'x'"));
  }
  SECTION("maps inside lists are checked once read") {
    const Config c5 = Config::load_string("metrics: [w2, {type: mmd, bandwith: 1}]\n", "l.yaml");
    const auto items = c5.root().at("metrics").items();
    REQUIRE(items.size() == 2);
    CHECK(items[0].type() == "w2");  // the shorthand
    CHECK(items[1].type() == "mmd");
    items[1].get_double("bandwidth", 1.0);
    REQUIRE_THROWS_WITH(c5.root().check_no_unknown_keys(),
                        "l.yaml:1:27: metrics.1.bandwith: unknown key 'bandwith'; did you mean 'bandwidth'?");
  }
}

TEST_CASE("a scalar read as a map without type() is an error at the final check", "[config]") {
  const Config cfg = Config::load_string("train: 5\nsampler: ddim\n", "s.yaml");
  CHECK(cfg.root().at("train").get_int("steps", 7) == 7);
  CHECK(cfg.root().at("sampler").type() == "ddim");
  CHECK(cfg.root().at("sampler").get_int("steps", 50) == 50);
  REQUIRE_THROWS_WITH(cfg.root().check_no_unknown_keys(), "s.yaml:1:8: train: expected a map, got 5");
}

TEST_CASE("malformed YAML becomes a ConfigError with file:line:col", "[config]") {
  const ConfigError e = catch_config_error(
      [] { Config::load_string("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml"); });
  CHECK(e.file() == "bad.yaml");
  CHECK(e.line() >= 2);
  CHECK(e.column() >= 1);
  CHECK_THAT(e.what(), Contains("bad.yaml:") && Contains("invalid YAML"));
  REQUIRE_THROWS_WITH(Config::load_string("a: 1\nb: 2\na: 3\n", "dup.yaml"),
                      "dup.yaml:3:1: a: duplicate key 'a' (first at line 1)");
  REQUIRE_THROWS_WITH(Config::load_string("- 1\n- 2\n", "list.yaml"),
                      "list.yaml:1:1: expected a map at the top level, got a list");
  REQUIRE_THROWS_WITH(Config::load_string("a: 1\n---\nb: 2\n", "two.yaml"),
                      Contains("expected one YAML document, found 2"));
  CHECK(Config::load_string("", "empty.yaml").root().keys().empty());
}

TEST_CASE("load_file reads a file and names it in errors", "[config]") {
  const std::string path = std::string(DIFFUSION_BINARY_DIR) + "/test_config_load_file.yaml";
  {
    std::ofstream out(path);
    out << "seed: 3\ntrain: {steps: -1}\n";
  }
  const Config cfg = Config::load_file(path);
  CHECK(cfg.root().get_int("seed") == 3);
  REQUIRE_THROWS_WITH(cfg.root().at("train").get_int("steps", 1, 1),
                      path + ":2:16: train.steps: expected an integer >= 1, got -1");
  std::remove(path.c_str());
  REQUIRE_THROWS_WITH(Config::load_file(path), Contains(path + ": cannot open"));
}

TEST_CASE("reading a missing key never modifies the document", "[config]") {
  const Config cfg = Config::load_string(kMoons, "moons.yaml");
  const std::string before = cfg.dump();
  const ConfigNode root = cfg.root();
  CHECK_FALSE(root.has("init"));
  CHECK(root.get_int("missing", 4) == 4);
  CHECK_FALSE(root.at("sampler").find("guidance").has_value());
  CHECK(root.at("network").get_int_list("widths", {1}) == std::vector<std::int64_t>{1});
  CHECK_THROWS_AS(root.at("nothing_here"), ConfigError);
  CHECK(cfg.dump() == before);
}

TEST_CASE("dump gives YAML that loads back to the same values", "[config]") {
  Config cfg = Config::load_string("name: \"007\"\nlr: 1.0e-4\nhidden: [64, 64]\nnote: 'a: b'\nx: ~\n",
                                   "d.yaml");
  cfg.apply_override("train.steps=10");
  const Config back = Config::load_string(cfg.dump(), "dumped.yaml");
  CHECK(back.root().get_string("name") == "007");
  CHECK_THROWS_AS(back.root().get_int("name"), ConfigError);  // still a string
  CHECK_THAT(back.root().get_double("lr"), WithinRel(1e-4, 1e-12));
  CHECK(back.root().get_int_list("hidden") == std::vector<std::int64_t>{64, 64});
  CHECK(back.root().get_string("note") == "a: b");
  CHECK(back.root().at("x").is_null());
  CHECK(back.root().at("train").get_int("steps") == 10);
  CHECK(back.dump() == cfg.dump());
}

TEST_CASE("overrides set scalars, lists, new nested keys and list items", "[config]") {
  Config cfg = Config::load_string(kMoons, "moons.yaml");
  cfg.apply_override("train.steps=100");
  cfg.apply_override("network.hidden=[64,64]");
  cfg.apply_override("train.optimizer.lr=1e-4");
  cfg.apply_override("sampler.schedule.kind.name=karras");
  cfg.apply_override("sde.timesteps=500");
  const ConfigNode root = cfg.root();
  CHECK(root.at("train").get_int("steps") == 100);
  CHECK(root.at("network").get_int_list("hidden") == std::vector<std::int64_t>{64, 64});
  CHECK_THAT(root.at("train").at("optimizer").get_double("lr"), WithinRel(1e-4, 1e-12));
  CHECK(root.at("sampler").at("schedule").at("kind").get_string("name") == "karras");
  CHECK(root.at("sde").get_int("timesteps") == 500);

  cfg.apply_override("network.hidden.1=32");
  CHECK(cfg.root().at("network").get_int_list("hidden") == std::vector<std::int64_t>{64, 32});
  cfg.apply_override("metrics.0=mmd");
  CHECK(cfg.root().get_string_list("metrics") == std::vector<std::string>{"mmd", "sliced_w2", "mmd"});
  cfg.apply_override("fresh=1");  // a brand-new top-level key
  CHECK(cfg.root().get_int("fresh") == 1);
  CHECK(cfg.overrides().size() == 8);
}

TEST_CASE("errors about overridden values point at the command line", "[config]") {
  Config cfg = Config::load_string(kMoons, "moons.yaml");
  cfg.apply_override("train.steps=-5");
  REQUIRE_THROWS_WITH(cfg.root().at("train").get_int("steps", 1, 1),
                      "<command line> 'train.steps=-5': train.steps: expected an integer >= 1, got -5");
  const ConfigError e = catch_config_error([&] { cfg.root().at("train").get_int("steps", 1, 1); });
  CHECK(e.file() == "<command line>");
  CHECK(e.line() == 0);
  CHECK(e.override_text() == "train.steps=-5");
  // Other values of the same map still point into the file.
  REQUIRE_THROWS_WITH(cfg.root().at("train").get_int("batch_size", 1, 1000),
                      Contains("moons.yaml:8:37: train.batch_size"));
  // Inside an overridden list, and in a map an override created.
  cfg.apply_override("network.hidden=[64, 0]");
  REQUIRE_THROWS_WITH(cfg.root().at("network").get_int_list("hidden", {}, 1),
                      "<command line> 'network.hidden=[64, 0]': network.hidden.1: expected an integer >= 1, got 0");
  cfg.apply_override("extra.block.depth=2");
  REQUIRE_THROWS_WITH(cfg.root().at("extra").at("block").at("width"),
                      "<command line> 'extra.block.depth=2': extra.block: missing required key 'width'");
  // An unknown key typed on the command line.
  cfg.apply_override("dataset.nosie=0.1");
  const ConfigNode ds = cfg.root().at("dataset");
  ds.type();
  ds.get_double("noise", 0.0);
  REQUIRE_THROWS_WITH(ds.check_no_unknown_keys(),
                      "<command line> 'dataset.nosie=0.1': dataset.nosie: unknown key 'nosie'; did you mean 'noise'?");
}

TEST_CASE("malformed overrides are rejected with the override text", "[config]") {
  Config cfg = Config::load_string(kMoons, "moons.yaml");
  const std::string before = cfg.dump();
  REQUIRE_THROWS_WITH(cfg.apply_override("train.steps"),
                      "<command line> 'train.steps': expected key.path=value");
  REQUIRE_THROWS_WITH(cfg.apply_override("=5"), Contains("expected key.path=value"));
  REQUIRE_THROWS_WITH(cfg.apply_override("train..steps=5"), Contains("empty key"));
  REQUIRE_THROWS_WITH(cfg.apply_override("network.hidden.3=1"),
                      "<command line> 'network.hidden.3=1': network.hidden: expected a list index in [0, 2], got '3'");
  REQUIRE_THROWS_WITH(cfg.apply_override("network.hidden.x=1"), Contains("got 'x'"));
  REQUIRE_THROWS_WITH(cfg.apply_override("seed.x=1"),
                      "<command line> 'seed.x=1': seed: cannot set 'x' inside 0");
  REQUIRE_THROWS_WITH(cfg.apply_override("network.hidden=[1, 2"), Contains("invalid YAML value"));
  REQUIRE_THROWS_WITH(cfg.apply_override("dataset={a: 1, a: 2}"),
                      "<command line> 'dataset={a: 1, a: 2}': dataset.a: duplicate key 'a'");
  CHECK(cfg.dump() == before);
  CHECK(cfg.overrides().empty());
}

TEST_CASE("a copied Config is independent and keeps positions", "[config]") {
  Config base = Config::load_string(kMoons, "moons.yaml");
  base.apply_override("seed=1");
  Config copy = base;
  copy.apply_override("seed=2");
  CHECK(base.root().get_int("seed") == 1);
  CHECK(copy.root().get_int("seed") == 2);
  REQUIRE_THROWS_WITH(copy.root().at("train").get_int("steps", 1, 1, 10), Contains("moons.yaml:8:"));
}

TEST_CASE("choices and string lists", "[config]") {
  const Config cfg = Config::load_string("schedule: cosin\nact: silu\nmetrics: w2\n", "c.yaml");
  const ConfigNode r = cfg.root();
  REQUIRE_THROWS_WITH(r.get_choice("schedule", "linear", {"linear", "cosine"}),
                      "c.yaml:1:11: schedule: expected one of 'linear', 'cosine', got \"cosin\"; did you mean 'cosine'?");
  CHECK(r.get_choice("act", {"relu", "silu"}) == "silu");
  CHECK(r.get_choice("missing", "x", {"x", "y"}) == "x");
  CHECK(r.get_string_list("metrics") == std::vector<std::string>{"w2"});
}

TEST_CASE("edit distance, nearest and join", "[config][text]") {
  CHECK(edit_distance("", "") == 0);
  CHECK(edit_distance("abc", "") == 3);
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(edit_distance("nosie", "noise") == 2);
  CHECK(edit_distance("A", "a") == 1);  // case-sensitive
  CHECK(nearest("nosie", {"type", "noise"}) == std::optional<std::string>("noise"));
  CHECK(nearest("DDIM", {"ancestral", "ddim"}) == std::optional<std::string>("ddim"));
  CHECK(nearest("ddim", {"ddim", "ddpm"}) == std::optional<std::string>("ddim"));
  CHECK_FALSE(nearest("lr", {"n", "eta"}).has_value());         // a total rewrite is no typo
  CHECK_FALSE(nearest("zzzzzz", {"steps", "eta"}).has_value());
  CHECK(nearest("sliced_w", {"sliced_w2", "w2"}) == std::optional<std::string>("sliced_w2"));
  CHECK_FALSE(nearest("x", {}).has_value());
  CHECK(join({"a", "b", "c"}, ", ") == "a, b, c");
  CHECK(join({}, ", ").empty());
}

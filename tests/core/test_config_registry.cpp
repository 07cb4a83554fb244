// Registry: creation by name, helpful failures, and plugin libraries kept alive by objects.
#include <catch2/catch.hpp>

#include <memory>
#include <string>

#include "diffusion/io/config.hpp"
#include "diffusion/plugin/registry.hpp"

using namespace diffusion;
using Catch::Matchers::Contains;

namespace {

struct Thing {
  virtual ~Thing() = default;
  virtual std::string describe() const = 0;
};

struct Stepper : Thing {
  explicit Stepper(std::int64_t steps, int offset) : steps(steps), offset(offset) {}
  std::string describe() const override { return "stepper " + std::to_string(steps + offset); }
  std::int64_t steps;
  int offset;
};

using ThingRegistry = Registry<Thing, int>;

ThingRegistry::Factory stepper_factory() {
  return [](const ConfigNode& c, int offset) {
    return std::make_shared<Stepper>(c.get_int("steps", 50, 1), offset);
  };
}

// Stands for an object whose destructor is plugin code: it checks that its library (the
// owner) is still loaded when it dies.
struct Tracked : Thing {
  Tracked(std::weak_ptr<int> library, bool* library_alive_in_destructor)
      : library(std::move(library)), alive_flag(library_alive_in_destructor) {}
  ~Tracked() override { *alive_flag = !library.expired(); }
  std::string describe() const override { return "tracked"; }
  std::weak_ptr<int> library;
  bool* alive_flag;
};

}  // namespace

TEST_CASE("a registry creates components by their type name", "[registry]") {
  ThingRegistry things("sampler");
  things.add("ddim", stepper_factory());
  const Config cfg = Config::load_string("sampler: {type: ddim, steps: 7}\nshort: ddim\n", "r.yaml");
  CHECK(things.create(cfg.root().at("sampler"), 1)->describe() == "stepper 8");
  // `short: ddim` is shorthand for {type: ddim}.
  CHECK(things.create(cfg.root().at("short"), 0)->describe() == "stepper 50");
  CHECK(things.kind() == "sampler");
  CHECK(things.contains("ddim"));
  CHECK_FALSE(things.contains("ddpm"));
  CHECK(things.origin("ddim") == "core");
  REQUIRE_THROWS_WITH(things.origin("nope"), "no sampler 'nope' is registered");
}

TEST_CASE("an unknown type lists the sorted known names and the nearest", "[registry]") {
  ThingRegistry things("sampler");
  for (const char* name : {"pc", "ddim", "ancestral", "euler"}) things.add(name, stepper_factory());
  CHECK(things.names() == std::vector<std::string>{"ancestral", "ddim", "euler", "pc"});
  const Config cfg = Config::load_string("sampler:\n  type: ddjm\n  steps: 3\nother: qqqqqqq\n", "u.yaml");
  REQUIRE_THROWS_WITH(things.create(cfg.root().at("sampler"), 0),
                      "u.yaml:2:9: sampler.type: unknown sampler 'ddjm' (known: ancestral, ddim, "
                      "euler, pc); did you mean 'ddim'?");
  REQUIRE_THROWS_WITH(things.create(cfg.root().at("other"), 0),
                      "u.yaml:4:8: other: unknown sampler 'qqqqqqq' (known: ancestral, ddim, euler, pc); if a "
                      "plugin provides it, load it (runexp --plugins FILE_OR_FOLDER); no plugin is loaded");
  const ConfigError e = [&] {
    try {
      things.create(cfg.root().at("sampler"), 0);
    } catch (const ConfigError& err) {
      return err;
    }
    FAIL("no error");
    throw;
  }();
  CHECK(e.line() == 2);
  CHECK(e.key_path() == "sampler.type");

  ThingRegistry empty("dataset");
  REQUIRE_THROWS_WITH(empty.create(cfg.root().at("sampler"), 0), Contains("no dataset is registered"));
}

TEST_CASE("registering a name twice says who registered it first", "[registry]") {
  ThingRegistry things("sampler");
  things.add("ddim", stepper_factory(), "libddpm.so");
  REQUIRE_THROWS_WITH(things.add("ddim", stepper_factory(), "libfoo.so"),
                      "sampler 'ddim' from libfoo.so is already registered by libddpm.so");
  CHECK(things.origin("ddim") == "libddpm.so");
  REQUIRE_THROWS_AS(things.add("", stepper_factory()), Error);
}

TEST_CASE("create rejects keys the factory never read", "[registry]") {
  ThingRegistry things("sampler");
  things.add("ddim", stepper_factory());
  const Config cfg = Config::load_string("sampler: {type: ddim, stepz: 5}\n", "k.yaml");
  REQUIRE_THROWS_WITH(things.create(cfg.root().at("sampler"), 0),
                      "k.yaml:1:23: sampler.stepz: unknown key 'stepz'; did you mean 'steps'?");

  Config over = Config::load_string("sampler: {type: ddim}\n", "k.yaml");
  over.apply_override("sampler.eta=0.5");
  REQUIRE_THROWS_WITH(things.create(over.root().at("sampler"), 0),
                      "<command line> 'sampler.eta=0.5': sampler.eta: unknown key 'eta' (known keys: steps, type)");
}

TEST_CASE("a factory may create sub-components from the same registry", "[registry]") {
  ThingRegistry things("sampler");
  things.add("ddim", stepper_factory());
  things.add("wrapper", [&things](const ConfigNode& c, int offset) -> std::shared_ptr<Thing> {
    return things.create(c.at("inner"), offset + 100);
  });
  const Config cfg =
      Config::load_string("s: {type: wrapper, inner: {type: ddim, steps: 1}}\n", "w.yaml");
  CHECK(things.create(cfg.root().at("s"), 0)->describe() == "stepper 101");

  const Config bad = Config::load_string("s: {type: wrapper, inner: {type: ddim, step: 1}}\n", "w.yaml");
  REQUIRE_THROWS_WITH(things.create(bad.root().at("s"), 0), Contains("s.inner.step: unknown key 'step'"));
}

TEST_CASE("an object keeps its plugin's library alive until it is destroyed", "[registry]") {
  auto library = std::make_shared<int>(42);  // stands for the Boost.DLL library handle
  const std::weak_ptr<int> watch = library;
  bool alive_in_destructor = false;

  ThingRegistry things("sampler");
  things.add(
      "tracked",
      [watch, &alive_in_destructor](const ConfigNode&, int) {
        return std::make_shared<Tracked>(watch, &alive_in_destructor);
      },
      "libtracked.so", library);
  library.reset();
  CHECK_FALSE(watch.expired());  // the registry entry holds it

  const Config cfg = Config::load_string("s: tracked\n", "o.yaml");
  std::shared_ptr<Thing> object = things.create(cfg.root().at("s"), 0);
  things.remove_origin("libtracked.so");
  CHECK_FALSE(things.contains("tracked"));
  CHECK_FALSE(watch.expired());  // now only the object holds it
  CHECK(watch.use_count() == 1);

  std::shared_ptr<Thing> second_handle = object;
  object.reset();
  CHECK_FALSE(watch.expired());
  second_handle.reset();
  CHECK(watch.expired());
  CHECK(alive_in_destructor);  // destroyed first, library released after
}

TEST_CASE("remove_origin drops only that plugin's entries", "[registry]") {
  ThingRegistry things("sampler");
  things.add("a", stepper_factory(), "liba.so");
  things.add("b", stepper_factory(), "libb.so");
  things.add("c", stepper_factory(), "liba.so");
  things.remove_origin("liba.so");
  CHECK(things.names() == std::vector<std::string>{"b"});
  things.add("a", stepper_factory(), "libfixed.so");  // the name is free again
  CHECK(things.origin("a") == "libfixed.so");
}

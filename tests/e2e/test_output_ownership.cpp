// One run owns its output (issue: nothing lost at the edges, cases 1-3): an output that is one of
// the run's inputs is refused, and a second run on an output another run is writing is refused
// naming its process, before either touches anything.
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>

#include "runexp_child.hpp"
#include "scratch_dir.hpp"

namespace fs = std::filesystem;
using namespace diffusion::testing;

namespace {

const char* const kTiny =
    "name: tiny\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [32, 32], activation: silu, time_embedding: {type: sinusoidal, dim: 16}}\n"
    "sde: {type: ddpm, timesteps: 100}\n"
    "loss: {type: eps_mse}\n"
    "train: {steps: 20, batch_size: 64, optimizer: {type: adam, lr: 1.0e-3}}\n"
    "sampler: {type: ddim, steps: 10, n: 100}\n"
    "metrics: [sliced_w2]\n";

std::string file_text(const std::string& path) { return read_text(path); }

}  // namespace

TEST_CASE("runexp refuses an output that is its experiment file or its init file", "[e2e][runexp][ownership]") {
  ScratchDir dir("own-inputs");
  const std::string yaml = dir / "inp.yaml";
  std::ofstream(yaml) << kTiny;

  // The experiment file as the output, spelt differently: compared by file identity.
  const Child as_yaml = run_runexp({yaml, "--out", (dir.path() / "." / "inp.yaml").string()}, dir / "a");
  CHECK(as_yaml.status == 2);
  CHECK_THAT(as_yaml.err, Catch::Contains("is the experiment file") && Catch::Contains("give it another --out"));
  CHECK(file_text(yaml) == kTiny);

  // A run's results as its own init: the trained run's file and checkpoints stay as they were.
  const std::string base = dir / "base.h5";
  REQUIRE(run_runexp({yaml, "--out", base}, dir / "b").status == 0);
  const std::string before = file_text(base);
  const auto checkpoints_before = std::distance(fs::directory_iterator(base + ".ckpt"), fs::directory_iterator{});
  REQUIRE(checkpoints_before > 0);
  const Child as_init = run_runexp({yaml, "train.steps=0", "--init", base, "--out", base}, dir / "c");
  CHECK(as_init.status == 2);
  CHECK_THAT(as_init.err, Catch::Contains("is the init file"));
  CHECK(file_text(base) == before);
  CHECK(std::distance(fs::directory_iterator(base + ".ckpt"), fs::directory_iterator{}) == checkpoints_before);
}

TEST_CASE("a second run on an output another run is writing is refused naming its process",
          "[e2e][runexp][ownership]") {
  ScratchDir dir("own-lock");
  const std::string yaml = dir / "x.yaml", out = dir / "cc.h5";
  std::ofstream(yaml) << kTiny;
  // The first run trains long enough to be caught mid-run; it holds the lock from its start.
  const pid_t first = spawn_runexp({yaml, "train.steps=200000", "--out", out}, dir / "first");
  const std::string lock = dir / ".cc.h5.lock";
  for (int i = 0; i < 500 && !fs::exists(lock); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(fs::exists(lock));
  const Child second = run_runexp({yaml, "seed=1", "--out", out}, dir / "second");
  CHECK(second.status == 2);
  CHECK_THAT(second.err, Catch::Contains("is being written by another run (process " + std::to_string(first)));
  // The first run goes on undisturbed: stopped, it writes its interrupted file and checkpoint.
  ::kill(first, SIGTERM);
  const Child first_end = wait_runexp(first, dir / "first");
  CHECK(first_end.status == 128 + SIGTERM);
  CHECK(fs::exists(out));
  CHECK(fs::exists(out + ".ckpt"));
  CHECK_FALSE(fs::exists(lock));  // released and removed

  // A run killed outright leaves the lock file, but the kernel released the lock with the
  // process: the next run takes the output.
  const pid_t killed = spawn_runexp({yaml, "train.steps=200000", "--out", out}, dir / "killed");
  for (int i = 0; i < 500 && !fs::exists(lock); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ::kill(killed, SIGKILL);
  wait_runexp(killed, dir / "killed");
  CHECK(run_runexp({yaml, "--out", out}, dir / "after").status == 0);
}

TEST_CASE("a fresh run replaces the earlier run's checkpoints only once its first one is written",
          "[e2e][runexp][ownership]") {
  ScratchDir dir("own-ckpt");
  const std::string yaml = dir / "x.yaml", out = dir / "r.h5", ckpt = out + ".ckpt";
  std::ofstream(yaml) << kTiny;
  REQUIRE(run_runexp({yaml, "--out", out}, dir / "first").status == 0);
  const auto names = [&] {
    std::set<std::string> n;
    for (const auto& e : fs::directory_iterator(ckpt)) n.insert(e.path().filename().string());
    return n;
  };
  REQUIRE(names() == std::set<std::string>{"step_20.h5"});
  const std::string results_before = read_text(out);

  // Killed outright before its first checkpoint: the earlier run's file and checkpoint remain.
  const pid_t killed =
      spawn_runexp({yaml, "seed=1", "train.steps=200000", "train.checkpoint_every=150000", "--out", out}, dir / "k");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ::kill(killed, SIGKILL);
  wait_runexp(killed, dir / "k");
  CHECK(names() == std::set<std::string>{"step_20.h5"});
  CHECK(read_text(out) == results_before);

  // A fresh run that writes its checkpoint replaces them; nothing set aside is left behind.
  REQUIRE(run_runexp({yaml, "seed=2", "train.steps=10", "--out", out}, dir / "second").status == 0);
  CHECK(names() == std::set<std::string>{"step_10.h5"});
  // One that trains no steps writes none: the earlier ones, whose file it replaced, are removed.
  REQUIRE(run_runexp({yaml, "train.steps=0", "--init", out, "--out", dir / "fromit.h5"}, dir / "third").status == 0);
  REQUIRE(run_runexp({yaml, "train.steps=0", "--init", dir / "fromit.h5", "--out", out}, dir / "fourth").status == 0);
  CHECK(names().empty());
}

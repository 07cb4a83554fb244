// An update that leaves non-finite weights behind a finite loss (the loss is checked before
// each update): the run fails naming the step, the results file says failed, and no checkpoint
// is written from those weights, so the newest one on disk is still usable.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include <diffusion/run/checkpoint.hpp>
#include <diffusion/io/hdf5_io.hpp>

#include "runexp_child.hpp"
#include "scratch_dir.hpp"

namespace fs = std::filesystem;
using diffusion::testing::Child;
using diffusion::testing::run_runexp;
using diffusion::testing::ScratchDir;

namespace {

// Plain SGD (no optimiser state, so a resume may change its settings with --force).
const char* const kConfig =
    "name: nonfinite\n"
    "seed: 2\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [16, 16], time_embedding: {type: sinusoidal, dim: 8}}\n"
    "sde:     {type: ddpm, timesteps: 100}\n"
    "loss:    {type: eps_mse}\n"
    "train:   {steps: 20, batch_size: 32, optimizer: {type: sgd, lr: 1.0e-2}, ema: 0.9,\n"
    "          checkpoint_every: 10}\n"
    "sampler: {type: ddim, steps: 5, n: 50}\n";

/// Whether every dataset under /model and /ema of an HDF5 file is finite.
bool weights_finite(const std::string& path) {
  H5::H5File f(path, H5F_ACC_RDONLY);
  const H5::Group root = f.openGroup("/");
  for (const std::string group : {"model", "ema"}) {
    const auto g = diffusion::h5_open_group(root, group);
    for (const auto& name : diffusion::h5_dataset_names(g))
      for (const float v : diffusion::read_tensor(g, name))
        if (!std::isfinite(v)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("non-finite weights after a finite loss fail the run and are never checkpointed",
          "[e2e][resume][diverge]") {
  ScratchDir dir("nonfinite");
  const std::string yaml = dir / "x.yaml", out = dir / "run.h5";
  std::ofstream(yaml) << kConfig;
  const Child first = run_runexp({yaml, "--out", out}, dir / "first");
  CAPTURE(first.err);
  REQUIRE(first.status == 0);
  const std::string ckpt_dir = diffusion::checkpoint_dir_for(out);
  const auto good = diffusion::list_checkpoints(ckpt_dir);
  REQUIRE(good.back().first == 20);

  // Continue from step 20 with an update of about 1e30 * (grad + 1e30 * w): the loss of step
  // 21 is computed from the good weights and is finite, the weights after it overflow. A
  // checkpoint every step makes step 21 the one that must be refused.
  const Child blown = run_runexp({"--resume", out, "train.steps=40", "train.optimizer.lr=1e30",
                                  "train.optimizer.weight_decay=1e30", "train.checkpoint_every=1", "--force"},
                                 dir / "blown");
  CAPTURE(blown.err);
  CHECK(blown.status == 1);
  const std::string expected = "training diverged: non-finite weights after step 21; last good checkpoint " +
                               good.back().second;
  CHECK(blown.err.find("runexp: error: " + expected) != std::string::npos);
  CHECK(blown.err.find("loss is") == std::string::npos);  // the loss itself stayed finite

  // The results file says failed, with the same reason.
  {
    H5::H5File f(out, H5F_ACC_RDONLY);
    const H5::Group root = f.openGroup("/");
    CHECK(diffusion::read_string_attribute(root, "status") == "failed");
    CHECK(diffusion::read_string_attribute(root, "error").find(expected) != std::string::npos);
  }
  // The newest checkpoint is the good one, finite, and nothing else was left in the folder.
  const auto after = diffusion::list_checkpoints(ckpt_dir);
  REQUIRE(!after.empty());
  CHECK(after.back() == good.back());
  CHECK(weights_finite(after.back().second));
  for (const auto& e : fs::directory_iterator(ckpt_dir)) {
    CAPTURE(e.path());
    CHECK(e.path().filename().string().rfind("step_", 0) == 0);
  }
  // And it resumes: with the original settings the run completes from step 20.
  const Child again = run_runexp({"--resume", out, "--force"}, dir / "again");
  CAPTURE(again.err);
  CHECK(again.status == 0);
  CHECK(again.err.find("at step 20") != std::string::npos);
}

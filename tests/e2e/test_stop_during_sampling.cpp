// A stop signal after training, while a long sampler runs: runexp stops within a network
// evaluation, not at the sampler's end; exits 128 + signal; the results file says interrupted
// and holds no samples; the end-of-training checkpoint is kept, and `runexp --resume` only
// samples, giving the samples of a run that was never stopped; neither leaves a temporary file.
#include <signal.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include <diffusion/run/checkpoint.hpp>
#include <diffusion/io/hdf5_io.hpp>

#include "runexp_child.hpp"
#include "scratch_dir.hpp"

namespace fs = std::filesystem;
using diffusion::testing::Child;
using diffusion::testing::ScratchDir;

namespace {

// Training is short (60 steps, about a second); sampling 200000 points through 1000 DDIM steps
// takes minutes, so a stop that waited for the sampler would blow the time limit below.
// checkpoint_every 0: the only checkpoint is the one written when training ends.
const char* const kConfig =
    "name: stop_sampling\n"
    "seed: 11\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [64, 64], time_embedding: {type: sinusoidal, dim: 16}}\n"
    "sde:     {type: ddpm, timesteps: 1000}\n"
    "loss:    {type: eps_mse}\n"
    "train:   {steps: 60, batch_size: 64, optimizer: {type: adam, lr: 1.0e-3}, ema: 0.99,\n"
    "          log_every: 7, checkpoint_every: 0}\n"
    "sampler: {type: ddim, steps: 1000, n: 200000}\n";

/// How long runexp may take to stop once signalled: a few network evaluations and two small
/// HDF5 files, with room for a loaded machine and sanitizer builds.
constexpr double kPromptSeconds = 20;

std::string status_of(const std::string& path) {
  H5::H5File f(path, H5F_ACC_RDONLY);
  return diffusion::read_string_attribute(f.openGroup("/"), "status");
}

/// Every dataset of `group` in two results files, bit for bit.
void require_same_group(const std::string& a_path, const std::string& b_path, const std::string& group) {
  H5::H5File a(a_path, H5F_ACC_RDONLY), b(b_path, H5F_ACC_RDONLY);
  const auto ga = diffusion::h5_open_group(a.openGroup("/"), group);
  const auto gb = diffusion::h5_open_group(b.openGroup("/"), group);
  const auto names = diffusion::h5_dataset_names(ga);
  REQUIRE(!names.empty());
  REQUIRE(names == diffusion::h5_dataset_names(gb));
  for (const auto& n : names) {
    CAPTURE(group, n);
    const auto x = diffusion::read_tensor(ga, n), y = diffusion::read_tensor(gb, n);
    REQUIRE(diffusion::shape_of(x) == diffusion::shape_of(y));
    REQUIRE(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
  }
}

}  // namespace

TEST_CASE("stop: SIGINT while sampling stops promptly and --resume only samples", "[e2e][resume][stop]") {
  ScratchDir dir("stop-sampling");
  const std::string yaml = dir / "x.yaml", out = dir / "run.h5";
  std::ofstream(yaml) << kConfig;

  const pid_t pid = diffusion::testing::spawn_runexp({yaml, "--out", out}, dir / "stopped");
  // Training has ended once its checkpoint exists; a moment later the sampler is running.
  const std::string ckpt_dir = diffusion::checkpoint_dir_for(out);
  const auto t0 = std::chrono::steady_clock::now();
  while (diffusion::list_checkpoints(ckpt_dir).empty() &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(!diffusion::list_checkpoints(ckpt_dir).empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ::kill(pid, SIGINT);
  const Child stopped = diffusion::testing::wait_runexp(pid, dir / "stopped");
  CAPTURE(stopped.out, stopped.err);
  REQUIRE(stopped.status == 130);
  CHECK(stopped.seconds < kPromptSeconds);
  CHECK(stopped.out.find("continue with: runexp --resume " + out) != std::string::npos);

  // The file says interrupted, keeps the trained weights and holds no samples.
  REQUIRE(fs::exists(out));
  {
    H5::H5File f(out, H5F_ACC_RDONLY);
    const H5::Group root = f.openGroup("/");
    CHECK(diffusion::read_string_attribute(root, "status") == "interrupted");
    CHECK(diffusion::read_int_attribute(root, "steps_completed") == 60);
    CHECK(diffusion::h5_exists(root, "model"));
    CHECK(!diffusion::h5_exists(root, "samples"));
    CHECK(!diffusion::h5_exists(root, "metrics"));
  }
  // One checkpoint: the end of training.
  const auto ckpts = diffusion::list_checkpoints(ckpt_dir);
  REQUIRE(ckpts.size() == 1);
  CHECK(ckpts.back().first == 60);

  // Resumed with fewer samples (--force: the config changes), the run only samples, and its
  // samples and weights are those of a run that was never stopped.
  const Child resumed = diffusion::testing::run_runexp({"--resume", out, "sampler.n=300", "--force"}, dir / "resume");
  CAPTURE(resumed.err);
  REQUIRE(resumed.status == 0);
  CHECK(resumed.err.find("resumed from " + ckpts.back().second + " at step 60") != std::string::npos);
  CHECK(status_of(out) == "complete");
  const std::string ref = dir / "ref.h5";
  const Child uninterrupted = diffusion::testing::run_runexp({yaml, "sampler.n=300", "--out", ref}, dir / "ref");
  CAPTURE(uninterrupted.err);
  REQUIRE(uninterrupted.status == 0);
  require_same_group(ref, out, "samples/ddim");
  require_same_group(ref, out, "model");
  require_same_group(ref, out, "ema");
  require_same_group(ref, out, "train");
  // The stop and the resume each cleaned up after themselves: no temporary or lock file is left.
  for (const auto& e : fs::recursive_directory_iterator(dir.path())) {
    const std::string name = e.path().filename().string();
    CAPTURE(e.path());
    CHECK(name.find(".tmp") == std::string::npos);
    CHECK(name.find(".lock") == std::string::npos);
  }
}

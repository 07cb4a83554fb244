// A results file that cannot be written:
//   - an output folder that is not writable is refused before training (exit 2, one line);
//   - a write that fails at the end (here: RLIMIT_FSIZE, which fails writes with EFBIG the way
//     a full disk fails them with ENOSPC, and works for root, which ignores folder permissions)
//     fails the run naming the output path, leaves no file at that path (not even an earlier
//     run's complete one) and no temporary file, and keeps the end-of-training checkpoint, so
//     `runexp --resume` writes the results once there is room.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

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

// A small model (checkpoints of a few tens of KiB) and large samples: 200000 points and as
// many reference points are 3.2 MB of results, far over the limit below.
const char* const kConfig =
    "name: full_disk\n"
    "seed: 4\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [16], time_embedding: {type: sinusoidal, dim: 8}}\n"
    "sde:     {type: ddpm, timesteps: 100}\n"
    "loss:    {type: eps_mse}\n"
    "train:   {steps: 30, batch_size: 32, optimizer: {type: adam, lr: 1.0e-3}, checkpoint_every: 0}\n"
    "sampler: {type: ddim, steps: 3, n: 200000}\n";

/// In the child: files may not grow past 1 MiB, and a write past it fails with EFBIG instead of
/// killing the process with SIGXFSZ.
void limit_file_size() {
  struct rlimit limit {};
  limit.rlim_cur = limit.rlim_max = 1 << 20;
  ::setrlimit(RLIMIT_FSIZE, &limit);
  ::signal(SIGXFSZ, SIG_IGN);
}

std::string status_of(const std::string& path) {
  H5::H5File f(path, H5F_ACC_RDONLY);
  return diffusion::read_string_attribute(f.openGroup("/"), "status");
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

}  // namespace

TEST_CASE("output: a folder that is not writable is refused before training", "[e2e][runexp][output]") {
  ScratchDir dir("unwritable");
  const std::string yaml = dir / "x.yaml";
  std::ofstream(yaml) << kConfig;
  // /proc/self refuses new files to everyone, root included; as another user a read-only
  // folder of our own does too (root ignores folder permissions).
  std::vector<std::string> folders{"/proc/self"};
  if (::geteuid() != 0) {
    fs::create_directory(dir / "ro");
    fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    folders.push_back(dir / "ro");
  }
  for (const auto& folder : folders) {
    const std::string out = folder + "/x.h5";
    // Enough steps that a run which trained first would hit the test's time limit.
    const Child r = run_runexp({yaml, "train.steps=1000000", "--out", out}, dir / "log");
    CAPTURE(out, r.err);
    CHECK(r.status == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err == "runexp: error: output " + out + ": folder " + folder + " is not writable\n");
  }
}

TEST_CASE("output: a results write that fails at the end keeps the checkpoint and leaves no file",
          "[e2e][runexp][output]") {
  ScratchDir dir("fulldisk");
  const std::string yaml = dir / "x.yaml", out = dir / "run.h5";
  std::ofstream(yaml) << kConfig;
  // An earlier complete run at the same path: a failed rerun must not leave it there, passing
  // for the rerun's results.
  const Child earlier = run_runexp({yaml, "sampler.n=10", "--out", out}, dir / "earlier");
  REQUIRE(earlier.status == 0);
  REQUIRE(status_of(out) == "complete");

  const Child failed = run_runexp({yaml, "--out", out}, dir / "failed", limit_file_size);
  CAPTURE(failed.out, failed.err);
  CHECK(failed.status == 1);
  const std::string ckpt = diffusion::checkpoint_dir_for(out) + "/step_30.h5";
  const auto error_at = failed.err.find("runexp: error: output " + out + ": ");
  REQUIRE(error_at != std::string::npos);
  const std::string error = failed.err.substr(error_at);
  CHECK(count_lines(error) == 1);
  CHECK(error.find("no results file was written") != std::string::npos);
  CHECK(error.find("the trained model is kept in checkpoint " + ckpt) != std::string::npos);
  CHECK(error.find("runexp --resume " + out) != std::string::npos);
  // Nothing at the output path, no temporary file; the checkpoint is there and valid.
  CHECK(!fs::exists(out));
  for (const auto& e : fs::directory_iterator(dir.path())) {
    CAPTURE(e.path());
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
  }
  const auto latest = diffusion::find_latest_checkpoint(diffusion::checkpoint_dir_for(out));
  REQUIRE(latest.has_value());
  CHECK(latest->path == ckpt);
  CHECK(latest->step == 30);

  // With room again, --resume only samples and writes the results.
  const Child resumed = run_runexp({"--resume", out}, dir / "resumed");
  CAPTURE(resumed.err);
  REQUIRE(resumed.status == 0);
  CHECK(resumed.err.find("at step 30") != std::string::npos);
  CHECK(status_of(out) == "complete");
}

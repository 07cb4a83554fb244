// A results file that cannot be written:
//   - an output folder that is not writable is refused before training (exit 2, one line);
//   - a write that fails at the end (here: RLIMIT_FSIZE, which fails writes with EFBIG the way
//     a full disk fails them with ENOSPC, and works for root, which ignores folder permissions)
//     fails the run naming the output path, leaves no file at that path (not even an earlier
//     run's complete one) and no temporary file, and keeps the end-of-training checkpoint, so
//     `runexp --resume` writes the results once there is room;
//   - past `ulimit -f` runexp is not killed by SIGXFSZ (exit 153, no message, partial temporary
//     files: issue 17, case 9): it ignores the signal, and a results or checkpoint write that
//     fails with EFBIG ends the run with exit 1 and a message naming the file and the file size
//     limit, leaving no temporary file and no file that passes for complete.
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

/// In the child: files may not grow past `bytes`. SIGXFSZ keeps its default action (end the
/// process): runexp must ignore it itself, so that the write fails with EFBIG instead.
void limit_file_size_to(rlim_t bytes) {
  ::signal(SIGXFSZ, SIG_DFL);
  struct rlimit limit {};
  limit.rlim_cur = limit.rlim_max = bytes;
  ::setrlimit(RLIMIT_FSIZE, &limit);
}
/// 1 MiB: the checkpoints fit, the results (3.2 MB of samples and reference) do not.
void limit_file_size() { limit_file_size_to(1 << 20); }
/// 8 KiB: not even a checkpoint fits.
void limit_file_size_8k() { limit_file_size_to(8 << 10); }

/// Every file under `folder` whose name says it is temporary.
std::vector<std::string> temp_files_under(const std::string& folder) {
  std::vector<std::string> found;
  for (const auto& e : fs::recursive_directory_iterator(folder))
    if (e.path().filename().string().find(".tmp") != std::string::npos) found.push_back(e.path().string());
  return found;
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
  CHECK(error.find("File too large (over this process's file size limit of 1048576 bytes: `ulimit -f` is 1024") !=
        std::string::npos);
  CHECK(error.find("the trained model is kept in checkpoint " + ckpt) != std::string::npos);
  CHECK(error.find("runexp --resume " + out) != std::string::npos);
  // Nothing at the output path, no temporary file; the checkpoint is there and valid.
  CHECK(!fs::exists(out));
  CHECK(temp_files_under(dir.path()).empty());
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

TEST_CASE("output: a checkpoint write past the file size limit fails the run with a message, not SIGXFSZ",
          "[e2e][runexp][output]") {
  ScratchDir dir("fsize");
  const std::string yaml = dir / "x.yaml", out = dir / "run.h5";
  std::ofstream(yaml) << kConfig;
  const Child failed = run_runexp({yaml, "--out", out}, dir / "failed", limit_file_size_8k);
  CAPTURE(failed.out, failed.err);
  // Exit 1 (a failed run), not 128 + SIGXFSZ (153) with nothing said.
  CHECK(failed.status == 1);
  const std::string ckpt = diffusion::checkpoint_dir_for(out) + "/step_30.h5";
  const auto error_at = failed.err.find("runexp: error: checkpoint " + ckpt + ": ");
  REQUIRE(error_at != std::string::npos);
  const std::string error = failed.err.substr(error_at);
  CHECK(count_lines(error) == 1);
  CHECK(error.find("File too large (over this process's file size limit of 8192 bytes: `ulimit -f` is 8; raise it)") !=
        std::string::npos);
  // No partial file anywhere, and nothing at the output that passes for complete.
  CHECK(temp_files_under(dir.path()).empty());
  CHECK(diffusion::list_checkpoints(diffusion::checkpoint_dir_for(out)).empty());
  if (fs::exists(out)) CHECK(status_of(out) == "failed");
}

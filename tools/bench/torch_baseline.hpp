// The PyTorch baseline of the flagship (torch_ddim_moons.py), run through torch_runner.py.
#pragma once

#include <string>
#include <vector>

namespace bench {

/// One run of the baseline; NaN for what was not measured.
struct TorchRun {
  std::string version;  // e.g. "pytorch-1.13.0a0"
  int threads = 0;
  long steps = 0;
  long batch = 0, width = 0;
  double steps_per_s = 0, samples_per_s = 0;
  double peak_rss_mb = 0;
  double allocs_per_step = 0, allocs_per_ddim_step = 0;
};

struct TorchOptions {
  std::string script = DIFFUSION_TORCH_BENCH;
  double seconds = 0;         // > 0: choose --steps for about this much training
  bool count_allocs = false;  // run under LD_PRELOAD of the allocation counter
};

/// True when /usr/bin/python3 can import torch and sklearn; otherwise prints why to stderr.
bool torch_available();

/// Runs the script once per entry of `runs` (each one run's arguments, e.g.
/// "--batch 256 --width 128 --threads 1") in one Python process; throws with its output on
/// failure.
std::vector<TorchRun> run_torch(const std::vector<std::string>& runs, const TorchOptions& o);

}  // namespace bench

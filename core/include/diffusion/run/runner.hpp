#pragma once
// Running an experiment: train, sample with every sampler, evaluate every metric, and write
// one results file (layout in docs/results-format.md), atomically.
#include <csignal>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>

#include "diffusion/run/experiment.hpp"

namespace diffusion {

struct RunOptions {
  std::string out_path;          ///< the results file to write
  std::ostream* log = nullptr;   ///< progress and summary (nullptr: silent)
  bool progress_bar = false;     ///< redraw one line with \r (terminals); else periodic lines
  /// Checkpoint folder; empty: checkpoint_dir_for(out_path) ("<out>.ckpt").
  std::string checkpoint_dir;
  /// Continue from this checkpoint file (see checkpoint.hpp) instead of starting afresh.
  std::string resume_from;
  /// Resume even though the checkpoint was written under another config (--force).
  bool allow_config_change = false;
  /// Set (to non-zero) from a signal handler to stop: the current training step (or, while
  /// sampling, network evaluation) finishes, a checkpoint is written and the results file gets
  /// status=interrupted (no samples, no metrics).
  const volatile std::sig_atomic_t* stop = nullptr;
  /// Refuse, before anything is written, a run whose memory estimate (memory_estimate.hpp)
  /// exceeds this many bytes; 0: what the machine has available (--max-memory).
  std::uint64_t max_memory = 0;
};

struct RunResult {
  std::string out_path;
  std::optional<double> final_loss;  ///< the last logged window's mean loss; none if no step was trained
  std::map<std::string, std::map<std::string, double>> metrics;  ///< [sampler][metric] (mean over repeats)
  std::map<std::string, double> floor;  ///< [metric]: fresh data's score, the mean over the floor's draws
  std::map<std::string, double> model_metrics;  ///< [metric]: metrics of the model itself (nll)
  std::map<std::string, std::size_t> nfe;                         ///< [sampler]
  double train_seconds = 0, sample_seconds = 0, metric_seconds = 0, total_seconds = 0;
  bool interrupted = false;        ///< stopped by RunOptions::stop; the file says interrupted
  std::int64_t steps_completed = 0;
  std::int64_t resumed_from_step = -1;  ///< the checkpoint's step when resumed, else -1
  std::string checkpoint;          ///< the newest checkpoint written ("" if none)
};

/// Run a composed experiment. On an error the results file (if one was started) is written
/// with status=failed and the error is rethrown (as Error, naming the output path and the
/// end-of-training checkpoint when they matter); if the results file cannot be written at all,
/// nothing is left at the output path. A file with status=complete is complete. Checkpoints
/// are written every train.checkpoint_every steps, when training ends and on a stop request,
/// only from finite weights; a run resumed from one (RunOptions::resume_from) ends
/// bit-identical to an uninterrupted run.
RunResult run_experiment(Experiment& ex, const RunOptions& options);

}  // namespace diffusion

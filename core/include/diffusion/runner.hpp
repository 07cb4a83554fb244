#pragma once
// Running an experiment: train, sample with every sampler, evaluate every metric, and write
// one results file (layout in DESIGN.md), atomically.
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>

#include "diffusion/experiment.hpp"

namespace diffusion {

struct RunOptions {
  std::string out_path;          ///< the results file to write
  std::ostream* log = nullptr;   ///< progress and summary (nullptr: silent)
  bool progress_bar = false;     ///< redraw one line with \r (terminals); else periodic lines
};

struct RunResult {
  std::string out_path;
  double final_loss = 0.0;
  std::map<std::string, std::map<std::string, double>> metrics;  ///< [sampler][metric]
  std::map<std::string, std::size_t> nfe;                         ///< [sampler]
  double train_seconds = 0, sample_seconds = 0, metric_seconds = 0, total_seconds = 0;
};

/// Run a composed experiment. On an error the results file (if one was started) is written
/// with status=failed and the error is rethrown; a file with status=complete is complete.
RunResult run_experiment(Experiment& ex, const RunOptions& options);

}  // namespace diffusion

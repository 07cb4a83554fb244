#pragma once
// What the stages of a run share (stages.hpp). A family whose run differs (reflow, distillation)
// composes the stages it needs around a RunContext instead of editing one long function.
#include <map>
#include <string>
#include <vector>

#include "diffusion/run/experiment.hpp"
#include "diffusion/run/results.hpp"
#include "diffusion/run/runner.hpp"
#include "diffusion/tensor/random.hpp"

namespace diffusion {

/// Thrown by a stage that saw a stop request; run_experiment writes the interrupted file.
struct RunInterrupted {};

struct RunContext {
  RunContext(Experiment& e, const RunOptions& o, RunResult& r, ResultsWriter& w);

  Experiment& ex;
  const RunOptions& options;
  RunResult& result;
  ResultsWriter& out;
  Rng master;                  ///< the run's seed; every consumer splits its own stream from it
  std::string checkpoint_dir;  ///< options.checkpoint_dir or "<out>.ckpt"
  std::int64_t steps_done = 0;
  bool trained = false;        ///< training ended and its checkpoint is written
  Tensor reference;            ///< the metrics' reference data, in data coordinates
  std::vector<int> reference_labels;  ///< the class of each reference row (empty: unlabelled data)
  /// Each sampler's samples, one tensor per repeat, in data coordinates.
  std::map<std::string, std::vector<Tensor>> samples;
  /// The class each sample was asked for, per sampler and repeat (empty: unconditional samples).
  std::map<std::string, std::vector<std::vector<int>>> sample_labels;

  bool stop_requested() const { return options.stop && *options.stop; }
  bool resuming() const { return !options.resume_from.empty(); }
  H5::Group root() { return out.root(); }
};

}  // namespace diffusion

// Stage 5: the results file is complete: timings, steps and status are written, and the file
// is renamed into place (results.hpp).
#include <chrono>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/run/stages.hpp"

namespace diffusion {

void write_results(RunContext& run) {
  const H5::Group root = run.root();
  RunResult& r = run.result;
  write_attribute(root, "train_seconds", r.train_seconds);
  write_attribute(root, "sample_seconds", r.sample_seconds);
  write_attribute(root, "metric_seconds", r.metric_seconds);
  write_attribute(root, "total_seconds", r.total_seconds);
  write_attribute(root, "steps_completed", run.steps_done);
  r.steps_completed = run.steps_done;
  run.out.finish("complete");
}

}  // namespace diffusion

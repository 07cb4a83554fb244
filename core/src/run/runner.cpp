// run_experiment: the stages in order (stages.hpp), and what becomes of the results file when
// one of them is stopped or fails.
#include "diffusion/run/runner.hpp"

#include <chrono>
#include <cstdio>
#include <ostream>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/run/checkpoint.hpp"
#include "diffusion/run/memory_estimate.hpp"
#include "diffusion/run/output_lock.hpp"
#include "diffusion/run/stages.hpp"
#include "diffusion/run/stale_temp_files.hpp"

namespace diffusion {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// The run's checkpoint folder: the one asked for, or "<out>.ckpt".
std::string checkpoint_dir_of(const RunOptions& o) {
  return o.checkpoint_dir.empty() ? checkpoint_dir_for(o.out_path) : o.checkpoint_dir;
}

/// A resume under another config is refused before the results writer exists: a refused resume
/// must not replace the interrupted run's file with a failed one.
void check_resume(const Experiment& ex, const RunOptions& opt) {
  if (opt.resume_from.empty() || opt.allow_config_change) return;
  const CheckpointInfo info = read_checkpoint_info(opt.resume_from);
  if (info.config_hash == config_hash(ex.config)) return;
  const auto diffs = config_differences(Config::load_string(info.config_text, info.path), ex.config);
  throw Error("checkpoint " + info.path + " was written with another config (" +
              (diffs.empty() ? std::string("config hash differs") : describe(diffs)) + "); pass --force to resume anyway");
}

/// Stopped: the checkpoint and the weights are kept, no samples or metrics (a reader must not
/// mistake a partial set for the run's output).
void finish_interrupted(RunContext& run, Clock::time_point t_start) {
  const H5::Group root = run.root();
  if (h5_exists(root, "samples")) root.unlink("samples");
  if (h5_exists(root, "metrics")) root.unlink("metrics");
  write_attribute(root, "steps_completed", run.steps_done);
  write_attribute(root, "checkpoint", run.result.checkpoint);
  run.result.interrupted = true;
  run.result.steps_completed = run.steps_done;
  run.result.total_seconds = seconds_since(t_start);
  run.out.finish("interrupted");
  if (run.options.log)
    *run.options.log << "interrupted after step " << run.steps_done << "; checkpoint " << run.result.checkpoint << "\n";
}

/// Failed: the file keeps what was written, marked failed, so the reason travels with it; if it
/// cannot be written at all, nothing is left at the output path. Returns the completed message.
std::string record_failure(RunContext& run, std::string error) {
  const std::string& out = run.options.out_path;
  // An HDF5 error names the temporary file; say which output it was to become.
  if (error.find(run.out.temp_path()) != std::string::npos && error.rfind("output ", 0) != 0)
    error = "output " + out + ": " + error;
  error = explain_file_size_limit(error);  // a checkpoint write past `ulimit -f` says so
  try {
    write_attribute(run.root(), "error", error);
    write_attribute(run.root(), "steps_completed", run.steps_done);
    run.out.finish("failed");
  } catch (...) {
    run.out.abandon();
    std::remove(out.c_str());  // an earlier run's file at this path would pass for this run's
    error += "; no results file was written";
  }
  if (run.trained)
    error += "; the trained model is kept in checkpoint " + run.result.checkpoint + " (runexp --resume " + out +
             " samples and writes the results again)";
  return error;
}

}  // namespace

RunContext::RunContext(Experiment& e, const RunOptions& o, RunResult& r, ResultsWriter& w)
    : ex(e), options(o), result(r), out(w), master(e.seed),
      checkpoint_dir(checkpoint_dir_of(o)) {}

RunResult run_experiment(Experiment& ex, const RunOptions& opt) {
  const auto t_start = Clock::now();
  // Before anything is read or removed: this run alone writes the output, and it is none of
  // the run's inputs.
  const OutputLock owner(opt.out_path);
  std::vector<std::pair<std::string, std::string>> inputs{{"the experiment file", ex.config.name()},
                                                          {"the init file", ex.init}};
  for (const ModelSlot& slot : ex.models.slots()) inputs.push_back({"models." + slot.name + ".init", slot.init});
  check_output_is_no_input(opt.out_path, inputs);
  check_resume(ex, opt);
  check_memory(ex, opt.max_memory, opt.log);  // a run that cannot fit is refused, not killed at 24 GB
  // Temporary files of runs that were killed (SIGKILL leaves them), before this run makes its own.
  for (const std::string& stale : remove_stale_temp_files(owner, checkpoint_dir_of(opt)))
    if (opt.log) *opt.log << "removed " << stale << ", left by a run that was killed\n";
  RunResult result;
  result.out_path = opt.out_path;
  ResultsWriter out(opt.out_path);
  RunContext run(ex, opt, result, out);
  try {
    try {
      prepare_data(run);
      train_model(run);
      draw_samples(run);
      evaluate_samples(run);
      result.total_seconds = seconds_since(t_start);
      write_results(run);
      // A fresh run that trained no steps wrote no checkpoint to replace the earlier run's:
      // they belonged to the file just replaced.
      if (opt.resume_from.empty() && result.checkpoint.empty()) remove_checkpoints(run.checkpoint_dir);
    } catch (const RunInterrupted&) {
      finish_interrupted(run, t_start);
    }
  } catch (const H5::Exception& e) {
    // HDF5's exceptions are not std::exceptions; an unwrapped one comes from writing the results.
    throw Error(record_failure(run, "output " + opt.out_path + ": writing " + out.temp_path() +
                                        " failed: " + e.getDetailMsg()));
  } catch (const std::exception& e) {
    const std::string error = record_failure(run, e.what());
    if (error == e.what()) throw;
    throw Error(error);
  }
  return result;
}

}  // namespace diffusion

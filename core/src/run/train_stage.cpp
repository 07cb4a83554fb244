// Stage 2: training. The loop runs to train.steps (from a checkpoint when resuming), writing a
// checkpoint every train.checkpoint_every steps and at the end, so that sampling, evaluation or
// writing the results can fail (or be stopped) without losing the trained model.
#include <ostream>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/run/checkpoint.hpp"
#include "diffusion/run/progress.hpp"
#include "diffusion/run/stages.hpp"
#include "diffusion/run/train_loop.hpp"

namespace diffusion {

void save_models(const Experiment& ex, const H5::Group& root) {
  ex.network().save(h5_require_group(root, "model"));
  if (const auto ema = ex.ema_network()) ema->save(h5_require_group(root, "ema"));
  for (const ModelSlot& s : ex.models.slots())
    if (s.name != "model" && s.name != "ema") s.network->save(h5_require_group(root, "models/" + s.name));
}

namespace {

/// Writes what training produced into the results file, however the stage ends.
struct TrainingOutputs {
  RunContext& run;
  const TrainLoop& loop;
  ~TrainingOutputs() {
    try {
      loop.log().write(h5_require_group(run.root(), "train"));
    } catch (...) {
      // The file is failing already; the error being thrown says why.
    }
  }
};

}  // namespace

void train_model(RunContext& run) {
  Experiment& ex = run.ex;
  const TrainSettings& ts = ex.train;
  std::ostream* log = run.options.log;
  TrainLoop loop(ex, run.master);
  TrainingOutputs outputs{run, loop};
  if (run.resuming()) {
    loop.restore(run.options.resume_from);
    // Files newer than the one resumed from failed validation or belong to another future.
    remove_checkpoints(run.checkpoint_dir, loop.steps_done());
    // Checkpoints a fresh run set aside and was killed before deleting: the one resumed from
    // supersedes them.
    discard_set_aside_checkpoints(run.checkpoint_dir);
    run.result.resumed_from_step = loop.steps_done();
    run.result.checkpoint = run.options.resume_from;
    if (log) *log << "resumed from " << run.options.resume_from << " at step " << loop.steps_done() << "\n";
  }
  std::int64_t last_checkpoint = run.resuming() ? loop.steps_done() : -1;
  // A fresh run's first checkpoint replaces those of the run that wrote this output before,
  // which stay usable until then.
  bool replaces_earlier = !run.resuming();
  const auto checkpoint = [&] {
    if (loop.steps_done() == last_checkpoint) return;
    try {
      if (replaces_earlier) set_aside_checkpoints(run.checkpoint_dir);
      run.result.checkpoint = loop.checkpoint(run.checkpoint_dir, static_cast<int>(ts.keep_checkpoints));
      if (replaces_earlier) discard_set_aside_checkpoints(run.checkpoint_dir);
      replaces_earlier = false;
    } catch (const Error& e) {
      throw Error(std::string(e.what()) +
                  (run.result.checkpoint.empty() ? "" : "; last good checkpoint " + run.result.checkpoint));
    }
    last_checkpoint = loop.steps_done();
  };
  Progress progress(log, ts.steps, run.options.progress_bar);
  const auto t0 = std::chrono::steady_clock::now();
  while (loop.steps_done() < ts.steps) {
    double loss = 0;
    try {
      loss = loop.step();
    } catch (const Error& e) {
      throw Error(std::string(e.what()) +
                  (run.result.checkpoint.empty() ? "" : "; last good checkpoint " + run.result.checkpoint));
    }
    run.steps_done = loop.steps_done();
    progress.update(loop.steps_done(), loss);
    if (ts.checkpoint_every > 0 && loop.steps_done() % ts.checkpoint_every == 0) checkpoint();
    if (run.stop_requested()) break;
  }
  run.steps_done = loop.steps_done();
  // A run that trained no step (train.steps 0 with init:) has no loss to report, not a loss of 0.
  if (loop.steps_done() > 0) run.result.final_loss = loop.log().final_loss();
  if (run.stop_requested()) {
    checkpoint();
    save_models(ex, run.root());
    throw RunInterrupted{};
  }
  if (ts.steps > 0) {
    progress.finish(ts.steps, loop.log().final_loss());
    checkpoint();
    run.trained = true;
  }
  run.result.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  save_models(ex, run.root());
}

}  // namespace diffusion

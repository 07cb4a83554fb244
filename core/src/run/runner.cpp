#include "diffusion/run/runner.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <sstream>

#include "diffusion/run/checkpoint.hpp"
#include "diffusion/autodiff/data_parallel.hpp"
#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/run/progress.hpp"
#include "diffusion/run/results.hpp"

namespace diffusion {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// Per-coordinate standardisation of the data for training; samples are mapped back.
struct Normalizer {
  Tensor mean, std;  // sample shape

  static Normalizer fit(const Dataset& data, std::size_t n, bool enabled, Rng rng) {
    const Shape shape = data.sample_shape();
    Normalizer z{zeros(shape), ones(shape)};
    if (!enabled) return z;
    const Tensor x = data.sample(n, rng);
    const std::size_t d = numel(shape);
    for (std::size_t j = 0; j < d; ++j) {
      double s = 0, s2 = 0;
      for (std::size_t i = 0; i < n; ++i) s += x.data()[i * d + j];
      const double m = s / n;
      for (std::size_t i = 0; i < n; ++i) s2 += std::pow(x.data()[i * d + j] - m, 2);
      z.mean.data()[j] = float(m);
      z.std.data()[j] = float(std::max(std::sqrt(s2 / n), 1e-8));
    }
    return z;
  }
  void to_model(Tensor& x) const { apply(x, false); }
  void to_data(Tensor& x) const { apply(x, true); }

 private:
  void apply(Tensor& x, bool inverse) const {
    const std::size_t d = mean.size(), n = x.size() / d;
    float* p = x.data();
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < d; ++j) {
        float& v = p[i * d + j];
        v = inverse ? v * std.data()[j] + mean.data()[j] : (v - mean.data()[j]) / std.data()[j];
      }
  }
};

Shape batch_shape(std::size_t n, const Shape& sample) {
  Shape s{n};
  s.insert(s.end(), sample.begin(), sample.end());
  return s;
}

Tensor first_rows(const Tensor& t, std::size_t n) {
  Shape s = shape_of(t);
  if (s[0] == n) return t;
  const std::size_t per = t.size() / s[0];
  s[0] = n;
  Tensor r = Tensor::from_shape(s);
  std::copy(t.data(), t.data() + n * per, r.data());
  return r;
}

/// Thrown out of a sampler when a stop is requested; the runner turns it into an interrupted run.
struct SamplingStopped {};

/// The network as samplers see it: every evaluation first checks for a stop request, so a stop
/// during a long sampler takes effect within one network evaluation, not at its end.
class StoppableNetwork : public Network {
 public:
  StoppableNetwork(std::shared_ptr<Network> net, const volatile std::sig_atomic_t* stop)
      : net_(std::move(net)), stop_(stop) {}
  bool class_conditional() const override { return net_->class_conditional(); }
  Var forward(const Var& x, const Tensor& t, const std::vector<int>* labels) override {
    if (stop_ && *stop_) throw SamplingStopped{};
    return net_->forward(x, t, labels);
  }

 private:
  std::shared_ptr<Network> net_;
  const volatile std::sig_atomic_t* stop_;
};

bool all_finite(const std::vector<Var>& params) {
  for (const Var& p : params)
    for (const float v : p.value())
      if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

RunResult run_experiment(Experiment& ex, const RunOptions& opt) {
  const auto t_start = Clock::now();
  RunResult result;
  result.out_path = opt.out_path;
  const std::string ckpt_dir = opt.checkpoint_dir.empty() ? checkpoint_dir_for(opt.out_path) : opt.checkpoint_dir;
  const bool resuming = !opt.resume_from.empty();
  if (resuming && !opt.allow_config_change) {
    // Before the results writer exists: a refused resume must not replace the interrupted
    // run's file with a failed one.
    const CheckpointInfo info = read_checkpoint_info(opt.resume_from);
    if (info.config_hash != config_hash(ex.config)) {
      const auto diffs = config_differences(Config::load_string(info.config_text, info.path), ex.config);
      throw Error("checkpoint " + info.path + " was written with another config (" +
                  (diffs.empty() ? std::string("config hash differs") : describe(diffs)) +
                  "); pass --force to resume anyway");
    }
  }
  // A fresh run owns its checkpoint folder: old checkpoints there belong to another history.
  if (!resuming) remove_checkpoints(ckpt_dir);
  ResultsWriter out(opt.out_path);
  H5::Group f = out.root();
  write_attribute(f, "config", ex.config.dump());
  write_attribute(f, "name", ex.name);
  write_attribute(f, "seed", static_cast<std::int64_t>(ex.seed));
  std::ostream* log = opt.log;
  std::int64_t step = 0;
  bool trained = false;  // training ended and its checkpoint is written
  // On an error: keep what was written, marked as failed, so the reason travels with the file.
  // Returns the error message, completed with what became of the results and the training.
  const auto record_failure = [&](std::string error) {
    // An HDF5 error names the temporary file; say which output it was to become.
    if (error.find(out.temp_path()) != std::string::npos && error.rfind("output ", 0) != 0)
      error = "output " + opt.out_path + ": " + error;
    try {
      write_attribute(f, "error", error);
      write_attribute(f, "steps_completed", step);
      out.finish("failed");
    } catch (...) {
      // The results file cannot be written (disk full, folder gone): leave nothing at the
      // output path that could pass for this run's results, an earlier run's file included.
      out.abandon();
      std::remove(opt.out_path.c_str());
      error += "; no results file was written";
    }
    if (trained)
      error += "; the trained model is kept in checkpoint " + result.checkpoint + " (runexp --resume " +
               opt.out_path + " samples and writes the results again)";
    return error;
  };
  try {
    const Rng master(ex.seed);
    Rng data_rng = master.split("data"), train_rng = master.split("train");
    const Shape sample_shape = ex.dataset->sample_shape();
    // With `init:` the model was trained in the coordinates of the init file's normaliser.
    const Normalizer norm = !ex.init.empty()
                                ? Normalizer{ex.init_mean, ex.init_std}
                                : Normalizer::fit(*ex.dataset, ex.train.normalize_samples,
                                                  ex.train.normalize, master.split("normalize"));
    if (!ex.init.empty() && log && !resuming)
      *log << "init: model" << (ex.init_ema ? " and EMA" : "") << " from " << ex.init
           << (ex.train.steps == 0 ? " (no training)" : "") << "\n";
    H5::Group data_group = h5_require_group(f, "data");
    write_tensor(data_group, "mean", norm.mean);
    write_tensor(data_group, "std", norm.std);

    // ---- train ----
    const bool conditional = ex.network->class_conditional() && ex.dataset->num_classes() > 0;
    std::vector<int> labels;
    const TrainSettings& ts = ex.train;
    std::unique_ptr<EMA> ema;
    if (ex.ema_network && ts.ema_decay > 0) {
      // EMA starts as a copy of the model; an EMA loaded by `init:` is kept instead.
      std::vector<Tensor> kept;
      if (ex.init_ema)
        for (const auto& e : ex.ema_network->named_state()) kept.push_back(e.second.value());
      ema = std::make_unique<EMA>(*ex.network, ex.ema_network, ts.ema_decay, ts.ema_warmup);
      const auto state = ex.ema_network->named_state();
      for (std::size_t i = 0; i < kept.size(); ++i) {
        Var v = state[i].second;
        std::copy(kept[i].begin(), kept[i].end(), v.value().begin());
      }
    }
    const std::vector<Var> params = ex.network->parameters();
    ShardedStep sharded(params, static_cast<std::size_t>(ts.shards));
    Progress progress(log, ts.steps, opt.progress_bar);
    double window = 0, last_finite = 0;
    std::int64_t window_n = 0;
    std::vector<std::int64_t> log_steps;  // the /train rows, kept for checkpoints
    std::vector<double> log_losses;
    std::int64_t start = 0;
    if (resuming) {
      TrainingState st;
      read_checkpoint(opt.resume_from, st, *ex.network, ema.get(), *ex.optimizer);
      // The two streams the loop draws from; every other stream is split from the master
      // seed and is untouched by training, so it needs no saving.
      data_rng.set_state(st.data_rng);
      train_rng.set_state(st.train_rng);
      window = st.window, window_n = st.window_n, last_finite = st.last_finite;
      result.final_loss = st.final_loss;
      for (std::size_t i = 0; i < st.log_steps.size(); ++i) out.append_train(st.log_steps[i], st.log_losses[i]);
      log_steps = std::move(st.log_steps);
      log_losses = std::move(st.log_losses);
      start = step = st.step;
      result.resumed_from_step = st.step;
      result.checkpoint = opt.resume_from;
      // Files newer than the one resumed from failed validation or belong to another future.
      remove_checkpoints(ckpt_dir, st.step);
      if (log) *log << "resumed from " << opt.resume_from << " at step " << st.step << "\n";
    }
    std::int64_t last_checkpoint = resuming ? start : -1;
    const auto write_ckpt = [&](std::int64_t done) {
      if (done == last_checkpoint) return;
      // The loss is checked before each update, so an update can leave non-finite weights
      // behind a finite loss; never store those, so the newest checkpoint is always usable.
      if (!all_finite(params))
        throw Error("training diverged: non-finite weights after step " + std::to_string(done) +
                    (result.checkpoint.empty() ? std::string() : "; last good checkpoint " + result.checkpoint));
      TrainingState st;
      st.step = done;
      st.data_rng = data_rng.state();
      st.train_rng = train_rng.state();
      st.window = window, st.window_n = window_n, st.last_finite = last_finite;
      st.final_loss = result.final_loss;
      st.log_steps = log_steps;
      st.log_losses = log_losses;
      result.checkpoint = write_checkpoint(ckpt_dir, st, *ex.network, ema.get(), *ex.optimizer, ex.config,
                                           static_cast<int>(ts.keep_checkpoints));
      last_checkpoint = done;
    };
    const auto stop_requested = [&] { return opt.stop && *opt.stop; };
    // Interrupted: checkpoint, keep the weights in the results file, no samples or metrics.
    const auto finish_interrupted = [&](std::int64_t done) {
      write_ckpt(done);
      // Samplers that finished before the stop left their groups; an interrupted file holds
      // no samples at all, so no reader mistakes a partial set for the run's output.
      if (h5_exists(f, "samples")) f.unlink("samples");
      ex.network->save(h5_require_group(f, "model"));
      if (ex.ema_network) ex.ema_network->save(h5_require_group(f, "ema"));
      write_attribute(f, "steps_completed", done);
      write_attribute(f, "checkpoint", result.checkpoint);
      result.interrupted = true;
      result.steps_completed = done;
      result.total_seconds = seconds_since(t_start);
      out.finish("interrupted");
      if (log) *log << "interrupted after step " << done << "; checkpoint " << result.checkpoint << "\n";
      return result;
    };
    const auto t_train = Clock::now();
    for (; step < ts.steps; ++step) {
      ex.optimizer->set_lr(ts.schedule.lr_at(step));
      Tensor x0 = ex.dataset->sample(ts.batch_size, data_rng, conditional ? &labels : nullptr);
      norm.to_model(x0);
      const double l = sharded.run(*ex.network, *ex.sde, *ex.loss, x0, conditional ? &labels : nullptr, train_rng);
      if (!std::isfinite(l)) {
        std::ostringstream msg;
        msg << "training diverged: loss is " << l << " at step " << step + 1
            << " (last finite loss " << last_finite << "); try a smaller learning rate";
        if (!result.checkpoint.empty()) msg << "; last good checkpoint " << result.checkpoint;
        throw Error(msg.str());
      }
      last_finite = l;
      if (ts.grad_clip > 0) clip_grad_norm(params, ts.grad_clip);
      ex.optimizer->step();
      if (ema) ema->update();
      window += l;
      ++window_n;
      if ((step + 1) % ts.log_every == 0 || step + 1 == ts.steps) {
        out.append_train(step + 1, window / window_n);
        log_steps.push_back(step + 1);
        log_losses.push_back(window / window_n);
        result.final_loss = window / window_n;
        window = 0;
        window_n = 0;
      }
      progress.update(step + 1, l);
      const std::int64_t done = step + 1;
      if (ts.checkpoint_every > 0 && done % ts.checkpoint_every == 0) write_ckpt(done);
      if (stop_requested()) {
        step = done;
        break;
      }
    }
    if (stop_requested()) return finish_interrupted(step);
    if (ts.steps > 0) {
      progress.finish(ts.steps, result.final_loss);
      // The trained state is saved before the results are: if sampling, evaluation or writing
      // the results fails (or is stopped), `--resume` only has to sample again.
      write_ckpt(step);
      trained = true;
    }
    result.train_seconds = seconds_since(t_train);
    ex.network->save(h5_require_group(f, "model"));
    if (ex.ema_network) ex.ema_network->save(h5_require_group(f, "ema"));

    // ---- reference data (its labels condition class-conditional sampling) ----
    std::vector<int> ref_labels;
    Rng ref_rng = master.split("reference");
    const Tensor reference = ex.dataset->sample(ex.reference_n, ref_rng, &ref_labels);
    if (ex.reference_n) write_tensor(data_group, "reference", reference);

    // ---- sample ----
    const auto t_sample = Clock::now();
    std::map<std::string, Tensor> samples;
    for (const SamplerSpec& s : ex.samplers) {
      const auto t0 = Clock::now();
      auto net = s.use_ema && ex.ema_network ? ex.ema_network : ex.network;
      Denoiser model(std::make_shared<StoppableNetwork>(net, opt.stop), ex.sde, ex.loss->parameterisation());
      Trajectory traj;
      traj.max_frames = s.trajectory;
      Rng rng = master.split("sampler:" + s.name);
      std::vector<int> y(ref_labels.begin(), ref_labels.begin() + std::min(s.n, ref_labels.size()));
      Tensor x;
      try {
        x = s.sampler->sample(model, batch_shape(s.n, sample_shape), rng, &traj, conditional ? &y : nullptr);
      } catch (const SamplingStopped&) {
        return finish_interrupted(step);
      }
      norm.to_data(x);
      const double secs = seconds_since(t0);
      H5::Group g = h5_require_group(f, "samples/" + s.name);
      write_tensor(g, "x", x);
      if (!traj.frames.empty()) {
        Shape ts_shape = batch_shape(traj.frames.size(), shape_of(x));
        Tensor frames = Tensor::from_shape(ts_shape);
        for (std::size_t k = 0; k < traj.frames.size(); ++k) {
          Tensor fr = traj.frames[k];
          norm.to_data(fr);
          std::copy(fr.begin(), fr.end(), frames.data() + k * x.size());
        }
        write_tensor(g, "trajectory", frames);
        write_attribute(g, "trajectory_times", traj.times);
      }
      write_attribute(g, "nfe", static_cast<std::int64_t>(model.nfe()));
      write_attribute(g, "seconds", secs);
      write_attribute(g, "type", s.type);
      result.nfe[s.name] = model.nfe();
      samples[s.name] = std::move(x);
      // A stop during sampling keeps the trained state as a checkpoint (a resume then only
      // samples). Samples of this run are dropped: the file says interrupted.
      if (stop_requested()) return finish_interrupted(step);
    }
    result.sample_seconds = seconds_since(t_sample);

    // ---- evaluate ----
    const auto t_metric = Clock::now();
    for (const SamplerSpec& s : ex.samplers) {
      const Tensor ref = first_rows(reference, std::min(s.n, ex.reference_n));
      for (const MetricSpec& m : ex.metrics) {
        if (stop_requested()) return finish_interrupted(step);
        Rng rng = master.split("metric:" + s.name + ":" + m.name);
        const double v = m.metric->compute(samples[s.name], ref, rng);
        write_tensor(h5_require_group(f, "metrics/" + s.name), m.name, scalar(float(v)));
        result.metrics[s.name][m.name] = v;
      }
    }
    result.metric_seconds = seconds_since(t_metric);
    result.total_seconds = seconds_since(t_start);
    write_attribute(f, "train_seconds", result.train_seconds);
    write_attribute(f, "sample_seconds", result.sample_seconds);
    write_attribute(f, "metric_seconds", result.metric_seconds);
    write_attribute(f, "total_seconds", result.total_seconds);
    write_attribute(f, "steps_completed", step);
    result.steps_completed = step;
    out.finish("complete");
  } catch (const H5::Exception& e) {
    // HDF5's exceptions are not std::exceptions; an unwrapped one comes from writing the results.
    throw Error(record_failure("output " + opt.out_path + ": writing " + out.temp_path() +
                               " failed: " + e.getDetailMsg()));
  } catch (const std::exception& e) {
    const std::string error = record_failure(e.what());
    if (error == e.what()) throw;
    throw Error(error);
  }
  return result;
}

}  // namespace diffusion

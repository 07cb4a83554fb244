#include "diffusion/runner.hpp"

#include <chrono>
#include <cmath>
#include <ostream>
#include <sstream>

#include "diffusion/hdf5_io.hpp"
#include "diffusion/progress.hpp"
#include "diffusion/results.hpp"

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

}  // namespace

RunResult run_experiment(Experiment& ex, const RunOptions& opt) {
  const auto t_start = Clock::now();
  RunResult result;
  result.out_path = opt.out_path;
  ResultsWriter out(opt.out_path);
  H5::Group f = out.root();
  write_attribute(f, "config", ex.config.dump());
  write_attribute(f, "name", ex.name);
  write_attribute(f, "seed", static_cast<std::int64_t>(ex.seed));
  std::ostream* log = opt.log;
  std::int64_t step = 0;
  try {
    const Rng master(ex.seed);
    Rng data_rng = master.split("data"), train_rng = master.split("train");
    const Shape sample_shape = ex.dataset->sample_shape();
    const Normalizer norm = Normalizer::fit(*ex.dataset, ex.train.normalize_samples,
                                            ex.train.normalize, master.split("normalize"));
    H5::Group data_group = h5_require_group(f, "data");
    write_tensor(data_group, "mean", norm.mean);
    write_tensor(data_group, "std", norm.std);

    // ---- train ----
    const bool conditional = ex.network->class_conditional() && ex.dataset->num_classes() > 0;
    std::vector<int> labels;
    const TrainSettings& ts = ex.train;
    std::unique_ptr<EMA> ema;
    if (ex.ema_network) ema = std::make_unique<EMA>(*ex.network, ex.ema_network, ts.ema_decay, ts.ema_warmup);
    const std::vector<Var> params = ex.network->parameters();
    Progress progress(log, ts.steps, opt.progress_bar);
    double window = 0, last_finite = 0;
    std::int64_t window_n = 0;
    const auto t_train = Clock::now();
    for (step = 0; step < ts.steps; ++step) {
      ex.optimizer->set_lr(ts.schedule.lr_at(step));
      Tensor x0 = ex.dataset->sample(ts.batch_size, data_rng, conditional ? &labels : nullptr);
      norm.to_model(x0);
      const Var loss = ex.loss->loss(*ex.network, *ex.sde, x0, train_rng, conditional ? &labels : nullptr);
      const double l = loss.item();
      if (!std::isfinite(l)) {
        std::ostringstream msg;
        msg << "training diverged: loss is " << l << " at step " << step + 1
            << " (last finite loss " << last_finite << "); try a smaller learning rate";
        throw Error(msg.str());
      }
      last_finite = l;
      ex.network->zero_grad();
      loss.backward();
      if (ts.grad_clip > 0) clip_grad_norm(params, ts.grad_clip);
      ex.optimizer->step();
      if (ema) ema->update();
      window += l;
      ++window_n;
      if ((step + 1) % ts.log_every == 0 || step + 1 == ts.steps) {
        out.append_train(step + 1, window / window_n);
        result.final_loss = window / window_n;
        window = 0;
        window_n = 0;
      }
      progress.update(step + 1, l);
    }
    progress.finish(ts.steps, result.final_loss);
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
      Denoiser model(net, ex.sde, ex.loss->parameterisation());
      Trajectory traj;
      traj.max_frames = s.trajectory;
      Rng rng = master.split("sampler:" + s.name);
      std::vector<int> y(ref_labels.begin(), ref_labels.begin() + std::min(s.n, ref_labels.size()));
      Tensor x = s.sampler->sample(model, batch_shape(s.n, sample_shape), rng, &traj,
                                   conditional ? &y : nullptr);
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
    }
    result.sample_seconds = seconds_since(t_sample);

    // ---- evaluate ----
    const auto t_metric = Clock::now();
    for (const SamplerSpec& s : ex.samplers) {
      const Tensor ref = first_rows(reference, std::min(s.n, ex.reference_n));
      for (const MetricSpec& m : ex.metrics) {
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
    out.finish("complete");
  } catch (const std::exception& e) {
    // Keep what was written, marked as failed, so the reason travels with the file.
    try {
      write_attribute(f, "error", std::string(e.what()));
      write_attribute(f, "steps_completed", step);
      out.finish("failed");
    } catch (...) {
    }
    throw;
  }
  return result;
}

}  // namespace diffusion

// Stage 3: sampling. Each sampler runs on the EMA weights (use_ema) or the model, through a
// denoiser that counts network evaluations and honours a stop request within one of them, and
// through the sampler's guidance when it has one; its samples and trajectory are decoded into
// data coordinates before they are written, with the class each sample was asked for.
#include <chrono>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/run/stages.hpp"

namespace diffusion {
namespace {

/// Thrown out of a sampler when a stop is requested.
struct SamplingStopped {};

/// Checks for a stop request before every evaluation, so a stop during a long sampler takes
/// effect within one network evaluation, not at its end.
class StoppableDenoiser : public DenoiserWrapper {
 public:
  StoppableDenoiser(std::shared_ptr<const Denoiser> inner, const volatile std::sig_atomic_t* stop)
      : DenoiserWrapper(std::move(inner)), stop_(stop) {}
  void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const override {
    if (stop_ && *stop_) throw SamplingStopped{};
    DenoiserWrapper::predict(x, t, c, out);
  }
  PredictionVar predict_var(const Var& x, const Times& t, const Condition& c) const override {
    if (stop_ && *stop_) throw SamplingStopped{};
    return DenoiserWrapper::predict_var(x, t, c);
  }
  using Denoiser::predict;

 private:
  const volatile std::sig_atomic_t* stop_;
};

Shape batch_shape(std::size_t n, const Shape& sample) {
  Shape s{n};
  s.insert(s.end(), sample.begin(), sample.end());
  return s;
}

/// The decoded frames as one tensor (K, n, ...).
Tensor decoded_frames(const Codec& codec, const Trajectory& traj) {
  Tensor first = codec.decode(traj.frames.front());
  Tensor frames = Tensor::from_shape(batch_shape(traj.frames.size(), shape_of(first)));
  for (std::size_t k = 0; k < traj.frames.size(); ++k) {
    const Tensor fr = k == 0 ? first : codec.decode(traj.frames[k]);
    std::copy(fr.begin(), fr.end(), frames.data() + k * fr.size());
  }
  return frames;
}

/// The stream of repeat r (repeat 0 is the sampler's own stream, as without repeats).
Rng repeat_stream(const Rng& master, const std::string& name, std::size_t r) {
  return r == 0 ? master.split("sampler:" + name) : master.split("sampler:" + name + ":" + std::to_string(r));
}

/// The classes the samples are asked for (the sampler's `labels:`): as the data set draws them,
/// from a stream of their own (`data`); every class equally often (`balanced`); or one class.
Condition requested_labels(const Experiment& ex, const SamplerSpec& spec, Rng& rng) {
  Condition c;
  if (spec.labels == SamplerSpec::kLabelsFromData) {
    Rng labels = rng.split("condition");
    ex.dataset->sample(spec.n, labels, &c);
    return c;
  }
  const int classes = ex.dataset->num_classes();
  std::vector<int> labels(spec.n, spec.labels);
  if (spec.labels == SamplerSpec::kLabelsBalanced)
    for (std::size_t i = 0; i < spec.n; ++i) labels[i] = static_cast<int>(i % static_cast<std::size_t>(classes));
  c.set_labels(std::move(labels));
  return c;
}

/// The labels run_sampler asked for, back from its `labels` extra (none: empty).
std::vector<int> requested_labels_of(const SampleOutput& out) {
  for (const auto& [name, value] : out.extras)
    if (name == "labels") return std::vector<int>(value.begin(), value.end());
  return {};
}

}  // namespace

SampleOutput run_sampler(const Experiment& ex, const SamplerSpec& spec, const Denoiser& model, Rng& rng,
                         Trajectory* trajectory) {
  SampleRequest request;
  request.shape = batch_shape(spec.n, ex.codec->encoded_shape(ex.dataset->sample_shape()));
  if ((ex.network().class_conditional() || spec.labels_given) && ex.dataset->num_classes() > 0)
    request.condition = requested_labels(ex, spec, rng);
  request.source = ex.source.get();
  request.models = &ex.models;
  request.trajectory = trajectory;
  // The guided model (classifier-free or classifier guidance) wraps the sampled one, so the
  // sampler runs unchanged and `model` still counts the sampled network's evaluations.
  std::shared_ptr<const Denoiser> guided;
  if (spec.guidance) {
    const std::shared_ptr<const Denoiser> borrowed(std::shared_ptr<const Denoiser>(), &model);  // owns nothing
    guided = spec.guidance->guide(borrowed, ex.models);
  }
  SampleOutput out = spec.sampler->sample(guided ? *guided : model, request, rng);
  if (shape_of(out.x) != request.shape)
    throw Error("sampler " + spec.name + ": returned samples of shape " + shape_str(out.x) + ", expected " +
                shape_str(request.shape));
  if (guided)
    for (const auto& [slot, nfe] : spec.guidance->nfe(*guided)) out.nfe[slot] += nfe;
  if (request.condition.has_labels()) {
    // The class each sample was asked for, for conditional metrics and plots.
    const std::vector<int>& labels = request.condition.labels();
    Tensor l = Tensor::from_shape({labels.size()});
    for (std::size_t i = 0; i < labels.size(); ++i) l(i) = static_cast<float>(labels[i]);
    out.add_extra("labels", std::move(l));
  }
  return out;
}

void draw_samples(RunContext& run) {
  const Experiment& ex = run.ex;
  const auto t_stage = std::chrono::steady_clock::now();
  for (const SamplerSpec& s : ex.samplers) {
    const auto net = s.use_ema && ex.ema_network() ? ex.ema_network() : ex.models.shared("model");
    std::shared_ptr<const Denoiser> denoiser = ex.denoiser(net);
    if (s.batch > 0) denoiser = std::make_shared<ChunkedDenoiser>(std::move(denoiser), s.batch);
    CountingDenoiser model(std::make_shared<StoppableDenoiser>(std::move(denoiser), run.options.stop));
    H5::Group g = h5_require_group(run.root(), "samples/" + s.name);
    for (std::size_t r = 0; r < s.repeats; ++r) {
      model.reset();
      Trajectory traj;
      traj.max_frames = r == 0 ? s.trajectory : 0;
      Rng rng = repeat_stream(run.master, s.name, r);
      const auto t0 = std::chrono::steady_clock::now();
      SampleOutput out;
      try {
        out = run_sampler(ex, s, model, rng, &traj);
      } catch (const SamplingStopped&) {
        throw RunInterrupted{};
      }
      run.samples[s.name].push_back(ex.codec->decode(out.x));
      run.sample_labels[s.name].push_back(requested_labels_of(out));
      if (r > 0) continue;
      // Repeat 0 is the sampler's run as it would be without repeats: it is the one written.
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      write_tensor(g, "x", run.samples[s.name].back());
      if (!traj.frames.empty()) {
        write_tensor(g, "trajectory", decoded_frames(*ex.codec, traj));
        write_attribute(g, "trajectory_times", traj.times);
      }
      for (const auto& [name, value] : out.extras) write_tensor(g, name, value);
      if (s.guidance)
        for (const auto& [name, value] : s.guidance->attributes()) write_attribute(g, name, value);
      write_attribute(g, "nfe", static_cast<std::int64_t>(model.nfe()));
      for (const auto& [slot, nfe] : out.nfe) write_attribute(g, "nfe_" + slot, static_cast<std::int64_t>(nfe));
      write_attribute(g, "seconds", secs);
      write_attribute(g, "type", s.type);
      write_attribute(g, "repeats", static_cast<std::int64_t>(s.repeats));
      run.result.nfe[s.name] = model.nfe();
    }
    // A stop during sampling keeps the trained state as a checkpoint (a resume then only
    // samples); the samples of this run are dropped: the file says interrupted.
    if (run.stop_requested()) throw RunInterrupted{};
  }
  run.result.sample_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_stage).count();
}

}  // namespace diffusion

// A plugin built for the tests only (not installed, not in the default plugin folder: runexp
// loads it with `--plugins <build>/tests/fixture_plugins`). It exercises the seams of the
// version 2 interfaces that no shipped plugin uses yet:
//
//   loss `fixture_tracking` {copy_every: 5}
//       eps-prediction denoising MSE (as plugins/ddpm/denoising_losses.cpp), pairing each datum
//       with a draw of the experiment's Source (which need not be Gaussian), per-sample values
//       and times; its after_step hook copies the model's weights into the named model
//       `target` whenever (ctx.step + 1) % copy_every == 0 (a target network, as in
//       consistency training). It declares the slot (changed_models), so an experiment without
//       it, or with it frozen, is refused before training.
//
//   sampler `fixture_recording` {steps, spacing | timesteps}
//       DDIM with eta 0 on any registered time grid, from req.source_or_default().start(...).
//       Extras: `start` (n, ...) the starting draw, `step_norm` (steps) the mean squared norm
//       of x after each step, `target_x0` (n, ...) the named model `target`'s x0 prediction at
//       the grid's last time (one evaluation, reported as nfe["target"] = 1). It declares the
//       slot (required_models).
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <diffusion/model/gaussian_posterior.hpp>
#include <diffusion/model/predictions.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

namespace diffusion::fixture {
namespace {

constexpr const char* kTarget = "target";

/// A shared_ptr that does not own: for objects the run owns and outlives the call.
template <class T>
std::shared_ptr<T> borrowed(T& object) {
  return std::shared_ptr<T>(&object, [](T*) {});
}

class TrackingLoss : public Loss {
 public:
  explicit TrackingLoss(std::int64_t copy_every) : pre_(make_prediction("eps")), copy_every_(copy_every) {}

  std::shared_ptr<const Preconditioning> preconditioning() const override { return pre_; }

  LossValues loss(Network& net, const Tensor& x0, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    if (!ctx.path) throw Error("fixture_tracking: no path in the training context");
    const Path& path = *ctx.path;
    const Shape shape = shape_of(x0);
    const std::size_t n = shape[0];
    c.check_rows(n, "fixture_tracking");
    Tensor t = path.sample_times(n, rng);
    const Tensor z = ctx.source_or_default().sample(shape, rng);
    DenoisingBatch b = denoising_batch(path, *pre_, x0, z, t);
    const Var pred = net.forward(Var(std::move(b.input)), b.c_noise, c);
    return {mse_per_sample(pred, Var(std::move(b.target))), std::move(t)};
  }

  std::vector<std::string> changed_models() const override { return {kTarget}; }

  void after_step(const TrainContext& ctx) const override {
    if ((ctx.step + 1) % copy_every_ == 0) ctx.models->get(kTarget).copy_parameters_from(ctx.models->get("model"));
  }

 private:
  std::shared_ptr<const Preconditioning> pre_;
  std::int64_t copy_every_;
};

class RecordingSampler : public Sampler {
 public:
  explicit RecordingSampler(GridOption grid) : grid_(std::move(grid)) {}

  void check(const Path& path, const Source&) const override { grid_.grid->times(path, steps(path)); }
  std::vector<std::string> required_models() const override { return {kTarget}; }

  SampleOutput sample(const Denoiser& model, const SampleRequest& req, Rng& rng) const override {
    const Path& path = model.path();
    const std::size_t steps = this->steps(path);
    const std::vector<double> grid = grid_.grid->times(path, steps);
    Tensor x = req.source_or_default().start(path, req.shape, rng);
    SampleOutput out;
    out.add_extra("start", x);
    if (req.trajectory) req.trajectory->record(x, grid[0], 0, steps);
    Tensor step_norm = Tensor::from_shape({steps});
    Tensor before_last;
    const std::size_t n = req.shape[0], per = x.size() / n;
    Prediction p;
    for (std::size_t i = 0; i < steps; ++i) {
      const bool last = i + 1 == steps;
      const double t = grid[i], s = last ? 0.0 : grid[i + 1];
      if (last) before_last = x;
      model.predict(x, t, req.condition, p);
      const GaussianPosterior q = gaussian_posterior(path, t, s, last);
      const double dir = std::sqrt(std::max(0.0, q.sigma_s * q.sigma_s));  // as ddim with eta 0
      float* px = x.data();
      for (std::size_t j = 0; j < x.size(); ++j) px[j] = float(q.alpha_s * p.x0.data()[j] + dir * p.eps.data()[j]);
      double norm = 0;
      for (std::size_t r = 0; r < n; ++r) {
        double row = 0;
        for (std::size_t j = 0; j < per; ++j) row += double(px[r * per + j]) * double(px[r * per + j]);
        norm += row;
      }
      step_norm(i) = float(norm / double(n));
      if (req.trajectory) req.trajectory->record(x, s, i + 1, steps);
    }
    out.add_extra("step_norm", step_norm);
    // The named model, read as the sampled one is: same path, eps preconditioning.
    const NetworkDenoiser target(borrowed(req.model(kTarget)), borrowed(path), make_prediction("eps"));
    out.add_extra("target_x0", target.predict(before_last, grid.back(), req.condition).x0);
    out.nfe[kTarget] = 1;
    out.x = std::move(x);
    return out;
  }

 private:
  std::size_t steps(const Path& path) const { return resolve_steps(grid_.steps, path, "fixture_recording"); }
  GridOption grid_;
};

std::shared_ptr<Loss> make_tracking(const ConfigNode& c, const BuildContext&) {
  return std::make_shared<TrackingLoss>(c.get_int("copy_every", 5, 1));
}

std::shared_ptr<Sampler> make_recording(const ConfigNode& c, const BuildContext& ctx) {
  return std::make_shared<RecordingSampler>(read_time_grid(c, 20, ctx));
}

}  // namespace

DIFFUSION_REGISTER(losses, "fixture_tracking", make_tracking);
DIFFUSION_REGISTER(samplers, "fixture_recording", make_recording);

}  // namespace diffusion::fixture

DIFFUSION_PLUGIN("fixture")

// The probability-flow ODE sampler (Song et al. 2021, section 4.3 and appendix D.3): draw x at
// t_max from the source and integrate dx/dt = alpha' x0_hat + sigma' eps_hat (probability_flow.hpp)
// down to t_min with one of the core's integrators (integrate/ode.hpp):
//
//   sampler: {type: ode, method: dopri5, rtol: 1e-5, atol: 1e-5, max_steps: 10000, controller: pi}
//   sampler: {type: ode, method: heun, steps: 50, spacing: karras}
//
// dopri5 (the default, as the paper's RK45) chooses its own steps (`controller: standard` steps as
// scipy's RK45 does, with fewer evaluations and a larger error per step than the default `pi`); euler, midpoint, heun and
// rk4 step between the `steps` times of a time grid (`spacing:` any registered grid, or
// `timesteps:`), and from the grid's last time to t_min when it stops short of it: a grid that
// ends at t_min (linear, quadratic, karras) gives steps - 1 steps of the method.
// `denoise: true` ends with one Tweedie step x <- x0_hat(x, t_min) (the last denoising step of
// the paper's samplers, appendix D.3). `prior: rqmc` starts from randomised quasi-Monte Carlo
// draws: the ODE's map is deterministic, so evenly spread starting points give evenly spread
// samples.
//
// On a discrete path (DDPM) the ODE runs in continuous time on the path's alpha and sigma,
// log-linear in abar between whole steps: the network is asked for times between the whole
// steps it was trained at (its time input is the step index as a real number, which a smooth
// time embedding interpolates), and the field jumps at every whole step with the path's
// piecewise-constant d log abar / dt, which costs the integrators their order there
// (tests/plugins/test_ode_sampler.cpp measures it).
//
// Extras: accepted_steps and rejected_steps of the integration (the run adds nfe).
#include <diffusion/integrate/ode.hpp>
#include <diffusion/plugin.hpp>
#include <diffusion/plugin/sampler_options.hpp>

#include "probability_flow.hpp"

namespace diffusion::score_sde {
namespace {

/// Frames of an integration whose step count is known only at its end (adaptive steps): keeps
/// every stride-th accepted state, doubling the stride when more than twice the frames asked
/// for are kept, so memory stays bounded; the last state is always kept. `replay` offers them
/// to the trajectory, which thins them evenly.
class AdaptiveFrames {
 public:
  explicit AdaptiveFrames(Trajectory* trajectory) : traj_(trajectory) {}
  bool active() const { return traj_ && traj_->max_frames > 0; }
  void offer(double t, const Tensor& x) {
    if (!active()) return;
    if (count_++ % stride_ == 0) kept_.push_back({t, x});
    last_ = {t, x};
    if (kept_.size() > 2 * traj_->max_frames + 1) {
      // Keep the states at multiples of the doubled stride (even positions of the list).
      std::size_t w = 0;
      for (std::size_t r = 0; r < kept_.size(); r += 2) kept_[w++] = std::move(kept_[r]);
      kept_.resize(w);
      stride_ *= 2;
    }
  }
  void replay() {
    if (!active() || count_ == 0) return;
    if ((count_ - 1) % stride_ != 0) kept_.push_back(std::move(last_));
    const std::size_t total = kept_.size() - 1;
    for (std::size_t k = 0; k < kept_.size(); ++k) traj_->record(kept_[k].second, kept_[k].first, k, total);
  }

 private:
  Trajectory* traj_;
  std::vector<std::pair<double, Tensor>> kept_;
  std::pair<double, Tensor> last_;
  std::size_t count_ = 0, stride_ = 1;
};

class OdeSampler : public Sampler {
 public:
  OdeSampler(OdeMethod method, AdaptiveOptions adaptive, GridOption grid, PriorDraw prior, bool denoise)
      : method_(method), adaptive_(adaptive), grid_(std::move(grid)), prior_(prior), denoise_(denoise) {}

  void check(const Path& path, const Source& source) const override {
    if (prior_ == PriorDraw::rqmc && !source.standard_normal())
      throw Error("ode: prior: rqmc draws from the standard Gaussian source, not " + source.name() + " (use prior: iid)");
    if (method_ != OdeMethod::dopri5) times(path);
  }

  SampleOutput sample(const Denoiser& model, const SampleRequest& req, Rng& rng) const override {
    const Path& path = model.path();
    Tensor x = req.source_or_default().start(path, req.shape, rng, prior_);
    const VectorField field = probability_flow_field(model, req.condition);
    OdeStats stats;
    if (method_ == OdeMethod::dopri5) {
      AdaptiveFrames frames(req.trajectory);
      frames.offer(path.t_max(), x);
      stats = integrate_adaptive(field, path.t_max(), path.t_min(), x, adaptive_,
                                 [&frames](double t, const Tensor& y) { frames.offer(t, y); });
      if (denoise_) {
        tweedie(model, req.condition, path.t_min(), x);
        frames.offer(path.t_min(), x);
      }
      frames.replay();
    } else {
      const std::vector<double> grid = times(path);
      const std::size_t total = grid.size() - 1 + (denoise_ ? 1 : 0);
      std::size_t step = 0;
      if (req.trajectory) req.trajectory->record(x, grid.front(), step, total);
      StepObserver observe;
      if (req.trajectory)
        observe = [&](double t, const Tensor& y) { req.trajectory->record(y, t, ++step, total); };
      stats = integrate_fixed(method_, field, grid, x, observe);
      if (denoise_) {
        tweedie(model, req.condition, path.t_min(), x);
        if (req.trajectory) req.trajectory->record(x, path.t_min(), ++step, total);
      }
    }
    SampleOutput out{std::move(x), {}, {}};
    out.add_extra("accepted_steps", full({1}, static_cast<float>(stats.accepted)));
    out.add_extra("rejected_steps", full({1}, static_cast<float>(stats.rejected)));
    return out;
  }

 private:
  /// The fixed-step methods' times: the grid, then t_min when the grid stops short of it.
  std::vector<double> times(const Path& path) const {
    std::vector<double> t = grid_.grid->times(path, grid_.steps);
    // A grid that ends at t_min up to rounding (t_max - (t_max - t_min)) ends there exactly,
    // rather than with a step of 1e-16.
    if (t.back() - path.t_min() <= 1e-9 * (path.t_max() - path.t_min())) t.back() = path.t_min();
    else t.push_back(path.t_min());
    if (t.size() < 2)
      throw Error("ode: the time grid gives the single time " + std::to_string(t.front()) +
                  "; an integration needs at least two (raise steps)");
    return t;
  }

  /// x <- x0_hat(x, t): the posterior mean of the data (Tweedie's formula).
  static void tweedie(const Denoiser& model, const Condition& c, double t, Tensor& x) {
    Prediction p;
    model.predict(x, t, c, p);
    x = std::move(p.x0);
  }

  OdeMethod method_;
  AdaptiveOptions adaptive_;
  GridOption grid_;
  PriorDraw prior_;
  bool denoise_;
};

std::shared_ptr<Sampler> make_ode(const ConfigNode& c, const BuildContext& ctx) {
  OdeIntegration integration = read_ode_integration(c, 100, ctx);
  const PriorDraw prior = read_prior_draw(c, ctx);
  const bool denoise = c.get_bool("denoise", false);
  return std::make_shared<OdeSampler>(integration.method, integration.adaptive, std::move(integration.grid), prior,
                                      denoise);
}

}  // namespace

DIFFUSION_REGISTER(samplers, "ode", make_ode);

}  // namespace diffusion::score_sde

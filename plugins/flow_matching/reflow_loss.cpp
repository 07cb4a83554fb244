// Reflow, `reflow` (Liu et al. 2023, "Flow Straight and Fast", section 2.2 and Algorithm 1):
// the k+1-th rectified flow is trained by the same regression on the coupling of the k-th,
//
//   (x0, z) with z ~ source and x0 = ODE_k(z), the k-th flow's ODE solved from t = 1 to t = 0,
//
// which has straighter paths, so few Euler steps suffice (one, in the limit of straight paths).
//
//   models: {base: {init: results/fm_moons.h5, from: ema}}   # frozen: loaded from a file
//   loss: {type: reflow, model: base, pairs: 20000, method: dopri5, rtol: 1e-5, atol: 1e-5}
//
// As in Liu et al., a fixed set of `pairs` couplings is drawn once (their D = {(z, ODE(z))})
// and each batch draws its rows from it uniformly with replacement. The set is a function of the
// run's seed and the frozen base model only (drawn from the init stream's "reflow_pairs"
// split, at the first loss call), so a resumed run draws the same set and ends as an
// uninterrupted one. The batch of data the training loop hands in is not used (only its shape):
// the data side of each pair is the base model's sample.
//
// The base model is read through the velocity preconditioning on the run's path (it must be a
// flow matching model on the same `sde:`), and the run's codec must be the base's: start the
// run from the base's file (`init:`, which also loads its codec) as Liu et al. start 2-rectified
// flow from the 1-rectified flow's weights.
#include <algorithm>
#include <mutex>

#include <diffusion/integrate/ode.hpp>
#include <diffusion/plugin.hpp>

#include "cfm_regression.hpp"

namespace diffusion::flow_matching {
namespace {

struct PairSettings {
  std::string slot = "base";
  std::size_t pairs = 20000;
  std::size_t chunk = 2000;  ///< rows integrated as one batch (dopri5 controls the error per batch)
  OdeMethod method = OdeMethod::dopri5;
  std::size_t steps = 100;   ///< fixed-step methods: uniform steps from 1 to 0
  AdaptiveOptions adaptive;
};

class ReflowLoss : public Loss {
 public:
  ReflowLoss(PairSettings settings, Rng pair_rng, bool low_discrepancy)
      : s_(std::move(settings)), pair_rng_(pair_rng), low_discrepancy_(low_discrepancy) {}
  std::shared_ptr<const Preconditioning> preconditioning() const override { return velocity_preconditioning(); }
  std::vector<std::string> required_models() const override { return {s_.slot}; }

  LossValues loss(Network& net, const Tensor& x0_batch, const Condition& c, const TrainContext& ctx,
                  Rng& rng) const override {
    std::call_once(pairs_drawn_, [&] { draw_pairs(ctx, shape_of(x0_batch)); });
    const Shape shape = shape_of(x0_batch);
    const std::size_t n = shape[0], per = n ? x0_batch.size() / n : 0;
    Tensor x0 = Tensor::from_shape(shape), z = Tensor::from_shape(shape);
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t k = static_cast<std::size_t>(rng.integer(s_.pairs));
      std::copy(data_.data() + k * per, data_.data() + (k + 1) * per, x0.data() + i * per);
      std::copy(source_.data() + k * per, source_.data() + (k + 1) * per, z.data() + i * per);
    }
    return cfm_regression(net, *ctx.path, x0, z, draw_times(*ctx.path, n, low_discrepancy_, rng), c);
  }

  /// The drawn couplings (after the first loss call): source draws and the base's ODE endpoints.
  const Tensor& pair_source() const { return source_; }
  const Tensor& pair_data() const { return data_; }

 private:
  /// D = {(ODE(z), z)}: z from the source, the base flow's ODE from t_max to t_min.
  void draw_pairs(const TrainContext& ctx, const Shape& batch_shape) const {
    const Path& path = *ctx.path;
    std::shared_ptr<Network> base = ctx.models->shared(s_.slot);
    const NetworkDenoiser model(base, std::shared_ptr<const Path>(&path, [](const Path*) {}),
                                velocity_preconditioning());
    Shape shape = batch_shape;
    shape[0] = s_.pairs;
    Rng rng = pair_rng_;
    source_ = ctx.source_or_default().sample(shape, rng);
    data_ = source_;
    const std::size_t per = s_.pairs ? source_.size() / s_.pairs : 0;
    std::vector<double> grid(s_.steps + 1);
    for (std::size_t k = 0; k <= s_.steps; ++k)
      grid[k] = path.t_max() + (path.t_min() - path.t_max()) * double(k) / double(s_.steps);
    Prediction p;
    const VectorField field = [&](double t, const Tensor& y, Tensor& dy) {
      // v = alpha' x0_hat + sigma' eps_hat: the network's velocity (flow_paths.hpp).
      model.predict(y, t, Condition{}, p);
      const double da = path.alpha_deriv(t), ds = path.sigma_deriv(t);
      for (std::size_t j = 0; j < y.size(); ++j) dy.data()[j] = float(da * p.x0.data()[j] + ds * p.eps.data()[j]);
    };
    for (std::size_t begin = 0; begin < s_.pairs; begin += s_.chunk) {
      const std::size_t m = std::min(s_.chunk, s_.pairs - begin);
      Shape cs = shape;
      cs[0] = m;
      Tensor y = Tensor::from_shape(cs);
      std::copy(source_.data() + begin * per, source_.data() + (begin + m) * per, y.data());
      if (s_.method == OdeMethod::dopri5)
        integrate_adaptive(field, path.t_max(), path.t_min(), y, s_.adaptive);
      else
        integrate_fixed(s_.method, field, grid, y);
      std::copy(y.data(), y.data() + m * per, data_.data() + begin * per);
    }
  }

  PairSettings s_;
  Rng pair_rng_;
  bool low_discrepancy_;
  mutable std::once_flag pairs_drawn_;
  mutable Tensor source_, data_;
};

std::shared_ptr<Loss> make_reflow(const ConfigNode& c, const BuildContext& ctx) {
  PairSettings s;
  s.slot = c.get_string("model", "base");
  s.pairs = static_cast<std::size_t>(c.get_int("pairs", 20000, 1, 1 << 26));
  s.chunk = static_cast<std::size_t>(c.get_int("chunk", 2000, 1, 1 << 26));
  s.method = parse_ode_method(c.get_choice("method", "dopri5", ode_method_names()));
  if (s.method == OdeMethod::dopri5) {
    if (c.has("steps")) c.at("steps").error("dopri5 chooses its own steps; `steps` is for euler, midpoint, heun, rk4");
    s.adaptive.rtol = c.get_double("rtol", 1e-5, Interval::greater_than(0));
    s.adaptive.atol = c.get_double("atol", 1e-5, Interval::greater_than(0));
  } else {
    for (const char* key : {"rtol", "atol"})
      if (c.has(key)) c.at(key).error("`" + std::string(key) + "` is dopri5's error control; this method takes `steps`");
    s.steps = static_cast<std::size_t>(c.get_int("steps", 100, 1, 1 << 20));
  }
  const bool low_discrepancy = c.get_choice("t_sampling", "iid", {"iid", "low_discrepancy"}) == "low_discrepancy";
  // A function of the run's seed only: split, not drawn, from the init stream.
  const Rng pair_rng = (ctx.rng ? *ctx.rng : Rng(0)).split("reflow_pairs");
  return std::make_shared<ReflowLoss>(std::move(s), pair_rng, low_discrepancy);
}

}  // namespace

DIFFUSION_REGISTER(losses, "reflow", make_reflow);

}  // namespace diffusion::flow_matching

#include "twist.hpp"

namespace diffusion::smc {

TwistSchedule read_twist_schedule(const ConfigNode& sampler) {
  return sampler.get_choice("twist_schedule", "constant", {"constant", "snr"}) == "snr" ? TwistSchedule::snr
                                                                                        : TwistSchedule::constant;
}

double twist_scale_at(TwistSchedule schedule, const Path& path, double t) {
  if (schedule == TwistSchedule::constant) return 1.0;
  const double a = path.alpha(t), s = path.sigma(t);
  return a * a / (a * a + s * s);
}

void evaluate_twist(const BoundTarget& target, const Potential* potential, const PotentialContext& ctx,
                    const Tensor& x, double t, const Condition& c, bool with_grad, double lambda, TwistedState& out) {
  if (with_grad && potential) {
    const Var xv(x, true);
    const Var x0 = target.predict_var(xv, t, c, out.pred);
    const Var log_g = potential->log_value({xv, x0, t, false}, ctx) * float(lambda);
    out.log_twist = row_values(log_g);
    sum(log_g).backward();
    out.grad = xv.grad();
    return;
  }
  target.predict(x, t, c, out.pred);
  out.log_twist.clear();
  if (!potential) return;
  const NoGradScope no_graph;
  out.log_twist = row_values(potential->log_value({Var(x), Var(out.pred.x0), t, false}, ctx) * float(lambda));
}

std::vector<double> final_potential(const Potential& potential, const PotentialContext& ctx, const Tensor& x0) {
  const NoGradScope no_graph;
  const Var v(x0);
  return row_values(potential.log_value({v, v, ctx.path->t_min(), true}, ctx));
}

}  // namespace diffusion::smc

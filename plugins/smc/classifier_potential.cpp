// A classifier's log-probability of a class, G = p(label | x)^scale: the target is the model's
// distribution of that class (scale 1), or sharpened / flattened towards it. The classifier is
// a named model (slot `model:`, default `classifier`) whose network maps (x, c_noise) to logits
// (N, classes). `input: noisy` (default) reads a noise-conditional classifier at the particles
// x_t and the network time of t: p(label | x_t) is the optimal twist of TDS (Wu et al. 2023,
// eq. 6) when the classifier is exact; `input: clean` reads a classifier of clean data at x0_hat
// (TDS's twisting function for class-conditional sampling, their section 4.2), at the network
// time of t_min. At the data both read x0 at t_min. The network gets x as it is (no c_in scaling):
// the classifier is trained on the model's space, as the samplers' particles are.
#include <diffusion/plugin.hpp>

#include "potential.hpp"

namespace diffusion::smc {
namespace {

class ClassifierPotential : public Potential {
 public:
  ClassifierPotential(std::string slot, int label, bool noisy, double scale)
      : slot_(std::move(slot)), label_(label), noisy_(noisy), scale_(scale) {}

  Var log_value(const PotentialPoint& at, const PotentialContext& ctx) const override {
    if (!ctx.request || !ctx.path) throw Error("classifier potential: evaluated without a request (no named models)");
    Network& net = ctx.request->model(slot_);
    const bool use_xt = noisy_ && !at.at_data;
    const Var& x = use_xt ? at.x_t : at.x0_hat;
    const std::size_t n = x.shape()[0];
    const double t = use_xt ? at.t : ctx.path->t_min();
    const Tensor c_noise = full({n}, ctx.path->network_time(t));
    const ConstantScope weights(net.parameters());  // gradients with respect to x only
    const Var logits = net.forward(x, c_noise, Condition{});
    if (logits.dim() != 2 || logits.shape()[0] != n)
      throw Error("classifier potential: the network of slot '" + slot_ + "' returned " + shape_str(logits.shape()) +
                  ", expected logits (" + std::to_string(n) + ", classes)");
    const std::size_t classes = logits.shape()[1];
    if (std::size_t(label_) >= classes)
      throw Error("classifier potential: label " + std::to_string(label_) + " but the classifier of slot '" + slot_ +
                  "' has " + std::to_string(classes) + " classes");
    Tensor one_hot = zeros({n, classes});
    for (std::size_t i = 0; i < n; ++i) one_hot(i, std::size_t(label_)) = 1.0f;
    return sum(log_softmax(logits, 1) * Var(std::move(one_hot)), {1}) * float(scale_);
  }
  std::vector<std::string> required_models() const override { return {slot_}; }

 private:
  std::string slot_;
  int label_;
  bool noisy_;
  double scale_;
};

std::shared_ptr<Potential> make_classifier(const ConfigNode& c, const BuildContext& ctx) {
  const int label = int(c.require_int("label", 0));
  if (ctx.num_classes > 0 && label >= ctx.num_classes)
    c.at("label").fail("a class below " + std::to_string(ctx.num_classes) + " (the data set's classes)");
  const std::string slot = c.get_string("model", "classifier");
  const bool noisy = c.get_choice("input", "noisy", {"noisy", "clean"}) == "noisy";
  const double scale = c.get_double("scale", 1.0, Interval::greater_than(0));
  return std::make_shared<ClassifierPotential>(slot, label, noisy, scale);
}

}  // namespace

DIFFUSION_REGISTER(potentials, "classifier", make_classifier);

}  // namespace diffusion::smc

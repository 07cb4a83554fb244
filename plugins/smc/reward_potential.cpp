// A reward with a temperature, G = exp(r(x0) / temperature): the target p(x0) exp(r(x0) / T)
// of Feynman-Kac steering (Singhal et al. 2025, eq. 2, lambda = 1 / T), whose intermediate
// potentials are the reward of x0_hat (their section 3.1). Rewards:
//   linear:   r(x) = w . x + b                 (`weights: [...]`, `bias`)
//   distance: r(x) = -|x - c|                  (`center: [...]`: prefers points near c)
// on the flattened sample in the model's space.
#include <diffusion/plugin.hpp>

#include "potential.hpp"

namespace diffusion::smc {
namespace {

class RewardPotential : public Potential {
 public:
  RewardPotential(bool linear, std::vector<double> v, double bias, double temperature)
      : linear_(linear), v_(std::move(v)), bias_(bias), temperature_(temperature) {}

  Var log_value(const PotentialPoint& at, const PotentialContext&) const override {
    check_row_size(at.x0_hat, v_.size(), "reward");
    const Var x = flatten_rows(at.x0_hat);
    const std::size_t d = v_.size();
    Var r;
    if (linear_) {
      r = sum(x * constant(v_, {d}), {1}) + float(bias_);
    } else {
      r = -sqrt(sum(square(x - constant(v_, {d})), {1}) + 1e-12f);
    }
    return r * float(1.0 / temperature_);
  }

 private:
  bool linear_;
  std::vector<double> v_;
  double bias_, temperature_;
};

std::shared_ptr<Potential> make_reward(const ConfigNode& c, const BuildContext& ctx) {
  const double temperature = c.require_double("temperature", Interval::greater_than(0));
  const ConfigNode r = c.at("reward");
  const std::string type = r.type();
  const std::size_t data_d = ctx.data_shape.empty() ? 0 : numel(ctx.data_shape);
  const auto vector = [&](const std::string& key) {
    auto v = r.get_double_list(key);
    if (v.empty() || (data_d && v.size() != data_d))
      r.at(key).fail(data_d ? std::to_string(data_d) + " numbers (the values of one sample)" : "a non-empty list of numbers");
    return v;
  };
  if (type == "linear") {
    auto w = vector("weights");
    const double bias = r.get_double("bias", 0.0);
    return std::make_shared<RewardPotential>(true, std::move(w), bias, temperature);
  }
  if (type == "distance") return std::make_shared<RewardPotential>(false, vector("center"), 0.0, temperature);
  (r.is_map() ? r.at("type") : r).error("unknown reward '" + type + "' (expected linear or distance)");
}

}  // namespace

DIFFUSION_REGISTER(potentials, "reward", make_reward);

}  // namespace diffusion::smc

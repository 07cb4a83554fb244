// The optimiser base: step bookkeeping and per-parameter state, shared by SGD and Adam(W),
// including its HDF5 checkpoint format.
#include "diffusion/optim/optim.hpp"

#include <algorithm>
#include <cmath>

#include "diffusion/io/hdf5_io.hpp"

namespace diffusion {

Optimizer::Optimizer(std::vector<Var> params, double lr)
    : params_(std::move(params)), param_steps_(params_.size(), 0) {
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (!params_[i].defined())
      throw Error("Optimizer: parameter " + std::to_string(i) + " is an undefined Var");
  set_lr(lr);
}

void Optimizer::set_lr(double lr) {
  if (!(lr >= 0.0) || !std::isfinite(lr))
    throw Error("Optimizer: learning rate must be finite and >= 0, got " + std::to_string(lr));
  lr_ = lr;
}

std::size_t Optimizer::add_state(const std::string& name) {
  // Allocated up front, so step() never allocates.
  std::vector<Tensor> per_param;
  per_param.reserve(params_.size());
  for (const auto& p : params_) per_param.push_back(zeros(p.shape()));
  state_names_.push_back(name);
  state_.push_back(std::move(per_param));
  return state_.size() - 1;
}

void Optimizer::step() {
  ++steps_;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].has_grad()) continue;
    update(i, ++param_steps_[i]);
  }
}

void Optimizer::zero_grad() {
  for (auto& p : params_) p.zero_grad();
}

void Optimizer::save_state(const H5::Group& g) const {
  write_attribute(g, "type", std::string(name()));
  write_attribute(g, "lr", lr_);
  write_attribute(g, "steps", steps_);
  write_attribute(g, "num_params", static_cast<std::int64_t>(params_.size()));
  write_hyperparameters(g);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    H5::Group pg = h5_require_group(g, std::to_string(i));
    write_attribute(pg, "step", param_steps_[i]);
    for (std::size_t s = 0; s < state_.size(); ++s) write_tensor(pg, state_names_[s], state_[s][i]);
  }
}

void Optimizer::load_state(const H5::Group& g) {
  const std::string where = h5_location(g);
  const std::string type = read_string_attribute(g, "type");
  if (type != name())
    throw Error(where + ": optimiser state is for '" + type + "', not '" + name() + "'");
  const std::int64_t n = read_int_attribute(g, "num_params");
  if (n != static_cast<std::int64_t>(params_.size()))
    throw Error(where + ": state has " + std::to_string(n) + " parameters, the optimiser has " +
                std::to_string(params_.size()));
  const double lr = read_double_attribute(g, "lr");
  const std::int64_t steps = read_int_attribute(g, "steps");
  // Read everything first, so a bad file leaves the optimiser as it was.
  std::vector<std::int64_t> param_steps(params_.size());
  std::vector<std::vector<Tensor>> state(state_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const H5::Group pg = h5_open_group(g, std::to_string(i));
    param_steps[i] = read_int_attribute(pg, "step");
    for (std::size_t s = 0; s < state_.size(); ++s)
      state[s].push_back(read_tensor(pg, state_names_[s], params_[i].shape()));
  }
  set_lr(lr);
  steps_ = steps;
  param_steps_ = std::move(param_steps);
  state_ = std::move(state);
}

}  // namespace diffusion

#pragma once
// Optimisers (SGD, Adam, AdamW), an exponential moving average of weights, learning-rate
// schedules and gradient clipping, with PyTorch's update rules so that hyperparameters from
// papers and reference code carry over unchanged.
//
// Optimisers update Var values in place, so every holder of the same Var handle (the module,
// an EMA) sees the new weights. A parameter with no gradient is skipped, as PyTorch skips
// parameters whose .grad is None, and its per-parameter step count does not advance.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <H5Cpp.h>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/nn/module.hpp"

namespace diffusion {

/// Base of every optimiser: the parameter list, the learning rate, step counts and named
/// per-parameter state tensors, which save_state/load_state write to and read from HDF5.
class Optimizer {
 public:
  Optimizer(std::vector<Var> params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// One update of every parameter that holds a gradient.
  void step();
  /// Forget every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);
  /// Number of step() calls so far.
  std::int64_t steps() const { return steps_; }
  const std::vector<Var>& params() const { return params_; }
  /// Short type name ("sgd", "adam", "adamw"), stored with the state and checked on load.
  virtual const char* name() const = 0;

  /// Write lr, step counts and every per-parameter state tensor into g:
  /// attributes type, lr, steps, num_params on g; group g/<i> per parameter index i with
  /// attribute step and one dataset per state tensor ("exp_avg", "exp_avg_sq", ...).
  void save_state(const H5::Group& g) const;
  /// Restore what save_state wrote. The type, the number of parameters and every tensor's
  /// shape must match; the error names the parameter index and both shapes. Nothing is
  /// changed if any check fails.
  void load_state(const H5::Group& g);

 protected:
  /// Declare a per-parameter state tensor, zeros of each parameter's shape; returns its slot.
  std::size_t add_state(const std::string& name);
  /// Raw pointer to state tensor `slot` of parameter i (same element count as the parameter).
  float* state(std::size_t slot, std::size_t i) { return state_[slot][i].data(); }
  /// Parameter i, for update().
  Var& param(std::size_t i) { return params_[i]; }
  /// Update parameter i, which has a gradient; t counts this parameter's updates, this one
  /// included (1 on its first), as PyTorch's per-parameter state["step"].
  virtual void update(std::size_t i, std::int64_t t) = 0;
  /// Extra attributes describing the hyperparameters (informational; not read back).
  virtual void write_hyperparameters(const H5::Group&) const {}

 private:
  std::vector<Var> params_;
  double lr_;
  std::int64_t steps_ = 0;
  std::vector<std::int64_t> param_steps_;
  std::vector<std::string> state_names_;
  std::vector<std::vector<Tensor>> state_;  // [slot][parameter]
};

/// Hyperparameters of SGD (torch.optim.SGD's names and defaults, lr aside).
struct SgdOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;  ///< L2: adds weight_decay * p to the gradient
  bool nesterov = false;      ///< needs momentum > 0 and dampening = 0
};

/// Stochastic gradient descent with momentum (Polyak 1964; Sutskever et al. 2013 for Nesterov),
/// PyTorch's rule: g += wd p; b = g on the first step, else b = mu b + (1 - dampening) g;
/// g = g + mu b if nesterov else b; p -= lr g.
class SGD : public Optimizer {
 public:
  SGD(std::vector<Var> params, const SgdOptions& options = {});
  const char* name() const override { return "sgd"; }
  const SgdOptions& options() const { return opt_; }

 protected:
  void update(std::size_t i, std::int64_t t) override;
  void write_hyperparameters(const H5::Group& g) const override;

 private:
  SgdOptions opt_;
  std::size_t momentum_slot_ = 0;
};

/// Hyperparameters of Adam and AdamW (torch.optim.Adam's names and defaults).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

/// AdamW's options: as Adam's, but with PyTorch's AdamW default weight_decay = 0.01.
struct AdamWOptions : AdamOptions {
  AdamWOptions() { weight_decay = 1e-2; }
};

/// Adam (Kingma & Ba 2015, Algorithm 1), PyTorch's rule:
/// g += wd p (L2 regularisation); m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
/// p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
/// Arithmetic is float per element; bias corrections are computed in double.
class Adam : public Optimizer {
 public:
  Adam(std::vector<Var> params, const AdamOptions& options = {});
  const char* name() const override { return decoupled_ ? "adamw" : "adam"; }
  const AdamOptions& options() const { return opt_; }

 protected:
  Adam(std::vector<Var> params, const AdamOptions& options, bool decoupled);
  void update(std::size_t i, std::int64_t t) override;
  void write_hyperparameters(const H5::Group& g) const override;

 private:
  AdamOptions opt_;
  bool decoupled_;
  std::size_t m_slot_ = 0, v_slot_ = 0;
};

/// AdamW (Loshchilov & Hutter 2019, Algorithm 2): decoupled weight decay, p *= 1 - lr wd before
/// the Adam step (which then uses the raw gradient), as torch.optim.AdamW.
class AdamW : public Adam {
 public:
  AdamW(std::vector<Var> params, const AdamWOptions& options = {});
};

/// Exponential moving average of a module's weights (Polyak averaging), as used for sampling
/// in DDPM (Ho et al. 2020) and score SDEs (Song et al. 2021):
/// shadow = d shadow + (1 - d) param. The shadow lives in a second module of the same
/// architecture, built by the caller, so it can be used for sampling as is.
class EMA {
 public:
  /// `shadow` gets model's current parameter and buffer values. With warmup, update() uses
  /// d = min(decay, (1 + n) / (10 + n)) where n is the number of earlier updates
  /// (TensorFlow's ExponentialMovingAverage num_updates rule), so early averages forget the
  /// random initialisation fast.
  EMA(const Module& model, std::shared_ptr<Module> shadow, double decay = 0.999,
      bool warmup = false);

  /// Average the model's current parameters in with the configured decay (and warm-up).
  /// Buffers are copied, not averaged (they are not trained).
  void update();
  /// Average with an explicit decay (no warm-up).
  void update(double decay);
  /// The decay the next update() will use.
  double next_decay() const;
  double decay() const { return decay_; }
  bool warmup() const { return warmup_; }
  std::int64_t num_updates() const { return num_updates_; }

  /// The averaged module, ready for sampling.
  Module& module() { return *shadow_; }
  const Module& module() const { return *shadow_; }
  std::shared_ptr<Module> module_ptr() const { return shadow_; }
  /// Copy the averaged weights into another module of the same architecture.
  void copy_to(Module& target) const { target.copy_parameters_from(*shadow_); }

  /// Write the shadow module (same dotted names as the model's save) plus attributes
  /// ema_decay, ema_warmup and ema_num_updates on g.
  void save(const H5::Group& g) const;
  /// Read the shadow module back (strict, as Module::load) and the update count if present.
  void load(const H5::Group& g);

 private:
  std::shared_ptr<Module> shadow_;
  std::vector<Var> model_params_, shadow_params_;
  std::vector<Var> model_buffers_, shadow_buffers_;
  double decay_;
  bool warmup_;
  std::int64_t num_updates_ = 0;
};

/// Learning-rate schedule kinds; every kind honours an optional linear warm-up first.
enum class LrScheduleKind {
  constant,       ///< base_lr (after the warm-up, if any)
  linear_warmup,  ///< 0 -> base_lr linearly over warmup_steps, then base_lr (warmup_steps > 0)
  cosine,         ///< after the warm-up, base_lr -> min_lr along a half cosine until total_steps
                  ///< (Loshchilov & Hutter 2017, SGDR without restarts), then min_lr
};

/// "constant", "linear_warmup" (alias "warmup"), "cosine"; an unknown name throws an Error
/// listing the choices.
LrScheduleKind parse_lr_schedule(const std::string& name);
/// The canonical name of a schedule kind.
std::string to_string(LrScheduleKind kind);

/// A learning rate as a function of the step index (0 for the first update).
struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::constant;
  double base_lr = 1e-3;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 0;  ///< cosine only: where min_lr is reached
  double min_lr = 0.0;           ///< cosine only

  static LrSchedule constant(double base_lr);
  static LrSchedule linear_warmup(double base_lr, std::int64_t warmup_steps);
  static LrSchedule cosine(double base_lr, std::int64_t total_steps,
                           std::int64_t warmup_steps = 0, double min_lr = 0.0);

  /// The rate for update number `step` (0-based). Warm-up: base_lr * step / warmup_steps for
  /// step < warmup_steps (so step 0 has rate 0, as in DDPM's reference code and HF
  /// transformers). Cosine: min_lr + (base_lr - min_lr)(1 + cos(pi p)) / 2 with
  /// p = (step - warmup) / (total - warmup), clamped to [0, 1].
  double lr_at(std::int64_t step) const;
  /// Throws Error on negative rates or steps, or a cosine with total_steps <= warmup_steps.
  void validate() const;
};

/// The global L2 norm of the gradients of params (parameters without a gradient count 0).
double grad_norm(const std::vector<Var>& params);

/// Clip gradients to a global L2 norm of max_norm (Pascanu et al. 2013), as
/// torch.nn.utils.clip_grad_norm_: scale = max_norm / (norm + 1e-6), applied when < 1.
/// Returns the norm before clipping. A non-finite norm leaves non-finite gradients (as PyTorch's
/// default); check the return value to skip such steps.
double clip_grad_norm(const std::vector<Var>& params, double max_norm);

}  // namespace diffusion

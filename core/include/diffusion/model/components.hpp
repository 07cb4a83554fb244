#pragma once
// The five kinds of component an experiment composes, plus metrics. Each kind has a registry
// (registries.hpp); plugins add implementations by name.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/nn/module.hpp"
#include "diffusion/tensor/random.hpp"
#include "diffusion/tensor/tensor.hpp"

namespace diffusion {

/// What a factory may need to know besides its own YAML node.
struct BuildContext {
  Shape data_shape;      ///< shape of one sample, e.g. {2} for points
  int num_classes = 0;   ///< 0 when the data set has no labels
  Rng* rng = nullptr;    ///< stream for initialisation (network weights, fixed features)
};

/// A data distribution to learn. Samples are drawn fresh from the given stream.
class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Shape of one sample, e.g. {2}.
  virtual Shape sample_shape() const = 0;
  /// Number of classes (labels 0..n-1), or 0 for unlabelled data.
  virtual int num_classes() const { return 0; }
  /// n samples of shape (n, sample_shape...); labels (when non-null) get one class per sample.
  virtual Tensor sample(std::size_t n, Rng& rng, std::vector<int>* labels = nullptr) const = 0;
};

/// A network conditioned on time (and optionally a class): f(x_t, t[, y]).
class Network : public Module {
 public:
  /// True if the network uses class labels (then training and sampling pass them).
  virtual bool class_conditional() const { return false; }
  /// x: (N, sample_shape...); t: (N) in the SDE's network-time units; labels: N ints or
  /// nullptr (unconditional). Returns a tensor shaped like x.
  virtual Var forward(const Var& x, const Tensor& t, const std::vector<int>* labels = nullptr) = 0;
};

/// What a network's output means.
enum class Parameterisation { eps, x0, v, score, velocity };
Parameterisation parse_parameterisation(const std::string& name);
std::string to_string(Parameterisation p);

/// How a sampler's time grid is spread between t_max and t_min.
enum class TimeSpacing {
  linear,     ///< evenly spaced in t (DDIM's "uniform" skip)
  quadratic,  ///< t_max (1 - u)^2 for evenly spaced u: dense near the data (DDIM, section D.2)
};
TimeSpacing parse_time_spacing(const std::string& name);

/// How a sampler draws its starting points from the prior.
enum class PriorDraw {
  iid,   ///< independent normal draws
  rqmc,  ///< randomised quasi-Monte Carlo (quasi_random.hpp): each row exactly as iid, the set
         ///< spread evenly; through a deterministic sampler, evenly spread samples
};
PriorDraw parse_prior_draw(const std::string& name);

/// The Gaussian path x_t = alpha(t) x0 + sigma(t) eps, and the SDE dx = f(t) x dt + g(t) dW
/// whose marginals it is. DDPM, VP, sub-VP, VE, EDM and the flow-matching path differ only in
/// these functions and the time grid. Time runs from t_min (data) to t_max (prior).
class Sde {
 public:
  virtual ~Sde() = default;
  virtual double alpha(double t) const = 0;
  virtual double sigma(double t) const = 0;
  /// Drift coefficient f(t) of the linear SDE (drift = f(t) x).
  virtual double drift_coef(double t) const = 0;
  /// Diffusion coefficient g(t).
  virtual double diffusion(double t) const = 0;
  virtual double t_min() const = 0;
  virtual double t_max() const = 0;
  /// Number of discrete time steps (DDPM's T), or 0 for a continuous-time SDE.
  virtual std::size_t num_steps() const { return 0; }
  /// The value fed to the network as its time input (DDPM: the integer step index).
  virtual float network_time(double t) const { return static_cast<float>(t); }
  /// n training times drawn from the training distribution of t.
  virtual Tensor sample_times(std::size_t n, Rng& rng) const = 0;
  /// The training time at quantile u in [0, 1) of that distribution, for low-discrepancy
  /// batches (low_discrepancy_times). The default refuses: an SDE opts in by defining it.
  virtual double time_at_quantile(double u) const;
  /// A decreasing grid of `steps` times from t_max towards t_min for samplers; the sampler's
  /// last step goes from the grid's last time to clean data (alpha = 1, sigma = 0).
  virtual std::vector<double> time_grid(std::size_t steps,
                                        TimeSpacing spacing = TimeSpacing::linear) const = 0;
  /// A draw from the prior N(0, (alpha^2 + sigma^2)(t_max) I) approximately matched by x_{t_max}.
  virtual Tensor prior_sample(const Shape& shape, Rng& rng, PriorDraw draw = PriorDraw::iid) const;
};

/// n training times for one batch from VDM's low-discrepancy sampler (Kingma et al. 2021,
/// appendix: u_i = (u_0 + i / n) mod 1 with one uniform u_0): each time is distributed exactly as
/// a single draw, and the batch covers the training distribution evenly, which lowers the
/// variance of the loss and its gradient.
Tensor low_discrepancy_times(const Sde& sde, std::size_t n, Rng& rng);

/// A network read through an SDE: converts its output between parameterisations with
/// x_t = alpha x0 + sigma eps (Tweedie's formula gives the score -eps / sigma). Counts NFE.
class Denoiser {
 public:
  Denoiser(std::shared_ptr<Network> net, std::shared_ptr<const Sde> sde, Parameterisation p);
  /// Predicted noise eps_hat(x_t, t); every call is one network evaluation.
  Tensor eps(const Tensor& x, double t, const std::vector<int>* labels = nullptr) const;
  /// Predicted clean data x0_hat(x_t, t).
  Tensor x0(const Tensor& x, double t, const std::vector<int>* labels = nullptr) const;
  /// Both at once from one evaluation.
  void predict(const Tensor& x, double t, Tensor& eps, Tensor& x0,
               const std::vector<int>* labels = nullptr) const;
  const Sde& sde() const { return *sde_; }
  Network& network() const { return *net_; }
  Parameterisation parameterisation() const { return param_; }
  std::size_t nfe() const { return nfe_; }
  void reset_nfe() { nfe_ = 0; }

 private:
  std::shared_ptr<Network> net_;
  std::shared_ptr<const Sde> sde_;
  Parameterisation param_;
  mutable std::size_t nfe_ = 0;
};

/// A training objective.
class Loss {
 public:
  virtual ~Loss() = default;
  /// What the network learns to predict (samplers read it back through a Denoiser).
  virtual Parameterisation parameterisation() const = 0;
  /// The loss on a batch of clean data x0 (N, ...), with its own noise and times from rng.
  virtual Var loss(Network& net, const Sde& sde, const Tensor& x0, Rng& rng,
                   const std::vector<int>* labels = nullptr) const = 0;
};

/// Frames recorded while sampling, for plots and animations.
struct Trajectory {
  std::size_t max_frames = 0;   ///< 0: record nothing
  std::vector<Tensor> frames;   ///< states along the way, first = prior draw
  std::vector<double> times;
  /// Offer the state after `step` of `total` steps (step 0 = the prior draw, step total = the
  /// result); keeps max_frames of them, evenly spaced, always the first and the last.
  void record(const Tensor& x, double t, std::size_t step, std::size_t total);
};

/// Draws samples from a trained model.
class Sampler {
 public:
  virtual ~Sampler() = default;
  /// Reject settings this SDE cannot honour (e.g. more steps than a discrete SDE has), so an
  /// experiment fails before training rather than after.
  virtual void check(const Sde& /*sde*/) const {}
  /// n samples of the given full shape (n, ...), starting from the SDE's prior.
  virtual Tensor sample(const Denoiser& model, const Shape& shape, Rng& rng,
                        Trajectory* trajectory = nullptr,
                        const std::vector<int>* labels = nullptr) const = 0;
};

/// A distance between generated samples and reference data (lower is better).
class Metric {
 public:
  virtual ~Metric() = default;
  virtual double compute(const Tensor& samples, const Tensor& reference, Rng& rng) const = 0;
};

}  // namespace diffusion

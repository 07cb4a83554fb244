#pragma once
// The denoiser: a trained model as samplers see it (k-diffusion's wrapped model). predict()
// gives x0_hat and eps_hat for a batch, one time per row; predict_var() does the same on the
// autodiff graph, so a sampler can ask for a gradient with respect to x (guidance, twisted
// SMC). Wrappers change what a prediction is without touching samplers: counting network
// evaluations, classifier-free guidance, a frozen draft, a twisted proposal.
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/model/condition.hpp"
#include "diffusion/model/models.hpp"
#include "diffusion/model/network.hpp"
#include "diffusion/model/path.hpp"
#include "diffusion/model/preconditioning.hpp"
#include "diffusion/tensor/memory_pool.hpp"

namespace diffusion {

/// One time per row of a batch, in the path's units.
using Times = std::vector<double, PoolAllocator<double>>;
/// n copies of t.
Times same_time(std::size_t n, double t);

/// x0_hat and eps_hat, each shaped like x.
struct Prediction {
  Tensor x0, eps;
};
/// The same on the autodiff graph.
struct PredictionVar {
  Var x0, eps;
};

class Denoiser {
 public:
  virtual ~Denoiser() = default;
  /// The path the predictions are read through.
  virtual const Path& path() const = 0;
  /// Predictions at x (N, ...), row i at time t[i]; records no graph. `out`'s tensors are
  /// reused when they already have x's shape.
  virtual void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const = 0;
  /// The same, differentiable with respect to x only (the network's weights are constants of
  /// the graph: a backward pass leaves their gradients untouched).
  virtual PredictionVar predict_var(const Var& x, const Times& t, const Condition& c) const = 0;

  /// Every row at one time t.
  void predict(const Tensor& x, double t, const Condition& c, Prediction& out) const;
  Prediction predict(const Tensor& x, double t, const Condition& c = {}) const;
};

/// D(x, t) = c_skip x + c_out F(c_in x, c_noise) of a network on a path.
class NetworkDenoiser : public Denoiser {
 public:
  NetworkDenoiser(std::shared_ptr<Network> network, std::shared_ptr<const Path> path,
                  std::shared_ptr<const Preconditioning> preconditioning);
  const Path& path() const override { return *path_; }
  void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const override;
  PredictionVar predict_var(const Var& x, const Times& t, const Condition& c) const override;
  using Denoiser::predict;

  Network& network() const { return *net_; }
  const Preconditioning& preconditioning() const { return *pre_; }

 private:
  /// Rows [begin, end) that share one time: its c_in and its readout.
  struct TimeRun {
    std::size_t begin, end;
    double c_in;
    Readout readout;
  };
  using TimeRuns = std::vector<TimeRun, PoolAllocator<TimeRun>>;
  /// The noise input c_noise of every row, and the runs of rows that share a time (a sampler's
  /// batch is one run): each time's scalings are computed once.
  TimeRuns prepare(const Times& t, Tensor& c_noise) const;

  std::shared_ptr<Network> net_;
  std::shared_ptr<const Path> path_;
  std::shared_ptr<const Preconditioning> pre_;
};

/// Base of denoisers that wrap another: forwards everything to the inner one.
class DenoiserWrapper : public Denoiser {
 public:
  explicit DenoiserWrapper(std::shared_ptr<const Denoiser> inner);
  const Path& path() const override { return inner_->path(); }
  void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const override;
  PredictionVar predict_var(const Var& x, const Times& t, const Condition& c) const override;
  using Denoiser::predict;
  const Denoiser& inner() const { return *inner_; }

 private:
  std::shared_ptr<const Denoiser> inner_;
};

/// Counts evaluations of the denoiser it wraps (each predict is one network evaluation of it):
/// samplers' NFE, per model.
class CountingDenoiser : public DenoiserWrapper {
 public:
  using DenoiserWrapper::DenoiserWrapper;
  void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const override;
  PredictionVar predict_var(const Var& x, const Times& t, const Condition& c) const override;
  using Denoiser::predict;
  std::size_t nfe() const { return nfe_; }
  void reset() { nfe_ = 0; }

 private:
  mutable std::size_t nfe_ = 0;
};

/// Evaluates the denoiser it wraps on at most `rows` rows at a time (a sampler's `batch:`): a
/// sampler's whole set in one forward pass can need more memory than the machine has (a U-Net
/// on 2000 images), and a network treats every row on its own, so the predictions are those of
/// one pass over the whole set. predict_var is passed through whole (its graph spans the batch).
class ChunkedDenoiser : public DenoiserWrapper {
 public:
  ChunkedDenoiser(std::shared_ptr<const Denoiser> inner, std::size_t rows);
  void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const override;
  using Denoiser::predict;
  std::size_t rows() const { return rows_; }

 private:
  std::size_t rows_;
};

/// Classifier-free guidance (Ho & Salimans 2022, eq. 6): with the condition c and the null
/// condition, eps_guided = (1 + w) eps(x, c) - w eps(x, null), so w = 0 is the conditional model
/// and the "guidance scale" of other codebases (diffusers' guidance_scale, eps_u + s (eps_c -
/// eps_u)) is s = w + 1. As scores, (1 + w) grad log p(x_t | c) - w grad log p(x_t): the score of
/// p(x | c)^(1 + w) p(x)^(-w) (proportional to p(x | c) p(c | x)^w, an implicit classifier's
/// guidance). Both evaluations run as one batch of 2N rows (the second half with the null mask
/// set); x0_hat follows from eps_guided on the path. A sampler's `guidance: {type:
/// classifier_free, w: ...}` (the guidance plugin) wraps the sampled model in it.
class ClassifierFreeGuidance : public DenoiserWrapper {
 public:
  ClassifierFreeGuidance(std::shared_ptr<const Denoiser> inner, double w);
  void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const override;
  PredictionVar predict_var(const Var& x, const Times& t, const Condition& c) const override;
  using Denoiser::predict;
  double w() const { return w_; }

 private:
  double w_;
};

/// A noise-conditional classifier p(y | x_t, t) as classifier guidance reads it: the gradient of
/// its log-probability of each row's label with respect to x_t.
class NoisyClassifier {
 public:
  virtual ~NoisyClassifier() = default;
  /// grad_x log p(y_i | x_i, t_i) for the label y_i of row i of c (x (N, ...), shaped like x).
  virtual Tensor grad_log_prob(const Tensor& x, const Times& t, const Condition& c) const = 0;
};

/// Classifier guidance (Dhariwal & Nichol 2021, Algorithms 1 and 2, eq. 14): the score plus s
/// times the classifier's gradient, grad log p(x_t) + s grad log p(y | x_t), the score of
/// p(x_t) p(y | x_t)^s (s = 1: the conditional score). On the path, score = -eps / sigma, so
///   eps_guided = eps - s sigma_t grad log p(y | x_t),
///   x0_guided  = (x - sigma_t eps_guided) / alpha_t = x0 + s (sigma_t^2 / alpha_t) grad log p(y | x_t).
/// Rows whose condition is null are not guided. The labels come from the condition. There is
/// no predict_var: its graph would need the classifier's second derivatives.
class ClassifierGuidance : public DenoiserWrapper {
 public:
  ClassifierGuidance(std::shared_ptr<const Denoiser> inner, std::shared_ptr<const NoisyClassifier> classifier,
                     double scale);
  void predict(const Tensor& x, const Times& t, const Condition& c, Prediction& out) const override;
  /// Error: classifier guidance is not differentiable here (see above).
  PredictionVar predict_var(const Var& x, const Times& t, const Condition& c) const override;
  using Denoiser::predict;
  double scale() const { return scale_; }
  /// Classifier evaluations (one per predict).
  std::size_t classifier_nfe() const { return nfe_; }

 private:
  std::shared_ptr<const NoisyClassifier> classifier_;
  double scale_;
  mutable std::size_t nfe_ = 0;
};

/// A sampler's `guidance:` (registry `guidances`): turns the sampled model's denoiser into a
/// guided one, so every sampler draws from the guided model without knowing it. The run draws
/// the class labels of the samples (the sampler's `labels:`) and passes them in the condition.
class Guidance {
 public:
  virtual ~Guidance() = default;
  /// The named models it reads (a classifier); an experiment without them is refused.
  virtual std::vector<std::string> required_models() const { return {}; }
  /// Error when it cannot guide this model (classifier-free guidance needs a class-conditional
  /// network) or data set (num_classes 0: no labels to ask for).
  virtual void check(const Network& /*model*/, int /*num_classes*/) const {}
  /// The guided denoiser of `model`, reading the experiment's named models.
  virtual std::shared_ptr<const Denoiser> guide(std::shared_ptr<const Denoiser> model, const Models& models) const = 0;
  /// What the run writes beside the samples (/samples/<sampler> attributes, e.g. the scale).
  virtual std::vector<std::pair<std::string, double>> attributes() const { return {}; }
  /// Evaluations of other models by a denoiser guide() made, by slot (written as nfe_<slot>).
  virtual std::vector<std::pair<std::string, std::size_t>> nfe(const Denoiser& /*guided*/) const { return {}; }
};

}  // namespace diffusion

#pragma once
// The denoiser: a trained model as samplers see it (k-diffusion's wrapped model). predict()
// gives x0_hat and eps_hat for a batch, one time per row; predict_var() does the same on the
// autodiff graph, so a sampler can ask for a gradient with respect to x (guidance, twisted
// SMC). Wrappers change what a prediction is without touching samplers: counting network
// evaluations, classifier-free guidance, a frozen draft, a twisted proposal.
#include <cstddef>
#include <memory>
#include <vector>

#include "diffusion/autodiff/autodiff.hpp"
#include "diffusion/model/condition.hpp"
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

/// Classifier-free guidance (Ho & Salimans 2022, eq. 6): with the condition c and the null
/// condition, eps_guided = (1 + w) eps(x, c) - w eps(x, null), so w = 0 is the conditional model
/// and the "guidance scale" of other codebases is w + 1. Both evaluations run as one batch of
/// 2N rows (the second half with the null mask set); x0_hat follows from eps_guided on the
/// path. The guidance issue builds the samplers' options and metrics on it.
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

}  // namespace diffusion

// The flagship workload as the benchmarks run it: experiments/ddim_moons.yaml composed with the
// toolkit's own plugins (moons, mlp, ddpm's eps_mse loss and ddim sampler) exactly as runexp
// composes it, trained with runexp's own training step (TrainLoop::step: batch, encoding, sharded
// loss and backward, Adam, EMA, loss log) and sampled with runexp's own sampler call
// (run_sampler). The bench changes only the width, batch, shards and sample size it is asked for.
//
// Training step: a fresh batch of two moons (noise 0.05), standardised; t from VDM's
// low-discrepancy sampler over T = 1000 DDPM steps, eps ~ N(0, I), x_t = sqrt(abar_t) x0 +
// sqrt(1 - abar_t) eps; the MLP [x_t (2), sinusoidal embedding of t (32)] -> 3 x width SiLU -> 2;
// per-sample MSE against eps; backward, Adam, the EMA update. Sampling: the flagship's DDIM
// (eta 0, its piecewise spacing, rqmc prior draws), no gradient tape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <diffusion/run/experiment.hpp>

namespace bench {

/// One row-major cblas_sgemm: C (m x n) = op(A) op(B) + beta C.
struct Gemm {
  bool trans_a, trans_b;
  std::size_t m, n, k;
  float beta;
  double flops() const { return 2.0 * double(m) * double(n) * double(k); }
};

/// The sgemm calls of one training step of the flagship MLP, as the core issues them: per layer
/// (in -> out) the forward x W^T (bias pre-filled, beta 1), dX = dY W and dW = dY^T X. The first
/// layer has no dX: its input (x_t and the embedding) needs no gradient.
std::vector<Gemm> training_gemms(std::size_t width, std::size_t batch);
/// The sgemm calls of one DDIM step for n points: the forward products only.
std::vector<Gemm> sampling_gemms(std::size_t width, std::size_t n);
double total_flops(const std::vector<Gemm>& gemms);

struct TrainResult {
  long steps;              // timed steps
  double seconds;          // over the timed steps
  double steps_per_s, us_per_step;
  double gflops;           // matmul flops (training_gemms) per second
  double allocs_per_step;  // heap allocations per timed step; NaN without the counter
  double final_loss;
};

struct SampleResult {
  double samples_per_s, gflops;
  double allocs_per_step;  // per DDIM step: the difference between runs of S and 2S steps; NaN without the counter
  float mean[2], std[2];   // in data coordinates, a sanity check against the baseline's
};

/// The flagship experiment at one width, batch and shard count.
class Flagship {
 public:
  /// Loads the plugins from the build's plugin folder and composes the YAML file.
  Flagship(std::size_t width, std::size_t batch, std::size_t shards, std::uint64_t seed);

  /// `warmup` untimed steps, then timed steps until both `min_steps` and `min_seconds` are
  /// reached, all through TrainLoop::step (a fresh model and optimiser each call).
  TrainResult train(long warmup, long min_steps, double min_seconds);
  /// The flagship's DDIM with `steps` steps for n points from the current weights (the EMA's,
  /// as runexp samples), through run_sampler.
  SampleResult sample(std::size_t n, std::size_t steps);

  std::size_t width() const { return width_; }
  /// The EMA decay of the flagship's recipe (the baseline is run with the same).
  double ema_decay() const { return ex_->train.ema_decay; }

 private:
  std::unique_ptr<diffusion::Experiment> compose(long total_steps, std::size_t n, std::size_t ddim_steps) const;

  std::size_t width_, batch_, shards_;
  std::uint64_t seed_;
  std::unique_ptr<diffusion::Experiment> ex_;  // the trained one, sampled by sample()
};

}  // namespace bench

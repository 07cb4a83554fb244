// The flagship workload (experiments/ddim_moons.yaml) as the benchmarks run it: one training
// step and the DDIM sampler, written out as /work/shared/bench/torch_ddim_moons.py writes them.
//
// Training step: x0 a batch of standardised two moons (noise 0.05), t ~ U{0..999},
// eps ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (linear betas 1e-4..0.02), the MLP
// [x_t (2), sinusoidal embedding of t (32)] -> 3 x width SiLU -> 2, MSE against eps, then
// backward and an Adam step (lr 1e-3); times and noise are drawn per shard. Sampling: DDIM, eta 0, on the grid
// floor(linspace(T-1, 0, steps)), the last step going to clean data, under a NoGradScope.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <diffusion/nn/layers.hpp>
#include <diffusion/tensor/random.hpp>
#include <diffusion/tensor/tensor.hpp>

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

/// Wall-clock seconds per phase over the timed training steps.
struct Phases {
  double data = 0;           // drawing the batch
  double loss_backward = 0;  // times, noise, x_t, forward, loss and backward (in the shards)
  double optim = 0;          // the Adam step
};

struct TrainResult {
  long steps;              // timed steps
  double seconds;          // over the timed steps
  double steps_per_s, us_per_step;
  double gflops;           // matmul flops (training_gemms) per second
  double allocs_per_step;  // heap allocations per timed step; NaN without the counter
  float final_loss;
  Phases phases;
};

struct SampleResult {
  double samples_per_s, gflops;
  double allocs_per_step;  // per DDIM step after the first; NaN without the counter
  float mean[2], std[2];   // in data coordinates, a sanity check against the baseline's
};

/// The data, noise schedule and model of the flagship at one width.
class Flagship {
 public:
  Flagship(std::size_t width, std::uint64_t seed);

  /// `warmup` untimed steps, then timed steps until both `min_steps` and `min_seconds` are
  /// reached (a fresh Adam each call). Each batch is cut into `shards` run at once
  /// (data_parallel.hpp, as `train.shards`); 1 splits the products instead.
  TrainResult train(std::size_t batch, std::size_t shards, long warmup, long min_steps,
                    double min_seconds);
  /// DDIM with `steps` steps for n points from the current weights.
  SampleResult sample(std::size_t n, std::size_t steps);

  std::size_t width() const { return width_; }

 private:
  struct Denoiser {
    Denoiser(std::size_t width, diffusion::Rng init);
    diffusion::SinusoidalEmbedding temb;
    diffusion::MLP net;
    diffusion::Var operator()(const diffusion::Var& x, const diffusion::Tensor& t) const;
  };

  std::size_t width_;
  diffusion::Rng root_;
  diffusion::Tensor data_;  // standardised moons
  float mean_[2], std_[2];  // the standardisation, to map samples back
  std::vector<float> abar_;
  Denoiser model_;
};

}  // namespace bench

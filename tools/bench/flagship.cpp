#include "flagship.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/run/stages.hpp>
#include <diffusion/run/train_loop.hpp>

#include "alloc_count.h"

using namespace diffusion;
using Clock = std::chrono::steady_clock;

namespace bench {
namespace {

constexpr std::size_t kTembDim = 32;  // the flagship's sinusoidal time embedding

std::vector<std::size_t> layer_widths(std::size_t width) { return {2 + kTembDim, width, width, width, 2}; }

double allocations() { return bench_alloc_count ? double(bench_alloc_count()) : std::nan(""); }

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

std::vector<Gemm> training_gemms(std::size_t width, std::size_t batch) {
  const std::vector<std::size_t> w = layer_widths(width);
  std::vector<Gemm> gemms;
  for (std::size_t l = 0; l + 1 < w.size(); ++l) {
    const std::size_t in = w[l], out = w[l + 1];
    gemms.push_back({false, true, batch, out, in, 1.0f});               // Y = X W^T + b
    if (l > 0) gemms.push_back({false, false, batch, in, out, 0.0f});  // dX = dY W
    gemms.push_back({true, false, out, in, batch, 0.0f});              // dW = dY^T X
  }
  return gemms;
}

std::vector<Gemm> sampling_gemms(std::size_t width, std::size_t n) {
  const std::vector<std::size_t> w = layer_widths(width);
  std::vector<Gemm> gemms;
  for (std::size_t l = 0; l + 1 < w.size(); ++l) gemms.push_back({false, true, n, w[l + 1], w[l], 1.0f});
  return gemms;
}

double total_flops(const std::vector<Gemm>& gemms) {
  double f = 0.0;
  for (const Gemm& g : gemms) f += g.flops();
  return f;
}

Flagship::Flagship(std::size_t width, std::size_t batch, std::size_t shards, std::uint64_t seed)
    : width_(width), batch_(batch), shards_(shards), seed_(seed) {
  load_plugin_dir(default_plugin_dir());
  ex_ = compose(15000, 2000, 50);
}

std::unique_ptr<Experiment> Flagship::compose(long total_steps, std::size_t n, std::size_t ddim_steps) const {
  Config c = Config::load_file(DIFFUSION_FLAGSHIP_YAML);
  const std::string w = std::to_string(width_);
  c.apply_overrides({"seed=" + std::to_string(seed_), "network.hidden=[" + w + "," + w + "," + w + "]",
                     "train.batch_size=" + std::to_string(batch_), "train.shards=" + std::to_string(shards_),
                     "train.steps=" + std::to_string(total_steps), "sampler.n=" + std::to_string(n),
                     "sampler.steps=" + std::to_string(ddim_steps)});
  return std::make_unique<Experiment>(compose_experiment(c));
}

TrainResult Flagship::train(long warmup, long min_steps, double min_seconds) {
  // The recipe's schedule over at least the steps this call takes.
  ex_ = compose(std::max<long>(15000, warmup + min_steps), 2000, 50);
  ex_->codec->fit(*ex_->dataset, Rng(ex_->seed).split("normalize"));  // as the run's first stage does
  TrainLoop loop(*ex_, Rng(ex_->seed));
  double loss = 0.0;
  for (long i = 0; i < warmup; ++i) loss = loop.step();
  const auto start = Clock::now();
  const double allocs_at_start = allocations();
  long timed = 0;
  while (timed < min_steps || seconds(Clock::now() - start) < min_seconds) {
    loss = loop.step();
    ++timed;
  }
  const double secs = seconds(Clock::now() - start);
  const double allocs = allocations() - allocs_at_start;
  const double flops = total_flops(training_gemms(width_, batch_));
  return {timed, secs, timed / secs, 1e6 * secs / timed, flops * timed / secs / 1e9, allocs / timed, loss};
}

SampleResult Flagship::sample(std::size_t n, std::size_t S) {
  // Sample the trained weights (the EMA's, as runexp does) with the flagship's sampler at
  // S and at 2S steps: the first is timed, the difference counts allocations per step.
  const auto net = ex_->ema_network() ? ex_->ema_network() : ex_->models.shared("model");
  const auto model = ex_->denoiser(net);
  const auto run = [&](std::size_t steps, double* secs) {
    const std::unique_ptr<Experiment> ex = compose(15000, n, steps);  // the sampler with these settings
    Rng rng = Rng(ex->seed).split("sampler:" + ex->samplers.front().name);
    const double a0 = allocations();
    const auto t0 = Clock::now();
    Tensor x = run_sampler(*ex, ex->samplers.front(), *model, rng).x;
    if (secs) *secs = seconds(Clock::now() - t0);
    return std::make_pair(allocations() - a0, ex_->codec->decode(x));
  };
  double secs = 0;
  run(S, nullptr);  // warm-up: the pool's buffers for this size
  auto [allocs_s, x] = run(S, &secs);
  const double allocs_2s = run(2 * S, nullptr).first;
  SampleResult r{n / secs, total_flops(sampling_gemms(width_, n)) * S / secs / 1e9, (allocs_2s - allocs_s) / double(S),
                 {}, {}};
  for (std::size_t d = 0; d < 2; ++d) {
    double s = 0.0, s2 = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += x(i, d), s2 += double(x(i, d)) * x(i, d);
    r.mean[d] = static_cast<float>(s / n);
    r.std[d] = static_cast<float>(std::sqrt(std::max(0.0, s2 / n - (s / n) * (s / n))));
  }
  return r;
}

}  // namespace bench

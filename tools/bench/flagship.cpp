#include "flagship.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include <diffusion/autodiff/autodiff.hpp>
#include <diffusion/run/data_parallel.hpp>
#include <diffusion/optim/optim.hpp>

#include "alloc_count.h"

using namespace diffusion;
using Clock = std::chrono::steady_clock;

namespace bench {
namespace {

constexpr std::size_t kT = 1000;       // DDPM timesteps
constexpr std::size_t kTembDim = 32;   // sinusoidal time embedding
constexpr std::size_t kDataSize = 20000;

std::vector<std::size_t> layer_widths(std::size_t width) {
  return {2 + kTembDim, width, width, width, 2};
}

double allocations() {
  return bench_alloc_count ? double(bench_alloc_count()) : std::nan("");
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

/// sklearn's make_moons(n, noise): two interleaved half circles plus N(0, noise^2) jitter,
/// standardised per coordinate; mean and std are returned for mapping samples back.
Tensor standardised_moons(Rng& rng, std::size_t n, float noise, float mu[2], float sd[2]) {
  const double pi = std::acos(-1.0);
  const std::size_t outer = n / 2, inner = n - outer;
  Tensor x = Tensor::from_shape({n, 2});
  for (std::size_t i = 0; i < n; ++i) {
    const bool out = i < outer;
    const std::size_t k = out ? i : i - outer, m = out ? outer : inner;
    const double a = pi * double(k) / double(std::max<std::size_t>(m - 1, 1));
    x(i, 0) = static_cast<float>(out ? std::cos(a) : 1.0 - std::cos(a)) + noise * rng.normal();
    x(i, 1) = static_cast<float>(out ? std::sin(a) : 0.5 - std::sin(a)) + noise * rng.normal();
  }
  for (std::size_t d = 0; d < 2; ++d) {
    double s = 0.0, s2 = 0.0;
    for (std::size_t i = 0; i < n; ++i) s += x(i, d), s2 += double(x(i, d)) * x(i, d);
    mu[d] = static_cast<float>(s / n);
    sd[d] = static_cast<float>(std::sqrt(s2 / n - (s / n) * (s / n)));
    for (std::size_t i = 0; i < n; ++i) x(i, d) = (x(i, d) - mu[d]) / sd[d];
  }
  return x;
}

/// abar_t = prod_{s <= t} (1 - beta_s), linear betas 1e-4..0.02.
std::vector<float> linear_abar() {
  std::vector<float> abar(kT);
  double prod = 1.0;
  for (std::size_t i = 0; i < kT; ++i) {
    prod *= 1.0 - (1e-4 + (0.02 - 1e-4) * double(i) / double(kT - 1));
    abar[i] = static_cast<float>(prod);
  }
  return abar;
}

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

Flagship::Denoiser::Denoiser(std::size_t width, Rng init)
    : temb(kTembDim), net(layer_widths(width), Activation::silu, init) {}

Var Flagship::Denoiser::operator()(const Var& x, const Tensor& t) const {
  return net.forward(concat({x, temb.forward(t)}, 1));
}

Flagship::Flagship(std::size_t width, std::uint64_t seed)
    : width_(width),
      root_(seed),
      abar_(linear_abar()),
      model_(width, root_.split("init")) {
  Rng data_rng = root_.split("data");
  data_ = standardised_moons(data_rng, kDataSize, 0.05f, mean_, std_);
}

TrainResult Flagship::train(std::size_t batch, std::size_t shards, long warmup, long min_steps,
                            double min_seconds) {
  const std::size_t B = batch;
  Rng rng = root_.split("train");
  const std::vector<Var> params = model_.net.parameters();
  Adam opt(params, AdamOptions{});
  ShardedStep step(params, shards);
  // The loss of one batch or shard: its own times and noise, x_t, MSE against eps.
  const auto loss = [this](const Tensor& x0, const std::vector<int>*, Rng& r) {
    const std::size_t n = x0.shape()[0];
    Tensor t = Tensor::from_shape({n}), eps = Tensor::from_shape({n, 2});
    Tensor sa = Tensor::from_shape({n, 1}), sb = Tensor::from_shape({n, 1});
    r.fill_integer(t, kT);
    r.fill_normal(eps);
    for (std::size_t i = 0; i < n; ++i) {
      const float ab = abar_[static_cast<std::size_t>(t(i))];
      sa(i, 0) = std::sqrt(ab), sb(i, 0) = std::sqrt(1.0f - ab);
    }
    const Var xt = Var(sa) * Var(x0) + Var(sb) * Var(eps);
    return mse_loss(model_(xt, t), Var(std::move(eps)));
  };
  // The bench's own buffer is made once, so the allocation count is the core's.
  Tensor x0 = Tensor::from_shape({B, 2});
  Phases ph;
  double loss_value = 0.0;
  Clock::time_point start;
  double allocs_at_start = 0.0;
  long timed = 0;
  for (long i = 0;; ++i) {
    if (i == warmup) ph = Phases{}, start = Clock::now(), allocs_at_start = allocations();
    if (i >= warmup) {
      if (timed >= min_steps && seconds(Clock::now() - start) >= min_seconds) break;
      ++timed;
    }
    const auto t0 = Clock::now();
    for (std::size_t j = 0; j < B; ++j) {
      const std::size_t r = rng.integer(data_.shape()[0]);
      x0(j, 0) = data_(r, 0), x0(j, 1) = data_(r, 1);
    }
    const auto t1 = Clock::now();
    loss_value = step.run(x0, nullptr, rng, loss);
    const auto t2 = Clock::now();
    opt.step();
    const auto t3 = Clock::now();
    ph.data += seconds(t1 - t0), ph.loss_backward += seconds(t2 - t1), ph.optim += seconds(t3 - t2);
  }
  const double secs = seconds(Clock::now() - start);
  const double allocs = allocations() - allocs_at_start;
  const double flops = total_flops(training_gemms(width_, B));
  return {timed,          secs, timed / secs, 1e6 * secs / timed, flops * timed / secs / 1e9,
          allocs / timed, static_cast<float>(loss_value), ph};
}

SampleResult Flagship::sample(std::size_t n, std::size_t S) {
  std::vector<std::size_t> ts(S);
  for (std::size_t i = 0; i < S; ++i)
    ts[i] = static_cast<std::size_t>(std::floor((kT - 1) * (1.0 - double(i) / double(S - 1))));
  Rng rng = root_.split("sampler");
  const auto start = Clock::now();
  NoGradScope no_grad;
  Tensor x = rng.normal({n, 2});
  Tensor t = Tensor::from_shape({n});
  double allocs_after_first = 0.0;
  for (std::size_t i = 0; i < S; ++i) {
    // The first step may set up buffers that later steps reuse; steady state is the rest.
    if (i == 1) allocs_after_first = allocations();
    std::fill(t.data(), t.data() + n, float(ts[i]));
    const float ab = abar_[ts[i]], ab_prev = i + 1 < S ? abar_[ts[i + 1]] : 1.0f;
    const Tensor e = model_(Var(x), t).value();
    const float a = std::sqrt(ab), s = std::sqrt(1.0f - ab);
    const float a_prev = std::sqrt(ab_prev), s_prev = std::sqrt(1.0f - ab_prev);
    float* px = x.data();
    const float* pe = e.data();
    for (std::size_t j = 0; j < 2 * n; ++j) px[j] = a_prev * ((px[j] - s * pe[j]) / a) + s_prev * pe[j];
  }
  const double allocs = allocations() - allocs_after_first;
  const double secs = seconds(Clock::now() - start);
  SampleResult r{n / secs, total_flops(sampling_gemms(width_, n)) * S / secs / 1e9,
                 allocs / double(S - 1), {}, {}};
  for (std::size_t d = 0; d < 2; ++d) {
    double s = 0.0, s2 = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double v = x(i, d) * std_[d] + mean_[d];
      s += v, s2 += v * v;
    }
    r.mean[d] = static_cast<float>(s / n);
    r.std[d] = static_cast<float>(std::sqrt(std::max(0.0, s2 / n - (s / n) * (s / n))));
  }
  return r;
}

}  // namespace bench

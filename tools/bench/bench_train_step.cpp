// bench_train_step: how fast the core trains and samples the flagship network.
//
//   bench_train_step [--steps 2000] [--warmup 200] [--batch 256] [--width 128] [--threads 1]
//                    [--n 2000] [--ddim-steps 50] [--seed 0] [--torch] [--torch-script PATH]
//
// The step is experiments/ddim_moons.yaml's, written out as /work/shared/bench/torch_ddim_moons.py
// writes it: x0 a batch of standardised two moons (noise 0.05), t ~ U{0..999}, eps ~ N(0, I),
// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (linear betas 1e-4..0.02), the MLP
// [x_t (2), sinusoidal embedding of t (32)] -> 3 x width SiLU -> 2, MSE against eps, then
// zero_grad, backward and an Adam step (lr 1e-3). After `warmup` untimed steps, `steps` steps are
// timed. Sampling: DDIM (eta 0) with `ddim-steps` steps for n points under a NoGradScope.
//
// GFLOP/s counts the matmuls only, 3 per layer per step (forward, dX, dW; 2 M K N flops each).
// This is the usual 6 * params * batch; the first layer's dX is never computed (its input needs no
// gradient), so the figure slightly overstates the work done.
//
// Prints one human-readable block and one JSON line. With --torch it also runs the PyTorch
// baseline with 1 and 2 threads (same steps, batch, width) and prints ours / torch.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <diffusion/autodiff.hpp>
#include <diffusion/nn.hpp>
#include <diffusion/optim.hpp>
#include <diffusion/random.hpp>

// OpenBLAS's thread control; weak, so the bench still links against another BLAS.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

using namespace diffusion;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kT = 1000;        // DDPM timesteps
constexpr std::size_t kTembDim = 32;    // sinusoidal time embedding
constexpr std::size_t kDataSize = 20000;

struct Options {
  long steps = 2000, warmup = 200, batch = 256, width = 128, threads = 1;
  long n = 2000, ddim_steps = 50;
  std::uint64_t seed = 0;
  bool torch = false;
  std::string torch_script = DIFFUSION_TORCH_BENCH;
};

const char* const kUsage =
    "usage: bench_train_step [--steps N] [--warmup N] [--batch N] [--width N] [--threads N]\n"
    "                        [--n N] [--ddim-steps N] [--seed S] [--torch] [--torch-script PATH]\n";

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "bench_train_step: %s\n%s", why.c_str(), kUsage);
  std::exit(2);
}

long integer(const std::string& flag, const char* text, long min) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v < min)
    usage(flag + " needs an integer >= " + std::to_string(min) + ", got '" + text + "'");
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") std::printf("%s", kUsage), std::exit(0);
    if (a == "--torch") { o.torch = true; continue; }
    if (i + 1 >= argc) usage("unknown option or missing value: " + a);
    const char* v = argv[++i];
    if (a == "--steps") o.steps = integer(a, v, 1);
    else if (a == "--warmup") o.warmup = integer(a, v, 0);
    else if (a == "--batch") o.batch = integer(a, v, 1);
    else if (a == "--width") o.width = integer(a, v, 1);
    else if (a == "--threads") o.threads = integer(a, v, 1);
    else if (a == "--n") o.n = integer(a, v, 1);
    else if (a == "--ddim-steps") o.ddim_steps = integer(a, v, 2);
    else if (a == "--seed") o.seed = static_cast<std::uint64_t>(integer(a, v, 0));
    else if (a == "--torch-script") o.torch_script = v;
    else usage("unknown option " + a);
  }
  return o;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

/// sklearn's make_moons(n, noise): two interleaved half circles plus N(0, noise^2) jitter,
/// standardised per coordinate; mean and std are returned for mapping samples back.
Tensor standardised_moons(Rng& rng, std::size_t n, float noise, float mu[2], float sd[2]) {
  const double pi = std::acos(-1.0);
  const std::size_t outer = n / 2, inner = n - outer;
  Tensor x = Tensor::from_shape({n, 2});
  for (std::size_t i = 0; i < n; ++i) {
    const bool out = i < outer;
    const std::size_t k = out ? i : i - outer, m = out ? outer : inner;
    const double a = pi * static_cast<double>(k) / static_cast<double>(std::max<std::size_t>(m - 1, 1));
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

/// The flagship denoiser: eps(x_t, t) = MLP([x_t, sinusoidal(t)]).
struct Denoiser {
  SinusoidalEmbedding temb;
  MLP net;
  Denoiser(std::size_t width, Rng& rng)
      : temb(kTembDim), net({2 + kTembDim, width, width, width, 2}, Activation::silu, rng) {}
  Var operator()(const Var& x, const Tensor& t) const {
    return net.forward(concat({x, temb.forward(t)}, 1));
  }
};

/// Wall-clock seconds per phase of the timed training steps.
struct Phases {
  double data = 0, forward = 0, backward = 0, optim = 0;
};

struct TrainResult {
  double steps_per_s, us_per_step, gflops, final_loss;
  Phases phases;  // seconds over the timed steps
};

TrainResult train(Denoiser& model, const Tensor& data, const std::vector<float>& abar,
                  const Options& o, Rng rng) {
  const std::size_t B = static_cast<std::size_t>(o.batch);
  Adam opt(model.net.parameters(), AdamOptions{});
  Tensor x0 = Tensor::from_shape({B, 2}), sa = Tensor::from_shape({B, 1}),
         sb = Tensor::from_shape({B, 1});
  Phases ph;
  float last_loss = 0.0f;
  Clock::time_point start;
  for (long step = 0; step < o.warmup + o.steps; ++step) {
    if (step == o.warmup) ph = Phases{}, start = Clock::now();
    auto t0 = Clock::now();
    for (std::size_t i = 0; i < B; ++i) {
      const std::size_t r = rng.integer(data.shape()[0]);
      x0(i, 0) = data(r, 0), x0(i, 1) = data(r, 1);
    }
    const Tensor t = rng.integer({B}, kT);
    const Tensor eps = rng.normal({B, 2});
    for (std::size_t i = 0; i < B; ++i) {
      const float ab = abar[static_cast<std::size_t>(t(i))];
      sa(i, 0) = std::sqrt(ab), sb(i, 0) = std::sqrt(1.0f - ab);
    }
    const Var xt = Var(sa) * Var(x0) + Var(sb) * Var(eps);
    auto t1 = Clock::now();
    Var loss = mse_loss(model(xt, t), Var(eps));
    auto t2 = Clock::now();
    opt.zero_grad();
    loss.backward();
    auto t3 = Clock::now();
    opt.step();
    auto t4 = Clock::now();
    last_loss = loss.item();
    using D = std::chrono::duration<double>;
    ph.data += D(t1 - t0).count(), ph.forward += D(t2 - t1).count();
    ph.backward += D(t3 - t2).count(), ph.optim += D(t4 - t3).count();
  }
  const double secs = seconds_since(start);
  double flops_per_step = 0.0;  // 3 matmuls of 2 M K N per layer
  for (const auto& layer : model.net.layers())
    flops_per_step += 3.0 * 2.0 * double(B) * layer->in_features() * layer->out_features();
  return {o.steps / secs, 1e6 * secs / o.steps, flops_per_step * o.steps / secs / 1e9, last_loss, ph};
}

struct SampleResult {
  double samples_per_s, gflops;
  float mean[2], sdev[2];  // in data coordinates, a sanity check against the baseline's
};

/// DDIM, eta = 0 (Song et al. 2021, eq. 12) on the grid floor(linspace(T-1, 0, steps)), the last
/// step going to clean data.
SampleResult sample(const Denoiser& model, const std::vector<float>& abar, const Options& o,
                    const float data_mean[2], const float data_std[2], Rng rng) {
  const std::size_t n = static_cast<std::size_t>(o.n), S = static_cast<std::size_t>(o.ddim_steps);
  std::vector<std::size_t> ts(S);
  for (std::size_t i = 0; i < S; ++i)
    ts[i] = static_cast<std::size_t>(std::floor((kT - 1) * (1.0 - double(i) / double(S - 1))));
  const auto start = Clock::now();
  NoGradScope no_grad;
  Tensor x = rng.normal({n, 2});
  for (std::size_t i = 0; i < S; ++i) {
    const float ab = abar[ts[i]], ab_prev = i + 1 < S ? abar[ts[i + 1]] : 1.0f;
    const Tensor e = model(Var(x), full({n}, float(ts[i]))).value();
    const float a = std::sqrt(ab), s = std::sqrt(1.0f - ab);
    const float a_prev = std::sqrt(ab_prev), s_prev = std::sqrt(1.0f - ab_prev);
    float* px = x.data();
    const float* pe = e.data();
    for (std::size_t j = 0; j < 2 * n; ++j) px[j] = a_prev * ((px[j] - s * pe[j]) / a) + s_prev * pe[j];
  }
  const double secs = seconds_since(start);
  double flops = 0.0;
  for (const auto& layer : model.net.layers())
    flops += 2.0 * double(n) * layer->in_features() * layer->out_features() * S;
  SampleResult r{n / secs, flops / secs / 1e9, {}, {}};
  for (std::size_t d = 0; d < 2; ++d) {
    double s = 0.0, s2 = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double v = x(i, d) * data_std[d] + data_mean[d];
      s += v, s2 += v * v;
    }
    r.mean[d] = static_cast<float>(s / n);
    r.sdev[d] = static_cast<float>(std::sqrt(std::max(0.0, s2 / n - (s / n) * (s / n))));
  }
  return r;
}

/// A number field of a flat JSON line ("key": value), NaN if absent.
double json_number(const std::string& line, const std::string& key) {
  const std::size_t at = line.find("\"" + key + "\":");
  if (at == std::string::npos) return std::nan("");
  return std::strtod(line.c_str() + at + key.size() + 3, nullptr);
}

struct TorchResult {
  int threads;
  double steps_per_s, samples_per_s;
};

/// Runs the PyTorch baseline; throws Error with its output if it fails or prints no JSON.
TorchResult run_torch(const Options& o, int threads) {
  std::ostringstream cmd;
  cmd << "/usr/bin/python3 '" << o.torch_script << "' --steps " << o.steps << " --batch " << o.batch
      << " --width " << o.width << " --n " << o.n << " --ddim-steps " << o.ddim_steps
      << " --seed " << o.seed << " --threads " << threads << " 2>&1";
  FILE* pipe = ::popen(cmd.str().c_str(), "r");
  if (!pipe) throw Error("cannot run " + cmd.str());
  std::string out, json;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe)) {
    out += buf;
    if (buf[0] == '{') json = buf;
  }
  const int status = ::pclose(pipe);
  if (status != 0 || json.empty())
    throw Error("the torch baseline failed (" + cmd.str() + "):\n" + out);
  return {threads, json_number(json, "steps_per_s"), json_number(json, "samples_per_s")};
}

int run(const Options& o) {
  if (openblas_set_num_threads)
    openblas_set_num_threads(static_cast<int>(o.threads));
  else if (o.threads != 1)
    std::fprintf(stderr, "bench_train_step: not OpenBLAS; --threads ignored\n");
  if (o.torch && std::system("/usr/bin/python3 -c 'import torch, sklearn' >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "bench_train_step: --torch needs /usr/bin/python3 with torch and sklearn "
                         "(Debian's python3-torch, python3-sklearn)\n");
    return 1;
  }

  Rng root(o.seed);
  Rng data_rng = root.split("data");
  float mu[2], sd[2];
  const Tensor data = standardised_moons(data_rng, kDataSize, 0.05f, mu, sd);
  std::vector<float> abar(kT);
  double prod = 1.0;  // linear betas 1e-4..0.02, cumulative product of (1 - beta)
  for (std::size_t i = 0; i < kT; ++i) {
    prod *= 1.0 - (1e-4 + (0.02 - 1e-4) * double(i) / double(kT - 1));
    abar[i] = static_cast<float>(prod);
  }
  Rng init_rng = root.split("init");
  Denoiser model(static_cast<std::size_t>(o.width), init_rng);

  const TrainResult tr = train(model, data, abar, o, root.split("train"));
  const SampleResult sr = sample(model, abar, o, mu, sd, root.split("sampler"));

  const Phases& p = tr.phases;
  const double us = 1e6 / o.steps;
  std::printf(
      "train: %.1f steps/s, %.1f us/step, %.2f GFLOP/s (batch %ld, width %ld, %ld threads, %ld "
      "steps after %ld warm-up; final loss %.4f)\n"
      "  per step: data+x_t %.1f us, forward+loss %.1f us, zero_grad+backward %.1f us, adam %.1f us\n"
      "sample: %.1f samples/s, %.2f GFLOP/s (DDIM-%ld, n %ld; mean [%.3f, %.3f], std [%.3f, %.3f])\n",
      tr.steps_per_s, tr.us_per_step, tr.gflops, o.batch, o.width, o.threads, o.steps, o.warmup,
      tr.final_loss, p.data * us, p.forward * us, p.backward * us, p.optim * us, sr.samples_per_s,
      sr.gflops, o.ddim_steps, o.n, sr.mean[0], sr.mean[1], sr.sdev[0], sr.sdev[1]);
  std::fflush(stdout);

  std::vector<TorchResult> torch;
  if (o.torch)
    for (int threads : {1, 2}) {
      torch.push_back(run_torch(o, threads));
      const TorchResult& t = torch.back();
      std::printf("torch (%d thread%s): %.1f steps/s, %.1f samples/s; ours/torch: train %.2fx, "
                  "sample %.2fx\n",
                  threads, threads == 1 ? "" : "s", t.steps_per_s, t.samples_per_s,
                  tr.steps_per_s / t.steps_per_s, sr.samples_per_s / t.samples_per_s);
      std::fflush(stdout);
    }

  std::ostringstream js;
  js.precision(6);
  js << "{\"impl\": \"diffusion-cpp\", \"threads\": " << o.threads << ", \"steps\": " << o.steps
     << ", \"batch\": " << o.batch << ", \"width\": " << o.width
     << ", \"steps_per_s\": " << tr.steps_per_s << ", \"us_per_step\": " << tr.us_per_step
     << ", \"train_gflops\": " << tr.gflops << ", \"phase_us\": {\"data\": " << p.data * us
     << ", \"forward\": " << p.forward * us << ", \"backward\": " << p.backward * us
     << ", \"adam\": " << p.optim * us << "}, \"final_loss\": " << tr.final_loss
     << ", \"ddim_steps\": " << o.ddim_steps << ", \"n\": " << o.n
     << ", \"samples_per_s\": " << sr.samples_per_s << ", \"sample_gflops\": " << sr.gflops
     << ", \"sample_mean\": [" << sr.mean[0] << ", " << sr.mean[1] << "], \"sample_std\": ["
     << sr.sdev[0] << ", " << sr.sdev[1] << "]";
  if (!torch.empty()) {
    js << ", \"torch\": [";
    for (std::size_t i = 0; i < torch.size(); ++i)
      js << (i ? ", " : "") << "{\"threads\": " << torch[i].threads
         << ", \"steps_per_s\": " << torch[i].steps_per_s
         << ", \"samples_per_s\": " << torch[i].samples_per_s
         << ", \"train_ratio\": " << tr.steps_per_s / torch[i].steps_per_s
         << ", \"sample_ratio\": " << sr.samples_per_s / torch[i].samples_per_s << "}";
    js << "]";
  }
  js << "}";
  std::printf("%s\n", js.str().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step: %s\n", e.what());
    return 1;
  }
}

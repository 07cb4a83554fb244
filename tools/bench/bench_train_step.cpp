// bench_train_step: how fast, and how lean, the core trains and samples the flagship network.
//
//   bench_train_step [--steps 2000] [--warmup 200] [--batch 256] [--shards 2] [--width 128]
//                    [--threads N] [--n 2000] [--ddim-steps 50] [--seed 0] [--torch]
//                    [--torch-script PATH]
//
// The workload is flagship.hpp's: experiments/ddim_moons.yaml composed with the plugins, trained
// by runexp's own step (EMA included) and sampled by runexp's own sampler call. Reported for our
// side:
// - training steps/s over `steps` timed steps after `warmup` untimed ones; DDIM samples/s for n
//   points;
// - GFLOP/s: the matmul flops of the step (flagship.hpp's training_gemms) per second;
// - peak memory (ru_maxrss after training and sampling);
// - heap allocations per training step and per DDIM step in steady state (alloc_count.c);
// - the same sgemm calls timed alone with OpenBLAS at 1 and 2 threads (sgemm_alone.hpp), and
//   which fraction of the best of the two the whole step reaches.
// --shards cuts each batch into shards run at once, as the flagship's `train.shards: 2` does
// (data_parallel.hpp); --shards 1 splits each product over the threads instead.
// --threads sets the core's threads (diffusion::set_num_threads; default its own default);
// OpenBLAS stays at one thread, as the core runs it.
//
// With --torch, the PyTorch baseline runs with 1 and 2 threads (same steps, batch, width, n and
// the flagship's EMA decay),
// each in its own Python process (its own peak memory); the 1-thread run also counts its
// allocations. Ratios are against the better of the two.
//
// Prints a human-readable block and one JSON line.
#include <algorithm>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <diffusion/tensor/parallel.hpp>

#include <diffusion/tensor/blas_kernels.hpp>

#include "cli.hpp"
#include "flagship.hpp"
#include "json.hpp"
#include "machine.hpp"
#include "sgemm_alone.hpp"
#include "torch_baseline.hpp"

using namespace bench;

namespace {

struct Options {
  long steps = 2000, warmup = 200, batch = 256, shards = 2, width = 128;
  long threads = 0;  // 0: the core's default
  long n = 2000, ddim_steps = 50;
  long seed = 0;
  bool torch = false;
  std::string torch_script = DIFFUSION_TORCH_BENCH;
};

const Cli cli{
    "bench_train_step",
    "usage: bench_train_step [--steps N] [--warmup N] [--batch N] [--shards N] [--width N]\n"
    "                        [--threads N] [--n N] [--ddim-steps N] [--seed S] [--torch]\n"
    "                        [--torch-script PATH]\n"};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") std::printf("%s", cli.usage), std::exit(0);
    if (a == "--torch") { o.torch = true; continue; }
    if (i + 1 >= argc) cli.fail("unknown option or missing value: " + a);
    const std::string v = argv[++i];
    if (a == "--steps") o.steps = cli.integer(a, v, 1);
    else if (a == "--warmup") o.warmup = cli.integer(a, v, 0);
    else if (a == "--batch") o.batch = cli.integer(a, v, 1);
    else if (a == "--shards") o.shards = cli.integer(a, v, 1);
    else if (a == "--width") o.width = cli.integer(a, v, 1);
    else if (a == "--threads") o.threads = cli.integer(a, v, 1);
    else if (a == "--n") o.n = cli.integer(a, v, 1);
    else if (a == "--ddim-steps") o.ddim_steps = cli.integer(a, v, 2);
    else if (a == "--seed") o.seed = cli.integer(a, v, 0);
    else if (a == "--torch-script") o.torch_script = v;
    else cli.fail("unknown option " + a);
  }
  return o;
}

/// The baseline with 1 and 2 threads, each in its own process.
std::vector<TorchRun> run_baseline(const Options& o, double ema) {
  std::vector<TorchRun> runs;
  for (int threads : {1, 2}) {
    std::ostringstream args;
    args << "--steps " << o.steps << " --batch " << o.batch << " --width " << o.width << " --n "
         << o.n << " --ddim-steps " << o.ddim_steps << " --seed " << o.seed << " --ema " << ema
         << " --threads " << threads;
    TorchOptions to;
    to.script = o.torch_script;
    to.count_allocs = threads == 1;  // allocation counts do not depend on timing
    runs.push_back(run_torch({args.str()}, to).front());
    const TorchRun& t = runs.back();
    std::printf("%s, %d thread%s: train %.1f steps/s, sample %.1f samples/s, peak RSS %.0f MiB",
                t.version.c_str(), threads, threads == 1 ? "" : "s", t.steps_per_s,
                t.samples_per_s, t.peak_rss_mb);
    if (to.count_allocs)
      std::printf(", %.0f heap allocations per training step, %.0f per DDIM step",
                  t.allocs_per_step, t.allocs_per_ddim_step);
    std::printf("\n");
    std::fflush(stdout);
  }
  return runs;
}

int run(const Options& o) {
  if (o.threads > 0) diffusion::set_num_threads(static_cast<int>(o.threads));
  set_blas_threads(1);
  const int threads = diffusion::num_threads();
  if (o.torch && !torch_available()) return 1;
  std::printf("machine: %s; load average %.2f at start\n", machine_description().c_str(),
              load_average());

  const std::size_t B = static_cast<std::size_t>(o.batch);
  if (o.batch % o.shards != 0) cli.fail("--shards must divide --batch");
  Flagship flagship(static_cast<std::size_t>(o.width), B, static_cast<std::size_t>(o.shards),
                    static_cast<std::uint64_t>(o.seed));
  const TrainResult tr = flagship.train(o.warmup, o.steps, 0.0);
  const SampleResult sr =
      flagship.sample(static_cast<std::size_t>(o.n), static_cast<std::size_t>(o.ddim_steps));
  const double peak_mb = peak_rss_mb();  // before the sgemm-alone buffers

  std::printf(
      "ours, %d thread%s: train %.1f steps/s, %.1f us/step, %.2f GFLOP/s (batch %ld in %ld "
      "shard%s, width %ld, EMA %g, %ld steps after %ld warm-up; final loss %.4f)\n"
      "  sample: %.1f samples/s, %.2f GFLOP/s (DDIM-%ld, n %ld; mean [%.3f, %.3f], std [%.3f, %.3f])\n"
      "  peak RSS %.1f MiB; %.1f heap allocations per training step, %.1f per DDIM step\n",
      threads, threads == 1 ? "" : "s", tr.steps_per_s, tr.us_per_step, tr.gflops, o.batch,
      o.shards, o.shards == 1 ? "" : "s", o.width, flagship.ema_decay(), tr.steps, o.warmup, tr.final_loss,
      sr.samples_per_s, sr.gflops, o.ddim_steps, o.n, sr.mean[0], sr.mean[1],
      sr.std[0], sr.std[1], peak_mb, tr.allocs_per_step, sr.allocs_per_step);

  std::vector<SgemmResult> sgemm;
  for (int t : {1, 2}) sgemm.push_back(time_sgemm_alone(training_gemms(o.width, B), t, 1.0));
  const SgemmResult best = *std::max_element(
      sgemm.begin(), sgemm.end(), [](auto& a, auto& b) { return a.gflops < b.gflops; });
  std::printf("  the step's sgemms alone: %.1f us = %.2f GFLOP/s (1 OpenBLAS thread), %.1f us = "
              "%.2f GFLOP/s (2); the whole step reaches %.0f%% of the best\n",
              sgemm[0].us_per_step, sgemm[0].gflops, sgemm[1].us_per_step, sgemm[1].gflops,
              100.0 * tr.gflops / best.gflops);
  std::fflush(stdout);

  std::vector<TorchRun> torch;
  if (o.torch) torch = run_baseline(o, flagship.ema_decay());
  const auto best_of = [&](double TorchRun::*field) {
    return *std::max_element(torch.begin(), torch.end(),
                             [&](auto& a, auto& b) { return a.*field < b.*field; });
  };
  if (!torch.empty()) {
    const TorchRun bt = best_of(&TorchRun::steps_per_s), bs = best_of(&TorchRun::samples_per_s);
    const double torch_peak = std::min(torch[0].peak_rss_mb, torch[1].peak_rss_mb);
    std::printf("ours / best torch: train %.2fx (torch %d thread%s), sample %.2fx (torch %d "
                "thread%s), peak RSS %.2fx (%.0f / %.0f MiB), heap allocations per training "
                "step %.1f / %.0f\n",
                tr.steps_per_s / bt.steps_per_s, bt.threads, bt.threads == 1 ? "" : "s",
                sr.samples_per_s / bs.samples_per_s, bs.threads, bs.threads == 1 ? "" : "s",
                peak_mb / torch_peak, peak_mb, torch_peak, tr.allocs_per_step,
                torch.front().allocs_per_step);
  }

  std::ostringstream js;
  js << "{\"impl\": \"diffusion-cpp\", \"threads\": " << threads << ", \"steps\": " << tr.steps
     << ", \"batch\": " << o.batch << ", \"shards\": " << o.shards << ", \"width\": " << o.width
     << ", \"steps_per_s\": " << json_number(tr.steps_per_s)
     << ", \"us_per_step\": " << json_number(tr.us_per_step)
     << ", \"train_gflops\": " << json_number(tr.gflops)
     << ", \"ema\": " << json_number(flagship.ema_decay())
     << ", \"final_loss\": " << json_number(tr.final_loss) << ", \"ddim_steps\": " << o.ddim_steps
     << ", \"n\": " << o.n << ", \"samples_per_s\": " << json_number(sr.samples_per_s)
     << ", \"sample_gflops\": " << json_number(sr.gflops) << ", \"sample_mean\": ["
     << json_number(sr.mean[0]) << ", " << json_number(sr.mean[1]) << "], \"sample_std\": ["
     << json_number(sr.std[0]) << ", " << json_number(sr.std[1])
     << "], \"peak_rss_mb\": " << json_number(peak_mb)
     << ", \"allocs_per_step\": " << json_number(tr.allocs_per_step)
     << ", \"allocs_per_ddim_step\": " << json_number(sr.allocs_per_step) << ", \"sgemm_alone\": [";
  for (std::size_t i = 0; i < sgemm.size(); ++i)
    js << (i ? ", " : "") << "{\"blas_threads\": " << sgemm[i].threads
       << ", \"us_per_step\": " << json_number(sgemm[i].us_per_step)
       << ", \"gflops\": " << json_number(sgemm[i].gflops) << "}";
  js << "], \"gemm_fraction\": " << json_number(tr.gflops / best.gflops);
  if (!torch.empty()) {
    js << ", \"torch\": [";
    for (std::size_t i = 0; i < torch.size(); ++i)
      js << (i ? ", " : "") << "{\"threads\": " << torch[i].threads
         << ", \"steps_per_s\": " << json_number(torch[i].steps_per_s)
         << ", \"samples_per_s\": " << json_number(torch[i].samples_per_s)
         << ", \"peak_rss_mb\": " << json_number(torch[i].peak_rss_mb)
         << ", \"allocs_per_step\": " << json_number(torch[i].allocs_per_step)
         << ", \"allocs_per_ddim_step\": " << json_number(torch[i].allocs_per_ddim_step)
         << ", \"train_ratio\": " << json_number(tr.steps_per_s / torch[i].steps_per_s)
         << ", \"sample_ratio\": " << json_number(sr.samples_per_s / torch[i].samples_per_s)
         << "}";
    js << "], \"torch_version\": \"" << torch.front().version << "\", \"train_ratio_best\": "
       << json_number(tr.steps_per_s / best_of(&TorchRun::steps_per_s).steps_per_s)
       << ", \"sample_ratio_best\": "
       << json_number(sr.samples_per_s / best_of(&TorchRun::samples_per_s).samples_per_s);
  }
  js << "}";
  std::printf("%s\n", js.str().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  diffusion::use_blas_kernels_for_this_cpu(argv);
  const Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step: %s\n", e.what());
    return 1;
  }
}

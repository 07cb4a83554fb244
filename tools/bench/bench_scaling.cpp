// bench_scaling: the flagship training step (flagship.hpp: the experiment's plugins, runexp's own
// step, EMA included, and the baseline with the same EMA) over widths and batch sizes, against
// PyTorch and against OpenBLAS's sgemm alone on the same products.
//
//   bench_scaling [--widths 64,128,256,512] [--batches 64,256,1024,4096] [--threads N]
//                 [--seconds 1] [--torch-seconds 1.5] [--no-torch] [--seed 0]
//                 [--torch-script PATH]
//
// For each (width, batch):
// - ours: timed training steps for at least --seconds after 5 warm-up steps, with the core at
//   --threads threads (default its own default) and OpenBLAS at one, as the core runs it;
// - sgemm alone: the step's cblas_sgemm calls (flagship.hpp's training_gemms: same shapes,
//   transposes and beta) back to back, with OpenBLAS at 1 and at 2 threads; the best is the
//   reference, and ours/sgemm is the fraction of it the whole step reaches;
// - torch: the baseline script at 1 and 2 threads, --steps chosen for about --torch-seconds of
//   training (one Python process per case); the better is kept.
// The three run back to back for each case, so that the ratios see the same machine load.
// GFLOP/s are the step's matmul flops per second, the same count for all three.
//
// Prints a Markdown table (as in README.md's Performance section) and one JSON line.
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
  std::vector<long> widths{64, 128, 256, 512}, batches{64, 256, 1024, 4096};
  long threads = 0;  // 0: the core's default
  double seconds = 1.0, torch_seconds = 1.5;
  bool torch = true;
  long seed = 0;
  std::string torch_script = DIFFUSION_TORCH_BENCH;
};

const Cli cli{
    "bench_scaling",
    "usage: bench_scaling [--widths W,W,..] [--batches B,B,..] [--threads N] [--seconds S]\n"
    "                     [--torch-seconds S] [--no-torch] [--seed S] [--torch-script PATH]\n"};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") std::printf("%s", cli.usage), std::exit(0);
    if (a == "--no-torch") { o.torch = false; continue; }
    if (i + 1 >= argc) cli.fail("unknown option or missing value: " + a);
    const std::string v = argv[++i];
    if (a == "--widths") o.widths = cli.integers(a, v, 1);
    else if (a == "--batches") o.batches = cli.integers(a, v, 1);
    else if (a == "--threads") o.threads = cli.integer(a, v, 1);
    else if (a == "--seconds") o.seconds = cli.number(a, v, 0.01);
    else if (a == "--torch-seconds") o.torch_seconds = cli.number(a, v, 0.01);
    else if (a == "--seed") o.seed = cli.integer(a, v, 0);
    else if (a == "--torch-script") o.torch_script = v;
    else cli.fail("unknown option " + a);
  }
  return o;
}

struct Case {
  long width, batch;
  double flops;           // matmul flops per step
  TrainResult ours;
  SgemmResult sgemm[2];   // OpenBLAS at 1 and 2 threads
  TorchRun torch;         // the better of 1 and 2 threads (when run)
  const SgemmResult& best_sgemm() const {
    return sgemm[0].gflops >= sgemm[1].gflops ? sgemm[0] : sgemm[1];
  }
};

/// The baseline for one case at 1 and 2 threads (one Python process); the faster of the two.
TorchRun run_baseline(long width, long batch, const Options& o, double ema) {
  std::vector<std::string> runs;
  for (int threads : {1, 2})
    runs.push_back("--batch " + std::to_string(batch) + " --width " + std::to_string(width) +
                   " --threads " + std::to_string(threads) + " --seed " + std::to_string(o.seed) +
                   " --ema " + std::to_string(ema) + " --n 64 --ddim-steps 2");  // sampling is not measured here
  TorchOptions to;
  to.script = o.torch_script;
  to.seconds = o.torch_seconds;
  const std::vector<TorchRun> r = run_torch(runs, to);
  return r[0].steps_per_s >= r[1].steps_per_s ? r[0] : r[1];
}

void print_table(const std::vector<Case>& cases, int threads, bool torch) {
  std::printf("\n| width | batch | ours steps/s | ours GFLOP/s |%s sgemm alone GFLOP/s, 1 / 2 "
              "threads | ours / sgemm |\n|---:|---:|---:|---:|%s---:|---:|\n",
              torch ? " torch steps/s | torch GFLOP/s | ours / torch |" : "",
              torch ? "---:|---:|---:|" : "");
  for (const Case& c : cases) {
    std::printf("| %ld | %ld | %.1f | %.2f |", c.width, c.batch, c.ours.steps_per_s, c.ours.gflops);
    if (torch)
      std::printf(" %.1f (%dt) | %.2f | %.2fx |", c.torch.steps_per_s, c.torch.threads,
                  c.flops * c.torch.steps_per_s / 1e9, c.ours.steps_per_s / c.torch.steps_per_s);
    std::printf(" %.2f / %.2f | %.0f%% |\n", c.sgemm[0].gflops, c.sgemm[1].gflops,
                100.0 * c.ours.gflops / c.best_sgemm().gflops);
  }
  std::printf("\nours: the core at %d thread%s, OpenBLAS at 1;%s ours / sgemm: against the "
              "better sgemm-alone figure\n",
              threads, threads == 1 ? "" : "s",
              torch ? " torch: the better of 1 and 2 threads (t);" : "");
  // The largest case, the one the acceptance criterion names (width 512, batch 4096).
  const Case& big = *std::max_element(cases.begin(), cases.end(),
                                      [](auto& a, auto& b) { return a.flops < b.flops; });
  std::printf("width %ld, batch %ld: the whole step runs at %.2f GFLOP/s, %.0f%% of the %.2f "
              "GFLOP/s of its sgemms alone (OpenBLAS at %d thread%s)\n",
              big.width, big.batch, big.ours.gflops, 100.0 * big.ours.gflops / big.best_sgemm().gflops,
              big.best_sgemm().gflops, big.best_sgemm().threads,
              big.best_sgemm().threads == 1 ? "" : "s");
}

int run(const Options& o) {
  if (o.threads > 0) diffusion::set_num_threads(static_cast<int>(o.threads));
  set_blas_threads(1);
  const int threads = diffusion::num_threads();
  if (o.torch && !torch_available()) return 1;
  std::printf("machine: %s; load average %.2f at start\n", machine_description().c_str(),
              load_average());

  std::vector<Case> cases;
  for (long width : o.widths)
    for (long batch : o.batches) {
      Case c{width, batch, total_flops(training_gemms(width, batch)), {}, {}, {}};
      Flagship flagship(static_cast<std::size_t>(width), static_cast<std::size_t>(batch), 1,
                        static_cast<std::uint64_t>(o.seed));
      c.ours = flagship.train(5, 3, o.seconds);
      for (int t : {1, 2})
        c.sgemm[t - 1] = time_sgemm_alone(training_gemms(width, batch), t, o.seconds / 2);
      if (o.torch) c.torch = run_baseline(width, batch, o, flagship.ema_decay());
      std::printf("width %4ld, batch %4ld: ours %8.1f steps/s %6.2f GFLOP/s; sgemm alone %6.2f / "
                  "%6.2f GFLOP/s (1 / 2 OpenBLAS threads)",
                  width, batch, c.ours.steps_per_s, c.ours.gflops, c.sgemm[0].gflops,
                  c.sgemm[1].gflops);
      if (o.torch) std::printf("; torch %8.1f steps/s", c.torch.steps_per_s);
      std::printf("\n");
      std::fflush(stdout);
      cases.push_back(c);
    }
  print_table(cases, threads, o.torch);

  std::ostringstream js;
  js << "{\"impl\": \"diffusion-cpp\", \"threads\": " << threads << ", \"cases\": [";
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    js << (i ? ", " : "") << "{\"width\": " << c.width << ", \"batch\": " << c.batch
       << ", \"gflop_per_step\": " << json_number(c.flops / 1e9)
       << ", \"steps_per_s\": " << json_number(c.ours.steps_per_s)
       << ", \"gflops\": " << json_number(c.ours.gflops)
       << ", \"sgemm_gflops\": [" << json_number(c.sgemm[0].gflops) << ", "
       << json_number(c.sgemm[1].gflops) << "], \"sgemm_fraction\": "
       << json_number(c.ours.gflops / c.best_sgemm().gflops);
    if (o.torch)
      js << ", \"torch_steps_per_s\": " << json_number(c.torch.steps_per_s)
         << ", \"torch_threads\": " << c.torch.threads
         << ", \"torch_ratio\": " << json_number(c.ours.steps_per_s / c.torch.steps_per_s);
    js << "}";
  }
  js << "]}";
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
    std::fprintf(stderr, "bench_scaling: %s\n", e.what());
    return 1;
  }
}

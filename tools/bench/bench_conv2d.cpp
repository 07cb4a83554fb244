// bench_conv2d: the core's conv2d (core/src/autodiff/ops_conv.cpp) forward + backward on one
// layer, against sgemm alone on the same flops (issue 16, acceptance 4: at least 60% at the
// U-Net's largest layer).
//
//   bench_conv2d [--batch 64] [--in 64] [--out 64] [--size 28] [--kernel 3] [--stride 1]
//                [--padding 1] [--groups 1] [--threads N] [--seconds 1] [--rounds 3]
//
// ours: conv2d forward, then backward to x, weight and bias, with the core at --threads threads
// (default its own default) and OpenBLAS at one, as the core runs it. Timed for --seconds after
// two untimed passes; forward alone is timed the same way.
// sgemm alone: the products conv2d issues for one image block and group (forward
// W cols, dW += dY cols^T, dcols = W^T dY, one image at a time), each image's three calls back
// to back over the whole batch, on one set of operands per shape, run three ways: OpenBLAS at 1
// thread, OpenBLAS at 2 threads, and two halves of the batch on the core's two threads with
// OpenBLAS at 1 (how the core itself shares out the images). The best is the reference.
// GFLOP/s count the three products' 3 x 2 N O (C / groups) k^2 Ho Wo flops for all.
// The measurements alternate for --rounds rounds so that ratios see the same machine load; the
// medians are reported. On a loaded machine wall-clock figures mostly measure the other load, so
// each is also given per CPU-second of this process (GFLOP per second of CPU time it got; the
// core's and OpenBLAS's idle threads spin for a while, which this counts against them).
//
// Prints a summary and one JSON line.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include <diffusion/autodiff/ops_image.hpp>
#include <diffusion/tensor/blas_kernels.hpp>
#include <diffusion/tensor/parallel.hpp>
#include <diffusion/tensor/random.hpp>

#include "cli.hpp"
#include "json.hpp"
#include "machine.hpp"
#include "sgemm_alone.hpp"

using namespace bench;
using diffusion::Tensor;
using diffusion::Var;

namespace {

struct Options {
  long batch = 64, in = 64, out = 64, size = 28, kernel = 3, stride = 1, padding = 1, groups = 1;
  long threads = 0;  // 0: the core's default
  double seconds = 1.0;
  long rounds = 3;
};

const Cli cli{
    "bench_conv2d",
    "usage: bench_conv2d [--batch N] [--in C] [--out O] [--size HW] [--kernel K] [--stride S]\n"
    "                    [--padding P] [--groups G] [--threads N] [--seconds S] [--rounds R]\n"};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") std::printf("%s", cli.usage), std::exit(0);
    if (i + 1 >= argc) cli.fail("unknown option or missing value: " + a);
    const std::string v = argv[++i];
    if (a == "--batch") o.batch = cli.integer(a, v, 1);
    else if (a == "--in") o.in = cli.integer(a, v, 1);
    else if (a == "--out") o.out = cli.integer(a, v, 1);
    else if (a == "--size") o.size = cli.integer(a, v, 1);
    else if (a == "--kernel") o.kernel = cli.integer(a, v, 1);
    else if (a == "--stride") o.stride = cli.integer(a, v, 1);
    else if (a == "--padding") o.padding = cli.integer(a, v, 0);
    else if (a == "--groups") o.groups = cli.integer(a, v, 1);
    else if (a == "--threads") o.threads = cli.integer(a, v, 1);
    else if (a == "--seconds") o.seconds = cli.number(a, v, 0.01);
    else if (a == "--rounds") o.rounds = cli.integer(a, v, 1);
    else cli.fail("unknown option " + a);
  }
  if (o.in % o.groups != 0 || o.out % o.groups != 0)
    cli.fail("--groups must divide --in and --out");
  if (o.size + 2 * o.padding < o.kernel) cli.fail("--kernel larger than the padded image");
  return o;
}

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

struct Timing {
  double wall, cpu;  // seconds per call: elapsed, and CPU time of the whole process
};

// Seconds per call of fn, timed for at least `seconds` after two untimed calls.
Timing seconds_per_call(const std::function<void()>& fn, double seconds) {
  fn();
  fn();
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const double cpu0 = cpu_seconds();
  long calls = 0;
  double secs = 0.0;
  do {
    fn();
    ++calls;
    secs = std::chrono::duration<double>(Clock::now() - start).count();
  } while (secs < seconds);
  return {secs / double(calls), (cpu_seconds() - cpu0) / double(calls)};
}

// GFLOP/s of `flops` per call: against the wall clock and per CPU-second.
struct Rate {
  double wall, cpu;
};
Rate rate(double flops, const Timing& t) { return {flops / t.wall / 1e9, flops / t.cpu / 1e9}; }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// The three products of one image and group, as ops_conv.cpp issues them, on their own
// operands: forward Y (og, P) = W (og, kg) cols (kg, P); dW (og, kg) += dY cols^T;
// dcols (kg, P) = W^T dY.
struct ImageGemms {
  int og, kg, pixels, groups;
  std::vector<float> w, cols, y, dw, dcols;
  ImageGemms(int og, int kg, int pixels, int groups)
      : og(og), kg(kg), pixels(pixels), groups(groups), w(std::size_t(og) * kg, 0.01f),
        cols(std::size_t(kg) * pixels, 0.02f), y(std::size_t(og) * pixels, 0.0f),
        dw(std::size_t(og) * kg, 0.0f), dcols(std::size_t(kg) * pixels, 0.0f) {}
  void run(long images) {
    for (long i = 0; i < images; ++i)
      for (int g = 0; g < groups; ++g) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, og, pixels, kg, 1.0f, w.data(), kg,
                    cols.data(), pixels, 0.0f, y.data(), pixels);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, og, kg, pixels, 1.0f, y.data(),
                    pixels, cols.data(), pixels, 1.0f, dw.data(), kg);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kg, pixels, og, 1.0f, w.data(), kg,
                    y.data(), pixels, 0.0f, dcols.data(), pixels);
      }
  }
};

int run(const Options& o) {
  if (o.threads > 0) diffusion::set_num_threads(static_cast<int>(o.threads));
  set_blas_threads(1);
  const int threads = diffusion::num_threads();
  const long ho = (o.size + 2 * o.padding - o.kernel) / o.stride + 1;
  const long pixels = ho * ho, cg = o.in / o.groups, og = o.out / o.groups;
  const long kg = cg * o.kernel * o.kernel;
  const double fwd_flops = 2.0 * double(o.batch) * double(o.out) * double(kg) * double(pixels);
  const double flops = 3.0 * fwd_flops;  // forward, dW, dX
  std::printf("machine: %s; load average %.2f at start\n", machine_description().c_str(),
              load_average());
  std::printf("conv2d: batch %ld, %ld -> %ld channels, %ldx%ld, kernel %ld, stride %ld, padding "
              "%ld, groups %ld: %.3f GFLOP forward + backward\n",
              o.batch, o.in, o.out, o.size, o.size, o.kernel, o.stride, o.padding, o.groups,
              flops / 1e9);

  diffusion::Rng rng(0);
  const std::size_t n = std::size_t(o.batch);
  Var x(rng.normal({n, std::size_t(o.in), std::size_t(o.size), std::size_t(o.size)}), true);
  Var w(rng.normal({std::size_t(o.out), std::size_t(cg), std::size_t(o.kernel),
                    std::size_t(o.kernel)}, 0.0f, 0.05f), true);
  Var b(rng.normal({std::size_t(o.out)}), true);
  const diffusion::Conv2dOptions opt{std::size_t(o.stride), std::size_t(o.padding),
                                     std::size_t(o.groups)};
  const Tensor seed = rng.normal({n, std::size_t(o.out), std::size_t(ho), std::size_t(ho)});
  const auto ours_both = [&] {
    x.zero_grad(), w.zero_grad(), b.zero_grad();
    diffusion::conv2d(x, w, b, opt).backward(seed);
  };
  const auto ours_forward = [&] { (void)diffusion::conv2d(x, w, b, opt); };

  ImageGemms one(int(og), int(kg), int(pixels), int(o.groups));
  ImageGemms halves[2] = {one, one};
  const auto blas_at = [&](int t) {
    return [&one, &o, t] {
      set_blas_threads(t);
      one.run(o.batch);
      set_blas_threads(1);
    };
  };
  const auto core_halves = [&] {  // images shared out over the core's threads, BLAS at 1
    diffusion::parallel_for(2, [&](std::size_t h) { halves[h].run((o.batch + long(1 - h)) / 2); });
  };

  // Per measurement, per round: wall-clock and per-CPU-second rates.
  enum { kBoth, kForward, kBlas1, kBlas2, kPool, kMeasures };
  std::vector<double> wall[kMeasures], cpu[kMeasures];
  const auto record = [&](int m, const Rate& r) {
    wall[m].push_back(r.wall);
    cpu[m].push_back(r.cpu);
  };
  for (long r = 0; r < o.rounds; ++r) {
    record(kBoth, rate(flops, seconds_per_call(ours_both, o.seconds)));
    record(kForward, rate(fwd_flops, seconds_per_call(ours_forward, o.seconds / 2)));
    record(kBlas1, rate(flops, seconds_per_call(blas_at(1), o.seconds / 2)));
    record(kBlas2, rate(flops, seconds_per_call(blas_at(2), o.seconds / 2)));
    record(kPool, rate(flops, seconds_per_call(core_halves, o.seconds / 2)));
    std::printf("round %ld: ours fwd+bwd %.2f GFLOP/s (fwd %.2f); sgemm alone %.2f / %.2f "
                "(OpenBLAS 1 / 2 threads), %.2f (2 halves on the core's threads)\n",
                r + 1, wall[kBoth].back(), wall[kForward].back(), wall[kBlas1].back(),
                wall[kBlas2].back(), wall[kPool].back());
    std::fflush(stdout);
  }
  double med[kMeasures], med_cpu[kMeasures];
  for (int m = 0; m < kMeasures; ++m) med[m] = median(wall[m]), med_cpu[m] = median(cpu[m]);
  const double best = std::max({med[kBlas1], med[kBlas2], med[kPool]});
  const double best_cpu = std::max({med_cpu[kBlas1], med_cpu[kBlas2], med_cpu[kPool]});
  std::printf("\nmedians over %ld rounds, core at %d thread%s (GFLOP/s; per CPU-second in "
              "brackets):\n", o.rounds, threads, threads == 1 ? "" : "s");
  std::printf("  ours: forward + backward %.2f [%.2f] (%.1f ms per pass), forward alone %.2f "
              "[%.2f]\n", med[kBoth], med_cpu[kBoth], 1e3 * flops / (med[kBoth] * 1e9), med[kForward],
              med_cpu[kForward]);
  std::printf("  sgemm alone, same products: %.2f [%.2f] (OpenBLAS 1 thread), %.2f [%.2f] "
              "(OpenBLAS 2 threads), %.2f [%.2f] (core's threads)\n", med[kBlas1], med_cpu[kBlas1],
              med[kBlas2], med_cpu[kBlas2], med[kPool], med_cpu[kPool]);
  std::printf("  ours / best sgemm alone: %.0f%% [%.0f%% per CPU-second]\n",
              100.0 * med[kBoth] / best, 100.0 * med_cpu[kBoth] / best_cpu);
  std::printf("load average %.2f at end; peak RSS %.0f MiB\n", load_average(), peak_rss_mb());
  std::printf("{\"impl\": \"diffusion-cpp\", \"bench\": \"conv2d\", \"threads\": %d, \"batch\": "
              "%ld, \"in\": %ld, \"out\": %ld, \"size\": %ld, \"kernel\": %ld, \"stride\": %ld, "
              "\"padding\": %ld, \"groups\": %ld, \"gflop\": %s, \"gflops\": %s, "
              "\"forward_gflops\": %s, \"sgemm_gflops\": {\"blas1\": %s, \"blas2\": %s, "
              "\"core\": %s}, \"sgemm_fraction\": %s, \"sgemm_fraction_cpu\": %s}\n",
              threads, o.batch, o.in, o.out, o.size, o.kernel, o.stride, o.padding, o.groups,
              json_number(flops / 1e9).c_str(), json_number(med[kBoth]).c_str(),
              json_number(med[kForward]).c_str(), json_number(med[kBlas1]).c_str(),
              json_number(med[kBlas2]).c_str(), json_number(med[kPool]).c_str(),
              json_number(med[kBoth] / best).c_str(), json_number(med_cpu[kBoth] / best_cpu).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  diffusion::use_blas_kernels_for_this_cpu(argv);
  const Options o = parse(argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_conv2d: %s\n", e.what());
    return 1;
  }
}

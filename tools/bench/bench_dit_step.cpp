// bench_dit_step: how fast the core trains a DiT (plugins/dit) on 28x28 images, against PyTorch.
//
//   bench_dit_step [--steps 30] [--warmup 5] [--batch 64] [--patch 4] [--hidden 128] [--depth 4]
//                  [--heads 4] [--shards 2] [--seed 0] [--torch]
//
// Our step is runexp's own (TrainLoop::step): a batch of Fashion-MNIST (/usr/share/datasets/
// fashion-mnist, Debian's dataset-fashion-mnist; identity codec), labels dropped to the null label
// with p 0.1, DDPM's eps loss (T = 1000 linear betas, t uniform), backward, Adam (lr 1e-4), no
// EMA; the network a class-conditional DiT (mlp_ratio 4, 256 time frequencies). It is timed with
// the core at 1 and at 2 threads, the batch in 2 shards as experiments/dit_fashion_mnist.yaml runs
// it (train.shards; --shards 1 splits each product over the threads instead).
// With --torch, torch_dit_step.py times the same step on the same architecture
// (tools/baselines/dit_reference.py) at 1 and 2 threads, each in its own process.
//
// Prints a human-readable block and one JSON line.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/run/experiment.hpp>
#include <diffusion/run/train_loop.hpp>
#include <diffusion/tensor/blas_kernels.hpp>
#include <diffusion/tensor/parallel.hpp>

#include "cli.hpp"
#include "json.hpp"
#include "machine.hpp"
#include "sgemm_alone.hpp"

using namespace bench;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  long steps = 30, warmup = 5, batch = 64, patch = 4, hidden = 128, depth = 4, heads = 4, seed = 0;
  long shards = 2;  // experiments/dit_fashion_mnist.yaml's train.shards
  bool torch = false;
};

const Cli cli{"bench_dit_step",
              "usage: bench_dit_step [--steps N] [--warmup N] [--batch N] [--patch N] [--hidden N]\n"
              "                      [--depth N] [--heads N] [--shards N] [--seed S] [--torch]\n"};

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
    else if (a == "--patch") o.patch = cli.integer(a, v, 1);
    else if (a == "--hidden") o.hidden = cli.integer(a, v, 4);
    else if (a == "--depth") o.depth = cli.integer(a, v, 1);
    else if (a == "--heads") o.heads = cli.integer(a, v, 1);
    else if (a == "--shards") o.shards = cli.integer(a, v, 1);
    else if (a == "--seed") o.seed = cli.integer(a, v, 0);
    else cli.fail("unknown option " + a);
  }
  return o;
}

std::string experiment_yaml(const Options& o) {
  std::ostringstream y;
  y << "name: bench_dit\nseed: " << o.seed << "\n"
    << "dataset: {type: fashion_mnist}\ncodec: {type: identity}\n"
    << "network: {type: dit, hidden: " << o.hidden << ", depth: " << o.depth << ", heads: " << o.heads
    << ", patch: " << o.patch << ", class_conditional: true}\n"
    << "sde: {type: ddpm, timesteps: 1000, schedule: linear, beta_start: 1.0e-4, beta_end: 0.02}\n"
    << "loss: {type: eps_mse}\n"
    << "train: {steps: " << o.warmup + o.steps << ", batch_size: " << o.batch << ", shards: " << o.shards
    << ", label_dropout: 0.1, optimizer: {type: adam, lr: 1.0e-4}}\n"
    << "sampler: {type: ddim, steps: 10, n: 16}\nmetrics: []\n";
  return y.str();
}

struct Timed {
  int threads;
  double steps_per_s, final_loss;
  std::size_t parameters;
  double peak_rss_mb;  // ours: this process's peak so far; PyTorch's: its process's
};

Timed time_ours(const Options& o, int threads) {
  diffusion::set_num_threads(threads);
  diffusion::Experiment ex = diffusion::compose_experiment(diffusion::Config::load_string(experiment_yaml(o), "bench_dit.yaml"));
  diffusion::TrainLoop loop(ex, diffusion::Rng(ex.seed));
  double loss = 0;
  for (long i = 0; i < o.warmup; ++i) loss = loop.step();
  const auto start = Clock::now();
  for (long i = 0; i < o.steps; ++i) loss = loop.step();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  return {threads, double(o.steps) / secs, loss, ex.network().num_parameters(), peak_rss_mb()};
}

/// torch_dit_step.py in its own process; NaN steps/s when it fails.
Timed time_torch(const Options& o, int threads) {
  std::ostringstream cmd;
  cmd << "/usr/bin/python3 '" << DIFFUSION_DIT_TORCH_SCRIPT << "' --steps " << o.steps << " --warmup " << o.warmup
      << " --batch " << o.batch << " --patch " << o.patch << " --hidden " << o.hidden << " --depth " << o.depth
      << " --heads " << o.heads << " --seed " << o.seed << " --threads " << threads << " 2>&1";
  const ScriptOutput out = run_script(cmd.str());
  if (!out.ok) {
    std::fprintf(stderr, "bench_dit_step: the PyTorch baseline failed (%s):\n%s", cmd.str().c_str(), out.text.c_str());
    return {threads, std::nan(""), std::nan(""), 0, std::nan("")};
  }
  return {threads, json_field_number(out.json, "steps_per_s"), json_field_number(out.json, "final_loss"),
          std::size_t(json_field_number(out.json, "parameters")), json_field_number(out.json, "peak_rss_mb")};
}

}  // namespace

int main(int argc, char** argv) {
  diffusion::use_blas_kernels_for_this_cpu(argv);
  const Options o = parse(argc, argv);
  try {
    set_blas_threads(1);  // as runexp runs OpenBLAS
    diffusion::load_plugin_dir(diffusion::default_plugin_dir());
    std::printf("machine: %s; load average %.2f at start\n", machine_description().c_str(), load_average());
    std::printf("DiT on 28x28x1: batch %ld in %ld shard%s, patch %ld (%ld tokens), hidden %ld, depth %ld, heads %ld; "
                "%ld steps after %ld warm-up\n",
                o.batch, o.shards, o.shards == 1 ? "" : "s", o.patch, (28 / o.patch) * (28 / o.patch), o.hidden, o.depth, o.heads, o.steps, o.warmup);
    std::vector<Timed> ours, torch;
    for (int t : {1, 2}) {
      ours.push_back(time_ours(o, t));
      std::printf("ours,  %d thread%s: %.2f steps/s (%zu parameters, final loss %.4f), peak RSS %.0f MiB\n", t,
                  t == 1 ? " " : "s", ours.back().steps_per_s, ours.back().parameters, ours.back().final_loss,
                  ours.back().peak_rss_mb);
      std::fflush(stdout);
    }
    if (o.torch)
      for (int t : {1, 2}) {
        torch.push_back(time_torch(o, t));
        std::printf("torch, %d thread%s: %.2f steps/s (%zu parameters, final loss %.4f), peak RSS %.0f MiB\n", t,
                    t == 1 ? " " : "s", torch.back().steps_per_s, torch.back().parameters, torch.back().final_loss,
                    torch.back().peak_rss_mb);
        std::fflush(stdout);
      }
    std::ostringstream js;
    js << "{\"impl\": \"diffusion-cpp\", \"bench\": \"dit_step\", \"batch\": " << o.batch << ", \"shards\": " << o.shards << ", \"patch\": " << o.patch
       << ", \"hidden\": " << o.hidden << ", \"depth\": " << o.depth << ", \"heads\": " << o.heads
       << ", \"steps\": " << o.steps << ", \"parameters\": " << ours.front().parameters << ", \"ours\": [";
    for (std::size_t i = 0; i < ours.size(); ++i)
      js << (i ? ", " : "") << "{\"threads\": " << ours[i].threads << ", \"steps_per_s\": " << json_number(ours[i].steps_per_s)
         << ", \"peak_rss_mb\": " << json_number(ours[i].peak_rss_mb) << "}";
    js << "], \"torch\": [";
    for (std::size_t i = 0; i < torch.size(); ++i)
      js << (i ? ", " : "") << "{\"threads\": " << torch[i].threads << ", \"steps_per_s\": " << json_number(torch[i].steps_per_s)
         << ", \"peak_rss_mb\": " << json_number(torch[i].peak_rss_mb) << "}";
    js << "], \"load_average_end\": " << json_number(load_average()) << "}";
    std::printf("%s\n", js.str().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_dit_step: %s\n", e.what());
    return 1;
  }
}

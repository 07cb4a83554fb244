// bench_unet_step: one training step of plugins/unet's U-Net on images, against the same step in
// PyTorch (torch_unet_step.py, at 1 and 2 threads).
//
//   bench_unet_step [--batch 64] [--steps 5] [--warmup 1] [--threads N] [--shards 2] [--channels 32] [--groups 8]
//                   [--torch]
//
// Our step is runexp's own (TrainLoop::step): a batch of Fashion-MNIST (/usr/share/datasets/
// fashion-mnist, Debian's dataset-fashion-mnist; identity codec), DDPM's eps loss (T = 1000 linear
// betas, t uniform), backward, Adam (lr 2e-4), no EMA, the batch in 2 shards as the experiment runs it
// (train.shards; --shards 1 splits each product over the threads instead). The network is
// experiments/ddim_fashion_mnist.yaml's U-Net (28x28x1): channels 32, channel_mult [1, 2, 2] (28,
// 14, 7), 2 residual blocks per level, attention at 7x7 (and in the middle) with 4 heads, 8
// groups, dropout 0.1 (1.74 M parameters); --channels 64 --groups 32 gives the 4x wider one of
// Ho et al.'s proportions (6.9 M). --threads sets the core's threads (default its own default);
// OpenBLAS runs at one, as runexp runs it. torch_unet_step.py times the same step on the same
// architecture (tools/baselines/unet_reference.py) at 1 and 2 threads.
//
// Prints a summary and one JSON line.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
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
using namespace diffusion;

namespace {

/// The network with `channels` and `groups` (the rest as experiments/ddim_fashion_mnist.yaml).
std::string unet_network(long channels, long groups) {
  return "{type: unet, channels: " + std::to_string(channels) +
         ", channel_mult: [1, 2, 2], num_res_blocks: 2, attention_resolutions: [7], heads: 4, groups: " +
         std::to_string(groups) + ", dropout: 0.1}";
}

struct Options {
  long batch = 64, steps = 5, warmup = 1;
  long channels = 32, groups = 8;
  long threads = 0;  // 0: the core's default
  long shards = 2;   // experiments/ddim_fashion_mnist.yaml's train.shards
  bool torch = false;
};

const Cli cli{"bench_unet_step",
              "usage: bench_unet_step [--batch N] [--steps N] [--warmup N] [--threads N] [--shards N] [--channels N] [--groups N]\n"
              "                       [--torch]\n"};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") std::printf("%s", cli.usage), std::exit(0);
    if (a == "--torch") { o.torch = true; continue; }
    if (i + 1 >= argc) cli.fail("unknown option or missing value: " + a);
    const std::string v = argv[++i];
    if (a == "--batch") o.batch = cli.integer(a, v, 1);
    else if (a == "--steps") o.steps = cli.integer(a, v, 1);
    else if (a == "--warmup") o.warmup = cli.integer(a, v, 0);
    else if (a == "--threads") o.threads = cli.integer(a, v, 1);
    else if (a == "--shards") o.shards = cli.integer(a, v, 1);
    else if (a == "--channels") o.channels = cli.integer(a, v, 1);
    else if (a == "--groups") o.groups = cli.integer(a, v, 1);
    else cli.fail("unknown option " + a);
  }
  return o;
}

/// One run of the baseline: seconds per step and its peak RSS in MiB (NaN if it fails).
struct TorchStep {
  double s_per_step, peak_rss_mb;
};

TorchStep torch_step(const Options& o, int threads) {
  std::ostringstream cmd;
  cmd << "/usr/bin/python3 '" DIFFUSION_UNET_TORCH_SCRIPT "' --batch " << o.batch << " --size 28"
      << " --channels " << o.channels << " --groups " << o.groups << " --steps " << o.steps << " --warmup " << o.warmup
      << " --threads " << threads << " 2>&1";
  const ScriptOutput out = run_script(cmd.str());
  if (!out.ok) {
    std::fprintf(stderr, "the PyTorch baseline failed (%s):\n%s", cmd.str().c_str(), out.text.c_str());
    return {std::nan(""), std::nan("")};
  }
  return {json_field_number(out.json, "s_per_step"), json_field_number(out.json, "peak_rss_mb")};
}

}  // namespace

int main(int argc, char** argv) {
  use_blas_kernels_for_this_cpu(argv);
  const Options o = parse(argc, argv);
  if (o.threads > 0) set_num_threads(static_cast<int>(o.threads));
  set_blas_threads(1);  // as runexp runs OpenBLAS
  load_plugin_dir(default_plugin_dir());

  const std::string yaml = std::string("name: bench_unet\nseed: 0\ndataset: {type: fashion_mnist}\ncodec: {type: identity}\n") +
                           "network: " + unet_network(o.channels, o.groups) + "\n" +
                           "sde: {type: ddpm, timesteps: 1000, schedule: linear, beta_start: 1.0e-4, beta_end: 0.02}\n"
                           "loss: {type: eps_mse}\n"
                           "train: {steps: " + std::to_string(o.warmup + o.steps) + ", batch_size: " +
                           std::to_string(o.batch) + ", shards: " + std::to_string(o.shards) +
                           ", optimizer: {type: adam, lr: 2.0e-4}}\n"
                           "sampler: {type: ddim, steps: 10, n: 16}\nmetrics: []\n";
  Experiment ex = compose_experiment(Config::load_string(yaml, "bench_unet.yaml"));
  TrainLoop loop(ex, Rng(ex.seed));
  for (long i = 0; i < o.warmup; ++i) loop.step();
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < o.steps; ++i) loop.step();
  const double ours = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / double(o.steps);
  const Network* net = &ex.network();

  std::printf("machine: %s, load %.2f\n", machine_description().c_str(), load_average());
  const double rss = peak_rss_mb();
  std::printf("unet (%zu parameters), batch %ld in %ld shard%s, 28x28x1, core threads %d: %.3f s per training step, "
              "peak RSS %.0f MiB\n",
              net->num_parameters(), o.batch, o.shards, o.shards == 1 ? "" : "s", num_threads(), ours, rss);
  TorchStep torch1{std::nan(""), std::nan("")}, torch2 = torch1;
  if (o.torch) {
    torch1 = torch_step(o, 1);
    std::printf("pytorch, 1 thread: %.3f s per step (ours %.2fx its speed), peak RSS %.0f MiB\n", torch1.s_per_step,
                torch1.s_per_step / ours, torch1.peak_rss_mb);
    torch2 = torch_step(o, 2);
    std::printf("pytorch, 2 threads: %.3f s per step (ours %.2fx its speed), peak RSS %.0f MiB\n", torch2.s_per_step,
                torch2.s_per_step / ours, torch2.peak_rss_mb);
  }
  std::printf("{\"bench\": \"unet_step\", \"params\": %zu, \"batch\": %ld, \"shards\": %ld, \"size\": %ld, "
              "\"threads\": %d, \"s_per_step\": %s, \"torch_1_s_per_step\": %s, \"torch_2_s_per_step\": %s, "
              "\"peak_rss_mb\": %s, \"torch_1_peak_rss_mb\": %s, \"torch_2_peak_rss_mb\": %s, \"load\": %s}\n",
              net->num_parameters(), o.batch, o.shards, 28L, num_threads(), json_number(ours).c_str(),
              json_number(torch1.s_per_step).c_str(), json_number(torch2.s_per_step).c_str(), json_number(rss).c_str(),
              json_number(torch1.peak_rss_mb).c_str(), json_number(torch2.peak_rss_mb).c_str(),
              json_number(load_average()).c_str());
  return 0;
}

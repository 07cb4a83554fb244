// bench_unet_step: one training step of plugins/unet's U-Net on images, against the same step in
// PyTorch (torch_unet_step.py, at 1 and 2 threads).
//
//   bench_unet_step [--batch 64] [--size 28] [--steps 5] [--warmup 1] [--threads N] [--torch]
//
// The network is the U-Net meant for DDIM on Fashion-MNIST (28x28x1): channels 64,
// channel_mult [1, 2, 2] (28, 14, 7), 2 residual blocks per level, attention at 7x7 (and in the
// middle) with 4 heads, 32 groups, dropout 0.1 (about 6.9 M parameters). The step: DDPM's
// x_t = sqrt(abar) x0 + sqrt(1 - abar) eps at random steps of the linear schedule (1000 steps),
// eps-prediction MSE, backward, Adam; timed over --steps steps after --warmup untimed ones.
// --threads sets the core's threads (default its own default); OpenBLAS runs at one, as the
// core runs it. The whole batch is one shard (no train.shards).
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
#include <diffusion/optim/optim.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/tensor/blas_kernels.hpp>
#include <diffusion/tensor/parallel.hpp>

#include "cli.hpp"
#include "json.hpp"
#include "machine.hpp"

using namespace bench;
using namespace diffusion;

namespace {

const char* const kNetwork =
    "{type: unet, channels: 64, channel_mult: [1, 2, 2], num_res_blocks: 2, attention_resolutions: [7], "
    "heads: 4, groups: 32, dropout: 0.1}";

struct Options {
  long batch = 64, size = 28, steps = 5, warmup = 1;
  long threads = 0;  // 0: the core's default
  bool torch = false;
};

const Cli cli{"bench_unet_step",
              "usage: bench_unet_step [--batch N] [--size HW] [--steps N] [--warmup N] [--threads N] [--torch]\n"};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") std::printf("%s", cli.usage), std::exit(0);
    if (a == "--torch") { o.torch = true; continue; }
    if (i + 1 >= argc) cli.fail("unknown option or missing value: " + a);
    const std::string v = argv[++i];
    if (a == "--batch") o.batch = cli.integer(a, v, 1);
    else if (a == "--size") o.size = cli.integer(a, v, 4);
    else if (a == "--steps") o.steps = cli.integer(a, v, 1);
    else if (a == "--warmup") o.warmup = cli.integer(a, v, 0);
    else if (a == "--threads") o.threads = cli.integer(a, v, 1);
    else cli.fail("unknown option " + a);
  }
  if (o.size % 4 != 0) cli.fail("--size must be divisible by 4 (channel_mult [1, 2, 2])");
  return o;
}

/// The baseline's seconds per step at `threads` threads (NaN if it fails).
double torch_seconds_per_step(const Options& o, int threads) {
  std::ostringstream cmd;
  cmd << "/usr/bin/python3 '" DIFFUSION_UNET_TORCH_SCRIPT "' --batch " << o.batch << " --size " << o.size
      << " --steps " << o.steps << " --warmup " << o.warmup << " --threads " << threads << " 2>&1";
  FILE* pipe = ::popen(cmd.str().c_str(), "r");
  if (!pipe) return std::nan("");
  std::string out, json;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe)) {
    out += buf;
    if (buf[0] == '{') json = buf;
  }
  const std::size_t at = json.find("\"s_per_step\": ");
  if (::pclose(pipe) != 0 || at == std::string::npos) {
    std::fprintf(stderr, "the PyTorch baseline failed (%s):\n%s", cmd.str().c_str(), out.c_str());
    return std::nan("");
  }
  return std::strtod(json.c_str() + at + 14, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  use_blas_kernels_for_this_cpu(argv);
  const Options o = parse(argc, argv);
  if (o.threads > 0) set_num_threads(static_cast<int>(o.threads));
  load_plugin(default_plugin_dir() + "/libdiffusion_unet.so");

  Rng rng(0);
  Rng init = rng.split("init");
  const std::size_t n = std::size_t(o.batch), hw = std::size_t(o.size);
  BuildContext ctx{{1, hw, hw}, 0, &init};
  auto net = registries().networks.create(Config::load_string(kNetwork).root(), ctx);
  Adam adam(net->trainable_parameters(), AdamOptions{2e-4});

  // DDPM's linear schedule (Ho et al. 2020): abar_t = prod (1 - beta_s).
  std::vector<double> abar(1000);
  for (std::size_t t = 0; t < abar.size(); ++t)
    abar[t] = (t ? abar[t - 1] : 1.0) * (1.0 - (1e-4 + (0.02 - 1e-4) * double(t) / 999.0));
  const Tensor x0 = rng.normal({n, 1, hw, hw});
  const std::size_t per = hw * hw;

  const auto step = [&] {
    Tensor t = Tensor::from_shape({n});
    const Tensor eps = rng.normal({n, 1, hw, hw});
    Tensor xt = Tensor::from_shape({n, 1, hw, hw});
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t s = std::size_t(rng.integer(1000));
      t.data()[i] = float(s);
      const float a = float(std::sqrt(abar[s])), b = float(std::sqrt(1.0 - abar[s]));
      for (std::size_t j = i * per; j < (i + 1) * per; ++j) xt.data()[j] = a * x0.data()[j] + b * eps.data()[j];
    }
    const Var loss = mse_loss(net->forward(Var(std::move(xt)), t, Condition()), Var(eps));
    adam.zero_grad();
    loss.backward();
    adam.step();
  };

  for (long i = 0; i < o.warmup; ++i) step();
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < o.steps; ++i) step();
  const double ours = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / double(o.steps);

  std::printf("machine: %s, load %.2f\n", machine_description().c_str(), load_average());
  std::printf("unet (%zu parameters), batch %ld, %ldx%ldx1, core threads %d: %.3f s per training step\n",
              net->num_parameters(), o.batch, o.size, o.size, num_threads(), ours);
  double torch1 = std::nan(""), torch2 = std::nan("");
  if (o.torch) {
    torch1 = torch_seconds_per_step(o, 1);
    std::printf("pytorch, 1 thread: %.3f s per step (ours %.2fx its speed)\n", torch1, torch1 / ours);
    torch2 = torch_seconds_per_step(o, 2);
    std::printf("pytorch, 2 threads: %.3f s per step (ours %.2fx its speed)\n", torch2, torch2 / ours);
  }
  std::printf("{\"bench\": \"unet_step\", \"params\": %zu, \"batch\": %ld, \"size\": %ld, \"threads\": %d, "
              "\"s_per_step\": %s, \"torch_1_s_per_step\": %s, \"torch_2_s_per_step\": %s, \"peak_rss_mb\": %s, "
              "\"load\": %s}\n",
              net->num_parameters(), o.batch, o.size, num_threads(), json_number(ours).c_str(),
              json_number(torch1).c_str(), json_number(torch2).c_str(), json_number(peak_rss_mb()).c_str(),
              json_number(load_average()).c_str());
  return 0;
}

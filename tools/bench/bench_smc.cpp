// bench_smc: the cost of SMC (plugins/smc's `smc` sampler) against the plain sampler on the same
// number of samples, on runexp's code path (acceptance 6 of the guided-sampling issue: SMC with
// N particles at most 1.2x the plain sampler on N samples).
//
//   bench_smc [--yaml experiments/smc_moons.yaml] [--steps 300] [--n 2000] [--sampler-steps 0]
//             [--repeats 7] [--seed 0] [--threads N] [--proposal model|twisted]
//
// The experiment file is composed with the plugins, its model trained for `steps` steps through
// TrainLoop::step (the timing does not depend on how well it is trained), then its first `smc`
// sampler and its first `ancestral` sampler (the same reverse kernel without weights; the file's
// step counts must agree) run through run_sampler on the weights runexp samples, each from
// runexp's stream for that repeat, alternately (smc, plain, smc, plain, ...) so both see the
// same machine load. Reported: the median seconds of each, the median of the per-pair ratios
// smc / plain, NFE of both, and one JSON line. `--proposal twisted` times TDS's twisted proposal
// instead, which adds one backward pass of the network per step (not a resampling-free extra:
// a different algorithm, reported for information).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/run/stages.hpp>
#include <diffusion/run/train_loop.hpp>
#include <diffusion/tensor/blas_kernels.hpp>
#include <diffusion/tensor/parallel.hpp>

#include "cli.hpp"
#include "machine.hpp"
#include "sgemm_alone.hpp"

using namespace diffusion;
using namespace bench;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string yaml = DIFFUSION_SMC_YAML;
  long steps = 300, n = 2000, sampler_steps = 0, repeats = 7, seed = 0, threads = 0;
  std::string proposal = "model";
};

const Cli cli{"bench_smc",
              "usage: bench_smc [--yaml PATH] [--steps N] [--n N] [--sampler-steps N] [--repeats N] [--seed S]\n"
              "                 [--threads N] [--proposal model|twisted]\n"};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") std::printf("%s", cli.usage), std::exit(0);
    if (i + 1 >= argc) cli.fail("unknown option or missing value: " + a);
    const std::string v = argv[++i];
    if (a == "--yaml") o.yaml = v;
    else if (a == "--steps") o.steps = cli.integer(a, v, 1);
    else if (a == "--n") o.n = cli.integer(a, v, 1);
    else if (a == "--sampler-steps") o.sampler_steps = cli.integer(a, v, 2);
    else if (a == "--repeats") o.repeats = cli.integer(a, v, 1);
    else if (a == "--seed") o.seed = cli.integer(a, v, 0);
    else if (a == "--threads") o.threads = cli.integer(a, v, 1);
    else if (a == "--proposal") {
      if (v != "model" && v != "twisted") cli.fail("--proposal: expected model or twisted, got " + v);
      o.proposal = v;
    } else cli.fail("unknown option " + a);
  }
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

/// The override prefix ("samplers.<i>" or "sampler") of the first sampler of `type`.
std::string prefix_of(const Config& c, const std::string& type) {
  const ConfigNode root = c.root();
  if (const auto one = root.find("sampler"))
    if (one->type() == type) return "sampler";
  if (const auto many = root.find("samplers")) {
    const auto items = many->items();
    for (std::size_t i = 0; i < items.size(); ++i)
      if (items[i].type() == type) return "samplers." + std::to_string(i);
  }
  throw std::runtime_error(c.name() + " has no sampler of type '" + type + "'");
}

/// One sampler of the experiment, timed as draw_samples runs it.
struct Timed {
  double seconds = 0;
  std::size_t nfe = 0;
};

Timed time_one(const Experiment& ex, const SamplerSpec& spec, long repeat) {
  CountingDenoiser model(ex.denoiser(spec.use_ema && ex.ema_network() ? ex.ema_network() : ex.models.shared("model")));
  const Rng master(ex.seed);
  Rng rng = repeat == 0 ? master.split("sampler:" + spec.name)
                        : master.split("sampler:" + spec.name + ":" + std::to_string(repeat));
  const auto t0 = Clock::now();
  const SampleOutput out = run_sampler(ex, spec, model, rng);
  Timed t;
  t.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  t.nfe = model.nfe();
  if (out.x.size() == 0) throw std::runtime_error(spec.name + " returned no samples");
  return t;
}

int run(const Options& o) {
  if (o.threads > 0) set_num_threads(static_cast<int>(o.threads));
  set_blas_threads(1);
  std::printf("machine: %s; load average %.2f at start\n", machine_description().c_str(), load_average());
  load_plugin_dir(default_plugin_dir());

  const Config file = Config::load_file(o.yaml);
  const std::string smc_at = prefix_of(file, "smc"), plain_at = prefix_of(file, "ancestral");
  std::vector<std::string> overrides = {"seed=" + std::to_string(o.seed), "train.steps=" + std::to_string(o.steps)};
  for (const std::string& p : {smc_at, plain_at}) {
    overrides.push_back(p + ".n=" + std::to_string(o.n));
    overrides.push_back(p + ".repeats=1");
    if (o.sampler_steps) overrides.push_back(p + ".steps=" + std::to_string(o.sampler_steps));
  }
  overrides.push_back(smc_at + ".proposal=" + o.proposal);
  Config config = file;
  config.apply_overrides(overrides);
  auto ex = std::make_unique<Experiment>(compose_experiment(config));
  const SamplerSpec *smc = nullptr, *plain = nullptr;
  for (const SamplerSpec& s : ex->samplers) {
    if (!smc && s.type == "smc") smc = &s;
    if (!plain && s.type == "ancestral") plain = &s;
  }
  {
    Config view = config;
    const auto steps_of = [&](const std::string& p) {
      const ConfigNode node = p == "sampler" ? view.root().at("sampler")
                                             : view.root().at("samplers").item(std::stoul(p.substr(p.find('.') + 1)));
      return node.get_int("steps", 0);
    };
    if (steps_of(smc_at) != steps_of(plain_at))
      throw std::runtime_error("the smc and ancestral samplers of " + o.yaml + " take different steps (" +
                               std::to_string(steps_of(smc_at)) + " and " + std::to_string(steps_of(plain_at)) +
                               "); give --sampler-steps");
  }

  ex->codec->fit(*ex->dataset, Rng(ex->seed).split("normalize"));  // as the run's first stage does
  TrainLoop loop(*ex, Rng(ex->seed));
  for (long i = 0; i < o.steps; ++i) loop.step();

  time_one(*ex, *smc, 0), time_one(*ex, *plain, 0);  // warm the pools
  std::vector<double> smc_s, plain_s, ratio;
  Timed a, b;
  for (long r = 0; r < o.repeats; ++r) {
    a = time_one(*ex, *smc, r);
    b = time_one(*ex, *plain, r);
    smc_s.push_back(a.seconds), plain_s.push_back(b.seconds), ratio.push_back(a.seconds / b.seconds);
  }
  const double ms = median(smc_s), mp = median(plain_s), mr = median(ratio);
  std::printf("%s: smc '%s' (proposal %s) vs ancestral '%s', n = %ld, %d thread%s, %ld interleaved repeats\n",
              o.yaml.c_str(), smc->name.c_str(), o.proposal.c_str(), plain->name.c_str(), o.n, num_threads(),
              num_threads() == 1 ? "" : "s", o.repeats);
  std::printf("  smc:   median %.4f s, NFE %zu\n  plain: median %.4f s, NFE %zu\n", ms, a.nfe, mp, b.nfe);
  std::printf("  ratio smc / plain: median of pairs %.3f (ratio of medians %.3f; min %.3f, max %.3f)\n", mr, ms / mp,
              *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()));
  std::ostringstream js;
  js << "{\"bench\": \"smc\", \"yaml\": \"" << o.yaml << "\", \"proposal\": \"" << o.proposal << "\", \"n\": " << o.n
     << ", \"threads\": " << num_threads() << ", \"repeats\": " << o.repeats << ", \"smc_s\": " << ms
     << ", \"plain_s\": " << mp << ", \"ratio\": " << mr << ", \"smc_nfe\": " << a.nfe << ", \"plain_nfe\": " << b.nfe
     << ", \"load_average\": " << load_average() << "}";
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
    std::fprintf(stderr, "bench_smc: %s\n", e.what());
    return 1;
  }
}

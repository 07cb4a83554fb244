// runexp: train, sample, evaluate and write one HDF5 results file from a YAML experiment.
//
//   runexp FILE.yaml [key.path=value ...] [--out PATH] [--seed N] [--plugins FILE_OR_DIR]
//          [--print-config] [--list]
//   runexp --resume RUN.h5 [FILE.yaml] [key.path=value ...] [--force] [--out PATH]
//   runexp FILE.yaml -m key=a,b other=x,y [key.path=value ...] [--array-index I] [--dry-run]
//
// SIGINT/SIGTERM stop a run cleanly, in training or sampling: the current step (or network
// evaluation) finishes, a checkpoint is written, the results file says status=interrupted, and
// the exit status is 130/143 (128 + signal).
#include <signal.h>
#include <unistd.h>

#include <csignal>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>

#include <boost/program_options.hpp>

#include <diffusion/run/checkpoint.hpp>
#include <diffusion/run/experiment.hpp>
#include <diffusion/run/memory_estimate.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/run/output_lock.hpp>
#include <diffusion/run/results.hpp>
#include <diffusion/run/runner.hpp>
#include <diffusion/run/sweep.hpp>
#include <diffusion/tensor/blas_kernels.hpp>

namespace po = boost::program_options;
using namespace diffusion;

namespace {

/// A bad command line that is not about a configuration value (exit 2, like a ConfigError).
struct UsageError : Error {
  using Error::Error;
};

/// The signal that asked us to stop (0: none). Only this is touched in the handler, which keeps
/// it async-signal-safe; the training loop polls it once per step.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  // One-shot: a second Ctrl-C (or SIGTERM) gets the default action and ends the process at
  // once, for when the clean stop takes too long.
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

/// A missing or unwritable output folder is refused now (exit 2), not after training.
void check_output(const std::string& out) {
  try {
    check_output_path(out);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
}

template <class Reg>
void list_kind(const Reg& reg) {
  std::cout << reg.kind() << ":\n";
  for (const auto& name : reg.names())
    std::cout << "  " << std::left << std::setw(20) << name << " (" << reg.origin(name) << ")\n";
}

void print_summary(const RunResult& r) {
  std::cout << "results: " << r.out_path << "\n";
  std::cout << std::fixed << std::setprecision(2) << "time: train " << r.train_seconds
            << " s, sample " << r.sample_seconds << " s, metrics " << r.metric_seconds
            << " s, total " << r.total_seconds << " s\n";
  if (r.final_loss) std::cout << std::setprecision(5) << "final loss: " << *r.final_loss << "\n";
  else std::cout << "final loss: none (no training steps)\n";
  for (const auto& [sampler, metrics] : r.metrics) {
    std::cout << sampler << " (nfe " << r.nfe.at(sampler) << "):";
    for (const auto& [name, v] : metrics) std::cout << "  " << name << " " << v;
    std::cout << "\n";
  }
  if (!r.model_metrics.empty()) {
    std::cout << "model:";
    for (const auto& [name, v] : r.model_metrics) std::cout << "  " << name << " " << v;
    std::cout << "\n";
  }
  // The floor as name=value, so that a reader of the samplers' "metric value" pairs does not
  // take the floor's for a sampler's.
  if (!r.floor.empty()) {
    std::cout << "metric floor, fresh data:";
    for (const auto& [name, v] : r.floor) std::cout << "  " << name << "=" << v;
    std::cout << "\n";
  }
  std::cout.unsetf(std::ios::floatfield);
}

std::string join_overrides(const std::vector<std::string>& overrides) {
  std::string s;
  for (const auto& o : overrides) s += (s.empty() ? "" : " ") + o;
  return s.empty() ? "(none)" : s;
}

/// runexp -m: every override whose value has top-level commas is a sweep axis; the others apply
/// to every point. Point p applies the arguments in their order, each axis replaced by its value
/// for p, so a point's run is the run of `runexp FILE.yaml <those overrides>`.
int run_sweep(const po::variables_map& vm, const std::vector<std::string>& args) {
  if (args.empty()) throw UsageError("no experiment file given (usage: runexp FILE.yaml -m key=a,b ...)");
  std::vector<SweepAxis> axes;
  std::vector<long> axis_of(args.size(), -1);
  for (std::size_t i = 1; i < args.size(); ++i) {
    const auto eq = args[i].find('=');
    if (eq == std::string::npos)
      throw UsageError("'" + args[i] + "' is neither an option nor a key.path=value,... sweep spec");
    if (args[i].find_first_not_of(" \t", eq + 1) == std::string::npos)
      throw SweepError("sweep '" + args[i] + "': empty value list");
    if (!is_sweep_spec(args[i])) continue;
    axis_of[i] = long(axes.size());
    axes.push_back(parse_sweep_spec(args[i]));
  }
  check_distinct_keys(axes);
  const std::size_t n = sweep_size(axes);
  std::vector<std::size_t> selected;
  if (vm.count("array-index")) {
    selected.push_back(parse_sweep_index(vm["array-index"].as<std::string>(), n, "--array-index"));
  } else if (const char* task = std::getenv("SLURM_ARRAY_TASK_ID"); task && *task) {
    selected.push_back(parse_sweep_index(task, n, "SLURM_ARRAY_TASK_ID"));
  } else {
    for (std::size_t p = 0; p < n; ++p) selected.push_back(p);
  }
  auto point_config = [&](std::size_t p) {
    const auto overrides = sweep_point(axes, p);
    Config c = Config::load_file(args[0]);
    for (std::size_t i = 1; i < args.size(); ++i)
      c.apply_override(axis_of[i] >= 0 ? overrides[std::size_t(axis_of[i])] : args[i]);
    if (vm.count("seed")) c.apply_override("seed=" + std::to_string(vm["seed"].as<std::uint64_t>()));
    if (vm.count("init")) c.apply_override("init=" + vm["init"].as<std::string>());
    return c;
  };
  // Every selected point's config must compose before anything runs.
  std::string name;
  for (std::size_t p : selected) {
    Config c = point_config(p);
    Experiment ex = compose_experiment(c);
    // ... and fit in memory: a point that cannot is refused now (exit 2), not after the others ran.
    check_memory(ex, vm.count("max-memory") ? parse_memory_size(vm["max-memory"].as<std::string>()) : 0);
    if (name.empty()) name = ex.name;
    if (vm.count("print-config"))
      std::cout << "# point " << p << ": " << join_overrides(sweep_point(axes, p)) << "\n" << c.dump() << "\n";
  }
  if (vm.count("print-config")) return 0;
  const bool dry = vm.count("dry-run") > 0;
  const std::string out = vm.count("out") ? vm["out"].as<std::string>() : "results/" + name + ".h5";
  if (vm.count("out")) check_output(out);
  if (dry) {
    std::cout << "sweep: " << n << " points, index " << sweep_index_path(out) << "\n";
    for (std::size_t p : selected)
      std::cout << p << "\t" << sweep_result_path(out, p) << "\t" << join_overrides(sweep_point(axes, p)) << "\n";
    return 0;
  }
  if (!vm.count("out")) std::filesystem::create_directories("results");
  {
    // Written whole and renamed: array tasks may write the same (identical) index at once.
    const std::string index = sweep_index_path(out);
    const std::string tmp = index + ".tmp." + std::to_string(::getpid());
    std::ofstream f(tmp, std::ios::binary);
    f << format_sweep_index(axes, out);
    f.close();
    if (!f) throw Error("cannot write " + tmp);
    std::filesystem::rename(tmp, index);
  }
  install_stop_handlers();
  std::vector<std::size_t> failed;
  for (std::size_t p : selected) {
    const std::string overrides = join_overrides(sweep_point(axes, p));
    const Config config = point_config(p);
    Experiment ex = compose_experiment(config);
    RunOptions ro;
    ro.out_path = sweep_result_path(out, p);
    ro.log = &std::cerr;
    ro.progress_bar = ::isatty(STDERR_FILENO);
    ro.stop = &g_stop_signal;
    if (vm.count("max-memory")) ro.max_memory = parse_memory_size(vm["max-memory"].as<std::string>());
    std::cerr << "runexp: sweep point " << p << " of " << n << " (" << overrides << "): " << ex.name << ", "
              << ex.network().num_parameters() << " parameters, " << ex.train.steps << " steps of "
              << ex.train.batch_size << "\n";
    std::cout << "point " << p << ": " << overrides << "\n";
    RunResult r;
    try {
      r = run_experiment(ex, ro);
    } catch (const std::exception& e) {
      std::cerr << "runexp: error: point " << p << ": " << e.what() << "\n";
      failed.push_back(p);
      continue;
    }
    if (r.interrupted) {
      const int sig = g_stop_signal ? int(g_stop_signal) : SIGINT;
      std::cout << "interrupted at point " << p << " after step " << r.steps_completed << ": " << r.out_path
                << " (status=interrupted); continue with: runexp --resume " << r.out_path << "\n";
      return 128 + sig;
    }
    print_summary(r);
  }
  std::cout << "sweep index: " << sweep_index_path(out) << "\n";
  if (!failed.empty()) {
    std::string list;
    for (std::size_t p : failed) list += (list.empty() ? "" : ", ") + std::to_string(p);
    std::cerr << "runexp: error: " << failed.size() << " of " << selected.size() << " sweep points failed: " << list << "\n";
    return 1;
  }
  return 0;
}

int run(int argc, char** argv) {
  po::options_description opts("Options");
  opts.add_options()
      ("help,h", "show this help")
      ("out,o", po::value<std::string>(), "results file (default: results/<name>.h5)")
      ("seed", po::value<std::uint64_t>(), "override the experiment's seed")
      ("init", po::value<std::string>(), "load the trained model of this results file (same as init=PATH)")
      ("plugins", po::value<std::vector<std::string>>()->composing(),
       "also load this plugin file, or the plugins in this folder (repeatable)")
      ("resume", po::value<std::string>(), "continue the interrupted run whose results file is RUN.h5, "
       "from the newest valid checkpoint in RUN.h5.ckpt/ (config from the checkpoint)")
      ("force", "with --resume: accept a config that differs from the checkpoint's; with an init file: "
       "accept weights trained with another architecture")
      ("multirun,m", "sweep: each key=a,b,... override (top-level commas) runs once per value, the "
       "cartesian product (first key slowest), into <out stem>_<i>.h5 with <out stem>_index.tsv")
      ("array-index", po::value<std::string>(), "with -m: run point I alone (default: $SLURM_ARRAY_TASK_ID if set)")
      ("dry-run", "with -m: list the points (index, results file, overrides) and exit")
      ("print-config", "print the resolved configuration and exit")
      ("max-memory", po::value<std::string>(), "refuse a run whose memory estimate exceeds SIZE (e.g. 8G, 500M; "
       "default: the memory available)")
      ("list", "list every registered component by kind, with its plugin, and exit");
  po::options_description hidden;
  hidden.add_options()("args", po::value<std::vector<std::string>>(), "");
  po::options_description all;
  all.add(opts).add(hidden);
  po::positional_options_description pos;
  pos.add("args", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
  po::notify(vm);

  if (vm.count("help")) {
    std::cout << "usage: runexp FILE.yaml [key.path=value ...] [options]\n"
                 "       runexp --resume RUN.h5 [FILE.yaml] [key.path=value ...] [--force]\n"
                 "       runexp FILE.yaml -m key=a,b other=x,y [key.path=value ...] [--array-index I] [--dry-run]\n\n"
              << opts;
    return 0;
  }
  load_plugin_dir(default_plugin_dir());
  if (vm.count("plugins"))
    for (const auto& path : vm["plugins"].as<std::vector<std::string>>()) load_plugins(path);
  if (vm.count("list")) {
    Registries& r = registries();
    list_kind(r.datasets), list_kind(r.networks), list_kind(r.paths), list_kind(r.losses),
        list_kind(r.preconditionings), list_kind(r.samplers), list_kind(r.time_grids), list_kind(r.codecs),
        list_kind(r.metrics), list_kind(r.potentials), list_kind(r.guidances);
    return 0;
  }

  const auto args = vm.count("args") ? vm["args"].as<std::vector<std::string>>() : std::vector<std::string>{};
  const bool resuming = vm.count("resume") > 0;
  if (vm.count("force") && vm.count("multirun")) throw UsageError("--force cannot be combined with -m (sweep)");
  if (vm.count("multirun")) {
    if (resuming) throw UsageError("-m (sweep) cannot be combined with --resume; resume each point's file");
    return run_sweep(vm, args);
  }
  if (vm.count("array-index") || vm.count("dry-run"))
    throw UsageError(std::string(vm.count("dry-run") ? "--dry-run" : "--array-index") + " is only meaningful with -m");
  std::optional<CheckpointInfo> ckpt;
  std::optional<Config> saved;  // the checkpoint's config
  std::size_t first_override = 1;
  if (resuming) {
    const std::string run = vm["resume"].as<std::string>();
    const std::string dir = checkpoint_dir_for(run);
    std::vector<std::string> skipped;
    ckpt = find_latest_checkpoint(dir, &skipped);
    for (const auto& why : skipped) std::cerr << "runexp: skipping checkpoint " << why << "\n";
    if (!ckpt) throw UsageError("--resume " + run + ": no valid checkpoint in " + dir);
    // Named after the run, so a config without `name:` keeps the run's name.
    saved = Config::load_string(ckpt->config_text,
                                std::filesystem::path(run).stem().string() + ".ckpt-config");
    // A file is optional on resume: without one, the checkpoint's config is the base.
    first_override = !args.empty() && args[0].find('=') == std::string::npos ? 1 : 0;
  } else if (args.empty()) {
    throw UsageError("no experiment file given (usage: runexp FILE.yaml [key=value ...])");
  }
  Config config = first_override == 1 ? Config::load_file(args[0]) : *saved;
  for (std::size_t i = first_override; i < args.size(); ++i) {
    if (args[i].find('=') == std::string::npos)
      throw UsageError("'" + args[i] + "' is neither an option nor a key.path=value override");
    config.apply_override(args[i]);
  }
  if (vm.count("seed")) config.apply_override("seed=" + std::to_string(vm["seed"].as<std::uint64_t>()));
  if (vm.count("init")) config.apply_override("init=" + vm["init"].as<std::string>());
  if (vm.count("force") && !resuming && !config.root().find("init"))
    throw UsageError("--force is only meaningful with --resume or an init file (init: or --init)");
  const ComposeOptions compose_options{vm.count("force") > 0};
  if (resuming) {
    // Resuming under another config would silently produce a run that matches neither.
    const auto diffs = config_differences(*saved, config);
    if (!diffs.empty() && !vm.count("force"))
      throw UsageError("--resume: the config differs from the checkpoint's (" + ckpt->path + ") in " +
                       describe(diffs) + "; pass --force to resume with the new config");
    if (!diffs.empty()) std::cerr << "runexp: --force: resuming with a changed config: " << describe(diffs) << "\n";
  }
  if (vm.count("print-config")) {
    // Compose first so the printed config is also a valid one.
    compose_experiment(config, registries(), compose_options);
    std::cout << config.dump() << "\n";
    return 0;
  }

  Experiment ex = compose_experiment(config, registries(), compose_options);
  std::string out;
  if (vm.count("out")) {
    out = vm["out"].as<std::string>();
  } else if (resuming) {
    out = vm["resume"].as<std::string>();  // the resumed run replaces the interrupted file
  } else {
    std::filesystem::create_directories("results");
    out = "results/" + ex.name + ".h5";
  }
  check_output(out);
  RunOptions ro;
  ro.out_path = out;
  ro.log = &std::cerr;
  ro.progress_bar = ::isatty(STDERR_FILENO);
  ro.stop = &g_stop_signal;
  if (vm.count("max-memory")) ro.max_memory = parse_memory_size(vm["max-memory"].as<std::string>());
  if (resuming) {
    ro.resume_from = ckpt->path;
    ro.allow_config_change = true;  // checked above, key by key (numbers by value)
  }
  install_stop_handlers();
  std::cerr << "runexp: " << ex.name << ": " << ex.network().num_parameters() << " parameters, "
            << ex.train.steps << " steps of " << ex.train.batch_size << "\n";
  const RunResult r = run_experiment(ex, ro);
  if (r.interrupted) {
    const int sig = g_stop_signal ? int(g_stop_signal) : SIGINT;
    std::cout << "interrupted after step " << r.steps_completed << ": " << r.out_path
              << " (status=interrupted), checkpoint " << r.checkpoint << "\n"
              << "continue with: runexp --resume " << r.out_path << "\n";
    return 128 + sig;
  }

  print_summary(r);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Past `ulimit -f`, a write would kill the process with SIGXFSZ, silently and leaving partial
  // temporary files; ignored, the write fails with EFBIG and the run ends as on a full disk.
  std::signal(SIGXFSZ, SIG_IGN);
  use_blas_kernels_for_this_cpu(argv);
  try {
    return run(argc, argv);
  } catch (const ConfigError& e) {
    std::cerr << "runexp: error: " << e.what() << "\n";
    return 2;
  } catch (const UsageError& e) {
    std::cerr << "runexp: error: " << e.what() << "\n";
    return 2;
  } catch (const OutputConflict& e) {
    std::cerr << "runexp: error: " << e.what() << "\n";
    return 2;
  } catch (const PluginError& e) {
    std::cerr << "runexp: error: " << e.what() << "\n";
    return 2;
  } catch (const SweepError& e) {
    std::cerr << "runexp: error: " << e.what() << "\n";
    return 2;
  } catch (const po::error& e) {
    std::cerr << "runexp: error: " << e.what() << " (see runexp --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "runexp: error: " << e.what() << "\n";
    return 1;
  }
}

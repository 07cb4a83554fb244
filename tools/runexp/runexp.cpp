// runexp: train, sample, evaluate and write one HDF5 results file from a YAML experiment.
//
//   runexp FILE.yaml [key.path=value ...] [--out PATH] [--seed N] [--plugins DIR]
//          [--print-config] [--list]
//   runexp --resume RUN.h5 [FILE.yaml] [key.path=value ...] [--force] [--out PATH]
//
// SIGINT/SIGTERM stop training cleanly: the current step finishes, a checkpoint is written, the
// results file says status=interrupted, and the exit status is 130/143 (128 + signal).
#include <signal.h>
#include <unistd.h>

#include <csignal>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>

#include <boost/program_options.hpp>

#include <diffusion/checkpoint.hpp>
#include <diffusion/experiment.hpp>
#include <diffusion/plugin_loader.hpp>
#include <diffusion/runner.hpp>

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

template <class Reg>
void list_kind(const Reg& reg) {
  std::cout << reg.kind() << ":\n";
  for (const auto& name : reg.names())
    std::cout << "  " << std::left << std::setw(20) << name << " (" << reg.origin(name) << ")\n";
}

int run(int argc, char** argv) {
  po::options_description opts("Options");
  opts.add_options()
      ("help,h", "show this help")
      ("out,o", po::value<std::string>(), "results file (default: results/<name>.h5)")
      ("seed", po::value<std::uint64_t>(), "override the experiment's seed")
      ("plugins", po::value<std::vector<std::string>>()->composing(),
       "also load the plugins in this folder (repeatable)")
      ("resume", po::value<std::string>(), "continue the interrupted run whose results file is RUN.h5, "
       "from the newest valid checkpoint in RUN.h5.ckpt/ (config from the checkpoint)")
      ("force", "with --resume: accept a config that differs from the checkpoint's")
      ("print-config", "print the resolved configuration and exit")
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
                 "       runexp --resume RUN.h5 [FILE.yaml] [key.path=value ...] [--force]\n\n" << opts;
    return 0;
  }
  load_plugin_dir(default_plugin_dir());
  if (vm.count("plugins"))
    for (const auto& dir : vm["plugins"].as<std::vector<std::string>>()) load_plugin_dir(dir);
  if (vm.count("list")) {
    Registries& r = registries();
    list_kind(r.datasets), list_kind(r.networks), list_kind(r.sdes), list_kind(r.losses),
        list_kind(r.samplers), list_kind(r.metrics);
    return 0;
  }

  const auto args = vm.count("args") ? vm["args"].as<std::vector<std::string>>() : std::vector<std::string>{};
  const bool resuming = vm.count("resume") > 0;
  if (vm.count("force") && !resuming) throw UsageError("--force is only meaningful with --resume");
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
    compose_experiment(config);
    std::cout << config.dump() << "\n";
    return 0;
  }

  Experiment ex = compose_experiment(config);
  std::string out;
  if (vm.count("out")) {
    out = vm["out"].as<std::string>();
  } else if (resuming) {
    out = vm["resume"].as<std::string>();  // the resumed run replaces the interrupted file
  } else {
    std::filesystem::create_directories("results");
    out = "results/" + ex.name + ".h5";
  }
  // Refuse a missing output folder now, not after training.
  const std::filesystem::path out_dir = std::filesystem::path(out).parent_path();
  if (!out_dir.empty() && !std::filesystem::is_directory(out_dir))
    throw UsageError("--out " + out + ": folder " + out_dir.string() + " does not exist");
  RunOptions ro;
  ro.out_path = out;
  ro.log = &std::cerr;
  ro.progress_bar = ::isatty(STDERR_FILENO);
  ro.stop = &g_stop_signal;
  if (resuming) {
    ro.resume_from = ckpt->path;
    ro.allow_config_change = true;  // checked above, key by key (numbers by value)
  }
  install_stop_handlers();
  std::cerr << "runexp: " << ex.name << ": " << ex.network->num_parameters() << " parameters, "
            << ex.train.steps << " steps of " << ex.train.batch_size << "\n";
  const RunResult r = run_experiment(ex, ro);
  if (r.interrupted) {
    const int sig = g_stop_signal ? int(g_stop_signal) : SIGINT;
    std::cout << "interrupted after step " << r.steps_completed << ": " << r.out_path
              << " (status=interrupted), checkpoint " << r.checkpoint << "\n"
              << "continue with: runexp --resume " << r.out_path << "\n";
    return 128 + sig;
  }

  std::cout << "results: " << r.out_path << "\n";
  std::cout << std::fixed << std::setprecision(2) << "time: train " << r.train_seconds
            << " s, sample " << r.sample_seconds << " s, metrics " << r.metric_seconds
            << " s, total " << r.total_seconds << " s\n";
  std::cout << std::setprecision(5) << "final loss: " << r.final_loss << "\n";
  for (const auto& [sampler, metrics] : r.metrics) {
    std::cout << sampler << " (nfe " << r.nfe.at(sampler) << "):";
    for (const auto& [name, v] : metrics) std::cout << "  " << name << " " << v;
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const ConfigError& e) {
    std::cerr << "runexp: error: " << e.what() << "\n";
    return 2;
  } catch (const UsageError& e) {
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

// bench_sampling: the score-SDE samplers of plugins/score_sde (Song et al. 2021) against the
// same network in PyTorch, with the probability-flow ODE integrated by scipy.
//
//   bench_sampling [--steps 2000] [--n 2000] [--pc-steps N] [--rtol R] [--atol A] [--controller C]
//                  [--repeats 5]
//                  [--seed 0] [--threads N] [--no-torch] [--yaml PATH] [--torch-script PATH]
//                  [--keep-weights PATH]
//
// Our side is runexp's: experiments/vpsde_moons.yaml composed with the plugins, trained for
// `steps` steps through TrainLoop::step (its learning-rate schedule over those steps, so the
// field is a trained one), then its `ode` sampler (probability-flow ODE, eq. 13, adaptive
// Dormand-Prince 5(4)) and its `pc` sampler (predictor-corrector, section 4.2, Algorithm 1 with
// the Langevin corrector of Algorithms 4-5) timed through run_sampler on the weights runexp
// samples (the EMA's when the sampler uses it), `repeats` runs each from the run's own sampler
// streams; medians are reported. NFE: network evaluations, counted as runexp counts them
// (CountingDenoiser).
//
// The baseline (torch_sde_sampling.py, /usr/bin/python3 with torch, scipy and h5py) loads the
// same weights from the results-file layout (/model, /ema: save_models) this bench writes,
// rebuilds the network in torch and runs the same samplers: the ODE with
// scipy.integrate.solve_ivp(method='RK45') at the same rtol and atol (RK45 is the same
// Dormand-Prince tableau; the step-size controllers differ, so NFE may), PC with the same steps,
// predictor, corrector and snr. Before timing it checks that its probability-flow velocity at a
// test batch equals ours. It runs as one child process that answers one run per request, so
// each repeat runs ours, then the baseline at 1 torch thread, then at 2 (as bench_train_step
// tries both; the faster is kept): on a shared machine all three see the same load. A 2-thread
// run that takes 3 times as long as the 1-thread one is stopped, and 2 threads dropped.
//
// The first sampler of each type in the file is timed; a type the file lacks is added with the
// sampler's defaults (the ode's: dopri5, rtol = atol = 1e-5, the PI controller). --pc-steps,
// --rtol, --atol and --controller (pi, or standard: scipy's own controller) default to the
// file's (or those) settings. Sample means and standard deviations are in the
// model's (encoded) coordinates on both sides.
//
// Prints the machine, a table (samples/s of both sides, the ratio ours / baseline, NFE of both,
// ms per NFE) and one JSON line.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/run/stages.hpp>
#include <diffusion/run/train_loop.hpp>
#include <diffusion/tensor/parallel.hpp>

#include <diffusion/tensor/blas_kernels.hpp>

#include "cli.hpp"
#include "json.hpp"
#include "machine.hpp"
#include "sgemm_alone.hpp"

using namespace diffusion;
using namespace bench;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  long steps = 2000, n = 2000;
  long pc_steps = 0;                               // 0: the file's
  double rtol = std::nan(""), atol = std::nan("");  // NaN: the file's
  std::string controller;                          // "": the file's
  long repeats = 5, seed = 0, threads = 0;
  bool torch = true;
  std::string yaml = DIFFUSION_SAMPLING_YAML;
  std::string torch_script = DIFFUSION_SDE_TORCH_SCRIPT;
  std::string keep_weights;  // "": a temporary file, removed at the end
};

const Cli cli{
    "bench_sampling",
    "usage: bench_sampling [--steps N] [--n N] [--pc-steps N] [--rtol R] [--atol A] [--controller pi|standard]\n"
    "                      [--repeats N] [--seed S] [--threads N] [--no-torch] [--yaml PATH] [--torch-script PATH]\n"
    "                      [--keep-weights PATH]\n"};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") std::printf("%s", cli.usage), std::exit(0);
    if (a == "--no-torch") { o.torch = false; continue; }
    if (i + 1 >= argc) cli.fail("unknown option or missing value: " + a);
    const std::string v = argv[++i];
    if (a == "--steps") o.steps = cli.integer(a, v, 1);
    else if (a == "--n") o.n = cli.integer(a, v, 1);
    else if (a == "--pc-steps") o.pc_steps = cli.integer(a, v, 2);
    else if (a == "--rtol") o.rtol = cli.number(a, v, 1e-12);
    else if (a == "--atol") o.atol = cli.number(a, v, 1e-12);
    else if (a == "--controller") {
      if (v != "pi" && v != "standard") cli.fail("--controller: expected pi or standard, got " + v);
      o.controller = v;
    } else if (a == "--repeats") o.repeats = cli.integer(a, v, 1);
    else if (a == "--seed") o.seed = cli.integer(a, v, 0);
    else if (a == "--threads") o.threads = cli.integer(a, v, 1);
    else if (a == "--yaml") o.yaml = v;
    else if (a == "--torch-script") o.torch_script = v;
    else if (a == "--keep-weights") o.keep_weights = v;
    else cli.fail("unknown option " + a);
  }
  return o;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

std::string number_text(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

// ---- the experiment file's two samplers ----

/// Where the file puts its `ode` and `pc` samplers: the override prefix of the first of each type
/// ("sampler" or "samplers.<i>"). The bench times exactly these entries, with n, steps and
/// tolerances set. A type the file lacks is added as `sampler:` (when that key is free) with the
/// sampler's defaults, and its creating override is appended to `added`.
std::map<std::string, std::string> sampler_prefixes(const Config& file, std::vector<std::string>& added) {
  std::map<std::string, std::string> at;
  const ConfigNode root = file.root();
  const auto one = root.find("sampler");
  if (one) at[one->type()] = "sampler";
  if (const auto many = root.find("samplers")) {
    const auto items = many->items();
    for (std::size_t i = 0; i < items.size(); ++i) at.emplace(items[i].type(), "samplers." + std::to_string(i));
  }
  bool sampler_key_free = !one;
  for (const char* type : {"ode", "pc"}) {
    if (at.count(type)) continue;
    if (!sampler_key_free)
      throw std::runtime_error(file.name() + " has no sampler of type '" + type +
                               "' and its `sampler:` key is taken; add one to `samplers:`");
    added.push_back(std::string("sampler={type: ") + type + "}");
    at[type] = "sampler";
    sampler_key_free = false;
  }
  return at;
}

/// The node at an override prefix ("samplers.1") of a config.
ConfigNode node_at(const Config& c, const std::string& prefix) {
  const ConfigNode root = c.root();
  if (prefix == "sampler") return root.at("sampler");
  return root.at("samplers").item(std::stoul(prefix.substr(prefix.find('.') + 1)));
}

/// The settings the baseline needs, read from the composed file (overrides applied).
struct SamplerSettings {
  double rtol = 0, atol = 0;
  std::string controller;
  bool ode_denoise = false;
  long pc_steps = 0;
  std::string predictor, ancestral_variance = "posterior", corrector;
  double snr = 0;
  long corrector_steps = 0;
  bool pc_denoise = true;
  std::string activation;
  double max_period = 0;
};

SamplerSettings read_settings(const Config& c, const std::map<std::string, std::string>& at) {
  SamplerSettings s;
  const ConfigNode ode = node_at(c, at.at("ode"));
  if (ode.get_string("method", "dopri5") != "dopri5")
    throw std::runtime_error("the ode sampler must use method: dopri5 (the baseline's RK45)");
  s.rtol = ode.get_double("rtol", 1e-5);
  s.atol = ode.get_double("atol", 1e-5);
  s.controller = ode.get_string("controller", "pi");
  s.ode_denoise = ode.get_bool("denoise", false);
  // pc_sampler.cpp's defaults: 1000 steps, the linear grid, reverse_diffusion, Langevin 0.16 x 1.
  const ConfigNode pc = node_at(c, at.at("pc"));
  s.pc_steps = pc.get_int("steps", 1000);
  if (pc.has("timesteps") || (pc.has("spacing") && pc.at("spacing").type() != "linear"))
    throw std::runtime_error("the baseline runs pc on the linear grid (no spacing: or timesteps:)");
  s.predictor = "reverse_diffusion";
  if (const auto pred = pc.find("predictor")) {
    s.predictor = pred->type();
    if (s.predictor == "ancestral" && pred->is_map()) s.ancestral_variance = pred->get_string("variance", "posterior");
  }
  s.corrector = "langevin";
  s.snr = 0.16;
  s.corrector_steps = 1;
  if (const auto corr = pc.find("corrector")) {
    s.corrector = corr->type();
    if (s.corrector == "langevin" && corr->is_map()) {
      s.snr = corr->get_double("snr", 0.16);
      s.corrector_steps = corr->get_int("steps", 1);
    }
  }
  s.pc_denoise = pc.get_bool("denoise", true);
  const ConfigNode net = c.root().at("network");
  if (net.type() != "mlp" || net.get_string("conditioning", "concat") != "concat" ||
      net.get_bool("class_conditional", false))
    throw std::runtime_error("the baseline rebuilds an unconditional mlp with conditioning: concat");
  s.activation = net.get_string("activation", "silu");
  s.max_period = 10000.0;
  if (const auto te = net.find("time_embedding"))
    if (te->type() == "sinusoidal") s.max_period = te->get_double("max_period", 10000.0);
  return s;
}

// ---- the path, as the baseline writes it ----

/// The VP SDE's beta_min and beta_max, read off the path (beta(t) = -2 alpha'/alpha is linear in
/// t) and checked against alpha = exp(-B/2), sigma = sqrt(1 - exp(-B)); and the network time's
/// scale (c_noise = scale t), checked too. Throws when the path is not the baseline's.
struct VpPath {
  double beta_min, beta_max, t_min, t_max, time_scale;
};

VpPath vp_path_of(const Experiment& ex) {
  const Path& p = *ex.path;
  const auto beta = [&](double t) { return -2.0 * p.alpha_deriv(t) / p.alpha(t); };
  VpPath vp;
  vp.t_min = p.t_min();
  vp.t_max = p.t_max();
  const double b1 = beta(0.25), b2 = beta(0.75);
  vp.beta_min = b1 - 0.25 * (b2 - b1) / 0.5;
  vp.beta_max = vp.beta_min + (b2 - b1) / 0.5;
  vp.time_scale = p.network_time(vp.t_max) / vp.t_max;
  for (double t : {vp.t_min, 0.01, 0.1, 0.3, 0.5, 0.9, vp.t_max}) {
    const double B = vp.beta_min * t + 0.5 * (vp.beta_max - vp.beta_min) * t * t;
    const double a = std::exp(-0.5 * B), s = std::sqrt(-std::expm1(-B));
    if (std::abs(p.alpha(t) - a) > 1e-7 * a || std::abs(p.sigma(t) - s) > 1e-7 * s)
      throw std::runtime_error("the path is not a VP SDE with linear beta (alpha(" + number_text(t) +
                               ") = " + number_text(p.alpha(t)) + ", expected " + number_text(a) + ")");
    if (std::abs(p.network_time(t) - vp.time_scale * t) > 1e-6 * std::max(1.0, vp.time_scale * t))
      throw std::runtime_error("the path's network time is not a multiple of t");
  }
  const std::string pre = ex.loss->preconditioning()->name();
  if (pre != "eps") throw std::runtime_error("the baseline predicts eps; the loss's preconditioning is " + pre);
  return vp;
}

// ---- runs and their summaries ----

/// One run of a sampler (either side).
struct Run {
  double seconds = 0, nfe = std::nan("");
  double accepted = std::nan(""), rejected = std::nan("");  // the ODE's steps
  double mean[2] = {std::nan(""), std::nan("")}, std[2] = {std::nan(""), std::nan("")};
  bool gave_up = false;  // the baseline stopped it after `seconds`
};

/// The runs of one sampler on one side (the baseline: at one torch thread count); the figures
/// are medians over the runs, the moments and steps the last run's.
struct Series {
  std::string sampler;
  int threads = 0;
  std::vector<Run> runs;

  /// A run was stopped: slower than the run it was held against, so out of the comparison.
  bool gave_up() const { return std::any_of(runs.begin(), runs.end(), [](const Run& r) { return r.gave_up; }); }
  double seconds() const { return median_of(&Run::seconds); }
  double nfe() const { return median_of(&Run::nfe); }  // dopri5's varies with the starting draw
  double samples_per_s(double n) const { return n / seconds(); }
  const Run& last() const { return runs.back(); }

 private:
  double median_of(double Run::*field) const {
    std::vector<double> v;
    for (const Run& r : runs) v.push_back(r.*field);
    return median(v);
  }
};

void moments(const Tensor& x, Run& r) {
  const std::size_t n = x.shape()[0], row = x.size() / n, d = std::min<std::size_t>(2, row);
  for (std::size_t j = 0; j < d; ++j) {
    double s = 0, s2 = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double v = x.data()[i * row + j];
      s += v, s2 += v * v;
    }
    r.mean[j] = s / n;
    r.std[j] = std::sqrt(std::max(0.0, s2 / n - r.mean[j] * r.mean[j]));
  }
}

// ---- our samplers ----

/// One of the experiment's samplers on the weights runexp samples, its evaluations counted as
/// draw_samples counts them.
class OurSampler {
 public:
  OurSampler(const Experiment& ex, const SamplerSpec& spec)
      : ex_(ex),
        spec_(spec),
        model_(ex.denoiser(spec.use_ema && ex.ema_network() ? ex.ema_network() : ex.models.shared("model"))) {}

  /// Run `repeat`, from the stream runexp gives that repeat, through run_sampler.
  Run run(long repeat) {
    model_.reset();
    const Rng master(ex_.seed);
    Rng rng = repeat == 0 ? master.split("sampler:" + spec_.name)
                          : master.split("sampler:" + spec_.name + ":" + std::to_string(repeat));
    Run r;
    const auto t0 = Clock::now();
    const SampleOutput out = run_sampler(ex_, spec_, model_, rng);
    r.seconds = seconds(Clock::now() - t0);
    r.nfe = double(model_.nfe());
    for (const auto& [name, value] : out.extras) {
      if (name == "accepted_steps") r.accepted = value.data()[0];
      if (name == "rejected_steps") r.rejected = value.data()[0];
    }
    moments(out.x, r);
    return r;
  }

 private:
  const Experiment& ex_;
  const SamplerSpec& spec_;
  CountingDenoiser model_;
};

// ---- the weights and the network check, for the baseline ----

/// The models as runexp writes them (/model, /ema), and /bench/check_x, check_v and the
/// attribute check_t: our probability-flow velocity v = alpha' x0_hat + sigma' eps_hat at a test
/// batch, which the baseline must reproduce.
void write_weights(const Experiment& ex, const SamplerSpec& ode, const std::string& file) {
  H5::H5File h5(file, H5F_ACC_TRUNC);
  save_models(ex, h5);
  const auto net = ode.use_ema && ex.ema_network() ? ex.ema_network() : ex.models.shared("model");
  const auto model = ex.denoiser(net);
  Rng rng = Rng(12345).split("bench_sampling:check");
  const Tensor x = rng.normal({16, 2});
  const double t = 0.37;
  const Prediction p = model->predict(x, t);
  Tensor v = Tensor::from_shape({16, 2});
  const double da = ex.path->alpha_deriv(t), ds = ex.path->sigma_deriv(t);
  for (std::size_t j = 0; j < v.size(); ++j) v.data()[j] = float(da * p.x0.data()[j] + ds * p.eps.data()[j]);
  H5::Group g = h5_require_group(h5, "bench");
  write_tensor(g, "check_x", x);
  write_tensor(g, "check_v", v);
  write_attribute(g, "check_t", t);
}

// ---- the baseline ----

/// The first two numbers of a JSON array field ("mean": [a, b]).
void json_pair(const std::string& line, const std::string& key, double out[2]) {
  const std::size_t at = line.find("\"" + key + "\": [");
  if (at == std::string::npos) return;
  char* end = nullptr;
  out[0] = std::strtod(line.c_str() + at + key.size() + 5, &end);
  if (*end == ',') out[1] = std::strtod(end + 1, nullptr);
}

/// torch_sde_sampling.py --serve as a child process: one sampler run per request, so that the
/// bench alternates the baseline's runs with ours and both see the same load.
class BaselineProcess {
 public:
  explicit BaselineProcess(const std::string& command) : command_(command) {
    int to_child[2], from_child[2];
    if (::pipe(to_child) != 0 || ::pipe(from_child) != 0) throw std::runtime_error("pipe failed");
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::dup2(to_child[0], 0);
      ::dup2(from_child[1], 1);
      ::dup2(from_child[1], 2);
      ::close(to_child[1]);
      ::close(from_child[0]);
      ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    to_ = ::fdopen(to_child[1], "w");
    from_ = ::fdopen(from_child[0], "r");
    const std::string ready = answer();
    impl = json_field_string(ready, "impl");
  }
  BaselineProcess(const BaselineProcess&) = delete;
  BaselineProcess& operator=(const BaselineProcess&) = delete;
  ~BaselineProcess() {
    std::fclose(to_);  // end of requests: the script exits
    std::fclose(from_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }

  /// One run of `sampler` at `threads` torch threads from the stream of `repeat`, stopped after
  /// `limit` seconds (0: none).
  Run run(const std::string& sampler, int threads, long repeat, double limit) {
    std::fprintf(to_, "%s %d %ld %s\n", sampler.c_str(), threads, repeat, number_text(limit).c_str());
    std::fflush(to_);
    const std::string line = answer();
    Run r;
    r.seconds = json_field_number(line, "seconds");
    r.gave_up = line.find("\"gave_up\": true") != std::string::npos;
    r.nfe = json_field_number(line, "nfe");
    r.accepted = json_field_number(line, "accepted");
    r.rejected = json_field_number(line, "rejected");
    json_pair(line, "mean", r.mean);
    json_pair(line, "std", r.std);
    return r;
  }

  std::string impl;  // e.g. "pytorch-1.13.0a0+scipy-1.10.1"

 private:
  /// The next JSON line; anything else it printed is kept for the error message.
  std::string answer() {
    char buf[8192];
    while (std::fgets(buf, sizeof buf, from_)) {
      const std::string line = buf;
      if (line[0] == '{') return line;
      transcript_ += line;
    }
    throw std::runtime_error("the PyTorch + scipy baseline failed (" + command_ + "):\n" + transcript_);
  }

  std::string command_, transcript_;
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

std::string baseline_command(const Options& o, const SamplerSettings& s, const VpPath& vp, const std::string& weights,
                             const std::string& group) {
  std::ostringstream cmd;
  cmd << "exec /usr/bin/python3 '" << o.torch_script << "' --serve --weights '" << weights << "' --group " << group
      << " --n " << o.n << " --seed " << o.seed << " --activation " << s.activation << " --max-period "
      << number_text(s.max_period) << " --time-scale " << number_text(vp.time_scale) << " --beta-min "
      << number_text(vp.beta_min) << " --beta-max " << number_text(vp.beta_max) << " --t-min "
      << number_text(vp.t_min) << " --t-max " << number_text(vp.t_max) << " --rtol " << number_text(s.rtol)
      << " --atol " << number_text(s.atol) << " --ode-denoise " << s.ode_denoise << " --pc-steps " << s.pc_steps
      << " --predictor " << s.predictor << " --ancestral-variance " << s.ancestral_variance << " --corrector "
      << s.corrector << " --snr " << number_text(s.snr) << " --corrector-steps " << s.corrector_steps
      << " --pc-denoise " << s.pc_denoise;
  return cmd.str();
}

bool torch_available() {
  if (std::system("/usr/bin/python3 -c 'import torch, scipy, h5py' >/dev/null 2>&1") == 0) return true;
  std::fprintf(stderr, "bench_sampling: the baseline needs /usr/bin/python3 with torch, scipy and h5py "
                       "(Debian's python3-torch, python3-scipy, python3-h5py); or pass --no-torch\n");
  return false;
}

// ---- the report ----

/// Whether two sample moments agree within 4 standard errors (the std's by the Gaussian formula
/// s / sqrt(2n), generous for the moons' light tails).
bool moments_agree(const Run& a, const Run& b, double n) {
  for (int j = 0; j < 2; ++j) {
    const double var = a.std[j] * a.std[j] + b.std[j] * b.std[j];
    if (!(std::abs(a.mean[j] - b.mean[j]) <= 4 * std::sqrt(var / n)) ||
        !(std::abs(a.std[j] - b.std[j]) <= 4 * std::sqrt(var / (2 * n))))
      return false;
  }
  return true;
}

/// "ode: 805.2 samples/s, 2.484 s, NFE 902 (last run: 148 + 2 rejected steps), mean [..], std [..]".
std::string describe(const Series& s, double n) {
  char buf[512];
  if (s.gave_up()) {
    std::snprintf(buf, sizeof buf, "%s: stopped after %.1f s in run %zu (3 times the 1-thread run's time)",
                  s.sampler.c_str(), s.last().seconds, s.runs.size());
    return buf;
  }
  std::string steps;
  if (!std::isnan(s.last().accepted)) {
    std::snprintf(buf, sizeof buf, " (last run: %.0f + %.0f rejected steps)", s.last().accepted, s.last().rejected);
    steps = buf;
  }
  const Run& r = s.last();
  std::snprintf(buf, sizeof buf, "%s: %.1f samples/s, %.3f s, NFE %.0f%s, mean [%.3f, %.3f], std [%.3f, %.3f]",
                s.sampler.c_str(), s.samples_per_s(n), s.seconds(), s.nfe(), steps.c_str(), r.mean[0], r.mean[1],
                r.std[0], r.std[1]);
  return buf;
}

std::string json_series(const Series& s, double n) {
  std::ostringstream js;
  js << "{\"sampler\": \"" << s.sampler << "\"";
  if (s.threads) js << ", \"threads\": " << s.threads;
  if (s.gave_up()) js << ", \"gave_up\": true";
  js << ", \"samples_per_s\": " << json_number(s.samples_per_s(n)) << ", \"seconds\": " << json_number(s.seconds())
     << ", \"seconds_all\": [";
  for (std::size_t i = 0; i < s.runs.size(); ++i) js << (i ? ", " : "") << json_number(s.runs[i].seconds);
  js << "], \"nfe\": " << json_number(s.nfe());
  const Run& r = s.last();
  if (!std::isnan(r.accepted))
    js << ", \"accepted\": " << json_number(r.accepted) << ", \"rejected\": " << json_number(r.rejected);
  js << ", \"mean\": [" << json_number(r.mean[0]) << ", " << json_number(r.mean[1]) << "], \"std\": ["
     << json_number(r.std[0]) << ", " << json_number(r.std[1]) << "]}";
  return js.str();
}

int run(const Options& o) {
  if (o.threads > 0) set_num_threads(static_cast<int>(o.threads));
  set_blas_threads(1);
  if (o.torch && !torch_available()) return 1;
  std::printf("machine: %s; load average %.2f at start\n", machine_description().c_str(), load_average());
  std::fflush(stdout);

  // The file with this bench's settings: seed, training steps (the schedule over them), and the
  // two samplers' n, steps and tolerances.
  load_plugin_dir(default_plugin_dir());
  std::vector<std::string> overrides = {"seed=" + std::to_string(o.seed), "train.steps=" + std::to_string(o.steps)};
  const std::map<std::string, std::string> at = sampler_prefixes(Config::load_file(o.yaml), overrides);
  Config config = Config::load_file(o.yaml);
  for (const auto& [type, prefix] : at) {
    if (type != "ode" && type != "pc") continue;
    overrides.push_back(prefix + ".n=" + std::to_string(o.n));
    overrides.push_back(prefix + ".repeats=1");
    overrides.push_back(prefix + ".trajectory=0");
  }
  if (o.pc_steps) overrides.push_back(at.at("pc") + ".steps=" + std::to_string(o.pc_steps));
  if (!std::isnan(o.rtol)) overrides.push_back(at.at("ode") + ".rtol=" + number_text(o.rtol));
  if (!std::isnan(o.atol)) overrides.push_back(at.at("ode") + ".atol=" + number_text(o.atol));
  if (!o.controller.empty()) overrides.push_back(at.at("ode") + ".controller=" + o.controller);
  config.apply_overrides(overrides);
  Config settings_view = config;  // read separately: the composed one tracks its own known keys
  const SamplerSettings settings = read_settings(settings_view, at);
  auto ex = std::make_unique<Experiment>(compose_experiment(config));
  const VpPath vp = vp_path_of(*ex);
  const auto spec = [&](const std::string& type) -> const SamplerSpec& {
    for (const SamplerSpec& s : ex->samplers)  // the first of the type, as sampler_prefixes takes
      if (s.type == type) return s;
    throw std::runtime_error("no sampler of type " + type);
  };
  if (spec("pc").use_ema != spec("ode").use_ema) throw std::runtime_error("ode and pc sample different weights");

  // Train, so the field is a trained one.
  ex->codec->fit(*ex->dataset, Rng(ex->seed).split("normalize"));  // as the run's first stage does
  TrainLoop loop(*ex, Rng(ex->seed));
  const auto t0 = Clock::now();
  double loss = 0;
  for (long i = 0; i < o.steps; ++i) loss = loop.step();
  const double train_s = seconds(Clock::now() - t0);
  std::printf("trained %s for %ld steps in %.2f s (%.0f steps/s, final loss %.4f); VP SDE beta %g..%g on "
              "[%g, %g], network time %g t\n",
              ex->name.c_str(), o.steps, train_s, o.steps / train_s, loss, vp.beta_min, vp.beta_max, vp.t_min,
              vp.t_max, vp.time_scale);
  for (const std::string& a : overrides)
    if (a.rfind("sampler=", 0) == 0) std::printf("%s has no such sampler; added: %s\n", o.yaml.c_str(), a.c_str());
  std::printf("ode: dopri5 (%s controller), rtol %g, atol %g%s; pc: %ld steps, predictor %s, corrector %s", settings.controller.c_str(), settings.rtol,
              settings.atol, settings.ode_denoise ? ", denoised" : "", settings.pc_steps, settings.predictor.c_str(),
              settings.corrector.c_str());
  if (settings.corrector != "none") std::printf(" (snr %g, %ld step%s)", settings.snr, settings.corrector_steps,
                                                settings.corrector_steps == 1 ? "" : "s");
  std::printf("%s; n %ld, median of %ld runs\n", settings.pc_denoise ? ", denoised" : "", o.n, o.repeats);
  std::fflush(stdout);

  // The weights where the baseline reads them: --keep-weights, or a temporary file.
  const std::string weights = !o.keep_weights.empty() ? o.keep_weights
                              : o.torch ? (std::filesystem::temp_directory_path() /
                                           ("bench_sampling_" + std::to_string(::getpid()) + ".h5"))
                                              .string()
                                        : "";
  if (!weights.empty()) write_weights(*ex, spec("ode"), weights);
  struct RemoveTemporary {
    std::string file;
    ~RemoveTemporary() {
      if (!file.empty()) std::filesystem::remove(file);
    }
  } remove_weights{o.keep_weights.empty() ? weights : ""};
  std::unique_ptr<BaselineProcess> baseline;
  std::signal(SIGPIPE, SIG_IGN);  // a baseline that died is reported from its output, not by a signal
  if (o.torch)
    baseline = std::make_unique<BaselineProcess>(
        baseline_command(o, settings, vp, weights, spec("ode").use_ema && ex->ema_network() ? "ema" : "model"));

  // Each repeat runs ours, then the baseline with 1 torch thread, then with 2 while that stays
  // within 3 times the 1-thread run's time (on a loaded machine torch's second thread can be 20
  // times slower), so that every side sees the same load.
  const std::vector<std::string> samplers = {"ode", "pc"};
  std::map<std::string, Series> ours;
  std::map<std::string, std::vector<Series>> base;  // per sampler: 1 and 2 torch threads
  for (const std::string& name : samplers) {
    ours[name] = Series{name, 0, {}};
    base[name] = {Series{name, 1, {}}, Series{name, 2, {}}};
  }
  std::map<std::string, OurSampler> our_samplers;
  for (const std::string& name : samplers) our_samplers.emplace(name, OurSampler(*ex, spec(name)));
  for (long r = 0; r < o.repeats; ++r)
    for (const std::string& name : samplers) {
      ours[name].runs.push_back(our_samplers.at(name).run(r));
      if (!baseline) continue;
      Series& one = base[name][0];
      Series& two = base[name][1];
      one.runs.push_back(baseline->run(name, 1, r, 0.0));
      if (!two.gave_up()) two.runs.push_back(baseline->run(name, 2, r, 3.0 * one.runs.back().seconds + 1.0));
    }
  const std::string impl = baseline ? baseline->impl : "";
  baseline.reset();

  const double n = double(o.n);
  const int threads = num_threads();
  for (const std::string& name : samplers)
    std::printf("ours (%d thread%s) %s\n", threads, threads == 1 ? "" : "s", describe(ours[name], n).c_str());
  std::map<std::string, const Series*> best;  // the baseline's faster thread count
  if (o.torch) {
    for (const std::string& name : samplers)
      for (const Series& s : base[name]) {
        std::printf("%s (%d thread%s) %s\n", impl.c_str(), s.threads, s.threads == 1 ? "" : "s",
                    describe(s, n).c_str());
        if (!s.gave_up() && (!best[name] || s.seconds() < best[name]->seconds())) best[name] = &s;
      }
  }

  std::printf("\n| sampler | ours samples/s | torch+scipy samples/s | ours / baseline | NFE ours | NFE baseline "
              "| ms per NFE ours / baseline |\n|---|---:|---:|---:|---:|---:|---:|\n");
  const std::map<std::string, std::string> label = {{"ode", "PF-ODE (dopri5 / RK45)"}, {"pc", "PC"}};
  for (const std::string& name : samplers) {
    const Series& u = ours[name];
    const double ms = 1e3 * u.seconds() / u.nfe();
    if (!o.torch) {
      std::printf("| %s | %.1f | | | %.0f | | %.3f / |\n", label.at(name).c_str(), u.samples_per_s(n), u.nfe(), ms);
      continue;
    }
    const Series& b = *best[name];
    std::printf("| %s | %.1f | %.1f (%d thread%s) | %.2fx | %.0f | %.0f | %.3f / %.3f |\n", label.at(name).c_str(),
                u.samples_per_s(n), b.samples_per_s(n), b.threads, b.threads == 1 ? "" : "s",
                u.samples_per_s(n) / b.samples_per_s(n), u.nfe(), b.nfe(), ms, 1e3 * b.seconds() / b.nfe());
  }
  if (o.torch)
    for (const std::string& name : samplers)
      std::printf("%s samples, ours vs baseline (last runs): mean and std %s within 4 standard errors\n",
                  name.c_str(), moments_agree(ours[name].last(), best[name]->last(), n) ? "agree" : "DO NOT agree");
  std::printf("load average %.2f at the end\n", load_average());

  std::ostringstream js;
  js << "{\"impl\": \"diffusion-cpp\", \"threads\": " << threads << ", \"n\": " << o.n
     << ", \"train_steps\": " << o.steps << ", \"repeats\": " << o.repeats
     << ", \"controller\": \"" << settings.controller << "\"" << ", \"rtol\": " << json_number(settings.rtol) << ", \"atol\": " << json_number(settings.atol)
     << ", \"pc_steps\": " << settings.pc_steps << ", \"ours\": [" << json_series(ours["ode"], n) << ", "
     << json_series(ours["pc"], n) << "]";
  if (o.torch) {
    js << ", \"baseline\": [";
    bool first = true;
    for (const std::string& name : samplers)
      for (const Series& s : base[name]) {
        if (s.runs.empty()) continue;
        js << (first ? "" : ", ") << json_series(s, n);
        first = false;
      }
    js << "], \"baseline_impl\": \"" << impl << "\"";
    for (const std::string& name : samplers)
      js << ", \"ratio_" << name << "\": " << json_number(ours[name].samples_per_s(n) / best[name]->samples_per_s(n));
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
    std::fprintf(stderr, "bench_sampling: %s\n", e.what());
    return 1;
  }
}

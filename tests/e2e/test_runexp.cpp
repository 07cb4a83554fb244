// runexp end to end, as a user runs it: a subprocess on small copies of the flagship
// experiment, each in a fresh temporary folder.
//   - every bad input fails with one located line on stderr, exit 2 (1 for a failed run), and
//     leaves no file claiming status=complete (nor temporary files) behind;
//   - the same seed, config and build give bit-identical results; another seed does not;
//   - a run writes the results layout of docs/results-format.md;
//   - --print-config and --list write nothing; redirected output has no carriage returns.
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/config.hpp>
#include <diffusion/io/hdf5_io.hpp>

#include "scratch_dir.hpp"

namespace fs = std::filesystem;
using diffusion::Config;
using diffusion::Error;
using diffusion::Shape;
using diffusion::Tensor;

using diffusion::testing::ScratchDir;

namespace {

// The flagship (experiments/ddim_moons.yaml) line for line, so positions match it, with sizes
// small enough for a run of about a second.
const char* const kSmallFlagship =
    "# The flagship: DDPM on two moons, sampled with 50 DDIM steps (small copy for tests).\n"
    "name: ddim_moons\n"
    "seed: 0\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [128, 128, 128], activation: silu,\n"
    "          time_embedding: {type: sinusoidal, dim: 32}}\n"
    "sde:     {type: ddpm, timesteps: 1000, schedule: linear, beta_start: 1.0e-4, beta_end: 0.02}\n"
    "loss:    {type: eps_mse}\n"
    "train:   {steps: 200, batch_size: 256, optimizer: {type: adam, lr: 1.0e-3}, ema: 0.999}\n"
    "sampler: {type: ddim, steps: 20, eta: 0.0, n: 200, trajectory: 10}\n"
    "metrics: [w2, sliced_w2, mmd, energy]\n";

/// kSmallFlagship with its one occurrence of `from` replaced by `to`.
std::string with_defect(const std::string& from, const std::string& to) {
  std::string text = kSmallFlagship;
  const auto at = text.find(from);
  if (at == std::string::npos || text.find(from, at + 1) != std::string::npos)
    throw Error("test setup: '" + from + "' is not in the flagship exactly once");
  return text.replace(at, from.size(), to);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw Error("cannot write " + path);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Single-quoted for /bin/sh.
std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string runexp_path() { return std::string(DIFFUSION_BINARY_DIR) + "/bin/runexp"; }

struct RunexpResult {
  int status = -1;   ///< exit code; -1 if it did not exit normally
  std::string out;   ///< stdout
  std::string err;   ///< stderr
  double seconds = 0;
  std::string command;
};

/// Run runexp with `args` from `cwd`, stdout and stderr to files in `log_dir` (never in the
/// folder under test, whose contents the tests inspect).
RunexpResult runexp(const std::vector<std::string>& args, const fs::path& log_dir,
                    const fs::path& cwd = {}) {
  static int counter = 0;
  const std::string tag = std::to_string(++counter);
  const std::string out_file = (log_dir / ("stdout." + tag)).string();
  const std::string err_file = (log_dir / ("stderr." + tag)).string();
  RunexpResult r;
  r.command = quote(runexp_path());
  for (const auto& a : args) r.command += " " + quote(a);
  // exec: the time limit below signals runexp itself, not only the shell, so a hung run does not
  // outlive its test (SIGKILL 10 s after SIGTERM for one that cannot stop).
  std::string shell = "exec " + r.command + " >" + quote(out_file) + " 2>" + quote(err_file) + " </dev/null";
  if (!cwd.empty()) shell = "cd " + quote(cwd.string()) + " && " + shell;
  const auto t0 = std::chrono::steady_clock::now();
  const int raw = std::system(("timeout -k 10 300 sh -c " + quote(shell)).c_str());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = read_text(out_file);
  r.err = read_text(err_file);
  return r;
}

std::set<std::string> folder_entries(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

std::size_t count_lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  const auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

/// Root group of a results file opened read-only (an H5File sliced to Group has no valid id).
struct ResultsFile {
  explicit ResultsFile(const std::string& path) : file(path, H5F_ACC_RDONLY), root(file.openGroup("/")) {}
  H5::H5File file;
  H5::Group root;
  std::string status() const { return diffusion::read_string_attribute(root, "status"); }
  Tensor tensor(const std::string& group, const std::string& name) const {
    return diffusion::read_tensor(diffusion::h5_open_group(root, group), name);
  }
};

bool same_bytes(const Tensor& a, const Tensor& b) {
  return diffusion::shape_of(a) == diffusion::shape_of(b) &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Every dataset of `group` in two files, byte for byte.
void require_same_group(const ResultsFile& a, const ResultsFile& b, const std::string& group) {
  const auto ga = diffusion::h5_open_group(a.root, group), gb = diffusion::h5_open_group(b.root, group);
  const auto names = diffusion::h5_dataset_names(ga);
  REQUIRE(!names.empty());
  REQUIRE(names == diffusion::h5_dataset_names(gb));
  for (const auto& n : names) {
    CAPTURE(group, n);
    REQUIRE(same_bytes(diffusion::read_tensor(ga, n), diffusion::read_tensor(gb, n)));
  }
}

// ---- the successful runs, shared by the test cases (each runs at most once per process) ----

const char* const kTwoSamplers =
    "samplers:\n"
    "  - {type: ddim, steps: 20, eta: 0.0, n: 200, trajectory: 10}\n"
    "  - {type: ancestral, name: anc, steps: 20, n: 100, trajectory: 3}\n";

struct SharedRuns {
  ScratchDir dir{"ok"};
  std::map<std::string, RunexpResult> runs;

  std::string yaml(const std::string& which) const { return dir / (which + ".yaml"); }
  std::string h5(const std::string& which) const { return dir / (which + ".h5"); }

  /// "a" and "a_again": the small flagship with seed 0; "seed1": with --seed 1; "two": the
  /// same with a `samplers:` list of ddim and ancestral (named anc).
  const RunexpResult& get(const std::string& which) {
    auto it = runs.find(which);
    if (it != runs.end()) return it->second;
    std::vector<std::string> args;
    if (which == "two") {
      write_text(yaml(which), with_defect("sampler: {type: ddim, steps: 20, eta: 0.0, n: 200, trajectory: 10}\n",
                                          kTwoSamplers));
      args = {yaml(which)};
    } else {
      write_text(yaml(which), kSmallFlagship);
      args = {yaml(which)};
      if (which == "seed1") args.insert(args.end(), {"--seed", "1"});
    }
    args.insert(args.end(), {"--out", h5(which)});
    return runs[which] = runexp(args, dir.path());
  }
};

SharedRuns& shared() {
  static SharedRuns s;
  return s;
}

const RunexpResult& successful_run(const std::string& which) {
  const RunexpResult& r = shared().get(which);
  INFO("$ " << r.command << "\nstdout:\n" << r.out << "stderr:\n" << r.err);
  REQUIRE(r.status == 0);
  return r;
}

// ---- bad inputs ----

struct BadInput {
  std::string label;
  std::string yaml;                  ///< experiment text ("" = no file is written)
  std::vector<std::string> args;     ///< after the experiment path; "{dir}" is the case folder
  int exit_code;
  std::string location;              ///< expected right after "runexp: error: "; "{file}" = yaml path
  std::vector<std::string> needles;  ///< further substrings of the message
};

std::string substitute(std::string s, const std::string& key, const std::string& value) {
  for (auto at = s.find(key); at != std::string::npos; at = s.find(key, at + value.size()))
    s.replace(at, key.size(), value);
  return s;
}

}  // namespace

TEST_CASE("runexp: each bad input fails with one located line and leaves no results file",
          "[e2e][runexp]") {
  const std::string flagship = kSmallFlagship;
  const std::vector<BadInput> cases = {
      {"malformed YAML (unclosed bracket)",
       with_defect("hidden: [128, 128, 128],", "hidden: [128, 128, 128,"), {}, 2, "{file}:",
       {"invalid YAML"}},
      {"wrong type", with_defect("steps: 200,", "steps: \"many\","), {}, 2,
       "{file}:9:18: train.steps: ", {"expected an integer >= 1", "got \"many\""}},
      {"negative steps", with_defect("steps: 200,", "steps: -5,"), {}, 2,
       "{file}:9:18: train.steps: ", {"expected an integer >= 1", "got -5"}},
      {"zero batch size", with_defect("batch_size: 256", "batch_size: 0"), {}, 2,
       "{file}:9:35: train.batch_size: ", {"expected an integer >= 1", "got 0"}},
      {"unknown key", with_defect("noise: 0.05", "nosie: 0.05"), {}, 2,
       "{file}:4:24: dataset.nosie: ", {"unknown key 'nosie'", "did you mean 'noise'"}},
      {"unknown top-level key (misspelt required key)", with_defect("train:   {", "trian:   {"), {},
       2, "{file}:9:1: trian: ", {"unknown key 'trian'", "did you mean 'train'"}},
      {"unknown top-level key beside a valid one", flagship + "trian: {steps: 5}\n", {}, 2,
       "{file}:12:1: trian: ", {"unknown key 'trian'", "did you mean 'train'"}},
      {"unknown sampler type", with_defect("type: ddim", "type: ddjm"), {}, 2,
       "{file}:10:17: sampler.type: ", {"ddjm", "ancestral", "ddim", "did you mean 'ddim'"}},
      {"sampler steps beyond the SDE's", with_defect("steps: 20,", "steps: 5000,"), {}, 2,
       "{file}:", {"sampler", "5000", "1000"}},
      {"shards that do not divide the batch", with_defect("batch_size: 256", "batch_size: 256, shards: 3"),
       {}, 2, "{file}:9:48: train.shards: ", {"expected a divisor of batch_size (256), got 3"}},
      {"a sampler time outside the path's",
       with_defect("steps: 20,", "spacing: {type: piecewise, times: [1500, 0], shares: [1]},"), {}, 2,
       "{file}:", {"sampler", "1500 lies outside the path's times [0, 999]"}},
      {"two samplers with one name",
       with_defect("sampler: {type: ddim, steps: 20, eta: 0.0, n: 200, trajectory: 10}\n",
                   "samplers:\n  - {type: ddim, steps: 20, n: 200}\n  - {type: ancestral, name: ddim, n: 200}\n"),
       {}, 2, "{file}:", {"samplers.1", "two samplers are named 'ddim'"}},
      {"bad override", flagship, {"train.steps=-5"}, 2,
       "<command line> 'train.steps=-5': train.steps: ", {"expected an integer >= 1", "got -5"}},
      {"a name that leaves the results folder", flagship, {"name=../../escape"}, 2,
       "<command line> 'name=../../escape': name: ", {"contains a path separator", "results/<name>.h5"}},
      {"an empty name (a hidden results/.h5)", flagship, {"name=\"\""}, 2, "<command line> 'name=\"\"': name: ",
       {"the experiment's name '' is empty"}},
      {"a sampler name with a slash (a nested HDF5 group)", flagship, {"sampler.name=a/b"}, 2,
       "<command line> 'sampler.name=a/b': sampler.name: ", {"contains a path separator"}},
      {"an infinite learning rate", flagship, {"train.optimizer.lr=.inf"}, 2,
       "<command line> 'train.optimizer.lr=.inf': train.optimizer.lr: ", {"expected a finite number > 0, got .inf"}},
      {"override without '='", flagship, {"train.steps"}, 2, "", {"'train.steps'", "key.path=value"}},
      {"unknown option", flagship, {"--bogus"}, 2, "", {"--bogus"}},
      {"missing experiment file", "", {}, 2, "{file}: ", {"cannot open"}},
  };

  ScratchDir scratch("bad");
  const fs::path logs = scratch.path() / "logs";
  fs::create_directory(logs);
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const BadInput& c = cases[i];
    const fs::path dir = scratch.path() / ("case" + std::to_string(i));
    fs::create_directory(dir);
    const std::string yaml = (dir / "x.yaml").string();
    const std::string out = (dir / "x.h5").string();
    if (!c.yaml.empty()) write_text(yaml, c.yaml);
    std::vector<std::string> args{yaml};
    for (const auto& a : c.args) args.push_back(substitute(a, "{dir}", dir.string()));
    args.insert(args.end(), {"--out", out});
    const RunexpResult r = runexp(args, logs);

    CAPTURE(c.label, r.command, r.out, r.err);
    CHECK(r.status == c.exit_code);
    // One line, and it is the error.
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.back() == '\n');
    const std::string prefix = "runexp: error: " + substitute(c.location, "{file}", yaml);
    CHECK(r.err.rfind(prefix, 0) == 0);
    if (c.location == "{file}:") {
      // Position unspecified here, but there is one: file:line:col with 1-based numbers.
      const std::regex located("^runexp: error: " + std::regex_replace(yaml, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                               R"(:([1-9][0-9]*):([1-9][0-9]*): .+\n$)");
      CHECK(std::regex_match(r.err, located));
    }
    for (const auto& needle : c.needles) {
      CAPTURE(needle);
      CHECK(r.err.find(needle) != std::string::npos);
    }
    // Nothing written: no results file, no temporary file; only the input stays.
    const std::set<std::string> expected = c.yaml.empty() ? std::set<std::string>{} : std::set<std::string>{"x.yaml"};
    CHECK(folder_entries(dir) == expected);
    CHECK(r.err.find('\r') == std::string::npos);
  }
}

TEST_CASE("runexp: an output folder that does not exist fails before training", "[e2e][runexp]") {
  ScratchDir scratch("noout");
  const std::string yaml = scratch / "x.yaml";
  write_text(yaml, kSmallFlagship);
  const std::string missing = (scratch.path() / "no" / "such" / "folder").string();
  // Enough steps that a run which trained first could not finish within the time limit below.
  const RunexpResult r = runexp({yaml, "train.steps=1000000", "--out", missing + "/x.h5"}, scratch.path());
  CAPTURE(r.command, r.out, r.err);
  CHECK(r.status == 2);
  CHECK(r.seconds < 20);
  CHECK(count_lines(r.err) == 1);
  CHECK(r.err.rfind("runexp: error: ", 0) == 0);
  CHECK(r.err.find(missing) != std::string::npos);
  CHECK(r.err.find("does not exist") != std::string::npos);
  CHECK(!fs::exists(scratch.path() / "no"));
}

TEST_CASE("runexp: a run that diverges in training exits 1 and its file says failed",
          "[e2e][runexp]") {
  ScratchDir scratch("nan");
  const fs::path run_dir = scratch.path() / "run";
  fs::create_directory(run_dir);
  const std::string yaml = scratch / "x.yaml";
  const std::string out = (run_dir / "x.h5").string();
  write_text(yaml, kSmallFlagship);
  const RunexpResult r = runexp({yaml, "train.optimizer.lr=1e30", "--out", out}, scratch.path());
  CAPTURE(r.command, r.out, r.err);
  CHECK(r.status == 1);
  const std::string error = last_line(r.err);
  CHECK(error.rfind("runexp: error: ", 0) == 0);
  const std::regex names_step(R"(.*\bstep [0-9]+\b.*)");
  CHECK(std::regex_match(error, names_step));
  CHECK(r.err.find('\r') == std::string::npos);
  // Whatever is at the output path says failed, carries the error; no temporary file is left.
  for (const auto& name : folder_entries(run_dir)) {
    CAPTURE(name);
    CHECK(name == "x.h5");
  }
  if (fs::exists(out)) {
    const ResultsFile f(out);
    CHECK(f.status() == "failed");
    const std::string stored = diffusion::read_string_attribute(f.root, "error");
    CHECK(error.find(stored) != std::string::npos);
  }
}

TEST_CASE("runexp: a small run writes the results layout", "[e2e][runexp]") {
  const RunexpResult& r = successful_run("a");
  CAPTURE(r.err);
  // Redirected output: plain lines, no carriage returns or terminal escapes.
  CHECK(r.err.find('\r') == std::string::npos);
  CHECK(r.err.find('\x1b') == std::string::npos);
  CHECK(r.out.find("results: " + shared().h5("a")) != std::string::npos);
  // No temporary file (".a.h5.<pid>.tmp") is left beside the results.
  for (const auto& name : folder_entries(shared().dir.path())) CHECK(name.rfind(".", 0) != 0);

  const ResultsFile f(shared().h5("a"));
  using diffusion::h5_exists;
  using diffusion::has_attribute;
  using diffusion::read_shape;

  SECTION("root attributes") {
    CHECK(f.status() == "complete");
    CHECK(!diffusion::read_string_attribute(f.root, "version").empty());
    CHECK(diffusion::read_int_attribute(f.root, "seed") == 0);
    for (const char* t : {"train_seconds", "sample_seconds", "metric_seconds", "total_seconds"}) {
      CAPTURE(t);
      const double s = diffusion::read_double_attribute(f.root, t);
      CHECK(std::isfinite(s));
      CHECK(s >= 0);
    }
    // The stored configuration loads back, with the values the run used.
    const Config config = Config::load_string(diffusion::read_string_attribute(f.root, "config"), "config");
    CHECK(config.root().at("train").get_int("steps") == 200);
    CHECK(config.root().at("sampler").get_int("steps") == 20);
    CHECK(config.root().get_string("name") == "ddim_moons");
  }
  SECTION("training log") {
    const Tensor step = f.tensor("train", "step"), loss = f.tensor("train", "loss");
    REQUIRE(diffusion::shape_of(step).size() == 1);
    REQUIRE(diffusion::shape_of(step) == diffusion::shape_of(loss));
    REQUIRE(step.size() >= 2);
    for (std::size_t i = 1; i < step.size(); ++i) CHECK(step.data()[i] > step.data()[i - 1]);
    CHECK(step.data()[step.size() - 1] == 200);
    for (std::size_t i = 0; i < loss.size(); ++i) CHECK(std::isfinite(loss.data()[i]));
  }
  SECTION("model and EMA weights under the same names") {
    const auto model = diffusion::h5_dataset_names(diffusion::h5_open_group(f.root, "model"));
    const auto ema = diffusion::h5_dataset_names(diffusion::h5_open_group(f.root, "ema"));
    CHECK(!model.empty());
    CHECK(model == ema);
    for (const auto& n : model) {
      CAPTURE(n);
      CHECK(read_shape(diffusion::h5_open_group(f.root, "model"), n) ==
            read_shape(diffusion::h5_open_group(f.root, "ema"), n));
    }
  }
  SECTION("samples, trajectory, metrics, reference") {
    const auto g = diffusion::h5_open_group(f.root, "samples/ddim");
    const Tensor x = diffusion::read_tensor(g, "x", Shape{200, 2});
    const Tensor traj = diffusion::read_tensor(g, "trajectory", Shape{10, 200, 2});
    for (float v : x) REQUIRE(std::isfinite(v));
    // The last frame is the result itself.
    CHECK(std::memcmp(traj.data() + 9 * 400, x.data(), 400 * sizeof(float)) == 0);
    CHECK(diffusion::read_int_attribute(g, "nfe") == 20);
    CHECK(diffusion::read_double_attribute(g, "seconds") >= 0);
    for (const char* m : {"w2", "sliced_w2", "mmd", "energy"}) {
      CAPTURE(m);
      const Tensor v = f.tensor("metrics/ddim", m);
      CHECK(diffusion::shape_of(v).empty());
      CHECK(std::isfinite(v.data()[0]));
    }
    CHECK(read_shape(diffusion::h5_open_group(f.root, "data"), "reference") == Shape{200, 2});
  }
}

TEST_CASE("runexp: same seed gives bit-identical results, another seed does not", "[e2e][runexp]") {
  successful_run("a");
  successful_run("a_again");
  successful_run("seed1");
  const ResultsFile a(shared().h5("a")), again(shared().h5("a_again")), other(shared().h5("seed1"));
  require_same_group(a, again, "samples/ddim");
  require_same_group(a, again, "model");
  require_same_group(a, again, "ema");
  require_same_group(a, again, "metrics/ddim");
  require_same_group(a, again, "train");
  require_same_group(a, again, "data");

  CHECK(diffusion::read_int_attribute(other.root, "seed") == 1);
  const Config config = Config::load_string(diffusion::read_string_attribute(other.root, "config"), "config");
  CHECK(config.root().get_int("seed") == 1);
  CHECK(!same_bytes(a.tensor("samples/ddim", "x"), other.tensor("samples/ddim", "x")));
  CHECK(!same_bytes(a.tensor("model", diffusion::h5_dataset_names(diffusion::h5_open_group(a.root, "model"))[0]),
                    other.tensor("model", diffusion::h5_dataset_names(diffusion::h5_open_group(other.root, "model"))[0])));
}

TEST_CASE("runexp: a samplers list writes one group per sampler", "[e2e][runexp]") {
  successful_run("two");
  const ResultsFile f(shared().h5("two"));
  CHECK(f.status() == "complete");
  const auto ddim = diffusion::h5_open_group(f.root, "samples/ddim");
  const auto anc = diffusion::h5_open_group(f.root, "samples/anc");
  CHECK(diffusion::read_shape(ddim, "x") == Shape{200, 2});
  CHECK(diffusion::read_shape(anc, "x") == Shape{100, 2});
  CHECK(diffusion::read_shape(anc, "trajectory") == Shape{3, 100, 2});
  CHECK(diffusion::read_string_attribute(ddim, "type") == "ddim");
  CHECK(diffusion::read_string_attribute(anc, "type") == "ancestral");
  CHECK(diffusion::read_int_attribute(ddim, "nfe") == 20);
  CHECK(diffusion::read_int_attribute(anc, "nfe") == 20);
  for (const char* s : {"ddim", "anc"})
    for (const char* m : {"w2", "sliced_w2", "mmd", "energy"}) {
      CAPTURE(s, m);
      CHECK(std::isfinite(f.tensor(std::string("metrics/") + s, m).data()[0]));
    }
  // Adding a sampler changes neither training nor another sampler's draws.
  successful_run("a");
  const ResultsFile a(shared().h5("a"));
  require_same_group(a, f, "model");
  CHECK(same_bytes(a.tensor("samples/ddim", "x"), f.tensor("samples/ddim", "x")));
}

TEST_CASE("runexp: --print-config and --list write nothing", "[e2e][runexp]") {
  ScratchDir scratch("print");
  const fs::path cwd = scratch.path() / "cwd";
  fs::create_directory(cwd);
  const fs::path logs = scratch.path();
  const std::string flagship = std::string(DIFFUSION_SOURCE_DIR) + "/experiments/ddim_moons.yaml";

  SECTION("--print-config shows the overrides and writes no file") {
    const RunexpResult r = runexp({flagship, "train.steps=123", "network.hidden=[64, 64]",
                                   "sampler.steps=7", "--seed", "42", "--print-config"},
                                  logs, cwd);
    CAPTURE(r.command, r.out, r.err);
    REQUIRE(r.status == 0);
    CHECK(r.err.empty());
    const Config printed = Config::load_string(r.out, "stdout");
    const auto root = printed.root();
    CHECK(root.at("train").get_int("steps") == 123);
    CHECK(root.at("network").get_int_list("hidden") == std::vector<std::int64_t>{64, 64});
    CHECK(root.at("sampler").get_int("steps") == 7);
    CHECK(root.get_int("seed") == 42);
    CHECK(root.get_string("name") == "ddim_moons");
    CHECK(folder_entries(cwd).empty());
  }
  SECTION("--print-config of a bad config fails like a run") {
    const RunexpResult r = runexp({flagship, "train.batch_size=0", "--print-config"}, logs, cwd);
    CAPTURE(r.command, r.out, r.err);
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    CHECK(r.err.find("<command line> 'train.batch_size=0': train.batch_size: ") != std::string::npos);
    CHECK(folder_entries(cwd).empty());
  }
  SECTION("no experiment file is a usage error") {
    const RunexpResult r = runexp({}, logs, cwd);
    CAPTURE(r.command, r.out, r.err);
    CHECK(r.status == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find("no experiment file") != std::string::npos);
    CHECK(folder_entries(cwd).empty());
  }
  SECTION("--list names every kind and where each component comes from") {
    const RunexpResult r = runexp({"--list"}, logs, cwd);
    CAPTURE(r.command, r.out, r.err);
    REQUIRE(r.status == 0);
    CHECK(folder_entries(cwd).empty());
    // Each kind's header, then its components with their origins.
    std::map<std::string, std::vector<std::string>> by_kind;
    std::string kind;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      if (line[0] != ' ') {
        kind = line;
        by_kind[kind];
      } else {
        by_kind[kind].push_back(line);
      }
    }
    const std::map<std::string, std::vector<std::pair<std::string, std::string>>> expected = {
        {"dataset", {{"moons", "toy_data"}, {"circles", "toy_data"}, {"swiss_roll", "toy_data"},
                     {"eight_gaussians", "toy_data"}, {"checkerboard", "toy_data"}, {"pinwheel", "toy_data"}}},
        {"network", {{"mlp", "mlp"}}},
        {"sde", {{"ddpm", "ddpm"}}},
        {"loss", {{"eps_mse", "ddpm"}, {"x0_mse", "ddpm"}, {"v_mse", "ddpm"}, {"mse", "ddpm"}}},
        {"preconditioning", {{"eps", "core"}, {"x0", "core"}, {"v", "core"}, {"score", "core"}, {"velocity", "core"}}},
        {"sampler", {{"ddim", "ddpm"}, {"ancestral", "ddpm"}}},
        {"time grid", {{"linear", "core"}, {"quadratic", "core"}, {"log_snr", "core"}, {"karras", "core"},
                       {"piecewise", "core"}, {"list", "core"}}},
        {"codec", {{"standardize", "core"}, {"identity", "core"}}},
        {"metric", {{"w2", "core"}, {"sliced_w2", "core"}, {"mmd", "core"}, {"energy", "core"}}},
        {"potential", {{"gaussian_observation", "smc"}, {"region", "smc"}, {"classifier", "smc"}, {"reward", "smc"}}},
        {"guidance", {{"classifier_free", "guidance"}, {"classifier", "guidance"}}},
    };
    CHECK(by_kind.size() == expected.size());
    for (const auto& [k, components] : expected) {
      // Headers are "<kind>:" (singular or plural).
      const auto header = std::find_if(by_kind.begin(), by_kind.end(), [&](const auto& kv) {
        return kv.first == k + ":" || kv.first == k + "s:" || kv.first == k + "es:";
      });
      CAPTURE(k);
      REQUIRE(header != by_kind.end());
      for (const auto& [name, origin] : components) {
        CAPTURE(name, origin);
        const auto& rows = header->second;
        const bool listed = std::any_of(rows.begin(), rows.end(), [&](const std::string& row) {
          std::istringstream words(row);
          std::string first;
          words >> first;
          return first == name && row.find(origin) != std::string::npos;
        });
        CHECK(listed);
      }
    }
  }
}

// ---- the flagship, unchanged ----

TEST_CASE("runexp: the flagship experiment runs as shipped", "[e2e][runexp][flagship]") {
  ScratchDir dir("flagship");
  const std::string out = dir / "ddim_moons.h5";
  const RunexpResult r =
      runexp({std::string(DIFFUSION_SOURCE_DIR) + "/experiments/ddim_moons.yaml", "--out", out}, dir.path());
  INFO("$ " << r.command << "\nstdout:\n" << r.out << "stderr:\n" << r.err);
  REQUIRE(r.status == 0);
  const ResultsFile f(out);
  REQUIRE(f.status() == "complete");
  REQUIRE(diffusion::shape_of(f.tensor("samples/ddim", "x")) == Shape{2000, 2});
  REQUIRE(diffusion::shape_of(f.tensor("samples/ddim", "trajectory")) == Shape{10, 2000, 2});
  const double w2 = f.tensor("metrics/ddim", "w2")();
  CAPTURE(w2);
  // The issue's target. Same seed, config and build give the same figure; on a 2-core EPYC the
  // shipped run measures 0.039 (training seeds 0-11: mean 0.047, 8 of 12 at or below 0.05).
  REQUIRE(w2 <= 0.05);
}

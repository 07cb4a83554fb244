// Sweeps (runexp -m): the pure spec parsing and cartesian product (diffusion/sweep.hpp), then end
// to end with the runexp binary:
//   - a 2x3 sweep writes six complete results files <stem>_<i>.h5 and <stem>_index.tsv;
//   - a point equals runexp run directly with that point's overrides, bit for bit;
//   - --array-index 4 and SLURM_ARRAY_TASK_ID=4 each run point 4 alone, bit for bit;
//   - --dry-run lists the points and writes nothing; bad specs fail with one line, exit 2.
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/run/sweep.hpp>

#include "scratch_dir.hpp"

namespace fs = std::filesystem;
using diffusion::Error;
using diffusion::SweepAxis;
using diffusion::SweepError;
using diffusion::Tensor;

using diffusion::testing::ScratchDir;

namespace {

using Strings = std::vector<std::string>;

TEST_CASE("sweep: value lists split on top-level commas only", "[e2e][sweep]") {
  using diffusion::split_sweep_values;
  CHECK(split_sweep_values("a,b,c") == Strings{"a", "b", "c"});
  CHECK(split_sweep_values("1e-3") == Strings{"1e-3"});
  CHECK(split_sweep_values("[64,64],[128,128]") == Strings{"[64,64]", "[128,128]"});
  CHECK(split_sweep_values("[64, 64], [128]") == Strings{"[64, 64]", "[128]"});
  CHECK(split_sweep_values("{type: adam, lr: 1},{type: sgd}") == Strings{"{type: adam, lr: 1}", "{type: sgd}"});
  CHECK(split_sweep_values("[[1,2],[3]],[4]") == Strings{"[[1,2],[3]]", "[4]"});
  CHECK(split_sweep_values("'a,b',\"c,]d\"") == Strings{"'a,b'", "\"c,]d\""});
  CHECK_THROWS_AS(split_sweep_values(""), SweepError);
  CHECK_THROWS_AS(split_sweep_values("a,,b"), SweepError);
  CHECK_THROWS_AS(split_sweep_values("a,"), SweepError);
  CHECK_THROWS_AS(split_sweep_values("[1,2"), SweepError);
  CHECK_THROWS_AS(split_sweep_values("1]"), SweepError);
  CHECK_THROWS_AS(split_sweep_values("[1}"), SweepError);
  CHECK_THROWS_AS(split_sweep_values("'a,b"), SweepError);
}

TEST_CASE("sweep: specs parse into key and values, bad specs are named", "[e2e][sweep]") {
  using diffusion::is_sweep_spec;
  using diffusion::parse_sweep_spec;
  const SweepAxis a = parse_sweep_spec("network.hidden=[64,64],[128,128]");
  CHECK(a.key == "network.hidden");
  CHECK(a.values == Strings{"[64,64]", "[128,128]"});
  CHECK(parse_sweep_spec("seed=3").values == Strings{"3"});
  CHECK(is_sweep_spec("seed=1,2"));
  CHECK(is_sweep_spec("x=a,"));  // malformed, but meant as a sweep: parse reports it
  CHECK_FALSE(is_sweep_spec("seed=1"));
  CHECK_FALSE(is_sweep_spec("network.hidden=[64,64]"));
  CHECK_FALSE(is_sweep_spec("nokey"));
  try {
    parse_sweep_spec("train.steps");
    FAIL("no exception");
  } catch (const SweepError& e) {
    CHECK(std::string(e.what()).find("no '='") != std::string::npos);
    CHECK(std::string(e.what()).find("train.steps") != std::string::npos);
  }
  CHECK_THROWS_AS(parse_sweep_spec("train.steps="), SweepError);
  CHECK_THROWS_AS(parse_sweep_spec("=1,2"), SweepError);
  CHECK_THROWS_AS(diffusion::check_distinct_keys({parse_sweep_spec("a=1,2"), parse_sweep_spec("a=3,4")}),
                  SweepError);
}

TEST_CASE("sweep: the product is ordered with the first key slowest", "[e2e][sweep]") {
  const std::vector<SweepAxis> axes = {{"a", {"1", "2"}}, {"b", {"x", "y", "z"}}};
  REQUIRE(diffusion::sweep_size(axes) == 6);
  const auto points = diffusion::sweep_points(axes);
  const std::vector<Strings> expected = {{"a=1", "b=x"}, {"a=1", "b=y"}, {"a=1", "b=z"},
                                         {"a=2", "b=x"}, {"a=2", "b=y"}, {"a=2", "b=z"}};
  CHECK(points == expected);
  CHECK(diffusion::sweep_point(axes, 4) == Strings{"a=2", "b=y"});
  CHECK_THROWS_AS(diffusion::sweep_point(axes, 6), SweepError);
  CHECK(diffusion::sweep_size({}) == 1);
  CHECK(diffusion::sweep_points({}) == std::vector<Strings>{Strings{}});
  const std::vector<SweepAxis> three = {{"a", {"0", "1"}}, {"b", {"0", "1"}}, {"c", {"0", "1"}}};
  CHECK(diffusion::sweep_point(three, 6) == Strings{"a=1", "b=1", "c=0"});

  CHECK(diffusion::parse_sweep_index("4", 6, "--array-index") == 4);
  CHECK_THROWS_AS(diffusion::parse_sweep_index("6", 6, "--array-index"), SweepError);
  CHECK_THROWS_AS(diffusion::parse_sweep_index("-1", 6, "--array-index"), SweepError);
  CHECK_THROWS_AS(diffusion::parse_sweep_index("x", 6, "--array-index"), SweepError);
  CHECK_THROWS_AS(diffusion::parse_sweep_index("", 6, "--array-index"), SweepError);
}

TEST_CASE("sweep: result and index paths, and the index file", "[e2e][sweep]") {
  CHECK(diffusion::sweep_result_path("results/moons.h5", 3) == "results/moons_3.h5");
  CHECK(diffusion::sweep_result_path("x.h5", 0) == "x_0.h5");
  CHECK(diffusion::sweep_result_path("/tmp/d/x", 1) == "/tmp/d/x_1.h5");
  CHECK(diffusion::sweep_index_path("results/moons.h5") == "results/moons_index.tsv");
  const std::vector<SweepAxis> axes = {{"a", {"1", "2"}}, {"net.hidden", {"[8,8]"}}};
  CHECK(diffusion::format_sweep_index(axes, "out/x.h5") ==
        "index\tresults\toverrides\n"
        "0\tx_0.h5\ta=1 net.hidden=[8,8]\n"
        "1\tx_1.h5\ta=2 net.hidden=[8,8]\n");
}

// ---- end to end -----------------------------------------------------------------------------

const char* const kConfig =
    "name: sweep_test\n"
    "seed: 0\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [32, 32], activation: silu,\n"
    "          time_embedding: {type: sinusoidal, dim: 16}}\n"
    "sde:     {type: ddpm, timesteps: 1000, schedule: linear, beta_start: 1.0e-4, beta_end: 0.02}\n"
    "loss:    {type: eps_mse}\n"
    "train:   {steps: 200, batch_size: 128, optimizer: {type: adam, lr: 1.0e-3}, ema: 0.999}\n"
    "sampler: {type: ddim, steps: 20, eta: 0.0, n: 200}\n"
    "metrics: [w2, sliced_w2]\n";

const Strings kTiny = {"train.steps=50", "sampler.steps=5", "sampler.n=50", "metrics=[w2]"};
// 2 x 3 = 6 points; point 4 is seed=1, network.hidden=[16,16].
const Strings kSweep = {"seed=0,1", "network.hidden=[32,32],[16,16],[8]"};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct Run {
  int status = -1;
  std::string out, err;
};

/// runexp with `args` from `cwd`; SLURM_ARRAY_TASK_ID is removed from its environment unless
/// `slurm_task` is given (the suite itself may run inside a Slurm array job).
Run runexp(const Strings& args, const ScratchDir& logs, const fs::path& cwd, const std::string& slurm_task = "") {
  static int counter = 0;
  const std::string tag = std::to_string(++counter);
  const std::string out_file = logs / ("stdout." + tag), err_file = logs / ("stderr." + tag);
  std::string cmd = slurm_task.empty() ? "env -u SLURM_ARRAY_TASK_ID " : "env SLURM_ARRAY_TASK_ID=" + quote(slurm_task) + " ";
  cmd += quote(std::string(DIFFUSION_BINARY_DIR) + "/bin/runexp");
  for (const auto& a : args) cmd += " " + quote(a);
  // exec: the time limit signals runexp itself, so a hung run does not outlive its test.
  const std::string shell = "cd " + quote(cwd.string()) + " && exec " + cmd + " >" + quote(out_file) + " 2>" +
                            quote(err_file) + " </dev/null";
  const int raw = std::system(("timeout -k 10 300 sh -c " + quote(shell)).c_str());
  Run r;
  r.status = raw != -1 && WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = read_text(out_file);
  r.err = read_text(err_file);
  return r;
}

Strings concat(std::initializer_list<Strings> parts) {
  Strings all;
  for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

struct Results {
  explicit Results(const std::string& path) : file(path, H5F_ACC_RDONLY), root(file.openGroup("/")) {}
  H5::H5File file;
  H5::Group root;
  std::string status() const { return diffusion::read_string_attribute(root, "status"); }
  Tensor samples() const { return diffusion::read_tensor(diffusion::h5_open_group(root, "samples/ddim"), "x"); }
};

bool same_bytes(const Tensor& a, const Tensor& b) {
  return diffusion::shape_of(a) == diffusion::shape_of(b) &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::size_t count_lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

TEST_CASE("runexp -m: a 2x3 sweep, array points and dry runs", "[e2e][sweep]") {
  ScratchDir dir("run"), logs("logs");
  const std::string yaml = dir / "exp.yaml";
  std::ofstream(yaml) << kConfig;

  SECTION("--dry-run lists the six points and writes nothing") {
    const Run r = runexp(concat({{yaml, "-m"}, kSweep, kTiny, {"--dry-run"}}), logs, dir.path());
    INFO(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("4\tresults/sweep_test_4.h5\tseed=1 network.hidden=[16,16]\n") != std::string::npos);
    CHECK(r.out.find("5\tresults/sweep_test_5.h5\tseed=1 network.hidden=[8]\n") != std::string::npos);
    CHECK(count_lines(r.out) == 7);  // a header line and six points
    CHECK(entries(dir.path()) == std::set<std::string>{"exp.yaml"});
  }

  SECTION("bad sweep specs fail with one line, exit 2, writing nothing") {
    const std::vector<Strings> bad = {
        {yaml, "-m", "seed", "network.hidden=[8],[16]"},       // no '='
        {yaml, "-m", "seed=", "network.hidden=[8],[16]"},      // empty value list
        {yaml, "-m", "seed=0,,1"},                             // empty value
        {yaml, "-m", "network.hidden=[8,[16]"},                // unbalanced
        {yaml, "-m", "seed=0,1", "seed=2,3"},                  // swept twice
        concat({{yaml, "-m"}, kSweep, kTiny, {"--array-index", "6"}}),  // out of range
        concat({{yaml, "-m"}, kSweep, kTiny, {"--array-index", "x"}}),
        {yaml, "--dry-run"},                                   // without -m
    };
    for (const auto& args : bad) {
      const Run r = runexp(args, logs, dir.path());
      CAPTURE(args, r.err);
      CHECK(r.status == 2);
      CHECK(count_lines(r.err) == 1);
      CHECK(r.err.rfind("runexp: error: ", 0) == 0);
    }
    const Run slurm = runexp(concat({{yaml, "-m"}, kSweep, kTiny}), logs, dir.path(), "9");
    CHECK(slurm.status == 2);
    CHECK(slurm.err.find("SLURM_ARRAY_TASK_ID 9 out of range") != std::string::npos);
    CHECK(entries(dir.path()) == std::set<std::string>{"exp.yaml"});
  }

  SECTION("six complete results and an index; points reproduce alone, bit for bit") {
    fs::create_directories(dir.path() / "all");
    const Run r = runexp(concat({{yaml, "-m"}, kSweep, kTiny, {"--out", dir / "all/x.h5"}}), logs, dir.path());
    INFO(r.err);
    REQUIRE(r.status == 0);
    for (int i = 0; i < 6; ++i) {
      CAPTURE(i);
      REQUIRE(fs::exists(dir / ("all/x_" + std::to_string(i) + ".h5")));
      CHECK(Results(dir / ("all/x_" + std::to_string(i) + ".h5")).status() == "complete");
    }
    const std::string index = read_text(dir / "all/x_index.tsv");
    CHECK(count_lines(index) == 7);
    CHECK(index.rfind("index\tresults\toverrides\n0\tx_0.h5\tseed=0 network.hidden=[32,32]\n", 0) == 0);
    CHECK(index.find("4\tx_4.h5\tseed=1 network.hidden=[16,16]\n") != std::string::npos);
    const Tensor x4 = Results(dir / "all/x_4.h5").samples();
    CHECK_FALSE(same_bytes(x4, Results(dir / "all/x_3.h5").samples()));

    // Point 4 is runexp with its overrides (in the same order), run directly.
    const Run direct = runexp(concat({{yaml, "seed=1", "network.hidden=[16,16]"}, kTiny,
                                      {"--out", dir / "direct.h5"}}), logs, dir.path());
    REQUIRE(direct.status == 0);
    CHECK(same_bytes(x4, Results(dir / "direct.h5").samples()));

    fs::create_directories(dir.path() / "one");
    const Run one = runexp(concat({{yaml, "-m"}, kSweep, kTiny, {"--array-index", "4", "--out", dir / "one/x.h5"}}),
                           logs, dir.path());
    INFO(one.err);
    REQUIRE(one.status == 0);
    for (const auto& name : entries(dir.path() / "one"))  // x_4.h5, its checkpoint folder, the index
      CHECK((name == "x_index.tsv" || name.rfind("x_4.h5", 0) == 0));
    CHECK(fs::exists(dir / "one/x_4.h5"));
    CHECK(same_bytes(x4, Results(dir / "one/x_4.h5").samples()));
    CHECK(read_text(dir / "one/x_index.tsv") == index);

    fs::create_directories(dir.path() / "slurm");
    const Run slurm = runexp(concat({{yaml, "-m"}, kSweep, kTiny, {"--out", dir / "slurm/x.h5"}}), logs, dir.path(), "4");
    INFO(slurm.err);
    REQUIRE(slurm.status == 0);
    REQUIRE(fs::exists(dir / "slurm/x_4.h5"));
    CHECK_FALSE(fs::exists(dir / "slurm/x_0.h5"));
    CHECK(same_bytes(x4, Results(dir / "slurm/x_4.h5").samples()));
  }
}

}  // namespace

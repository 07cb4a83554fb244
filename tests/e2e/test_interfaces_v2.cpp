// The version 2 interfaces end to end: runexp on small experiments, with the test-only fixture
// plugin (tests/fixture_plugin, loaded with --plugins) where a seam has no shipped user yet.
//   - the fixture run: a non-Gaussian source, a named model changed by a loss's after_step, a
//     sampler's extras and per-slot NFE, each where the results layout (docs/results-format.md)
//     puts them; the named model is checkpointed and survives a resume bit for bit;
//   - the metric floor (/metrics/data), moons' `spread`, repeats, /train/loss_by_t;
//   - named models loaded with `init:` (frozen, from model, ema or a slot), their errors, and
//     train.freeze;
//   - a class-conditional run whose reference size differs from the sampler's n;
//   - the codec's /data.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/config.hpp>
#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/plugin/registries.hpp>
#include <diffusion/run/checkpoint.hpp>

#include "runexp_child.hpp"
#include "scratch_dir.hpp"

namespace fs = std::filesystem;
using diffusion::Error;
using diffusion::Shape;
using diffusion::Tensor;
using diffusion::testing::Child;
using diffusion::testing::ScratchDir;

namespace {

constexpr double kPi = 3.14159265358979323846;

const std::string kFixtureDir = DIFFUSION_FIXTURE_PLUGIN_DIR;

// ---- experiment files: top-level keys in order, each with a YAML flow value ----

using Doc = std::vector<std::pair<std::string, std::string>>;

/// d with `key` set to `value` (appended when absent); an empty value removes the key.
Doc with(Doc d, const std::string& key, const std::string& value) {
  const auto it = std::find_if(d.begin(), d.end(), [&](const auto& e) { return e.first == key; });
  if (value.empty()) {
    if (it != d.end()) d.erase(it);
  } else if (it != d.end()) {
    it->second = value;
  } else {
    d.emplace_back(key, value);
  }
  return d;
}

std::string text(const Doc& d) {
  std::string s;
  for (const auto& [k, v] : d) s += k + ": " + v + "\n";
  return s;
}

const char* const kNetwork =
    "{type: mlp, hidden: [32, 32], activation: silu, time_embedding: {type: sinusoidal, dim: 16}}";

/// The fixture run: moons from an eight-Gaussian source, the fixture loss copying the model into
/// `target` every 7 steps, the fixture sampler reporting extras. A constant learning rate, so the
/// first 14 steps do not depend on train.steps; checkpoints every 5 steps, all four kept. The
/// cosine schedule ends at sigma(t_max) = 1 to float precision, so the starting draw
/// sigma(t_max) z is the source's draw z.
const Doc kFixture = {
    {"name", "fixture_v2"},
    {"seed", "11"},
    {"dataset", "{type: moons, noise: 0.05}"},
    {"source", "{type: eight_gaussians, radius: 2, std: 0.1}"},
    {"network", kNetwork},
    {"sde", "{type: ddpm, timesteps: 100, schedule: cosine}"},
    {"loss", "{type: fixture_tracking, copy_every: 7}"},
    {"models", "{target: {}}"},
    {"train",
     "{steps: 20, batch_size: 64, optimizer: {type: adam, lr: 1.0e-3}, lr_schedule: {type: constant}, "
     "log_every: 5, checkpoint_every: 5, keep_checkpoints: 4}"},
    {"sampler", "{type: fixture_recording, steps: 10, n: 200, trajectory: 3}"},
    {"metrics", "[sliced_w2]"},
};
constexpr int kFixtureSteps = 10;  // the fixture sampler's steps

/// A small copy of the flagship (experiments/ddim_moons.yaml): DDPM T=1000, eps_mse, EMA, DDIM.
const Doc kFlagship = {
    {"name", "small_flagship"},
    {"seed", "4"},
    {"dataset", "{type: moons, noise: 0.05}"},
    {"network", kNetwork},
    {"sde", "{type: ddpm, timesteps: 1000, schedule: linear, beta_start: 1.0e-4, beta_end: 0.02}"},
    {"loss", "{type: eps_mse}"},
    {"train", "{steps: 100, batch_size: 128, optimizer: {type: adam, lr: 3.0e-3}, ema: 0.9, log_every: 20}"},
    {"sampler", "{type: ddim, steps: 10, n: 200}"},
    {"metrics", "[w2, sliced_w2, mmd, energy]"},
};
const std::vector<std::string> kMetrics = {"w2", "sliced_w2", "mmd", "energy"};

// ---- running runexp and reading its files ----

struct Run {
  Child child;
  std::string h5;  ///< the results file
};

/// runexp on `doc` (written to <dir>/<tag>.yaml) with the fixture plugins and `args`, results to
/// <dir>/<tag>.h5.
Run run_doc(const ScratchDir& dir, const std::string& tag, const Doc& doc, std::vector<std::string> args = {}) {
  const std::string yaml = dir / (tag + ".yaml");
  std::ofstream(yaml) << text(doc);
  Run r;
  r.h5 = dir / (tag + ".h5");
  std::vector<std::string> all{yaml, "--plugins", kFixtureDir, "--out", r.h5};
  all.insert(all.end(), args.begin(), args.end());
  r.child = diffusion::testing::run_runexp(all, dir / tag);
  return r;
}

struct H5Read {
  explicit H5Read(const std::string& path) : file(path, H5F_ACC_RDONLY), root(file.openGroup("/")) {}
  H5::H5File file;
  H5::Group root;
  H5::Group group(const std::string& g) const { return diffusion::h5_open_group(root, g); }
  bool has(const std::string& path) const { return diffusion::h5_exists(root, path); }
  std::string str(const std::string& attr) const { return diffusion::read_string_attribute(root, attr); }
  Tensor tensor(const std::string& g, const std::string& name) const { return diffusion::read_tensor(group(g), name); }
  /// A scalar dataset (a metric).
  double scalar(const std::string& g, const std::string& name) const { return tensor(g, name).data()[0]; }
  H5::DataSet dataset(const std::string& g, const std::string& name) const { return group(g).openDataSet(name); }
};

bool same_bytes(const Tensor& a, const Tensor& b) {
  return diffusion::shape_of(a) == diffusion::shape_of(b) &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Every dataset of group ga in a equals (bit for bit) the one of the same name in group gb of b,
/// and both groups hold the same names.
bool same_group(const H5Read& a, const std::string& ga, const H5Read& b, const std::string& gb) {
  const auto names = diffusion::h5_dataset_names(a.group(ga));
  if (names.empty() || names != diffusion::h5_dataset_names(b.group(gb))) return false;
  for (const auto& n : names)
    if (!same_bytes(a.tensor(ga, n), b.tensor(gb, n))) return false;
  return true;
}

std::size_t count_lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

/// s with every occurrence of `path` replaced by "<dir>": checks for words then never match the
/// scratch folder's name.
std::string without_path(std::string s, const std::string& path) {
  for (auto at = s.find(path); at != std::string::npos; at = s.find(path, at)) s.replace(at, path.size(), "<dir>");
  return s;
}

bool all_finite(const Tensor& t) {
  return std::all_of(t.begin(), t.end(), [](float v) { return std::isfinite(v); });
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (const double x : v) s += x;
  return s / double(v.size());
}

double sample_std(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (const double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / double(v.size() - 1));
}

/// x (N, D) model-space rows decoded with /data/mean and /data/std, as the codec does.
Tensor decoded(const Tensor& z, const H5Read& f) {
  const Tensor mean = f.tensor("data", "mean"), sd = f.tensor("data", "std");
  Tensor x = z;
  const std::size_t d = mean.size();
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = z.data()[i] * sd.data()[i % d] + mean.data()[i % d];
  return x;
}

/// Distance from point i of x (N, 2) to the nearest of the eight centres at radius r.
double to_nearest_centre(const Tensor& x, std::size_t i, double r) {
  double best = 1e300;
  for (int k = 0; k < 8; ++k)
    best = std::min(best, std::hypot(double(x(i, 0)) - r * std::cos(k * kPi / 4), double(x(i, 1)) - r * std::sin(k * kPi / 4)));
  return best;
}

// ---- the runs several test cases read, each made once per process ----

struct Shared {
  ScratchDir dir{"v2"};
  std::map<std::string, Run> runs;

  const Run& get(const std::string& which) {
    if (auto it = runs.find(which); it != runs.end()) return it->second;
    Run r;
    if (which == "fixture") r = run_doc(dir, which, kFixture);
    else if (which == "fixture14") r = run_doc(dir, which, kFixture, {"train.steps=14"});
    else if (which == "flagship") r = run_doc(dir, which, kFlagship);
    else throw Error("test setup: no shared run " + which);
    return runs[which] = std::move(r);
  }
};

Shared& shared() {
  static Shared s;
  return s;
}

/// A run that must have completed.
const Run& complete(const std::string& which) {
  const Run& r = shared().get(which);
  INFO(which << " stderr: " << r.child.err);
  REQUIRE(r.child.status == 0);
  REQUIRE(H5Read(r.h5).str("status") == "complete");
  return r;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// a. The fixture run
// ---------------------------------------------------------------------------------------------

TEST_CASE("v2 fixture: the fixture plugin is not shipped: runexp needs --plugins for it", "[e2e][v2]") {
  // Nothing of the fixture in the default plugin folder.
  const std::string shipped = std::string(DIFFUSION_PLUGIN_BUILD_DIR);
  for (const auto& e : fs::directory_iterator(shipped)) CHECK(e.path().filename().string().find("fixture") == std::string::npos);
  REQUIRE(fs::exists(kFixtureDir + "/libdiffusion_fixture.so"));
  ScratchDir d("v2-noplug");
  const Child without = diffusion::testing::run_runexp({"--list"}, d / "without");
  const Child with_it = diffusion::testing::run_runexp({"--list", "--plugins", kFixtureDir}, d / "with");
  REQUIRE(without.status == 0);
  REQUIRE(with_it.status == 0);
  CHECK(without.out.find("fixture_tracking") == std::string::npos);
  CHECK(with_it.out.find("fixture_tracking") != std::string::npos);
  CHECK(with_it.out.find("fixture_recording") != std::string::npos);
}

TEST_CASE("v2 fixture: every value of the fixture run is where the results layout puts it", "[e2e][v2]") {
  const H5Read f(complete("fixture").h5);
  // Root attributes.
  CHECK(f.str("version") == "2");
  CHECK(f.str("name") == "fixture_v2");
  CHECK(diffusion::read_int_attribute(f.root, "seed") == 11);
  CHECK(diffusion::read_int_attribute(f.root, "steps_completed") == 20);
  CHECK(f.str("config").find("fixture_tracking") != std::string::npos);
  for (const char* t : {"train_seconds", "sample_seconds", "metric_seconds", "total_seconds"})
    CHECK(diffusion::read_double_attribute(f.root, t) >= 0);
  // The training log: windows of 5 steps.
  CHECK(diffusion::read_int64_vector(f.group("train"), "step") == std::vector<std::int64_t>{5, 10, 15, 20});
  CHECK(diffusion::read_double_vector(f.group("train"), "loss").size() == 4);
  CHECK(diffusion::read_shape(f.group("train"), "loss_by_t") == Shape{4, 20});
  CHECK(diffusion::read_double_vector(f.group("train"), "loss_by_t_edges").size() == 21);
  // The data and codec.
  CHECK(diffusion::read_string_attribute(f.group("data"), "codec") == "standardize");
  CHECK(diffusion::read_string_attribute(f.group("data"), "per") == "coordinate");
  CHECK(diffusion::read_shape(f.group("data"), "mean") == Shape{2});
  CHECK(diffusion::read_shape(f.group("data"), "std") == Shape{2});
  CHECK(diffusion::read_shape(f.group("data"), "reference") == Shape{200, 2});
  // The models: the trained one, no EMA (train.ema 0), the named slot under /models only.
  CHECK(f.has("model/net.layers.0.weight"));
  CHECK_FALSE(f.has("ema"));
  REQUIRE(f.has("models/target"));
  CHECK(diffusion::h5_dataset_names(f.group("models/target")) == diffusion::h5_dataset_names(f.group("model")));
  CHECK_FALSE(f.has("models/model"));
  // The samples and the sampler's extras, as reported (model space).
  const std::string s = "samples/fixture_recording";
  const H5::Group g = f.group(s);
  CHECK(diffusion::read_string_attribute(g, "type") == "fixture_recording");
  CHECK(diffusion::read_int_attribute(g, "nfe") == kFixtureSteps);
  CHECK(diffusion::read_int_attribute(g, "nfe_target") == 1);
  CHECK(diffusion::read_int_attribute(g, "repeats") == 1);
  CHECK(diffusion::read_double_attribute(g, "seconds") >= 0);
  CHECK(diffusion::read_shape(g, "x") == Shape{200, 2});
  CHECK(diffusion::read_shape(g, "trajectory") == Shape{3, 200, 2});
  CHECK(diffusion::read_shape(g, "start") == Shape{200, 2});
  CHECK(diffusion::read_shape(g, "step_norm") == Shape{std::size_t(kFixtureSteps)});
  CHECK(diffusion::read_shape(g, "target_x0") == Shape{200, 2});
  const Tensor x = f.tensor(s, "x"), norms = f.tensor(s, "step_norm"), target_x0 = f.tensor(s, "target_x0");
  CHECK(all_finite(x));
  CHECK(all_finite(norms));
  CHECK(all_finite(target_x0));
  // step_norm's last entry is the mean squared norm of the samples in model space.
  const Tensor mean = f.tensor("data", "mean"), sd = f.tensor("data", "std");
  double sq = 0;
  for (std::size_t i = 0; i < 200; ++i)
    for (std::size_t j = 0; j < 2; ++j) sq += std::pow((double(x(i, j)) - mean(j)) / sd(j), 2);
  CHECK(norms(kFixtureSteps - 1) == Approx(sq / 200).epsilon(1e-4));
  // The first trajectory frame is the starting draw, decoded; the extra is not decoded.
  const Tensor start = f.tensor(s, "start"), traj = f.tensor(s, "trajectory"), start_dec = decoded(start, f);
  for (std::size_t i = 0; i < 400; ++i)
    REQUIRE(traj.data()[i] == Approx(start_dec.data()[i]).epsilon(1e-5).margin(1e-5));
  // The metrics and the floor.
  CHECK(f.has("metrics/fixture_recording/sliced_w2"));
  CHECK(f.has("metrics/data/sliced_w2"));
  CHECK(diffusion::read_int_attribute(f.group("metrics/data"), "n") == 200);
}

TEST_CASE("v2 fixture: the sampler starts from the eight-Gaussian source, not a standard normal", "[e2e][v2]") {
  const H5Read f(complete("fixture").h5);
  const Tensor start = f.tensor("samples/fixture_recording", "start");
  const Tensor x = decoded(start, f);
  std::vector<int> per_centre(8, 0);
  for (std::size_t i = 0; i < 200; ++i) {
    CAPTURE(i, x(i, 0), x(i, 1));
    REQUIRE(to_nearest_centre(x, i, 2.0) < 0.6);
    const double a = std::atan2(double(x(i, 1)), double(x(i, 0)));
    ++per_centre[static_cast<std::size_t>(std::lround(a / (kPi / 4)) + 8) % 8];
  }
  for (int k = 0; k < 8; ++k) CHECK(per_centre[k] > 5);  // every centre drawn (about 25 each)
  // In model space the draw is the data set encoded, far from N(0, I): E|z|^2 would be 2.
  double sq = 0;
  for (const float v : start) sq += double(v) * v;
  CHECK(sq / 200 > 5.0);
  // Undecoded, the points are not on the circle of radius 2 (the extra is written as reported).
  std::size_t near = 0;
  for (std::size_t i = 0; i < 200; ++i) near += to_nearest_centre(start, i, 2.0) < 0.6;
  CHECK(near < 150);
}

TEST_CASE("v2 source: a sampler that cannot start from a data-set source is refused before training",
          "[e2e][v2]") {
  // Sampler::check sees the source so that such settings fail before training (exit 2): ddim
  // with eta > 0 is, and so must be ddim's rqmc prior, which only the standard Gaussian has.
  ScratchDir d("v2-rqmc");
  int k = 0;
  for (const std::string sampler : {"{type: ddim, steps: 10, n: 50, eta: 1.0}", "{type: ddim, steps: 10, n: 50, prior: rqmc}",
                                    "{type: ancestral, steps: 10, n: 50}"}) {
    CAPTURE(sampler);
    const Doc doc = with(with(kFixture, "loss", "{type: eps_mse}"), "sampler", sampler);
    const Run r = run_doc(d, "refused" + std::to_string(++k), with(doc, "models", ""));
    CAPTURE(r.child.err);
    CHECK(r.child.status == 2);
    CHECK(r.child.err.find("eight_gaussians") != std::string::npos);
    CHECK(count_lines(r.child.err) == 1);
    CHECK_FALSE(fs::exists(diffusion::checkpoint_dir_for(r.h5)));  // nothing was trained
  }
}

TEST_CASE("v2 fixture: after_step copies the model into `target` at step 14 of 20", "[e2e][v2]") {
  const H5Read f20(complete("fixture").h5), f14(complete("fixture14").h5);
  // The 14-step run's model is the model after 14 updates, as in the 20-step run (constant lr).
  CHECK(same_group(f20, "models/target", f14, "model"));
  CHECK_FALSE(same_group(f20, "models/target", f20, "model"));
  // The 14-step run copied at its last step: its target is its model.
  CHECK(same_group(f14, "models/target", f14, "model"));
  // The named model is evaluated as the sampled one is read: in the 14-step run it is the same
  // network at the same state and time, so its x0 prediction is the last step's result (the
  // samples, in model space).
  const std::string s = "samples/fixture_recording";
  const Tensor tx0_14 = decoded(f14.tensor(s, "target_x0"), f14), x14 = f14.tensor(s, "x");
  for (std::size_t i = 0; i < x14.size(); ++i)
    REQUIRE(tx0_14.data()[i] == Approx(x14.data()[i]).epsilon(1e-5).margin(1e-5));
  // In the 20-step run the target is 6 updates older than the sampled model.
  CHECK_FALSE(same_bytes(decoded(f20.tensor(s, "target_x0"), f20), f20.tensor(s, "x")));
}

TEST_CASE("v2 fixture: the named model is checkpointed and a resumed run ends bit-identical", "[e2e][v2]") {
  const Run& ref = complete("fixture");
  const H5Read f(ref.h5);
  const auto ckpts = diffusion::list_checkpoints(diffusion::checkpoint_dir_for(ref.h5));
  std::vector<std::int64_t> steps;
  for (const auto& c : ckpts) steps.push_back(c.first);
  REQUIRE(steps == std::vector<std::int64_t>{5, 10, 15, 20});
  {
    const H5Read last(ckpts.back().second);
    REQUIRE(last.has("models/target"));
    CHECK(same_group(last, "models/target", f, "models/target"));
    CHECK(same_group(last, "model", f, "model"));
  }
  // Resume from step 10 (after_step must copy at 14 in the resumed part) and from step 15 (no
  // copy after it: the target must come from the checkpoint).
  for (const std::int64_t from : {10, 15}) {
    CAPTURE(from);
    ScratchDir d("v2-resume");
    const std::string path = d / "r.h5";
    fs::copy_file(ref.h5, path);
    fs::copy(ref.h5 + ".ckpt", path + ".ckpt", fs::copy_options::recursive);
    for (const auto& c : diffusion::list_checkpoints(path + ".ckpt"))
      if (c.first > from) fs::remove(c.second);
    const Child r = diffusion::testing::run_runexp({"--resume", path, "--plugins", kFixtureDir}, d / "resume");
    CAPTURE(r.err);
    REQUIRE(r.status == 0);
    CHECK(r.err.find("at step " + std::to_string(from)) != std::string::npos);
    const H5Read g(path);
    REQUIRE(g.str("status") == "complete");
    CHECK(same_group(g, "models/target", f, "models/target"));
    CHECK(same_group(g, "model", f, "model"));
    CHECK(same_group(g, "samples/fixture_recording", f, "samples/fixture_recording"));
    CHECK(same_group(g, "train", f, "train"));
  }
}

// ---------------------------------------------------------------------------------------------
// b. The metric floor, and moons' spread
// ---------------------------------------------------------------------------------------------

TEST_CASE("v2 floor: /metrics/data holds every metric over 5 fresh draws of the data", "[e2e][v2]") {
  const H5Read f(complete("flagship").h5);
  REQUIRE(f.has("metrics/data"));
  CHECK(diffusion::read_int_attribute(f.group("metrics/data"), "n") == 200);
  for (const std::string& m : kMetrics) {
    CAPTURE(m);
    const H5::DataSet ds = f.dataset("metrics/data", m);
    const double mean = f.scalar("metrics/data", m);
    const auto values = diffusion::read_double_vector_attribute(ds, "values");
    CHECK(diffusion::read_int_attribute(ds, "count") == 5);
    REQUIRE(values.size() == 5);
    CHECK(std::isfinite(mean));
    CHECK(mean == Approx(mean_of(values)).epsilon(1e-6));
    CHECK(diffusion::read_double_attribute(ds, "std") > 0);
    CHECK(diffusion::read_double_attribute(ds, "std") == Approx(sample_std(values)).epsilon(1e-9));
    // A sampler's metric has the same form (one run: std 0).
    const H5::DataSet sm = f.dataset("metrics/ddim", m);
    CHECK(diffusion::read_int_attribute(sm, "count") == 1);
    CHECK(diffusion::read_double_attribute(sm, "std") == 0);
  }
}

TEST_CASE("v2 floor: moons spread: even splits n/2 per moon, independent a binomial split", "[e2e][v2]") {
  diffusion::load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_toy_data.so");
  auto& regs = diffusion::registries();
  diffusion::Rng init(0);
  diffusion::BuildContext ctx;
  ctx.rng = &init;
  const auto make = [&](const std::string& yaml) {
    const diffusion::Config c = diffusion::Config::load_string(yaml, "<test>");
    return regs.datasets.create(c.root(), ctx);
  };
  const auto even = make("{type: moons, noise: 0.05}");
  const auto even_explicit = make("{type: moons, noise: 0.05, spread: even}");
  const auto independent = make("{type: moons, noise: 0.05, spread: independent}");
  const auto count_upper = [](const diffusion::Dataset& ds, std::size_t n, std::uint64_t seed) {
    diffusion::Rng rng(seed);
    diffusion::Condition c;
    ds.sample(n, rng, &c);
    REQUIRE(c.labels().size() == n);
    return std::count(c.labels().begin(), c.labels().end(), 0);
  };
  std::set<long> counts;
  for (std::uint64_t seed = 0; seed < 12; ++seed) {
    CAPTURE(seed);
    CHECK(count_upper(*even, 200, seed) == 100);
    CHECK(count_upper(*even_explicit, 201, seed) == 100);
    const long k = count_upper(*independent, 200, seed);
    CHECK(std::abs(k - 100) < 40);  // Binomial(200, 1/2): sd 7.1
    counts.insert(k);
  }
  CHECK(counts.size() >= 4);  // the split varies from seed to seed
  // The floor's draws (sample_independent) are independent even for the evenly spread data set:
  // at noise 0 a point is on the upper moon exactly when it lies on the unit circle.
  const auto exact = make("{type: moons, noise: 0}");
  std::set<long> uppers;
  for (std::uint64_t seed = 0; seed < 12; ++seed) {
    diffusion::Rng rng(seed);
    const Tensor x = exact->sample_independent(200, rng);
    long upper = 0;
    for (std::size_t i = 0; i < 200; ++i)
      upper += std::abs(std::hypot(double(x(i, 0)), double(x(i, 1))) - 1.0) < 1e-4 && x(i, 1) >= 0;
    uppers.insert(upper);
  }
  CHECK(uppers.size() >= 4);
}

// ---------------------------------------------------------------------------------------------
// c. Repeats (with floor_draws and loss_by_t_bins set)
// ---------------------------------------------------------------------------------------------

TEST_CASE("v2 repeats: repeats: 3 gives three metric values, and x is repeat 0's as without repeats", "[e2e][v2]") {
  const Run& base = complete("flagship");
  ScratchDir d("v2-repeats");
  Doc doc = with(kFlagship, "sampler", "{type: ddim, steps: 10, n: 200, repeats: 3}");
  doc = with(doc, "reference", "{floor_draws: 3}");
  const Run r = run_doc(d, "repeats", doc);
  CAPTURE(r.child.err);
  REQUIRE(r.child.status == 0);
  const H5Read f(r.h5), b(base.h5);
  CHECK(diffusion::read_int_attribute(f.group("samples/ddim"), "repeats") == 3);
  // Repeat 0 is the sampler's run without repeats, bit for bit.
  CHECK(same_bytes(f.tensor("samples/ddim", "x"), b.tensor("samples/ddim", "x")));
  CHECK(same_group(f, "model", b, "model"));
  for (const std::string& m : kMetrics) {
    CAPTURE(m);
    const H5::DataSet ds = f.dataset("metrics/ddim", m);
    const auto values = diffusion::read_double_vector_attribute(ds, "values");
    CHECK(diffusion::read_int_attribute(ds, "count") == 3);
    REQUIRE(values.size() == 3);
    CHECK(f.scalar("metrics/ddim", m) == Approx(mean_of(values)).epsilon(1e-6));
    CHECK(diffusion::read_double_attribute(ds, "std") > 0);
    CHECK(diffusion::read_double_attribute(ds, "std") == Approx(sample_std(values)).epsilon(1e-9));
    // Repeat 0's metric is the one the run without repeats computed.
    CHECK(values[0] == diffusion::read_double_vector_attribute(b.dataset("metrics/ddim", m), "values").at(0));
    // The floor with floor_draws: 3.
    CHECK(diffusion::read_int_attribute(f.dataset("metrics/data", m), "count") == 3);
    CHECK(diffusion::read_double_vector_attribute(f.dataset("metrics/data", m), "values").size() == 3);
  }
}

TEST_CASE("v2 batch: a sampler's batch evaluates the network in pieces and gives the same samples", "[e2e][v2]") {
  const Run& base = complete("flagship");
  ScratchDir d("v2-batch");
  const Run r = run_doc(d, "batch", with(kFlagship, "sampler", "{type: ddim, steps: 10, n: 200, batch: 23}"));
  CAPTURE(r.child.err);
  REQUIRE(r.child.status == 0);
  const H5Read f(r.h5), b(base.h5);
  // Rows are evaluated independently, so 9 pieces give one pass's samples, at the same NFE.
  const Tensor x = f.tensor("samples/ddim", "x"), bx = b.tensor("samples/ddim", "x");
  REQUIRE(diffusion::shape_of(x) == diffusion::shape_of(bx));
  double worst = 0;
  for (std::size_t k = 0; k < x.size(); ++k) worst = std::max(worst, double(std::abs(x.data()[k] - bx.data()[k])));
  CHECK(worst < 1e-5);
  CHECK(diffusion::read_int_attribute(f.group("samples/ddim"), "nfe") ==
        diffusion::read_int_attribute(b.group("samples/ddim"), "nfe"));
  CHECK(same_group(f, "model", b, "model"));
}

// ---------------------------------------------------------------------------------------------
// d. loss_by_t
// ---------------------------------------------------------------------------------------------

TEST_CASE("v2 loss_by_t: one row per logged window, bins over the path's times", "[e2e][v2]") {
  const H5Read f(complete("flagship").h5);
  const auto steps = diffusion::read_int64_vector(f.group("train"), "step");
  REQUIRE(steps == std::vector<std::int64_t>{20, 40, 60, 80, 100});
  const Tensor by_t = f.tensor("train", "loss_by_t");
  REQUIRE(diffusion::shape_of(by_t) == Shape{5, 20});
  const auto edges = diffusion::read_double_vector(f.group("train"), "loss_by_t_edges");
  REQUIRE(edges.size() == 21);
  CHECK(edges.front() == 0.0);   // t_min of DDPM
  CHECK(edges.back() == 999.0);  // t_max: step T-1
  for (std::size_t b = 1; b < edges.size(); ++b) CHECK(edges[b] > edges[b - 1]);
  // The last window: every bin has samples (20 steps x 128 over 20 bins); eps prediction on
  // standardised moons is hardest near the data (small t).
  std::size_t finite = 0;
  for (std::size_t b = 0; b < 20; ++b) finite += std::isfinite(by_t(4, b));
  CHECK(finite >= 18);
  const double first = (by_t(4, 0) + by_t(4, 1) + by_t(4, 2)) / 3, last = (by_t(4, 17) + by_t(4, 18) + by_t(4, 19)) / 3;
  CAPTURE(first, last);
  CHECK(first > last);
  // The window's mean over bins is near its logged loss (equal bins, nearly equal counts).
  const auto loss = diffusion::read_double_vector(f.group("train"), "loss");
  double m = 0;
  for (std::size_t b = 0; b < 20; ++b) m += by_t(4, b) / 20;
  CHECK(m == Approx(loss.back()).epsilon(0.25));

  SECTION("train.loss_by_t_bins: 7") {
    ScratchDir d("v2-bins");
    const Run r = run_doc(d, "bins", kFlagship, {"train.loss_by_t_bins=7", "train.steps=40", "sampler.n=50"});
    CAPTURE(r.child.err);
    REQUIRE(r.child.status == 0);
    const H5Read g(r.h5);
    CHECK(diffusion::read_shape(g.group("train"), "loss_by_t") == Shape{2, 7});
    const auto e7 = diffusion::read_double_vector(g.group("train"), "loss_by_t_edges");
    REQUIRE(e7.size() == 8);
    CHECK(e7.front() == 0.0);
    CHECK(e7.back() == 999.0);
  }
}

// ---------------------------------------------------------------------------------------------
// e. Named models
// ---------------------------------------------------------------------------------------------

TEST_CASE("v2 models: slots loaded with init are frozen copies of the file's groups", "[e2e][v2]") {
  const Run& fl = complete("flagship");
  const Run& fx = complete("fixture");
  ScratchDir d("v2-models");
  const Doc doc = with(with(kFlagship, "models",
                            "{teacher: {init: " + fl.h5 + "}, teacher_ema: {init: " + fl.h5 +
                                ", from: ema}, tracked: {init: " + fx.h5 + ", from: target}, warm: {init: " + fl.h5 +
                                ", frozen: false}}"),
                       "train", "{steps: 10, batch_size: 64, optimizer: {type: adam, lr: 3.0e-3}, ema: 0.9}");
  const Run r = run_doc(d, "slots", doc, {"sampler.n=50"});
  CAPTURE(r.child.err);
  REQUIRE(r.child.status == 0);
  const H5Read f(r.h5), a(fl.h5), x(fx.h5);
  CHECK(same_group(f, "models/teacher", a, "model"));
  CHECK(same_group(f, "models/teacher_ema", a, "ema"));
  CHECK(same_group(f, "models/tracked", x, "models/target"));
  CHECK(same_group(f, "models/warm", a, "model"));  // unfrozen, but nothing changes it
  CHECK_FALSE(same_group(f, "models/teacher", f, "models/teacher_ema"));
  CHECK_FALSE(same_group(f, "model", a, "model"));  // the trained model starts afresh
  // Frozen slots are not checkpointed; an unfrozen one is.
  const auto ckpts = diffusion::list_checkpoints(diffusion::checkpoint_dir_for(r.h5));
  REQUIRE(!ckpts.empty());
  const H5Read c(ckpts.back().second);
  CHECK(c.has("models/warm"));
  CHECK_FALSE(c.has("models/teacher"));
  CHECK_FALSE(c.has("models/teacher_ema"));
  CHECK_FALSE(c.has("models/tracked"));
}

TEST_CASE("v2 models: a slot loaded with init is frozen as a loss sees it, unless `frozen: false`", "[e2e][v2]") {
  const Run& fx = complete("fixture");
  ScratchDir d("v2-frozen");
  // The fixture loss changes `target` after each step (changed_models): a frozen one is refused
  // before training, at the loss.
  const Run frozen = run_doc(d, "a", with(kFixture, "models", "{target: {init: " + fx.h5 + "}}"));
  CAPTURE(frozen.child.err);
  CHECK(frozen.child.status == 2);
  CHECK(count_lines(frozen.child.err) == 1);
  CHECK(frozen.child.err.find("loss") != std::string::npos);
  CHECK(frozen.child.err.find("'target'") != std::string::npos);
  CHECK(frozen.child.err.find("frozen") != std::string::npos);
  CHECK_FALSE(fs::exists(frozen.h5));
  // Unfrozen, it starts from the file and after_step overwrites it at steps 7 and 14: it ends as
  // the model after 14 updates, as in the fixture run.
  const Run open = run_doc(d, "b", with(kFixture, "models", "{target: {init: " + fx.h5 + ", frozen: false}}"));
  CAPTURE(open.child.err);
  REQUIRE(open.child.status == 0);
  const H5Read f(open.h5), g(fx.h5);
  CHECK(same_group(f, "models/target", g, "models/target"));
  CHECK(same_group(f, "model", g, "model"));
  const auto ckpts = diffusion::list_checkpoints(diffusion::checkpoint_dir_for(open.h5));
  REQUIRE(!ckpts.empty());
  CHECK(H5Read(ckpts.back().second).has("models/target"));
}

TEST_CASE("v2 models: a slot whose network differs from its init file fails naming key, file, parameter, shapes",
          "[e2e][v2]") {
  const Run& fl = complete("flagship");
  ScratchDir d("v2-mismatch");
  const Doc doc =
      with(kFlagship, "models",
           "{teacher: {init: " + fl.h5 +
               ", network: {type: mlp, hidden: [16, 16], activation: silu, time_embedding: {type: sinusoidal, dim: 16}}}}");
  const Run r = run_doc(d, "mismatch", doc);
  CAPTURE(r.child.err);
  CHECK(r.child.status == 2);
  CHECK(count_lines(r.child.err) == 1);
  const Shape file_shape = diffusion::read_shape(H5Read(fl.h5).group("model"), "net.layers.0.weight");
  REQUIRE(file_shape.size() == 2);
  const Shape slot_shape{16, file_shape[1]};
  CHECK(r.child.err.find("models.teacher.init") != std::string::npos);
  CHECK(r.child.err.find(fl.h5) != std::string::npos);
  CHECK(r.child.err.find("net.layers.0.weight") != std::string::npos);
  CHECK(r.child.err.find(diffusion::shape_str(file_shape)) != std::string::npos);
  CHECK(r.child.err.find(diffusion::shape_str(slot_shape)) != std::string::npos);
  CHECK_FALSE(fs::exists(r.h5));
}

TEST_CASE("v2 models: a slot a sampler or loss needs but the experiment lacks is named with the slots there are",
          "[e2e][v2]") {
  // Samplers and losses declare the named models they use, so the experiment is refused before
  // training: exit 2, one located line at the component, nothing written.
  ScratchDir d("v2-noslot");
  SECTION("the sampler's") {
    const Doc doc = with(with(kFixture, "models", ""), "loss", "{type: eps_mse}");
    const Run r = run_doc(d, "sampler", doc);
    CAPTURE(r.child.err);
    CHECK(r.child.status == 2);
    CHECK(count_lines(r.child.err) == 1);
    CHECK(r.child.err.find("sampler") != std::string::npos);
    CHECK(r.child.err.find("needs the named model 'target'") != std::string::npos);
    CHECK(r.child.err.find("the experiment has model") != std::string::npos);
    CHECK_FALSE(fs::exists(r.h5));
  }
  SECTION("the loss's") {
    const Doc doc = with(kFixture, "models", "");
    const Run r = run_doc(d, "loss", doc);
    CAPTURE(r.child.err);
    CHECK(r.child.status == 2);
    CHECK(count_lines(r.child.err) == 1);
    CHECK(r.child.err.find("loss") != std::string::npos);
    CHECK(r.child.err.find("needs the named model 'target'") != std::string::npos);
    CHECK_FALSE(fs::exists(r.h5));
  }
}

TEST_CASE("v2 models: train.freeze keeps those parameters at their initial values", "[e2e][v2]") {
  ScratchDir d("v2-freeze");
  // `initial: {}` is a slot built from the model's network: a copy of its initial weights, which
  // nothing changes during the run.
  const Doc doc = with(with(kFlagship, "models", "{initial: {}}"), "train",
                       "{steps: 30, batch_size: 64, optimizer: {type: adam, lr: 3.0e-3}, ema: 0.9, freeze: [net.layers.0]}");
  const Run r = run_doc(d, "freeze", doc, {"sampler.n=50"});
  CAPTURE(r.child.err);
  REQUIRE(r.child.status == 0);
  const H5Read f(r.h5);
  const auto names = diffusion::h5_dataset_names(f.group("model"));
  std::size_t frozen = 0, trained = 0;
  for (const auto& n : names) {
    CAPTURE(n);
    const Tensor now = f.tensor("model", n), initial = f.tensor("models/initial", n);
    if (n.rfind("net.layers.0.", 0) == 0) {
      ++frozen;
      CHECK(same_bytes(now, initial));
      // The EMA of a constant follows it up to rounding (PyTorch's order: s * d + (1 - d) * p).
      const Tensor ema = f.tensor("ema", n);
      for (std::size_t i = 0; i < ema.size(); ++i) REQUIRE(ema.data()[i] == Approx(initial.data()[i]).margin(1e-6));
    } else if (n.rfind("net.layers.", 0) == 0) {
      ++trained;
      CHECK_FALSE(same_bytes(now, initial));
    }
  }
  CHECK(frozen == 2);  // weight and bias
  CHECK(trained >= 4);
  // Without freeze the same layer trains.
  const Run free = run_doc(d, "free", with(doc, "train", "{steps: 30, batch_size: 64, optimizer: {type: adam, lr: 3.0e-3}, ema: 0.9}"),
                           {"sampler.n=50"});
  REQUIRE(free.child.status == 0);
  const H5Read g(free.h5);
  CHECK(same_group(g, "models/initial", f, "models/initial"));
  CHECK_FALSE(same_bytes(g.tensor("model", "net.layers.0.weight"), g.tensor("models/initial", "net.layers.0.weight")));
}

// ---------------------------------------------------------------------------------------------
// f. Class-conditional with a reference of another size
// ---------------------------------------------------------------------------------------------

TEST_CASE("v2 conditional: a class-conditional run whose reference.n differs from the samplers' n completes",
          "[e2e][v2]") {
  // The bug: the samplers' labels were drawn for the reference's size, and sampling
  // failed with `concat: shapes (200, 2) and (50, 32) differ`. Metrics that take samples and
  // reference of different sizes (w2 needs equal ones: the next test).
  ScratchDir d("v2-cond");
  Doc doc = with(kFlagship, "network",
                 "{type: mlp, hidden: [32, 32], activation: silu, class_conditional: true, "
                 "time_embedding: {type: sinusoidal, dim: 16}}");
  doc = with(doc, "train", "{steps: 30, batch_size: 64, optimizer: {type: adam, lr: 3.0e-3}, ema: 0.9}");
  doc = with(doc, "sampler", "");
  doc = with(doc, "samplers", "[{type: ddim, steps: 10, n: 200}, {type: ancestral, name: anc, steps: 10, n: 30}]");
  doc = with(doc, "reference", "{n: 50}");
  doc = with(doc, "metrics", "[sliced_w2, mmd, energy]");
  const Run r = run_doc(d, "cond", doc);
  CAPTURE(r.child.err);
  REQUIRE(r.child.status == 0);
  const H5Read f(r.h5);
  REQUIRE(f.str("status") == "complete");
  CHECK(f.has("model/class_embedding"));
  CHECK(diffusion::read_shape(f.group("data"), "reference") == Shape{50, 2});
  CHECK(diffusion::read_shape(f.group("samples/ddim"), "x") == Shape{200, 2});
  CHECK(diffusion::read_shape(f.group("samples/anc"), "x") == Shape{30, 2});
  for (const char* s : {"ddim", "anc", "data"})
    for (const char* m : {"sliced_w2", "mmd", "energy"}) {
      CAPTURE(s, m);
      CHECK(std::isfinite(f.scalar(std::string("metrics/") + s, m)));
    }
  CHECK(diffusion::read_int_attribute(f.group("metrics/data"), "n") == 50);
}

TEST_CASE("v2 conditional: exact w2 with a reference smaller than the sampler's n completes or is refused up front",
          "[e2e][v2]") {
  // The metrics compare a sampler's samples with the first min(n, M) rows of the reference
  // (docs/results-format.md). w2 (exact) needs two sets of one size; with reference.n 50 and a
  // sampler's n 200 the run must either compare 50 against 50, or refuse the config before
  // training (exit 2), not fail after training and sampling.
  ScratchDir d("v2-sref");
  Doc doc = with(kFlagship, "train", "{steps: 30, batch_size: 64, optimizer: {type: adam, lr: 3.0e-3}, ema: 0.9}");
  doc = with(doc, "reference", "{n: 50}");
  doc = with(doc, "metrics", "[w2]");
  const Run r = run_doc(d, "r", doc);
  CAPTURE(r.child.err);
  if (r.child.status == 2) {
    const std::string err = without_path(r.child.err, d.path().string());
    CHECK(err.find("w2") != std::string::npos);
    CHECK(err.find("reference") != std::string::npos);
    CHECK_FALSE(fs::exists(diffusion::checkpoint_dir_for(r.h5)));  // nothing was trained
  } else {
    REQUIRE(r.child.status == 0);
    const H5Read f(r.h5);
    CHECK(std::isfinite(f.scalar("metrics/ddim", "w2")));
    CHECK(std::isfinite(f.scalar("metrics/data", "w2")));
  }
}

// ---------------------------------------------------------------------------------------------
// g. The codec
// ---------------------------------------------------------------------------------------------

TEST_CASE("v2 codec: identity writes no statistics, standardize per all writes one", "[e2e][v2]") {
  ScratchDir d("v2-codec");
  const Doc base = with(with(kFlagship, "train", "{steps: 10, batch_size: 64, optimizer: {type: adam, lr: 3.0e-3}}"),
                        "sampler", "{type: ddim, steps: 5, n: 50}");
  SECTION("identity") {
    const Run r = run_doc(d, "identity", with(base, "codec", "identity"));
    CAPTURE(r.child.err);
    REQUIRE(r.child.status == 0);
    const H5Read f(r.h5);
    CHECK(diffusion::read_string_attribute(f.group("data"), "codec") == "identity");
    CHECK_FALSE(f.has("data/mean"));
    CHECK_FALSE(f.has("data/std"));
    CHECK(f.has("data/reference"));
    CHECK(diffusion::read_shape(f.group("samples/ddim"), "x") == Shape{50, 2});
  }
  SECTION("standardize per all") {
    const Run r = run_doc(d, "all", with(base, "codec", "{type: standardize, per: all}"));
    CAPTURE(r.child.err);
    REQUIRE(r.child.status == 0);
    const H5Read f(r.h5);
    CHECK(diffusion::read_string_attribute(f.group("data"), "codec") == "standardize");
    CHECK(diffusion::read_string_attribute(f.group("data"), "per") == "all");
    CHECK(diffusion::read_shape(f.group("data"), "mean") == Shape{1});
    CHECK(diffusion::read_shape(f.group("data"), "std") == Shape{1});
    // One mean over both coordinates of moons (x about 0.5, y about 0.25).
    CHECK(f.tensor("data", "mean")(0) == Approx(0.375).margin(0.05));
  }
}

TEST_CASE("v2 codec: init from a results file written with another codec is refused naming the codecs",
          "[e2e][v2]") {
  // `init:` loads the codec's statistics so that samples come back in the coordinates the model
  // was trained in; a codec that cannot read the file's /data must say so, not sample silently
  // in other coordinates or blame the network.
  const Run& fl = complete("flagship");  // standardize per coordinate
  ScratchDir d("v2-ci");
  SECTION("identity from a standardize file") {
    const Run r = run_doc(d, "a", with(kFlagship, "codec", "identity"), {"train.steps=0", "--init", fl.h5});
    CAPTURE(r.child.err);
    const std::string err = without_path(without_path(r.child.err, d.path().string()), shared().dir.path().string());
    CHECK(r.child.status == 2);
    CHECK(err.find("codec") != std::string::npos);
    CHECK(err.find("standardize") != std::string::npos);
  }
  SECTION("standardize from an identity file") {
    const Doc id = with(with(kFlagship, "codec", "identity"), "train", "{steps: 10, batch_size: 64, optimizer: {type: adam, lr: 3.0e-3}}");
    const Run a = run_doc(d, "a", id, {"sampler.n=50"});
    REQUIRE(a.child.status == 0);
    const Run r = run_doc(d, "b", kFlagship, {"train.steps=0", "--init", a.h5});
    CAPTURE(r.child.err);
    const std::string err = without_path(r.child.err, d.path().string());
    CHECK(r.child.status == 2);
    CHECK(err.find("codec") != std::string::npos);
    CHECK(err.find("identity") != std::string::npos);
  }
}

TEST_CASE("v2 codec: standardize per channel on points is an experiment-file error", "[e2e][v2]") {
  // Points have no channels: a bad `codec.per` for this data set, exit 2 before anything runs
  // (README: 2 for a bad experiment file, 1 for a failed run).
  ScratchDir d("v2-cc");
  const Run r = run_doc(d, "r", with(kFlagship, "codec", "{type: standardize, per: channel}"));
  CAPTURE(r.child.err);
  const std::string err = without_path(r.child.err, d.path().string());
  CHECK(r.child.status == 2);
  CHECK(err.find("codec.per") != std::string::npos);
  CHECK(err.find("channel") != std::string::npos);
  CHECK_FALSE(fs::exists(r.h5));
}

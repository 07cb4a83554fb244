// `init:` / `runexp --init`: evaluate (or fine-tune) a trained model from its results file.
//   - train.steps=0 with init skips training, samples with a new sampler list and writes
//     samples and metrics; /model and /ema equal the first run's bit for bit;
//   - the same sampler name and seed give bit-identical samples to the original run (the
//     normaliser comes from the file, the sampler stream is split by name from the seed);
//   - with train.ema 0 and no training the file's EMA is still used for use_ema samplers;
//   - with train.steps > 0 the loaded model is fine-tuned;
//   - --print-config shows init; a mismatched network, a missing file, a non-results file and
//     train.steps=0 without init fail with exit 2 and a one-line message.
//   - the architecture the file was trained with is compared with the new one (issue 17, case
//     7): another activation, another path or, without training, another prediction is refused
//     with exit 2 naming the keys, and --force loads the weights anyway; a default spelled out,
//     a loss that reads the network the same way, or a training setting is no difference;
//   - a run that trains no step prints no loss ("final loss: none"), not 0;
//   - an init file with one flipped bit, or with non-finite weights, is refused naming it.
#include <stdlib.h>
#include <sys/wait.h>

#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/hdf5_io.hpp>

#include "scratch_dir.hpp"
#include "sealed_file_edit.hpp"

namespace fs = std::filesystem;
using diffusion::Error;
using diffusion::Tensor;

using diffusion::testing::ScratchDir;

namespace {

const char* const kTrain =
    "name: init_test\n"
    "seed: 5\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [64, 64], activation: silu,\n"
    "          time_embedding: {type: sinusoidal, dim: 16}}\n"
    "sde:     {type: ddpm, timesteps: 1000, schedule: linear, beta_start: 1.0e-4, beta_end: 0.02}\n"
    "loss:    {type: eps_mse}\n"
    "train:   {steps: 100, batch_size: 64, optimizer: {type: adam, lr: 1.0e-3},\n"
    "          lr_schedule: {type: cosine, warmup: 10}, ema: 0.99}\n"
    "sampler: {type: ddim, steps: 10, n: 100}\n"
    "metrics: [sliced_w2]\n";

// The same experiment with another sampler list: ddim as before plus ancestral.
std::string eval_config() {
  std::string s = kTrain;
  const std::string old = "sampler: {type: ddim, steps: 10, n: 100}\n";
  s.replace(s.find(old), old.size(),
            "samplers: [{type: ancestral, name: anc, steps: 20, n: 100}, {type: ddim, steps: 10, n: 100}]\n");
  return s;
}

std::string runexp_path() { return std::string(DIFFUSION_BINARY_DIR) + "/bin/runexp"; }

std::string quote(const std::string& s) { return "'" + s + "'"; }

struct Out {
  int status = -1;
  std::string out, err;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Out runexp(const ScratchDir& dir, const std::vector<std::string>& args) {
  std::string cmd = quote(runexp_path());
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " >" + quote(dir / "log.out") + " 2>" + quote(dir / "log.err") + " </dev/null";
  const int raw = std::system(cmd.c_str());
  Out o;
  o.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  o.out = read_text(dir / "log.out");
  o.err = read_text(dir / "log.err");
  return o;
}

struct H5Read {
  explicit H5Read(const std::string& path) : file(path, H5F_ACC_RDONLY), root(file.openGroup("/")) {}
  H5::H5File file;
  H5::Group root;
  std::string status() const { return diffusion::read_string_attribute(root, "status"); }
};

bool same_bytes(const Tensor& a, const Tensor& b) {
  return diffusion::shape_of(a) == diffusion::shape_of(b) &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Every dataset of `group` agrees bit for bit between the two files.
bool same_group(const H5Read& a, const H5Read& b, const std::string& group) {
  const auto ga = diffusion::h5_open_group(a.root, group), gb = diffusion::h5_open_group(b.root, group);
  const auto names = diffusion::h5_dataset_names(ga);
  if (names.empty() || names != diffusion::h5_dataset_names(gb)) return false;
  for (const auto& n : names)
    if (!same_bytes(diffusion::read_tensor(ga, n), diffusion::read_tensor(gb, n))) return false;
  return true;
}

std::size_t count_lines(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

/// One trained run, shared by the test cases.
struct Shared {
  ScratchDir dir{"init"};
  std::string train_yaml = dir / "train.yaml", eval_yaml = dir / "eval.yaml", trained = dir / "trained.h5";
  Out train_run;
  Shared() {
    std::ofstream(train_yaml) << kTrain;
    std::ofstream(eval_yaml) << eval_config();
    train_run = runexp(dir, {train_yaml, "--out", trained});
  }
};

Shared& shared() {
  static Shared s;
  return s;
}

}  // namespace

TEST_CASE("init: train.steps=0 samples a loaded model bit-identically", "[e2e][init]") {
  Shared& s = shared();
  CAPTURE(s.train_run.err);
  REQUIRE(s.train_run.status == 0);
  const std::string evaluated = s.dir / "eval.h5";
  const Out r = runexp(s.dir, {s.eval_yaml, "train.steps=0", "--init", s.trained, "--out", evaluated});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.find("init: model and EMA from " + s.trained) != std::string::npos);
  const H5Read a(s.trained), b(evaluated);
  REQUIRE(b.status() == "complete");
  CHECK(diffusion::read_int_attribute(b.root, "steps_completed") == 0);
  // No training: no loss rows; the weights are the trained run's, bit for bit.
  CHECK(diffusion::read_tensor(diffusion::h5_open_group(b.root, "train"), "loss").size() == 0);
  CHECK(same_group(a, b, "model"));
  CHECK(same_group(a, b, "ema"));
  // The normaliser comes from the init file, not from a fresh fit.
  CHECK(same_bytes(diffusion::read_tensor(diffusion::h5_open_group(a.root, "data"), "mean"),
                   diffusion::read_tensor(diffusion::h5_open_group(b.root, "data"), "mean")));
  // The new sampler list: both write samples and metrics.
  for (const std::string name : {"anc", "ddim"}) {
    CAPTURE(name);
    CHECK(diffusion::h5_exists(b.root, "samples/" + name + "/x"));
    CHECK(diffusion::h5_exists(b.root, "metrics/" + name + "/sliced_w2"));
  }
  CHECK(diffusion::read_string_attribute(diffusion::h5_open_group(b.root, "samples/anc"), "type") == "ancestral");
  // Same sampler name, same seed: the same samples as the original run.
  CHECK(same_bytes(diffusion::read_tensor(diffusion::h5_open_group(a.root, "samples/ddim"), "x"),
                   diffusion::read_tensor(diffusion::h5_open_group(b.root, "samples/ddim"), "x")));
  // The resolved config records init.
  CHECK(diffusion::read_string_attribute(b.root, "config").find("init: " + s.trained) != std::string::npos);
}

TEST_CASE("init: without train.ema and without training, use_ema samples with the file's EMA",
          "[e2e][init]") {
  Shared& s = shared();
  REQUIRE(s.train_run.status == 0);
  const std::string evaluated = s.dir / "eval_noema.h5";
  const Out r = runexp(s.dir, {s.train_yaml, "train.steps=0", "train.ema=0", "init=" + s.trained,
                               "--out", evaluated});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const H5Read a(s.trained), b(evaluated);
  CHECK(same_group(a, b, "model"));
  CHECK(same_group(a, b, "ema"));
  CHECK(same_group(a, b, "samples/ddim"));
}

TEST_CASE("init: train.steps > 0 fine-tunes the loaded model", "[e2e][init]") {
  Shared& s = shared();
  REQUIRE(s.train_run.status == 0);
  const std::string tuned = s.dir / "tuned.h5";
  const Out r = runexp(s.dir, {s.train_yaml, "train.steps=20", "train.log_every=10", "--init", s.trained,
                               "--out", tuned});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const H5Read a(s.trained), b(tuned);
  REQUIRE(b.status() == "complete");
  CHECK(diffusion::read_tensor(diffusion::h5_open_group(b.root, "train"), "loss").size() == 2);
  CHECK_FALSE(same_group(a, b, "model"));
  CHECK(same_bytes(diffusion::read_tensor(diffusion::h5_open_group(a.root, "data"), "std"),
                   diffusion::read_tensor(diffusion::h5_open_group(b.root, "data"), "std")));
}

TEST_CASE("init: --print-config shows init", "[e2e][init]") {
  Shared& s = shared();
  REQUIRE(s.train_run.status == 0);
  const Out r = runexp(s.dir, {s.eval_yaml, "train.steps=0", "--init", s.trained, "--print-config"});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("init: " + s.trained) != std::string::npos);
}

TEST_CASE("init: bad init files and networks fail with one line and exit 2", "[e2e][init]") {
  Shared& s = shared();
  REQUIRE(s.train_run.status == 0);
  const std::string out = s.dir / "bad.h5";

  SECTION("a network that does not match names a parameter") {
    const Out r = runexp(s.dir, {s.eval_yaml, "train.steps=0", "network.hidden=[32]", "--init", s.trained,
                                 "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find("init") != std::string::npos);
    CHECK(r.err.find(s.trained) != std::string::npos);
    CHECK(r.err.find(".weight") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
  SECTION("a missing file is named") {
    const std::string missing = s.dir / "no_such_run.h5";
    const Out r = runexp(s.dir, {s.eval_yaml, "train.steps=0", "--init", missing, "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find(missing) != std::string::npos);
    CHECK(r.err.find("does not exist") != std::string::npos);
  }
  SECTION("a file that is not a results file") {
    const Out r = runexp(s.dir, {s.eval_yaml, "train.steps=0", "--init", s.eval_yaml, "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find("not an HDF5 results file") != std::string::npos);
  }
  SECTION("train.steps=0 needs init") {
    const Out r = runexp(s.dir, {s.eval_yaml, "train.steps=0", "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(r.err.find("train.steps") != std::string::npos);
    CHECK(r.err.find("init") != std::string::npos);
  }
}

TEST_CASE("init: another architecture is refused naming the keys and --force loads it", "[e2e][init]") {
  Shared& s = shared();
  REQUIRE(s.train_run.status == 0);
  const std::string out = s.dir / "arch.h5";

  SECTION("another activation (issue 17, case 7)") {
    const Out r = runexp(s.dir, {s.train_yaml, "--init", s.trained, "network.activation=relu", "train.steps=0",
                                 "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find("init file " + s.trained + " was trained with another architecture") != std::string::npos);
    CHECK(r.err.find("network.activation (silu -> relu)") != std::string::npos);
    CHECK(r.err.find("another function") != std::string::npos);
    CHECK(r.err.find("--force") != std::string::npos);
    CHECK_FALSE(fs::exists(out));

    const Out forced = runexp(s.dir, {s.train_yaml, "--init", s.trained, "network.activation=relu", "train.steps=0",
                                      "--force", "--out", out});
    CAPTURE(forced.err);
    REQUIRE(forced.status == 0);
    CHECK(same_group(H5Read(s.trained), H5Read(out), "model"));
  }
  SECTION("another path") {
    const Out r = runexp(s.dir, {s.train_yaml, "--init", s.trained, "sde.timesteps=500", "train.steps=20",
                                 "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(r.err.find("sde.timesteps (1000 -> 500)") != std::string::npos);
  }
  SECTION("another prediction, sampled as it is") {
    const Out r = runexp(s.dir, {s.train_yaml, "--init", s.trained, "loss.type=x0_mse", "train.steps=0",
                                 "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(r.err.find("loss.type (eps_mse -> x0_mse): eps -> x0") != std::string::npos);
    // Training from it is a re-parameterised start (consistency distillation's), accepted.
    const Out tuned = runexp(s.dir, {s.train_yaml, "--init", s.trained, "loss.type=x0_mse", "train.steps=20",
                                     "--out", out});
    CAPTURE(tuned.err);
    CHECK(tuned.status == 0);
  }
  SECTION("a default spelled out, the same preconditioning spelled another way, a training setting") {
    // max_period 10000 and schedule linear are the defaults; `mse` with its default preconditioning
    // is eps_mse; t_sampling and the optimiser only change training.
    const Out r = runexp(s.dir, {s.train_yaml, "--init", s.trained, "network.time_embedding.max_period=10000",
                                 "sde.schedule=linear", "loss.type=mse", "loss.t_sampling=low_discrepancy",
                                 "train.optimizer.lr=1.0e-4", "train.steps=0", "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 0);
  }
  SECTION("a named model's init is compared with its own network") {
    const std::string relu = "{type: mlp, hidden: [64, 64], activation: relu, time_embedding: {type: sinusoidal, dim: 16}}";
    const Out r = runexp(s.dir, {s.train_yaml, "models={copy: {init: " + s.trained + ", network: " + relu + "}}",
                                 "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(r.err.find("models.copy.init") != std::string::npos);
    CHECK(r.err.find("models.copy.network.activation (silu -> relu)") != std::string::npos);
  }
  SECTION("--force without an init file or --resume is refused") {
    const Out r = runexp(s.dir, {s.train_yaml, "--force", "--out", out});
    CHECK(r.status == 2);
    CHECK(r.err.find("--force is only meaningful with --resume or an init file") != std::string::npos);
  }
}

TEST_CASE("init: a run that trains no step prints no loss", "[e2e][init]") {
  Shared& s = shared();
  REQUIRE(s.train_run.status == 0);
  const Out r = runexp(s.dir, {s.train_yaml, "--init", s.trained, "train.steps=0", "--out", s.dir / "noloss.h5"});
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("final loss: none (no training steps)\n") != std::string::npos);
  CHECK(r.out.find("final loss: 0") == std::string::npos);
  // A run that trains still prints its loss.
  CHECK(s.train_run.out.find("final loss: none") == std::string::npos);
  CHECK(s.train_run.out.find("final loss: ") != std::string::npos);
}

TEST_CASE("init: a corrupt init file or one with non-finite weights is refused naming it", "[e2e][init]") {
  Shared& s = shared();
  REQUIRE(s.train_run.status == 0);
  const std::string out = s.dir / "from_bad.h5";
  SECTION("one flipped bit in a weight") {
    const std::string bad = s.dir / "flipped.h5";
    fs::copy_file(s.trained, bad, fs::copy_options::overwrite_existing);
    H5Read intact(s.trained);
    const H5::DataSet w = diffusion::h5_open_group(intact.root, "model").openDataSet("net.layers.1.weight");
    diffusion::testing::flip_bit(bad, 8 * static_cast<std::size_t>(w.getOffset()) + 5);
    const Out r = runexp(s.dir, {s.train_yaml, "--init", bad, "train.steps=0", "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find("init file " + bad + ": its CRC-32 is") != std::string::npos);
    CHECK(r.err.find("intact copy") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
  SECTION("non-finite weights under an intact seal") {
    const std::string bad = s.dir / "nan.h5";
    fs::copy_file(s.trained, bad, fs::copy_options::overwrite_existing);
    {
      H5::H5File f(bad, H5F_ACC_RDWR);
      const H5::Group model = diffusion::h5_open_group(f.openGroup("/"), "model");
      Tensor t = diffusion::read_tensor(model, "net.layers.0.bias");
      t.flat(0) = std::numeric_limits<float>::infinity();
      diffusion::write_tensor(model, "net.layers.0.bias", t);
    }
    diffusion::testing::reseal(bad);
    const Out r = runexp(s.dir, {s.train_yaml, "--init", bad, "train.steps=0", "--out", out});
    CAPTURE(r.err);
    CHECK(r.status == 2);
    CHECK(r.err.find("init file " + bad + ": /model/net.layers.0.bias holds NaN or infinite values") !=
          std::string::npos);
  }
}

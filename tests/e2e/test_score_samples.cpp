// score_samples end to end (the scorer of the PyTorch baselines' samples): a small moons run's
// own samples, written to another file, score exactly the run's /metrics/<sampler> figures
// (same metrics, same reference, same metric streams); shifted samples score worse, as the same
// metrics computed on them must; a missing dataset or a wrongly shaped one fails naming the file
// and the dataset.
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/hdf5_io.hpp>

#include "runexp_child.hpp"
#include "scratch_dir.hpp"
#include "shell_command.hpp"

using diffusion::Error;
using diffusion::Tensor;
using diffusion::testing::ScratchDir;

namespace {

const char* const kRun =
    "name: score_moons\n"
    "seed: 2\n"
    "dataset: {type: moons, noise: 0.05}\n"
    "network: {type: mlp, hidden: [64, 64], activation: silu, time_embedding: {type: sinusoidal, dim: 16}}\n"
    "sde:     {type: ddpm, timesteps: 200, schedule: linear, beta_start: 1.0e-4, beta_end: 0.02}\n"
    "loss:    {type: eps_mse}\n"
    "train:   {steps: 100, batch_size: 128, optimizer: {type: adam, lr: 1.0e-3}, ema: 0.99}\n"
    "sampler: {type: ddim, steps: 20, n: 300}\n"
    "metrics: [w2, sliced_w2, mmd, energy]\n";
const std::vector<std::string> kMetrics = {"w2", "sliced_w2", "mmd", "energy"};

using Output = diffusion::testing::CommandOutput;

/// A command's exit status and stdout + stderr.
Output run(const std::string& cmd) { return diffusion::testing::run_command(cmd + " 2>&1"); }

std::string score_samples() { return diffusion::testing::tool_path("score_samples"); }

/// metric `name` of the JSON line's "metrics" object.
double json_metric(const std::string& out, const std::string& name) {
  const std::size_t obj = out.find("\"metrics\": {");
  REQUIRE(obj != std::string::npos);
  const std::size_t at = out.find("\"" + name + "\": ", obj);
  REQUIRE(at != std::string::npos);
  return std::strtod(out.c_str() + at + name.size() + 4, nullptr);
}

void write_samples(const std::string& path, const std::string& dataset, const Tensor& x) {
  H5::H5File f(path, H5F_ACC_TRUNC);
  diffusion::write_tensor(f.openGroup("/"), dataset, x);
}

}  // namespace

TEST_CASE("score_samples: a run's own samples score its metrics, others score what they are", "[e2e][score_samples]") {
  ScratchDir d("score-samples");
  std::ofstream(d / "run.yaml") << kRun;
  const auto r = diffusion::testing::run_runexp({d / "run.yaml", "--out", d / "run.h5"}, d / "run");
  INFO(r.err);
  REQUIRE(r.status == 0);
  H5::H5File results(d / "run.h5", H5F_ACC_RDONLY);
  const Tensor x = diffusion::read_tensor(results.openGroup("/samples/ddim"), "x");
  std::vector<double> stored;
  for (const std::string& m : kMetrics) stored.push_back(diffusion::read_tensor(results.openGroup("/metrics/ddim"), m).data()[0]);

  write_samples(d / "own.h5", "points", x);
  const Output own = run(score_samples() + " " + d / "run.h5" + " " + d / "own.h5" + " --dataset points");
  INFO(own.out);
  REQUIRE(own.status == 0);
  for (std::size_t i = 0; i < kMetrics.size(); ++i) {
    CAPTURE(kMetrics[i]);
    CHECK(json_metric(own.out, kMetrics[i]) == Approx(stored[i]).epsilon(1e-6).margin(1e-7));
  }

  // The same samples moved by 0.5 in x: every distance to the reference grows.
  Tensor shifted = x;
  for (std::size_t i = 0; i < shifted.shape()[0]; ++i) shifted(i, 0) += 0.5f;
  write_samples(d / "shifted.h5", "points", shifted);
  const Output moved = run(score_samples() + " " + d / "run.h5" + " " + d / "shifted.h5" + " --dataset points");
  INFO(moved.out);
  REQUIRE(moved.status == 0);
  for (std::size_t i = 0; i < kMetrics.size(); ++i) {
    CAPTURE(kMetrics[i]);
    CHECK(json_metric(moved.out, kMetrics[i]) > stored[i] + 0.05);
  }

  // Bad input: the file and the dataset are named.
  const Output missing = run(score_samples() + " " + d / "run.h5" + " " + d / "own.h5" + " --dataset images");
  CHECK(missing.status == 1);
  CHECK_THAT(missing.out, Catch::Contains("own.h5") && Catch::Contains("images"));
  write_samples(d / "wide.h5", "points", Tensor::from_shape({300, 3}));
  const Output wide = run(score_samples() + " " + d / "run.h5" + " " + d / "wide.h5" + " --dataset points");
  CHECK(wide.status == 1);
  CHECK_THAT(wide.out, Catch::Contains("wide.h5") && Catch::Contains("points"));
}

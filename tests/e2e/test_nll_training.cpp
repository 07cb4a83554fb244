// The likelihood experiment end to end (experiments/nll_eight_gaussians.yaml): runexp trains the
// VP score model with the likelihood weighting (Song, Durkan, Murray & Ermon 2021) briefly and
// longer, and scores held-out eight_gaussians points with the probability-flow ODE (Song et al.
// 2021, appendix D.2). Checked against closed forms:
//   - /metrics/data/nll is the true NLL of the held-out points. With the modes 15 std apart the
//     mixture's -log p(x) is log 8 + log(2 pi s^2) + E, E = |x - mode|^2 / (2 s^2) ~ Exp(1), so its
//     mean is the entropy log 8 + log(2 pi e s^2) and its spread 1 (the sample std of n Exp(1)
//     values has standard error sqrt(2 / n): (mu_4 / sigma^4 - 1) / (4 n) with mu_4 = 9);
//   - /metrics/model/nll carries its figures, with bits_per_dim = nll / (2 ln 2) and the prior
//     term above -log N(0; 0, I) = log 2 pi (its minimum in 2-D);
//   - the model cannot beat the data's own density in expectation (Gibbs: E[model - true] =
//     KL >= 0), and both are scored on the same points;
//   - the longer-trained model has the lower NLL.
// Small overrides (500 points, tolerance 1e-4: on a trained model 1e-4 and 1e-6 give NLLs 2e-4
// apart; 200 samples for w2) keep both runs at a few seconds.
#include <cmath>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/hdf5_io.hpp>

#include "runexp_child.hpp"
#include "scratch_dir.hpp"

using diffusion::testing::Child;
using diffusion::testing::run_runexp;
using diffusion::testing::ScratchDir;

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kHeldOut = 500;
constexpr double kModeStd = 0.1;

struct Nll {
  double model = 0, floor = 0;
  double model_std = 0, floor_std = 0;
};

/// runexp on the shipped experiment with `steps` training steps; returns the two NLLs after
/// checking every figure the results file must carry.
Nll run_and_read(const ScratchDir& dir, int steps) {
  const std::string tag = "steps" + std::to_string(steps), out = dir / (tag + ".h5");
  const Child r = run_runexp({std::string(DIFFUSION_SOURCE_DIR) + "/experiments/nll_eight_gaussians.yaml",
                              "train.steps=" + std::to_string(steps), "dataset.radius=2",
                              "dataset.std=" + std::to_string(kModeStd), "sampler.n=200", "sampler.rtol=1e-3",
                              "sampler.atol=1e-3",
                              "metrics=[w2, {type: nll, n: " + std::to_string(kHeldOut) +
                                  ", method: dopri5, rtol: 1.0e-4, atol: 1.0e-4}]",
                              "--out", out},
                             dir / tag);
  CAPTURE(steps, r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("model:  nll") != std::string::npos);

  H5::H5File file(out, H5F_ACC_RDONLY);
  const H5::Group root = file.openGroup("/");
  REQUIRE(diffusion::read_string_attribute(root, "status") == "complete");
  REQUIRE(diffusion::h5_exists(root, "metrics/model/nll"));
  REQUIRE(diffusion::h5_exists(root, "metrics/data/nll"));
  const H5::DataSet m = diffusion::h5_open_group(root, "metrics/model").openDataSet("nll");
  const H5::DataSet f = diffusion::h5_open_group(root, "metrics/data").openDataSet("nll");
  Nll v;
  v.model = diffusion::read_double_vector_attribute(m, "values").at(0);
  v.floor = diffusion::read_double_vector_attribute(f, "values").at(0);
  v.model_std = diffusion::read_double_attribute(m, "nll_std");
  v.floor_std = diffusion::read_double_attribute(f, "nll_std");
  CAPTURE(v.model, v.floor, v.model_std, v.floor_std);

  // The model's figures.
  REQUIRE(std::isfinite(v.model));
  CHECK(diffusion::read_double_attribute(m, "n") == kHeldOut);
  CHECK(diffusion::read_double_attribute(m, "bits_per_dim") == Approx(v.model / (2 * std::log(2.0))).epsilon(1e-12));
  CHECK(diffusion::read_double_attribute(m, "nfe") > 0);
  CHECK(v.model_std > 0);
  const double prior = diffusion::read_double_attribute(m, "prior_nats");
  CHECK(std::isfinite(prior));
  CHECK(prior >= std::log(2 * kPi));

  // The floor against the closed form, 4 standard errors.
  const double entropy = std::log(8.0) + std::log(2 * kPi * std::exp(1.0) * kModeStd * kModeStd);  // 0.312
  CHECK(diffusion::read_double_attribute(f, "n") == kHeldOut);
  CHECK(std::abs(v.floor - entropy) < 4.0 / std::sqrt(double(kHeldOut)));
  CHECK(std::abs(v.floor_std - 1.0) < 4.0 * std::sqrt(2.0 / kHeldOut));
  CHECK(diffusion::read_double_attribute(f, "bits_per_dim") == Approx(v.floor / (2 * std::log(2.0))).epsilon(1e-12));

  // Gibbs on the same points: the per-point difference has a spread of at most the sum of the
  // two spreads (triangle inequality), so the mean difference is above -4 such standard errors.
  CHECK(v.model - v.floor > -4.0 * (v.model_std + v.floor_std) / std::sqrt(double(kHeldOut)));
  return v;
}

}  // namespace

TEST_CASE("nll experiment: the held-out NLL and its true floor, lower after longer training",
          "[e2e][score_sde]") {
  ScratchDir dir("nll");
  const Nll brief = run_and_read(dir, 300);
  const Nll longer = run_and_read(dir, 3000);
  CAPTURE(brief.model, longer.model, brief.floor, longer.floor);
  // Same seed, so the same held-out points and the same floor.
  CHECK(brief.floor == longer.floor);
  // Over seeds 0-11 of these settings: after 300 steps the NLL is 3.34-3.43 (a broad blob: the
  // modes are not resolved yet), after 3000 steps 0.48-0.78 (0.21-0.41 above the floor): the gap
  // is at least 2.6 nats. A margin of 1 nat leaves room for a held-out point the ODE maps far
  // into the prior's tail (seen once in 10000 points of a trained model, ~270 nats, which over
  // 500 points would add 0.55).
  CHECK(longer.model < brief.model - 1.0);
}

TEST_CASE("nll experiment: a run whose only metric is of the model writes its file", "[e2e][score_sde]") {
  // No sample metric: /metrics/data holds only the nll floor (the sample-metric floor is skipped).
  ScratchDir dir("nll_only");
  const std::string out = dir / "only.h5";
  const Child r = run_runexp({std::string(DIFFUSION_SOURCE_DIR) + "/experiments/nll_eight_gaussians.yaml",
                              "train.steps=100", "sampler.n=100", "metrics=[{type: nll, n: 100}]", "--out", out},
                             dir / "only");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  H5::H5File file(out, H5F_ACC_RDONLY);
  const H5::Group root = file.openGroup("/");
  CHECK(diffusion::read_string_attribute(root, "status") == "complete");
  CHECK(diffusion::h5_exists(root, "metrics/model/nll"));
  CHECK(diffusion::h5_exists(root, "metrics/data/nll"));
  CHECK_FALSE(diffusion::h5_exists(root, "metrics/data/w2"));
}

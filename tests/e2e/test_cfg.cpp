// Guided sampling end to end, through runexp on the shipped experiments with small overrides:
//   - cfg_gaussians.yaml (classifier-free guidance, Ho & Salimans 2022): a short run writes the
//     class each sample was asked for (/samples/<s>/labels: balanced is i mod 8), the guidance's
//     w and scale = w + 1, and the class metrics with their per-class figures; the floor of
//     class_fraction is the data's own nearest-mean accuracy (a Monte Carlo figure, 4 SE);
//     guidance w = 4 puts at least 95% of the samples in the requested component, more than
//     w = 0 does;
//   - classifier_gaussians.yaml then classifier_guidance_gaussians.yaml (classifier guidance,
//     Dhariwal & Nichol 2021): the trained classifier is loaded as a frozen named model, each
//     guided step evaluates it once (nfe_classifier = nfe), and scale 4 puts more samples in the
//     requested component than scale 0 (the unconditional model);
//   - the guided model works with every kind of sampler (ancestral, pc, ode, speculative);
//   - bad settings are refused before training, naming the key.
#include <cmath>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/tensor/random.hpp>

#include "runexp_child.hpp"
#include "scratch_dir.hpp"

using diffusion::testing::Child;
using diffusion::testing::run_runexp;
using diffusion::testing::ScratchDir;

namespace {

std::string experiment(const std::string& name) { return std::string(DIFFUSION_SOURCE_DIR) + "/experiments/" + name; }

double metric(const H5::Group& root, const std::string& group, const std::string& name) {
  return diffusion::read_tensor(diffusion::h5_open_group(root, "metrics/" + group), name).data()[0];
}

double figure(const H5::Group& root, const std::string& group, const std::string& name, const std::string& fig) {
  return diffusion::read_double_attribute(diffusion::h5_open_group(root, "metrics/" + group).openDataSet(name), fig);
}

/// The nearest-mean accuracy of the eight Gaussians (radius 2, std 0.5) themselves, by Monte
/// Carlo with the true means (its standard error is below 0.001).
double data_accuracy() {
  diffusion::Rng rng(99);
  const double kPi = 3.14159265358979323846;
  const int n = 200000;
  int hits = 0;
  for (int i = 0; i < n; ++i) {
    const int k = static_cast<int>(rng.uniform_double() * 8);
    const double x = 2 * std::cos(k * kPi / 4) + 0.5 * rng.normal(), y = 2 * std::sin(k * kPi / 4) + 0.5 * rng.normal();
    int best = 0;
    double best_d = 1e300;
    for (int q = 0; q < 8; ++q) {
      const double dx = x - 2 * std::cos(q * kPi / 4), dy = y - 2 * std::sin(q * kPi / 4);
      if (dx * dx + dy * dy < best_d) best_d = dx * dx + dy * dy, best = q;
    }
    hits += best == k;
  }
  return double(hits) / n;
}

const char* const kCfgSamplers =
    "samplers=[{type: ddim, name: w0, steps: 20, n: 800, labels: balanced, guidance: {type: classifier_free, w: 0}},"
    " {type: ddim, name: w4, steps: 20, n: 800, labels: balanced, guidance: {type: classifier_free, scale: 5}},"
    " {type: ddim, name: three, steps: 20, n: 100, labels: 3, guidance: {type: classifier_free, w: 2}}]";

}  // namespace

TEST_CASE("cfg e2e: a short cfg_gaussians run writes labels and guidance settings and class metrics", "[e2e][guidance]") {
  ScratchDir dir("cfg");
  const std::string out = dir / "cfg.h5";
  const Child r = run_runexp({experiment("cfg_gaussians.yaml"), "train.steps=1500", "train.ema=0.99", kCfgSamplers,
                              "reference.n=800", "reference.floor_draws=5", "--out", out},
                             dir / "cfg");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  H5::H5File file(out, H5F_ACC_RDONLY);
  const H5::Group root = file.openGroup("/");
  REQUIRE(diffusion::read_string_attribute(root, "status") == "complete");

  // The requested classes: balanced is i mod 8; `labels: 3` all 3.
  const diffusion::Tensor labels = diffusion::read_tensor(diffusion::h5_open_group(root, "samples/w0"), "labels");
  REQUIRE(labels.size() == 800);
  for (std::size_t i = 0; i < labels.size(); ++i) REQUIRE(labels.data()[i] == float(i % 8));
  const diffusion::Tensor three = diffusion::read_tensor(diffusion::h5_open_group(root, "samples/three"), "labels");
  for (const float l : three) REQUIRE(l == 3.0f);
  // The guidance's settings, in both conventions.
  const H5::Group w4 = diffusion::h5_open_group(root, "samples/w4");
  CHECK(diffusion::read_double_attribute(w4, "guidance_w") == 4.0);
  CHECK(diffusion::read_double_attribute(w4, "guidance_scale") == 5.0);
  CHECK(diffusion::read_int_attribute(w4, "nfe") == 20);  // one batched evaluation of 2N rows per step

  // The class metrics, per class too, and their floor.
  for (const char* s : {"w0", "w4", "three", "data"})
    for (const char* m : {"class_fraction", "class_w2", "w2"}) {
      CAPTURE(s, m);
      REQUIRE(std::isfinite(metric(root, s, m)));
    }
  for (int k = 0; k < 8; ++k) {
    CAPTURE(k);
    const std::string c = "class_" + std::to_string(k);
    CHECK(figure(root, "w4", "class_fraction", c) >= 0.0);
    CHECK(figure(root, "w0", "class_w2", c) > 0.0);
    CHECK(figure(root, "data", "class_w2", c) > 0.0);
  }
  // The floor of class_fraction: fresh data classified by the reference's class means, the
  // data's own accuracy (5 draws of 800: SE sqrt(a (1 - a) / 4000) ~ 0.005; the reference's
  // estimated means move it by less).
  const double floor = metric(root, "data", "class_fraction"), want = data_accuracy();
  CAPTURE(floor, want);
  CHECK(std::abs(floor - want) <= 4 * std::sqrt(want * (1 - want) / 4000.0) + 0.005);
  // Guidance: w = 4 puts the samples in the requested component.
  const double f0 = metric(root, "w0", "class_fraction"), f4 = metric(root, "w4", "class_fraction");
  CAPTURE(f0, f4);
  CHECK(f4 >= 0.95);
  CHECK(f4 > f0);
  CHECK(metric(root, "three", "class_fraction") >= 0.95);
}

TEST_CASE("cfg e2e: guidance wraps the model for every kind of sampler", "[e2e][guidance]") {
  // The guided model is a Denoiser like any other: ancestral, the reverse SDE (pc), the
  // probability-flow ODE (dopri5) and speculative sampling all put the samples in the requested
  // component at w = 4, each with the class metrics of its own labels.
  ScratchDir dir("cfg_samplers");
  const std::string out = dir / "cfg.h5";
  const Child r = run_runexp(
      {experiment("cfg_gaussians.yaml"), "train.steps=1500", "train.ema=0.99",
       "samplers=[{type: ancestral, name: ancestral, steps: 50, n: 400, labels: balanced, guidance: {type: classifier_free, w: 4}},"
       " {type: pc, name: pc, steps: 100, predictor: euler_maruyama, corrector: {type: none}, n: 400, labels: balanced,"
       "  guidance: {type: classifier_free, w: 4}},"
       " {type: ode, name: ode, method: dopri5, rtol: 1.0e-4, atol: 1.0e-4, n: 400, labels: balanced,"
       "  guidance: {type: classifier_free, w: 4}},"
       " {type: speculative, name: speculative, steps: 50, lookahead: 4, n: 400, labels: balanced,"
       "  guidance: {type: classifier_free, w: 4}}]",
       "metrics=[class_fraction]", "reference.n=400", "reference.floor_draws=1", "--out", out},
      dir / "cfg");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  H5::H5File file(out, H5F_ACC_RDONLY);
  const H5::Group root = file.openGroup("/");
  for (const char* s : {"ancestral", "pc", "ode", "speculative"}) {
    CAPTURE(s);
    CHECK(diffusion::read_double_attribute(diffusion::h5_open_group(root, std::string("samples/") + s), "guidance_w") == 4.0);
    CHECK(metric(root, s, "class_fraction") >= 0.95);
  }
}

TEST_CASE("cfg e2e: classifier guidance loads the trained classifier as a frozen named model", "[e2e][guidance]") {
  ScratchDir dir("clsg");
  const std::string clf = dir / "classifier.h5";
  const Child c = run_runexp({experiment("classifier_gaussians.yaml"), "train.steps=800", "--out", clf}, dir / "clf");
  CAPTURE(c.err);
  REQUIRE(c.status == 0);
  const std::string out = dir / "guided.h5";
  const Child r = run_runexp(
      {experiment("classifier_guidance_gaussians.yaml"), "train.steps=1500", "train.ema=0.99",
       "models.classifier.init=" + clf,
       "samplers=[{type: ddim, name: s0, steps: 20, n: 800, labels: balanced, guidance: {type: classifier, scale: 0}},"
       " {type: ddim, name: s4, steps: 20, n: 800, labels: balanced, guidance: {type: classifier, scale: 4}}]",
       "metrics=[class_fraction]", "reference.n=800", "--out", out},
      dir / "guided");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  H5::H5File file(out, H5F_ACC_RDONLY);
  const H5::Group root = file.openGroup("/");
  const H5::Group s4 = diffusion::h5_open_group(root, "samples/s4");
  CHECK(diffusion::read_double_attribute(s4, "guidance_scale") == 4.0);
  CHECK(diffusion::read_int_attribute(s4, "nfe_classifier") == diffusion::read_int_attribute(s4, "nfe"));
  // Scale 0 skips the classifier.
  CHECK(diffusion::read_int_attribute(diffusion::h5_open_group(root, "samples/s0"), "nfe_classifier") == 0);
  // The frozen classifier is saved as it was loaded: its weights equal the file's EMA.
  H5::H5File cf(clf, H5F_ACC_RDONLY);
  const H5::Group ema = diffusion::h5_open_group(cf.openGroup("/"), "ema");
  const H5::Group slot = diffusion::h5_open_group(root, "models/classifier");
  for (const std::string& name : diffusion::h5_dataset_names(ema)) {
    if (name.find("weight") == std::string::npos) continue;
    const diffusion::Tensor a = diffusion::read_tensor(ema, name), b = diffusion::read_tensor(slot, name);
    CAPTURE(name);
    REQUIRE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  }
  const double f0 = metric(root, "s0", "class_fraction"), f4 = metric(root, "s4", "class_fraction");
  CAPTURE(f0, f4);
  CHECK(f0 < 0.3);  // unguided: about 1/8 of the samples land in the class they were given
  CHECK(f4 > 0.9);
}

TEST_CASE("cfg e2e: bad guidance settings are refused before training naming the key", "[e2e][guidance]") {
  ScratchDir dir("cfg-bad");
  const auto refused = [&](const std::vector<std::string>& overrides, const std::string& needle) {
    std::vector<std::string> args{experiment("cfg_gaussians.yaml")};
    args.insert(args.end(), overrides.begin(), overrides.end());
    args.insert(args.end(), {"--out", dir / "bad.h5"});
    const Child r = run_runexp(args, dir / "bad");
    CAPTURE(overrides, r.err, needle);
    CHECK(r.status == 2);
    CHECK(r.err.find(needle) != std::string::npos);
  };
  refused({"samplers=[{type: ddim, labels: 8}]"}, "labels");
  refused({"samplers=[{type: ddim, labels: most}]"}, "data, balanced or a class in 0..7");
  refused({"samplers=[{type: ddim, guidance: {type: classifier_free, w: 1, scale: 2}}]"}, "once");
  refused({"network.class_conditional=false"}, "label_dropout");
  refused({"network.class_conditional=false", "train.label_dropout=0"}, "class-conditional network");
  // A class metric needs the class each sample was asked for.
  refused({"network.class_conditional=false", "train.label_dropout=0", "samplers=[{type: ddim}]"}, "asks for none");
  refused({"samplers=[{type: ddim, guidance: {type: classifier}}]"}, "classifier");
}

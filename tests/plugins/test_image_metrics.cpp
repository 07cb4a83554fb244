// The image_metrics plugin against closed forms and known answers:
//   1. the Frechet distance of two Gaussians, with non-diagonal covariances, equals the value
//      scipy.linalg.sqrtm gives (|mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))), both from the
//      moments and from two small point sets (numpy.cov); on large draws of two Gaussians it
//      approaches the closed form of their true moments within 4 standard errors (over replicates)
//      after the estimator's known bias of the mean term, (Tr S1 + Tr S2) / N;
//   2. the KID estimator (Binkowski et al. 2018) equals the unbiased MMD^2 written out pair by
//      pair on a tiny set; its subsets of all rows give that value; over replicate draws of one
//      distribution it is 0 within 4 standard errors and for two distributions it is positive by
//      more than 10;
//   3. the cross_entropy loss is -log softmax of the label's logit of image_classifier, and its
//      gradient in the weights matches central finite differences; it refuses unlabelled data,
//      a batch without labels and a network that does not give (N, classes); image_classifier
//      refuses flattened samples and a group count that does not divide the channels;
//   4. end to end with runexp: the digits classifier trains in a few seconds to a held-out
//      accuracy well above chance (test_accuracy); a generation experiment reads it as fd, kid
//      and classifier_accuracy, whose floor (fresh test digits) is the classifier's own accuracy
//      and whose samples of an undertrained model score worse than the floor;
//   5. fd with a missing classifier file, a text file, an HDF5 file that is not a complete
//      results file and a results file whose network is an mlp: each a ConfigError at
//      `classifier` naming the file, and runexp stops before training.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/plugin/plugin_loader.hpp>
#include <diffusion/plugin/registries.hpp>

#include "e2e/runexp_child.hpp"
#include "e2e/scratch_dir.hpp"
#include "image_metrics/feature_distances.hpp"

using namespace diffusion;
using namespace diffusion::image_metrics;
using diffusion::testing::Child;
using diffusion::testing::run_runexp;
using diffusion::testing::ScratchDir;
using Catch::Contains;

namespace {

void load_plugins(std::initializer_list<const char*> names) {
  for (const char* p : names) load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_" + p + ".so");
}

Tensor rows(const std::vector<std::vector<float>>& r) {
  Tensor t = Tensor::from_shape({r.size(), r[0].size()});
  for (std::size_t i = 0; i < r.size(); ++i)
    for (std::size_t j = 0; j < r[i].size(); ++j) t(i, j) = r[i][j];
  return t;
}

// Two 3-D Gaussians with correlated coordinates, and their Cholesky factors (numpy.linalg.cholesky).
const xt::xtensor<double, 1> kMu1{0.5, -1.0, 2.0}, kMu2{0.0, 0.25, 1.5};
const xt::xtensor<double, 2> kS1{{2.0, 0.6, -0.4}, {0.6, 1.0, 0.3}, {-0.4, 0.3, 0.5}};
const xt::xtensor<double, 2> kS2{{1.0, -0.5, 0.2}, {-0.5, 1.5, 0.4}, {0.2, 0.4, 0.8}};
// Computed with /usr/bin/python3, scipy 1.10.1 (tmp script, as in the comment of test 1):
//   sum((m1 - m2)**2) + trace(S1) + trace(S2) - 2 * trace(scipy.linalg.sqrtm(S1 @ S2)).real
const double kFdMoments = 3.144600686965802;

/// n draws of N(mu, S) with S = L L^T.
Tensor gaussian_draws(std::size_t n, const xt::xtensor<double, 1>& mu, const xt::xtensor<double, 2>& s, Rng& rng) {
  const std::size_t d = mu.size();
  xt::xtensor<double, 2> l = xt::zeros<double>({d, d});  // Cholesky by hand (3x3)
  for (std::size_t i = 0; i < d; ++i)
    for (std::size_t j = 0; j <= i; ++j) {
      double v = s(i, j);
      for (std::size_t k = 0; k < j; ++k) v -= l(i, k) * l(j, k);
      l(i, j) = i == j ? std::sqrt(v) : v / l(j, j);
    }
  Tensor x = Tensor::from_shape({n, d});
  std::vector<double> z(d);
  for (std::size_t r = 0; r < n; ++r) {
    for (auto& v : z) v = rng.normal();
    for (std::size_t i = 0; i < d; ++i) {
      double v = mu(i);
      for (std::size_t k = 0; k <= i; ++k) v += l(i, k) * z[k];
      x(r, i) = static_cast<float>(v);
    }
  }
  return x;
}

struct MeanSe {
  double mean = 0, se = 0;
};
MeanSe mean_se(const std::vector<double>& v) {
  MeanSe m;
  for (const double x : v) m.mean += x / double(v.size());
  double var = 0;
  for (const double x : v) var += (x - m.mean) * (x - m.mean);
  m.se = std::sqrt(var / double(v.size() - 1) / double(v.size()));
  return m;
}

std::string config_error(const std::string& yaml) {
  const Config cfg = Config::load_string(yaml);
  try {
    registries().metrics.create(cfg.root(), BuildContext{});
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

}  // namespace

TEST_CASE("image metrics: the Frechet distance equals scipy's sqrtm value for correlated Gaussians", "[image_metrics]") {
  CHECK(frechet_distance(kMu1, kS1, kMu2, kS2) == Approx(kFdMoments).epsilon(1e-10));
  CHECK(std::abs(frechet_distance(kMu1, kS1, kMu1, kS1)) < 1e-12);
  // Two small point sets (values exact in float32); the reference fits their means and numpy.cov
  // (N - 1) and applies the formula above: 0.45732469285731003.
  const Tensor a = rows({{0.5f, 1.0f, -0.25f}, {1.5f, -0.5f, 0.75f}, {-1.0f, 0.25f, 0.5f}, {2.0f, 1.25f, -1.5f},
                         {0.0f, -0.75f, 1.0f}});
  const Tensor b = rows({{1.0f, 0.5f, 0.0f}, {-0.5f, 1.5f, 0.25f}, {0.75f, -1.0f, 1.25f}, {2.5f, 0.0f, -0.5f},
                         {0.25f, 0.75f, 0.5f}, {-1.25f, -0.25f, 1.5f}});
  CHECK(frechet_distance(a, b) == Approx(0.45732469285731003).epsilon(1e-10));
  CHECK(frechet_distance(b, a) == Approx(0.45732469285731003).epsilon(1e-10));
}

TEST_CASE("image metrics: the Frechet distance of Gaussian draws approaches the closed form", "[image_metrics]") {
  // E|mean_a - mean_b|^2 = |mu1 - mu2|^2 + (Tr S1 + Tr S2) / N; the trace terms' bias is O(1/N)
  // too but far smaller than the 4 standard errors of 40 replicates at N = 4000 (about 0.04).
  const std::size_t n = 4000, replicates = 40;
  Rng rng(11);
  std::vector<double> values;
  for (std::size_t r = 0; r < replicates; ++r)
    values.push_back(frechet_distance(gaussian_draws(n, kMu1, kS1, rng), gaussian_draws(n, kMu2, kS2, rng)));
  const MeanSe m = mean_se(values);
  const double expected = kFdMoments + (3.5 + 3.3) / double(n);
  CAPTURE(m.mean, m.se, expected);
  CHECK(std::abs(m.mean - expected) < 4 * m.se);
  CHECK(m.se < 0.02);
}

TEST_CASE("image metrics: kid is the unbiased MMD2 of the cubic kernel written out pair by pair", "[image_metrics]") {
  const Tensor a = rows({{0.5f, -1.0f}, {1.5f, 0.25f}, {-0.75f, 2.0f}});
  const Tensor b = rows({{1.0f, 1.0f}, {0.0f, -0.5f}, {2.0f, 0.5f}, {-1.0f, -1.5f}});
  const auto k = [](const Tensor& x, std::size_t i, const Tensor& y, std::size_t j) {
    const double dot = double(x(i, 0)) * y(j, 0) + double(x(i, 1)) * y(j, 1);
    return std::pow(dot / 2.0 + 1.0, 3);  // d = 2
  };
  double xx = 0, yy = 0, xy = 0;
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 3; ++j)
      if (i != j) xx += k(a, i, a, j);
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 4; ++j)
      if (i != j) yy += k(b, i, b, j);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t j = 0; j < 4; ++j) xy += k(a, i, b, j);
  const double expected = xx / 6.0 + yy / 12.0 - 2.0 * xy / 12.0;
  CHECK(mmd2_unbiased_cubic(a, b) == Approx(expected).epsilon(1e-12));
  // Subsets of all three rows are the whole sets in another order: the same value, no spread.
  Rng rng(3);
  const Tensor b3 = rows({{1.0f, 1.0f}, {0.0f, -0.5f}, {2.0f, 0.5f}});
  const KernelDistance full = kernel_distance(a, b3, 5, 3, rng);
  CHECK(full.mean == Approx(mmd2_unbiased_cubic(a, b3)).epsilon(1e-12));
  CHECK(full.std < 1e-9);
  CHECK_THROWS_WITH(kernel_distance(a, b3, 5, 4, rng), Contains("subset"));
}

TEST_CASE("image metrics: kid is zero within standard errors for one distribution and positive for two",
          "[image_metrics]") {
  const std::size_t n = 200, d = 8, replicates = 30;
  Rng rng(5);
  std::vector<double> same, shifted;
  for (std::size_t r = 0; r < replicates; ++r) {
    const Tensor a = rng.normal({n, d}), b = rng.normal({n, d}), c = rng.normal({n, d}, 0.5f, 1.0f);
    same.push_back(kernel_distance(a, b, 1, n, rng).mean);
    shifted.push_back(kernel_distance(a, c, 1, n, rng).mean);
  }
  const MeanSe s = mean_se(same), t = mean_se(shifted);
  CAPTURE(s.mean, s.se, t.mean, t.se);
  CHECK(std::abs(s.mean) < 4 * s.se);
  CHECK(t.mean > 10 * t.se);
}

TEST_CASE("image metrics: cross_entropy is the label's negative log-softmax and its gradient matches finite differences",
          "[image_metrics]") {
  load_plugins({"image_metrics", "mlp"});
  Rng init(1);
  const BuildContext ctx{{1, 8, 8}, 3, &init};
  const Config net_cfg = Config::load_string("{type: image_classifier, channels: [8, 16], groups: 4, features: 16}");
  const std::shared_ptr<Network> net = registries().networks.create(net_cfg.root(), ctx);
  const Config loss_cfg = Config::load_string("{type: cross_entropy}");
  const std::shared_ptr<Loss> loss = registries().losses.create(loss_cfg.root(), ctx);
  Rng data(2);
  const Tensor x = data.normal({4, 1, 8, 8});
  const Condition c = Condition::from_labels({0, 2, 1, 2});
  TrainContext tc;
  Rng rng(3);

  const auto total = [&] { return loss->loss(*net, x, c, tc, rng).per_sample; };
  {
    const NoGradScope no_grad;
    const Tensor logits = net->forward(Var(x), zeros({4}), Condition()).value();
    REQUIRE(shape_of(logits) == Shape{4, 3});
    const Tensor per = total().value();
    for (std::size_t i = 0; i < 4; ++i) {
      double lse = 0;
      for (std::size_t k = 0; k < 3; ++k) lse += std::exp(double(logits(i, k)));
      CHECK(per(i) == Approx(std::log(lse) - logits(i, std::size_t(c.labels()[i]))).margin(1e-5));
    }
  }
  net->zero_grad();
  sum(total()).backward();
  int checked = 0;
  for (auto& [name, p] : net->named_parameters()) {
    if (name != "convs.0.weight" && name != "norms.1.weight" && name != "feature.weight" && name != "head.bias") continue;
    const Tensor g = p.grad();
    for (std::size_t i = 0; i < p.size(); i += p.size() / 5 + 1) {
      const float keep = p.value().data()[i], eps = 1e-2f;
      double up, down;
      {
        const NoGradScope no_grad;
        p.value().data()[i] = keep + eps;
        up = double(sum(total()).item());
        p.value().data()[i] = keep - eps;
        down = double(sum(total()).item());
        p.value().data()[i] = keep;
      }
      const double fd = (up - down) / (2 * eps);
      CAPTURE(name, i, fd, g.data()[i]);
      CHECK(g.data()[i] == Approx(fd).margin(2e-3).epsilon(0.02));
      ++checked;
    }
  }
  CHECK(checked >= 12);

  // Config errors.
  Rng r4(4);
  const BuildContext unlabelled{{1, 8, 8}, 0, &r4};
  CHECK_THROWS_AS(registries().losses.create(loss_cfg.root(), unlabelled), ConfigError);
  CHECK_THROWS_WITH(loss->loss(*net, x, Condition(), tc, rng), Contains("no labels"));
  const Config mlp_cfg = Config::load_string("{type: mlp, hidden: [8], time_embedding: {type: sinusoidal, dim: 8}}");
  const BuildContext flat{{64}, 3, &r4};
  const std::shared_ptr<Network> mlp = registries().networks.create(mlp_cfg.root(), flat);
  CHECK_THROWS_WITH(loss->loss(*mlp, data.normal({4, 64}), c, tc, rng), Contains("one logit per class"));
  CHECK_THROWS_AS(registries().networks.create(net_cfg.root(), flat), ConfigError);
  const Config bad_groups = Config::load_string("{type: image_classifier, channels: [8, 12], groups: 8}");
  CHECK_THROWS_WITH(registries().networks.create(bad_groups.root(), ctx), Contains("groups"));
}

namespace {

const char* const kClassifier =
    "name: digits_classifier\n"
    "seed: 0\n"
    "dataset: {type: digits}\n"
    "network: {type: image_classifier, channels: [16, 32], groups: 8, features: 32}\n"
    "sde:     {type: ddpm, timesteps: 1000}\n"
    "loss:    {type: cross_entropy}\n"
    "train:   {steps: 100, batch_size: 64, optimizer: {type: adam, lr: 3.0e-3}, ema: 0.9, log_every: 50}\n"
    "metrics: [{type: test_accuracy, n: 500}]\n";

std::string generation(const std::string& classifier) {
  return "name: digits_gen\n"
         "seed: 1\n"
         "dataset: {type: digits, flatten: true}\n"
         "network: {type: mlp, hidden: [64], class_conditional: true, time_embedding: {type: sinusoidal, dim: 16}}\n"
         "sde:     {type: ddpm, timesteps: 1000}\n"
         "loss:    {type: eps_mse}\n"
         "train:   {steps: 50, batch_size: 64, optimizer: {type: adam, lr: 2.0e-3}, log_every: 50}\n"
         "samplers: [{type: ddim, name: d10, steps: 10, n: 300, labels: balanced, clip_x0: 1.0}]\n"
         "metrics:\n"
         "  - {type: fd, classifier: " + classifier + "}\n"
         "  - {type: kid, classifier: " + classifier + ", subsets: 4, subset_size: 100}\n"
         "  - {type: classifier_accuracy, classifier: " + classifier + "}\n"
         "reference: {floor_draws: 2}\n";
}

double read_scalar(const H5::Group& root, const std::string& name) { return double(read_tensor(root, name)()); }

}  // namespace

TEST_CASE("image metrics e2e: runexp trains the digits classifier and fd kid and classifier_accuracy read it",
          "[image_metrics][e2e]") {
  ScratchDir d("image-metrics");
  std::ofstream(d / "classifier.yaml") << kClassifier;
  const std::string classifier = d / "classifier.h5";
  Child r = run_runexp({d / "classifier.yaml", "--out", classifier}, d / "classifier");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  double test_accuracy = 0;
  {
    const H5::H5File f(classifier, H5F_ACC_RDONLY);
    test_accuracy = read_scalar(f.openGroup("/"), "metrics/model/test_accuracy");
  }
  CHECK(test_accuracy > 0.7);  // chance: 0.1; 0.88 measured

  std::ofstream(d / "gen.yaml") << generation(classifier);
  r = run_runexp({d / "gen.yaml", "--out", d / "gen.h5"}, d / "gen");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  const H5::H5File f(d / "gen.h5", H5F_ACC_RDONLY);
  const H5::Group root = f.openGroup("/");
  const double floor_acc = read_scalar(root, "metrics/data/classifier_accuracy");
  CAPTURE(test_accuracy, floor_acc);
  // Both are the classifier's accuracy on test digits (500 and 2 x 300 draws of the 359): within
  // 4 binomial standard errors of their difference.
  const double se = std::sqrt(test_accuracy * (1 - test_accuracy) * (1.0 / 500 + 1.0 / 600));
  CHECK(std::abs(floor_acc - test_accuracy) < 4 * se + 1e-3);
  // 50 steps of an mlp: far from the data.
  CHECK(read_scalar(root, "metrics/d10/fd") > 2 * read_scalar(root, "metrics/data/fd"));
  CHECK(read_scalar(root, "metrics/d10/kid") > read_scalar(root, "metrics/data/kid"));
  CHECK(read_scalar(root, "metrics/d10/classifier_accuracy") < floor_acc);
  const H5::DataSet acc = h5_open_group(root, "metrics/d10").openDataSet("classifier_accuracy");
  for (int k = 0; k < 10; ++k) CHECK(has_attribute(acc, "class_" + std::to_string(k)));
  // kid's spread over its 4 subsets, beside its value, for the samples and the floor.
  for (const char* g : {"metrics/d10", "metrics/data"}) {
    CAPTURE(g);
    CHECK(read_double_attribute(h5_open_group(root, g).openDataSet("kid"), "subset_std") > 0.0);
  }
}

TEST_CASE("image metrics: a classifier file that is missing or not a trained image_classifier is a config error",
          "[image_metrics][e2e]") {
  load_plugins({"image_metrics", "image_data", "mlp", "toy_data", "ddpm"});
  ScratchDir d("image-metrics-errors");
  const auto refused = [&](const std::string& path, const std::string& needle) {
    const std::string msg = config_error("{type: fd, classifier: " + path + "}");
    CAPTURE(msg);
    CHECK_THAT(msg, Contains("classifier") && Contains(path) && Contains(needle));
  };
  refused(d / "missing.h5", "does not exist");
  std::ofstream(d / "text.h5") << "not hdf5\n";
  refused(d / "text.h5", "not an HDF5");
  {
    H5::H5File f(d / "bare.h5", H5F_ACC_TRUNC);
    write_attribute(f.openGroup("/"), "status", std::string("running"));
  }
  refused(d / "bare.h5", "not a complete results file");
  // A complete results file whose network is an mlp (a quick run on the eight Gaussians).
  std::ofstream(d / "mlp.yaml") << "name: mlp_run\nseed: 0\ndataset: {type: eight_gaussians}\n"
                                   "network: {type: mlp, hidden: [16], time_embedding: {type: sinusoidal, dim: 8}}\n"
                                   "sde: {type: ddpm, timesteps: 100}\nloss: {type: eps_mse}\n"
                                   "train: {steps: 5, batch_size: 16, optimizer: {type: adam, lr: 1.0e-3}}\nmetrics: []\n";
  Child r = run_runexp({d / "mlp.yaml", "--out", d / "mlp.h5"}, d / "mlp");
  CAPTURE(r.err);
  REQUIRE(r.status == 0);
  refused(d / "mlp.h5", "not an image_classifier");
  CHECK_THAT(config_error("{type: kid}"), Contains("classifier"));
  // runexp refuses it before training, naming the key and the file.
  std::ofstream(d / "gen.yaml") << generation(d / "mlp.h5");
  r = run_runexp({d / "gen.yaml", "--out", d / "gen.h5"}, d / "gen");
  CHECK(r.status == 2);
  CHECK_THAT(r.err, Contains("metrics.0.classifier") && Contains("mlp.h5"));
  CHECK_THAT(r.out + r.err, !Contains("train step"));
}

// The Diffusion Transformer (plugins/dit, Peebles & Xie 2023): output shape and parameter
// names; adaLN-Zero (a fresh network outputs exactly 0 and every block is the identity); the
// fixed 2-D sin-cos position embedding against its closed form; gradients with respect to the
// input and every parameter against finite differences; the null label of dropped conditions
// and labels out of range; the forward pass against PyTorch's on the same weights
// (tests/data/dit_reference.h5, written by tools/baselines/dit_reference.py); the loss and every
// parameter's gradient against torch's autograd at the 28x28 experiment's 49 tokens
// (tests/data/dit_reference_grad.h5, written by dit_reference.py --grad); the configuration
// errors (a patch that does not divide the image, heads not dividing hidden, points instead of
// images); and one small run of runexp on the 8x8 digits.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <xtensor/xview.hpp>

#include <diffusion/components.hpp>
#include <diffusion/io/config.hpp>
#include <diffusion/io/hdf5_io.hpp>
#include <diffusion/plugin/plugin_loader.hpp>

#include "network_grad_check.hpp"
#include "e2e/runexp_child.hpp"
#include "e2e/scratch_dir.hpp"

using namespace diffusion;
using Catch::Contains;

namespace {

std::shared_ptr<Network> make_dit(const std::string& yaml, const Shape& image, int classes = 0, std::uint64_t seed = 3) {
  load_plugin(std::string(DIFFUSION_PLUGIN_BUILD_DIR) + "/libdiffusion_dit.so");
  Rng rng(seed);
  BuildContext ctx{image, classes, &rng};
  return registries().networks.create(Config::load_string(yaml, "net.yaml").root(), ctx);
}

std::string build_error(const std::string& yaml, const Shape& image, int classes = 0) {
  try {
    make_dit(yaml, image, classes);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// The parameter of a module by dotted name.
Var param(const Module& m, const std::string& name) {
  for (const auto& [n, p] : m.named_parameters())
    if (n == name) return p;
  FAIL("no parameter " << name);
  return Var();
}

/// Every parameter whose name contains `part` redrawn from N(0, std^2) (the zero-initialised
/// adaLN and final layers made nonzero, so their paths are exercised).
void perturb(Module& m, const std::string& part, float std, std::uint64_t seed) {
  Rng rng(seed);
  for (auto& [n, p] : m.named_parameters())
    if (n.find(part) != std::string::npos) p.value() = rng.normal(shape_of(p.value()), 0.0f, std);
}

float max_abs(const Tensor& t) {
  float m = 0;
  for (float v : t) m = std::max(m, std::fabs(v));
  return m;
}

/// Every parameter's gradient against finite differences (network_grad_check.hpp), then the
/// directional derivative along a random v.
void check_parameter_gradients(Network& net, const std::function<Var()>& forward) {
  Rng rng(grad_check::Options{}.seed + 1);
  network_grad_check::check_parameter_gradients(
      net, forward, [&](const std::string& name, Var& p, const Tensor& analytic, const std::function<double()>& projected) {
        // The directional derivative along a random v, relative: a small gradient is held to the
        // same 1% as a large one (the per-element tolerance above is absolute below |g| ~ 0.1), and
        // must not vanish (every parameter reaches the output once the zero layers are perturbed).
        const Tensor v = rng.normal(shape_of(p.value()));
        const Tensor w0 = p.value();
        const double h = 1.0 / 128;
        const auto along = [&](double e) {
          p.value() = w0 + float(e) * v;
          const double l = projected();
          p.value() = w0;
          return l;
        };
        const double numeric_dir = (8.0 * (along(h) - along(-h)) - (along(2 * h) - along(-2 * h))) / (12.0 * h);
        double analytic_dir = 0;
        for (std::size_t j = 0; j < v.size(); ++j) analytic_dir += double(analytic.data()[j]) * v.data()[j];
        CAPTURE(numeric_dir, analytic_dir);
        if (name.find("attn.k.bias") != std::string::npos) {
          // q . (k_j + b) = q . k_j + q . b shifts every key's logit equally: softmax does not see
          // the key bias, whose gradient is exactly 0 (the difference above is rounding).
          CHECK(std::fabs(analytic_dir) < 1e-5);
          CHECK(std::fabs(numeric_dir) < 1e-3);
          return;
        }
        CHECK(std::fabs(numeric_dir) > 1e-3);
        CHECK(std::fabs(analytic_dir - numeric_dir) <= 1e-2 * std::fabs(numeric_dir));
      });
}

const char* const kTiny = "{type: dit, hidden: 8, depth: 2, heads: 2, patch: 2, mlp_ratio: 2, frequency_dim: 8}";

}  // namespace

TEST_CASE("dit: output shape and parameter names", "[network][dit]") {
  auto net = make_dit("{type: dit, hidden: 16, depth: 3, heads: 4, patch: 2, class_conditional: true}", {1, 8, 6}, 10);
  std::map<std::string, Shape> shapes;
  for (const auto& [n, p] : net->named_parameters()) shapes[n] = p.shape();
  CHECK(shapes.at("patch_embed.weight") == Shape{16, 4});  // C p p = 1 * 2 * 2 inputs per token
  CHECK(shapes.at("time_embed.fc1.weight") == Shape{16, 256});
  CHECK(shapes.at("class_embed") == Shape{11, 16});  // 10 classes and the null label
  CHECK(shapes.at("blocks.2.adaLN.weight") == Shape{96, 16});  // 6 hidden modulations
  CHECK(shapes.at("blocks.2.attn.q.weight") == Shape{16, 16});
  CHECK(shapes.at("blocks.2.fc1.weight") == Shape{64, 16});  // mlp_ratio 4
  CHECK(shapes.at("final.adaLN.weight") == Shape{32, 16});
  CHECK(shapes.at("final.linear.weight") == Shape{4, 16});
  CHECK(shapes.count("blocks.3.adaLN.weight") == 0);
  const auto buffers = net->named_buffers();
  REQUIRE(buffers.size() == 1);
  CHECK(buffers[0].first == "pos_embed");
  CHECK(buffers[0].second.shape() == Shape{1, 12, 16});  // a 4 x 3 grid of tokens
  Rng rng(1);
  for (std::size_t n : {1, 5}) {
    const Var y = net->forward(Var(rng.normal({n, 1, 8, 6})), rng.uniform({n}, 0, 999),
                               Condition::from_labels(std::vector<int>(n, 3)));
    CHECK(y.shape() == Shape{n, 1, 8, 6});
  }
  // Three channels: the output has three too.
  auto rgb = make_dit("{type: dit, hidden: 8, depth: 1, heads: 2, patch: 4}", {3, 8, 8});
  CHECK(rgb->forward(Var(rng.normal({2, 3, 8, 8})), rng.uniform({2}), Condition()).shape() == Shape{2, 3, 8, 8});
  CHECK_FALSE(rgb->class_conditional());
}

TEST_CASE("dit: adaLN-Zero makes a fresh network output zero and every block the identity", "[network][dit]") {
  auto net = make_dit("{type: dit, hidden: 16, depth: 3, heads: 2, patch: 2, class_conditional: true}", {1, 8, 8}, 10);
  Rng rng(2);
  const Tensor x = rng.normal({4, 1, 8, 8}), t = rng.uniform({4}, 0, 999);
  const Condition c = Condition::from_labels({0, 4, 9, 2});
  CHECK(max_abs(net->forward(Var(x), t, c).value()) == 0.0f);

  // With the final layer made nonzero, the blocks (attention and MLP random, adaLN zero) must
  // leave the tokens exactly as they are: the output equals that of a one-block network with
  // the same embeddings and final layer.
  auto one = make_dit("{type: dit, hidden: 16, depth: 1, heads: 2, patch: 2, class_conditional: true}", {1, 8, 8}, 10, 99);
  perturb(*net, "final.", 0.3f, 5);
  for (auto& [name, p] : one->named_parameters())
    if (name.rfind("blocks.", 0) != 0) p.value() = param(*net, name).value();
  const Tensor y3 = net->forward(Var(x), t, c).value(), y1 = one->forward(Var(x), t, c).value();
  REQUIRE(max_abs(y3) > 0.1f);
  CHECK(max_abs(y3 - y1) == 0.0f);
  // The comparison can fail: a nonzero gate in one block changes the output.
  perturb(*net, "blocks.1.adaLN", 0.3f, 6);
  CHECK(max_abs(net->forward(Var(x), t, c).value() - y1) > 1e-3f);
}

TEST_CASE("dit: position embedding matches the 2-D sin-cos closed form", "[network][dit]") {
  // 8 x 12 image, patch 2: a grid of 4 rows and 6 columns; hidden 16 gives 4 frequencies per part.
  auto net = make_dit("{type: dit, hidden: 16, depth: 1, heads: 2, patch: 2}", {1, 8, 12});
  const Tensor pos = net->named_buffers().at(0).second.value();
  REQUIRE(shape_of(pos) == Shape{1, 24, 16});
  const std::size_t grid_w = 6;
  for (const auto& [i, j] : std::vector<std::pair<std::size_t, std::size_t>>{{0, 0}, {0, 5}, {3, 0}, {2, 4}, {3, 5}}) {
    const float* e = pos.data() + (i * grid_w + j) * 16;
    for (std::size_t k = 0; k < 4; ++k) {
      // MAE / DiT: first half the column j, second half the row i; each [sin, cos] at 10000^(-k/4).
      const double w = std::pow(10000.0, -double(k) / 4.0);
      CAPTURE(i, j, k);
      CHECK(e[k] == Approx(std::sin(j * w)).margin(1e-6));
      CHECK(e[4 + k] == Approx(std::cos(j * w)).margin(1e-6));
      CHECK(e[8 + k] == Approx(std::sin(i * w)).margin(1e-6));
      CHECK(e[12 + k] == Approx(std::cos(i * w)).margin(1e-6));
    }
  }
  // Fixed, not trained.
  for (const auto& [n, p] : net->named_parameters()) CHECK(n != "pos_embed");
}

TEST_CASE("dit: gradients match finite differences", "[network][dit]") {
  const bool conditional = GENERATE(false, true);
  CAPTURE(conditional);
  const std::string yaml = conditional ? std::string(kTiny).insert(std::string(kTiny).size() - 1, ", class_conditional: true")
                                       : std::string(kTiny);
  auto net = make_dit(yaml, {2, 4, 4}, 3);
  perturb(*net, "adaLN", 0.5f, 11);
  perturb(*net, "final.linear", 0.5f, 12);
  perturb(*net, "time_embed", 0.3f, 13);
  Rng rng(5);
  const Tensor x = rng.normal({3, 2, 4, 4});
  const Tensor t = rng.uniform({3}, 0, 10);
  Condition c;
  if (conditional) {
    c = Condition::from_labels({0, 2, 1});
    c.set_null_mask({0, 1, 0});
  }
  grad_check::check_gradients([&](const std::vector<Var>& in) { return net->forward(in[0], t, c); }, {x});
  check_parameter_gradients(*net, [&] { return net->forward(Var(x), t, c); });
}

TEST_CASE("dit: dropped conditions use the null label and labels out of range are refused", "[network][dit][condition]") {
  auto net = make_dit("{type: dit, hidden: 8, depth: 1, heads: 2, patch: 2, class_conditional: true}", {1, 4, 4}, 3);
  REQUIRE(net->class_conditional());
  perturb(*net, "adaLN", 0.5f, 1);
  perturb(*net, "final.linear", 0.5f, 2);
  perturb(*net, "class_embed", 1.0f, 3);
  Rng rng(4);
  const Tensor x1 = rng.normal({1, 1, 4, 4}), t1 = rng.uniform({1}, 0, 999);
  // The same image and time in four rows: labels 0, 1, 2 and a dropped condition.
  Tensor x = Tensor::from_shape({4, 1, 4, 4}), t = Tensor::from_shape({4});
  for (std::size_t i = 0; i < 4; ++i) {
    std::copy(x1.begin(), x1.end(), x.data() + i * 16);
    t(i) = t1(0);
  }
  Condition c = Condition::from_labels({0, 1, 2, 1});
  c.set_null_mask({0, 0, 0, 1});
  const Tensor y = net->forward(Var(x), t, c).value();
  const auto row = [&](std::size_t i) { return Tensor(xt::view(y, i)); };
  for (std::size_t a = 0; a < 4; ++a)
    for (std::size_t b = a + 1; b < 4; ++b) {
      CAPTURE(a, b);
      CHECK(max_abs(row(a) - row(b)) > 1e-3f);
    }
  // The null row depends on nothing but the mask: any label under it gives the same output.
  Condition d = Condition::from_labels({2, 0, 1, 0});
  d.set_null_mask({1, 1, 1, 1});
  const Tensor yn = net->forward(Var(x), t, d).value();
  for (std::size_t i = 0; i < 4; ++i) CHECK(max_abs(Tensor(xt::view(yn, i)) - row(3)) == 0.0f);

  for (int bad : {-1, 3}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH(net->forward(Var(x), t, Condition::from_labels({0, bad, 1, 2})), Contains("outside 0..2"));
  }
  CHECK_THROWS_WITH(net->forward(Var(x), t, Condition()), Contains("without labels"));
}

namespace {

/// A reference file of tools/baselines/dit_reference.py: its network (with its weights), inputs
/// and torch's output.
struct DitReference {
  std::shared_ptr<Network> net;
  Tensor x, t, expected;
  Condition c;
  H5::H5File file;
};

DitReference load_dit_reference(const std::string& name) {
  DitReference r;
  r.file = H5::H5File(std::string(DIFFUSION_SOURCE_DIR) + "/tests/data/" + name, H5F_ACC_RDONLY);
  const H5::Group root = r.file.openGroup("/"), config = r.file.openGroup("/config");
  const auto attr = [&](const char* key) { return read_int_attribute(config, key); };
  const std::string yaml = "{type: dit, hidden: " + std::to_string(attr("hidden")) + ", depth: " + std::to_string(attr("depth")) +
                           ", heads: " + std::to_string(attr("heads")) + ", patch: " + std::to_string(attr("patch")) +
                           ", mlp_ratio: " + std::to_string(read_double_attribute(config, "mlp_ratio")) +
                           ", frequency_dim: " + std::to_string(attr("frequency_dim")) + ", class_conditional: true}";
  const Shape image{std::size_t(attr("channels")), std::size_t(attr("height")), std::size_t(attr("width"))};
  r.net = make_dit(yaml, image, int(attr("num_classes")));
  // The fixed position embedding is loaded with the weights: check ours against torch's first.
  const Tensor our_pos = r.net->named_buffers().at(0).second.value();
  r.net->load(r.file.openGroup("/weights"), /*strict=*/true);
  CHECK(max_abs(our_pos - r.net->named_buffers().at(0).second.value()) < 1e-6f);
  REQUIRE(max_abs(param(*r.net, "final.linear.weight").value()) > 0.1f);  // the reference is not the zero init

  r.x = read_tensor(root, "input/x");
  r.t = read_tensor(root, "input/t");
  r.expected = read_tensor(root, "output");
  const Tensor labels = read_tensor(root, "input/labels"), mask = read_tensor(root, "input/null_mask");
  std::vector<int> l(labels.size());
  std::vector<std::uint8_t> m(mask.size());
  for (std::size_t i = 0; i < l.size(); ++i) l[i] = int(labels(i)), m[i] = std::uint8_t(mask(i));
  r.c = Condition::from_labels(l);
  r.c.set_null_mask(m);
  REQUIRE(std::count(m.begin(), m.end(), 1) > 0);
  return r;
}

}  // namespace

TEST_CASE("dit: forward pass matches the PyTorch reference", "[network][dit]") {
  const DitReference r = load_dit_reference("dit_reference.h5");
  const Tensor y = r.net->forward(Var(r.x), r.t, r.c).value();
  REQUIRE(shape_of(y) == shape_of(r.expected));
  const double scale = max_abs(r.expected), relative = max_abs(y - r.expected) / scale;
  REQUIRE(scale > 1.0);
  CAPTURE(scale, relative);
  CHECK(relative < 1e-4);
}

TEST_CASE("dit: training gradients at the 28x28 experiment's token count match PyTorch's", "[network][dit]") {
  // The finite-difference checks run on 4x4 images; this one runs the backward pass at the
  // Fashion-MNIST experiment's geometry (49 tokens of patch 4, 4 heads) against torch's autograd
  // in float64 (tests/data/dit_reference_grad.h5, dit_reference.py --grad): the loss
  // mean((F(x, t, c) - target)^2) and every parameter's gradient.
  const DitReference r = load_dit_reference("dit_reference_grad.h5");
  const H5::Group root = r.file.openGroup("/");
  for (auto [name, p] : r.net->named_parameters()) p.zero_grad();  // Var is a handle: the copy zeroes the parameter
  const Var loss = mse_loss(r.net->forward(Var(r.x), r.t, r.c), Var(read_tensor(root, "input/target")));
  const double expected_loss = read_tensor(root, "loss")(0);
  CHECK(std::abs(double(loss.item()) - expected_loss) < 1e-5 * expected_loss);
  loss.backward();
  const H5::Group grads = r.file.openGroup("/grads");
  const auto params = r.net->named_parameters();
  std::vector<Tensor> expected_grads;
  double largest = 0.0;
  for (const auto& [name, p] : params) {
    expected_grads.push_back(read_tensor(grads, name));
    largest = std::max(largest, double(max_abs(expected_grads.back())));
  }
  REQUIRE(largest > 1e-3);
  std::size_t checked = 0;
  for (const auto& [name, p] : params) {
    const Tensor& expected = expected_grads[checked];
    REQUIRE(shape_of(expected) == shape_of(p.grad()));
    // The key projections' bias has no gradient in exact arithmetic (softmax ignores a shift
    // shared by a query's logits): it is held to the largest gradient's scale.
    const double scale = std::max(double(max_abs(expected)), 1e-3 * largest), error = max_abs(p.grad() - expected);
    CAPTURE(name, scale, error);
    CHECK(error < 1e-3 * scale);
    ++checked;
  }
  CHECK(checked == params.size());
  CHECK(checked > 30);
}

TEST_CASE("dit: configuration errors name the key before training", "[network][dit][config]") {
  // 8 x 8 digits with patch 3: the error names network.patch, the value and the image.
  const std::string e = build_error("{type: dit, hidden: 8, depth: 1, heads: 2, patch: 3}", {1, 8, 8});
  CHECK_THAT(e, Contains("patch"));
  CHECK_THAT(e, Contains("net.yaml:1"));
  CHECK_THAT(e, Contains("must divide the image height 8 and width 8"));
  CHECK_THAT(e, Contains("(1, 8, 8)"));
  // Non-square: the width does not divide.
  CHECK_THAT(build_error("{type: dit, hidden: 8, depth: 1, heads: 2, patch: 4}", {1, 8, 6}), Contains("width 6"));
  // The default patch 2 on an odd image: still named.
  CHECK_THAT(build_error("{type: dit, hidden: 8, depth: 1, heads: 2}", {1, 7, 7}), Contains("set `patch`"));
  CHECK_THAT(build_error("{type: dit, hidden: 12, depth: 1, heads: 5}", {1, 8, 8}), Contains("heads must divide hidden 12"));
  CHECK_THAT(build_error("{type: dit, hidden: 10, depth: 1, heads: 2}", {1, 8, 8}), Contains("multiple of 4"));
  CHECK_THAT(build_error("{type: dit, hidden: 8}", {64}), Contains("dit takes images (C, H, W)"));
  CHECK_THAT(build_error("{type: dit, hidden: 8, class_conditional: true}", {1, 8, 8}, 0), Contains("no labels"));
  CHECK_THAT(build_error("{type: dit, hidden: 8, heads: 2, depht: 2}", {1, 8, 8}), Contains("depht"));
}

TEST_CASE("dit: runexp trains a tiny class-conditional DiT on the 8x8 digits and writes samples", "[network][dit][e2e]") {
  diffusion::testing::ScratchDir d("dit-e2e");
  std::ofstream(d / "dit.yaml") << "name: dit_digits_e2e\n"
                                   "seed: 1\n"
                                   "dataset: {type: digits}\n"
                                   "codec:   {type: identity}\n"
                                   "network: {type: dit, hidden: 32, depth: 2, heads: 2, patch: 2, frequency_dim: 32, class_conditional: true}\n"
                                   "sde:     {type: ddpm, timesteps: 100, schedule: linear, beta_start: 1.0e-3, beta_end: 0.2}\n"
                                   "loss:    {type: eps_mse}\n"
                                   "train:   {steps: 40, batch_size: 32, label_dropout: 0.2, optimizer: {type: adam, lr: 1.0e-3}}\n"
                                   "sampler: {type: ddim, steps: 10, n: 16}\n"
                                   "metrics: []\n";
  const auto r = diffusion::testing::run_runexp({d / "dit.yaml", "--out", d / "dit.h5"}, d / "run");
  CAPTURE(r.out, r.err);
  REQUIRE(r.status == 0);
  H5::H5File f(d / "dit.h5", H5F_ACC_RDONLY);
  const H5::Group root = f.openGroup("/");
  REQUIRE(h5_exists(root, "model/blocks.1.adaLN.weight"));
  // Training moved the adaLN-Zero gates off zero.
  CHECK(max_abs(read_tensor(root, "model/blocks.1.adaLN.weight")) > 0.0f);
  const Tensor s = read_tensor(root, "samples/ddim/x");
  CHECK(shape_of(s) == Shape{16, 1, 8, 8});
  for (float v : s) REQUIRE(std::isfinite(v));

  // The same run with a patch that does not divide the 8 x 8 digits stops before training,
  // naming the key and the image.
  std::ofstream(d / "bad.yaml") << "name: dit_bad_patch\n"
                                   "dataset: {type: digits}\n"
                                   "codec:   {type: identity}\n"
                                   "network: {type: dit, hidden: 32, depth: 2, heads: 2, patch: 3}\n"
                                   "sde:     {type: ddpm, timesteps: 100}\n"
                                   "loss:    {type: eps_mse}\n"
                                   "train:   {steps: 40, batch_size: 32}\n"
                                   "sampler: {type: ddim, steps: 10, n: 16}\n"
                                   "metrics: []\n";
  const auto bad = diffusion::testing::run_runexp({d / "bad.yaml", "--out", d / "bad.h5"}, d / "bad");
  CAPTURE(bad.err);
  CHECK(bad.status == 2);  // a configuration error
  CHECK_THAT(bad.err, Contains("bad.yaml:4:"));
  CHECK_THAT(bad.err, Contains("network.patch: patch 3 must divide the image height 8 and width 8"));
  CHECK_THAT(bad.out + bad.err, !Contains("train step"));
  CHECK_FALSE(std::filesystem::exists(d / "bad.h5"));
}

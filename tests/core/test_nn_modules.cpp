// Modules and building blocks: names, initialisation statistics, embeddings against their
// formulas, HDF5 save/load, and a small regression fit.
#include <catch2/catch.hpp>

#include "nn_test_helpers.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "diffusion/io/hdf5_io.hpp"
#include "diffusion/nn/module.hpp"
#include "diffusion/nn/layers.hpp"
#include "diffusion/optim/optim.hpp"

using namespace diffusion;
using namespace diffusion::testing;
using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Var>>& named) {
  std::vector<std::string> out;
  for (const auto& e : named) out.push_back(e.first);
  return out;
}

// A small time-conditioned network with every block: what a toy diffusion model looks like.
struct TimeNet : Module {
  std::shared_ptr<SinusoidalEmbedding> temb;
  std::shared_ptr<GaussianFourierEmbedding> fourier;
  std::shared_ptr<LayerNorm> norm;
  std::shared_ptr<MLP> net;
  TimeNet(std::size_t hidden, Rng& rng) {
    temb = register_module("temb", std::make_shared<SinusoidalEmbedding>(8));
    fourier = register_module("fourier", std::make_shared<GaussianFourierEmbedding>(6, 4.0, rng));
    norm = register_module("norm", std::make_shared<LayerNorm>(2 + 8 + 6));
    net = register_module("net", std::make_shared<MLP>(std::vector<std::size_t>{16, hidden, hidden, 2},
                                                       Activation::silu, rng));
  }
  Var forward(const Var& x, const Var& t) const {
    return net->forward(norm->forward(concat({x, temb->forward(t), fourier->forward(t)}, 1)));
  }
};

// Summary statistics of a tensor's elements, in double.
struct Stats {
  double mean = 0, var = 0, min = INFINITY, max = -INFINITY;
  explicit Stats(const Tensor& t) {
    for (float v : t) mean += v, min = std::min<double>(min, v), max = std::max<double>(max, v);
    mean /= static_cast<double>(t.size());
    for (float v : t) var += (v - mean) * (v - mean);
    var /= static_cast<double>(t.size());
  }
};

}  // namespace

TEST_CASE("MLP children and parameters have PyTorch-style dotted names", "[nn][module]") {
  Rng rng(0);
  MLP mlp({3, 8, 8, 2}, Activation::relu, rng);
  CHECK(names_of(mlp.named_parameters()) ==
        std::vector<std::string>{"layers.0.weight", "layers.0.bias", "layers.1.weight",
                                 "layers.1.bias", "layers.2.weight", "layers.2.bias"});
  const auto named = mlp.named_parameters();
  CHECK(named[0].second.shape() == Shape{8, 3});  // (out, in), as torch.nn.Linear
  CHECK(named[1].second.shape() == Shape{8});
  CHECK(named[4].second.shape() == Shape{2, 8});
  CHECK(mlp.num_parameters() == 8 * 3 + 8 + 8 * 8 + 8 + 2 * 8 + 2);
  CHECK(mlp.parameters().size() == 6);
  for (const auto& p : mlp.parameters()) CHECK(p.requires_grad());
  CHECK(mlp.forward(Var(rng.normal({5, 3}))).shape() == Shape{5, 2});

  MLP nobias({3, 4}, Activation::relu, rng, false);
  CHECK(names_of(nobias.named_parameters()) == std::vector<std::string>{"layers.0.weight"});
  CHECK_THAT(error_of([&] { MLP({3}, Activation::relu, rng); }), Contains("at least"));
}

TEST_CASE("registration rejects duplicate and ambiguous names", "[nn][module]") {
  Module m;
  m.register_parameter("w", Var(zeros({2})));
  CHECK_THAT(error_of([&] { m.register_parameter("w", Var(zeros({2}))); }),
             Contains("already registered"));
  CHECK_THAT(error_of([&] { m.register_buffer("w", zeros({2})); }), Contains("already registered"));
  CHECK_THAT(error_of([&] { m.register_parameter("a.b", Var(zeros({2}))); }), Contains("invalid name"));
  const Var buf = m.register_buffer("running", Var(zeros({2}), true));
  CHECK_FALSE(buf.requires_grad());  // buffers are never trained
  CHECK(names_of(m.named_buffers()) == std::vector<std::string>{"running"});
  CHECK(names_of(m.named_state()) == std::vector<std::string>{"w", "running"});
  CHECK_THAT(error_of([&] { m.register_module("a/b", std::make_shared<Module>()); }),
             Contains("invalid name"));
}

TEST_CASE("train/eval is set recursively, zero_grad clears every gradient", "[nn][module]") {
  Rng rng(1);
  TimeNet net(4, rng);
  net.eval();
  CHECK_FALSE(net.net->layers()[1]->is_training());
  net.train();
  CHECK(net.net->layers()[1]->is_training());

  Var loss = mean(square(net.forward(Var(rng.normal({3, 2})), Var(rng.uniform({3})))));
  loss.backward();
  for (const auto& p : net.parameters()) CHECK(p.has_grad());
  net.zero_grad();
  for (const auto& p : net.parameters()) CHECK_FALSE(p.has_grad());
}

TEST_CASE("Linear computes x W^T + b like a hand matrix product", "[nn][linear]") {
  Rng rng(3);
  Linear lin(3, 2, true, rng);
  Var w = lin.weight(), b = lin.bias();  // handles share the module's storage
  w.value() = Tensor{{1.0f, 2.0f, 3.0f}, {-1.0f, 0.5f, 0.0f}};
  b.value() = Tensor{0.25f, -2.0f};
  const Tensor x{{1.0f, 0.0f, -1.0f}, {2.0f, 1.0f, 0.5f}};
  const Tensor y = lin.forward(Var(x)).value();
  REQUIRE(shape_of(y) == Shape{2, 2});
  // Row 0: [1-3+0.25, -1+0+0-2]; row 1: [2+2+1.5+0.25, -2+0.5-2].
  CHECK_THAT(y(0, 0), WithinAbs(-1.75, 1e-6));
  CHECK_THAT(y(0, 1), WithinAbs(-3.0, 1e-6));
  CHECK_THAT(y(1, 0), WithinAbs(5.75, 1e-6));
  CHECK_THAT(y(1, 1), WithinAbs(-3.5, 1e-6));
  CHECK_THAT(error_of([&] { lin.forward(Var(zeros({2, 4}))); }),
             Contains("Linear(3 -> 2)") && Contains("(2, 4)"));
}

TEST_CASE("Linear's default init is U(-1/sqrt(in), 1/sqrt(in)) for weight and bias", "[nn][linear][init]") {
  Rng rng(2024);
  const std::size_t in = 400, out = 300;
  Linear lin(in, out, true, rng);
  const double b = 1.0 / std::sqrt(static_cast<double>(in));
  const Stats w(lin.weight().value());
  const double n = static_cast<double>(in * out);
  CHECK(w.min >= -b);
  CHECK(w.max <= b);
  // Mean 0 with variance b^2/3; the sample variance of U(-b, b) has variance (4/45) b^4 / n.
  CHECK(std::abs(w.mean) < 4.0 * std::sqrt(b * b / 3.0 / n));
  CHECK(std::abs(w.var - b * b / 3.0) < 4.0 * std::sqrt(4.0 / 45.0) * b * b / std::sqrt(n));
  const Stats bias(lin.bias().value());
  CHECK(bias.min >= -b);
  CHECK(bias.max <= b);
  CHECK(bias.max - bias.min > b);  // not a constant: it is drawn too
}

TEST_CASE("Linear's alternative inits have their documented scales", "[nn][linear][init]") {
  Rng rng(7);
  const std::size_t in = 200, out = 500;
  const double n = static_cast<double>(in * out);
  SECTION("xavier_uniform") {
    Linear lin(in, out, true, rng, Init::xavier_uniform);
    const double a = std::sqrt(6.0 / (in + out));
    const Stats w(lin.weight().value());
    CHECK(w.min >= -a);
    CHECK(w.max <= a);
    CHECK(std::abs(w.var - a * a / 3.0) < 4.0 * std::sqrt(4.0 / 45.0) * a * a / std::sqrt(n));
    CHECK(Stats(lin.bias().value()).max == 0.0);
  }
  SECTION("kaiming_normal") {
    Linear lin(in, out, true, rng, Init::kaiming_normal);
    const double var = 2.0 / in;
    // The sample variance of a Gaussian has variance 2 sigma^4 / n.
    CHECK(std::abs(Stats(lin.weight().value()).var - var) < 4.0 * std::sqrt(2.0 / n) * var);
  }
  SECTION("zeros") {
    Linear lin(in, out, true, rng, Init::zeros);
    CHECK(Stats(lin.weight().value()).max == 0.0);
    CHECK(Stats(lin.weight().value()).min == 0.0);
  }
  SECTION("by name") {
    CHECK(parse_init("xavier_uniform") == Init::xavier_uniform);
    CHECK(parse_init("default") == Init::torch_default);
    CHECK_THAT(error_of([] { parse_init("orthogonal"); }),
               Contains("orthogonal") && Contains("kaiming_normal") && Contains("zeros"));
  }
}

TEST_CASE("activations by name apply the right function", "[nn][activation]") {
  const Tensor x{-2.0f, -0.5f, 0.0f, 1.5f};
  const Var v(x);
  for (const char* name : {"relu", "silu", "swish", "gelu", "tanh", "sigmoid", "identity", "none"}) {
    CAPTURE(name);
    const Tensor y = apply(parse_activation(name), v).value();
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double xi = x(i);
      double expected = xi;
      const std::string s = name;
      if (s == "relu") expected = std::max(0.0, xi);
      if (s == "silu" || s == "swish") expected = xi / (1.0 + std::exp(-xi));
      if (s == "gelu") expected = 0.5 * xi * (1.0 + std::erf(xi / std::sqrt(2.0)));
      if (s == "tanh") expected = std::tanh(xi);
      if (s == "sigmoid") expected = 1.0 / (1.0 + std::exp(-xi));
      CHECK_THAT(y(i), WithinAbs(expected, 1e-6));
    }
  }
  CHECK(to_string(Activation::silu) == "silu");
  CHECK_THAT(error_of([] { parse_activation("softsign"); }),
             Contains("softsign") && Contains("relu") && Contains("silu") && Contains("identity"));
}

TEST_CASE("sinusoidal embedding matches sin(t f_k), cos(t f_k)", "[nn][embedding]") {
  const std::size_t dim = 32, half = dim / 2;
  SinusoidalEmbedding emb(dim);
  CHECK(emb.named_state().empty());  // nothing to save: a pure function of t
  const Tensor t{0.0f, 1.0f, 3.25f, 999.0f};
  const Tensor y = emb.forward(t).value();
  REQUIRE(shape_of(y) == Shape{4, dim});
  for (std::size_t n = 0; n < t.size(); ++n)
    for (std::size_t k = 0; k < half; ++k) {
      const double f = std::exp(-std::log(10000.0) * static_cast<double>(k) / half);
      const double angle = t(n) * f;
      // float32 angles carry a relative rounding error of about 2^-24 each: scale the bound.
      const double tol = 1e-6 + 3e-7 * angle;
      CAPTURE(n, k);
      CHECK_THAT(y(n, k), WithinAbs(std::sin(angle), tol));
      CHECK_THAT(y(n, half + k), WithinAbs(std::cos(angle), tol));
    }
  // (N, 1) gives the same as (N); other shapes are refused.
  Tensor col = t;
  col.reshape({4, 1});
  CHECK(bitwise_equal(emb.forward(col).value(), y));
  CHECK_THAT(error_of([&] { emb.forward(zeros({4, 2})); }), Contains("(N) or (N, 1)"));
  CHECK_THAT(error_of([] { SinusoidalEmbedding(7); }), Contains("even"));
  SinusoidalEmbedding short_period(4, 100.0);
  CHECK_THAT(short_period.frequencies().value()(0, 1), WithinRel(0.1, 1e-6));
}

TEST_CASE("Gaussian Fourier embedding uses a fixed N(0, scale^2) buffer W", "[nn][embedding]") {
  Rng rng(11);
  const double scale = 16.0;
  GaussianFourierEmbedding emb(8192, rng);  // default scale 16
  CHECK(emb.named_parameters().empty());     // not trained
  REQUIRE(names_of(emb.named_buffers()) == std::vector<std::string>{"W"});
  CHECK_FALSE(emb.W().requires_grad());
  const Stats w(emb.W().value());
  const double n = 4096;
  CHECK(std::abs(w.mean) < 4.0 * scale / std::sqrt(n));
  CHECK(std::abs(w.var - scale * scale) < 4.0 * std::sqrt(2.0 / n) * scale * scale);

  GaussianFourierEmbedding small(6, 2.0, rng);
  const Tensor t{0.0f, 0.125f, 0.5f};
  const Tensor y = small.forward(t).value();
  REQUIRE(shape_of(y) == Shape{3, 6});
  const double two_pi = 2.0 * std::acos(-1.0);
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t k = 0; k < 3; ++k) {
      const double angle = two_pi * t(i) * small.W().value()(k);
      CHECK_THAT(y(i, k), WithinAbs(std::sin(angle), 1e-5));
      CHECK_THAT(y(i, 3 + k), WithinAbs(std::cos(angle), 1e-5));
    }
}

TEST_CASE("LayerNorm starts as the identity affine map of the normalised input", "[nn][norm]") {
  LayerNorm ln(5);
  CHECK(names_of(ln.named_parameters()) == std::vector<std::string>{"weight", "bias"});
  CHECK(Stats(ln.named_parameters()[0].second.value()).min == 1.0);
  CHECK(Stats(ln.named_parameters()[1].second.value()).max == 0.0);
  Rng rng(5);
  const Tensor y = ln.forward(Var(rng.normal({4, 5}, 3.0f, 2.0f))).value();
  for (std::size_t r = 0; r < 4; ++r) {
    double m = 0, v = 0;
    for (std::size_t c = 0; c < 5; ++c) m += y(r, c);
    m /= 5;
    for (std::size_t c = 0; c < 5; ++c) v += (y(r, c) - m) * (y(r, c) - m);
    CHECK_THAT(m, WithinAbs(0.0, 1e-5));
    CHECK_THAT(v / 5, WithinAbs(1.0, 1e-3));  // 1 - eps/var, eps = 1e-5
  }
  CHECK_THAT(error_of([&] { ln.forward(Var(zeros({2, 4}))); }), Contains("LayerNorm(5)"));
}

TEST_CASE("a module round-trips through HDF5 bit-exactly into a differently initialised one",
          "[nn][module][hdf5]") {
  TempH5 file("roundtrip");
  Rng rng_a(1), rng_b(2);
  TimeNet a(16, rng_a), b(16, rng_b);
  // Train-like perturbation so values are not just the init stream.
  for (auto& p : a.parameters()) p.value() *= 1.5f;
  REQUIRE_FALSE(bitwise_equal(a.parameters()[0].value(), b.parameters()[0].value()));
  {
    H5::H5File f(file.path, H5F_ACC_TRUNC);
    a.save(h5_require_group(f, "model"));
  }
  {
    H5::H5File f(file.path, H5F_ACC_RDONLY);
    const H5::Group g = f.openGroup("model");
    CHECK(h5_dataset_names(g).size() == a.named_state().size());
    CHECK(h5_exists(g, "net.layers.0.weight"));
    CHECK(h5_exists(g, "fourier.W"));
    CHECK(h5_exists(g, "norm.bias"));
    b.load(g);
  }
  const auto sa = a.named_state(), sb = b.named_state();
  REQUIRE(sa.size() == sb.size());
  for (std::size_t i = 0; i < sa.size(); ++i) {
    CAPTURE(sa[i].first);
    CHECK(bitwise_equal(sa[i].second.value(), sb[i].second.value()));
  }
  Rng rng(9);
  const Var x(rng.normal({5, 2})), t(rng.uniform({5}));
  CHECK(bitwise_equal(a.forward(x, t).value(), b.forward(x, t).value()));
}

TEST_CASE("loading checks names and shapes and changes nothing on failure", "[nn][module][hdf5]") {
  TempH5 file("mismatch");
  Rng rng(3);
  TimeNet saved(16, rng);
  {
    H5::H5File f(file.path, H5F_ACC_TRUNC);
    saved.save(h5_require_group(f, "model"));
  }
  H5::H5File f(file.path, H5F_ACC_RDONLY);
  const H5::Group g = f.openGroup("model");

  SECTION("a different width names the parameter and both shapes") {
    TimeNet wider(32, rng);
    const Tensor before = wider.parameters()[0].value();
    const std::string msg = error_of([&] { wider.load(g); });
    CHECK_THAT(msg, Contains("net.layers.0.weight") && Contains("expected shape (32, 16)") &&
                        Contains("found (16, 16)"));
    CHECK(bitwise_equal(wider.parameters()[0].value(), before));
  }
  SECTION("a parameter the file lacks is named") {
    struct Extended : TimeNet {
      Extended(Rng& r) : TimeNet(16, r) { register_module("head", std::make_shared<LayerNorm>(2)); }
    } extended(rng);
    CHECK_THAT(error_of([&] { extended.load(g); }),
               Contains("missing parameter 'head.weight'") && Contains(file.path));
  }
  SECTION("datasets the module does not know are errors when strict") {
    MLP only_mlp({16, 16, 16, 2}, Activation::silu, rng);
    CHECK_THAT(error_of([&] { only_mlp.load(g); }),
               Contains("unexpected datasets") && Contains("fourier.W"));
    // Not strict: the MLP finds none of its names (they are prefixed "net."), so still an error.
    CHECK_THAT(error_of([&] { only_mlp.load(g, false); }), Contains("missing parameter 'layers.0.weight'"));
  }
}

TEST_CASE("copy_parameters_from copies values and checks the architecture", "[nn][module]") {
  Rng rng(4);
  TimeNet a(8, rng), b(8, rng), c(12, rng);
  b.copy_parameters_from(a);
  for (std::size_t i = 0; i < a.named_state().size(); ++i)
    CHECK(bitwise_equal(a.named_state()[i].second.value(), b.named_state()[i].second.value()));
  // Values are copied, not shared.
  a.parameters()[0].value()(0, 0) += 1.0f;
  CHECK(a.parameters()[0].value()(0, 0) != b.parameters()[0].value()(0, 0));
  CHECK_THAT(error_of([&] { c.copy_parameters_from(a); }), Contains("net.layers.0.weight"));
}

TEST_CASE("an MLP trained with Adam fits y = sin(3x)", "[nn][optim][train]") {
  Rng rng(0);
  MLP mlp({1, 64, 64, 1}, Activation::silu, rng);
  AdamOptions options;
  options.lr = 1e-2;
  Adam opt(mlp.parameters(), options);
  const std::size_t n = 128;
  Tensor x = Tensor::from_shape({n, 1}), y = Tensor::from_shape({n, 1});
  for (std::size_t i = 0; i < n; ++i) {
    x(i, 0) = -1.0f + 2.0f * static_cast<float>(i) / (n - 1);
    y(i, 0) = std::sin(3.0f * x(i, 0));
  }
  const Var xv(x), yv(y);
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad();
    Var loss = mse_loss(mlp.forward(xv), yv);
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item();
    last = loss.item();
  }
  CAPTURE(first, last);
  CHECK(last < first / 10.0);
}
